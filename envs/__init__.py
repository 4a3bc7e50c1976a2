"""drivelab.envs: highway-env scenarios on a batched backend, with camera frames and ground truth.

Quick start::

    import drivelab.envs as de
    env = de.make("drivelab/highway-fast-v0", num_envs=64, observation="camera", seed=0)
    obs, info = env.reset()                         # (64, 4, 64, 128) uint8
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())

``gymnasium.make("drivelab/highway-fast-v0")`` and ``gymnasium.make_vec(..., num_envs=N)``
work too. ``make_sb3`` (Stable-Baselines3 ``VecEnv``) is loaded on first use, so importing
this package imports neither torch nor SB3.
"""

from __future__ import annotations

from typing import Any

import gymnasium

from drivelab.envs.camera import CameraConfig
from drivelab.envs.errors import (
    ActionError,
    BackendUnavailableError,
    ConfigError,
    DrivelabError,
    UnknownEnvError,
)
from drivelab.envs.make import BACKENDS, OBSERVATIONS, choose_backend, make
from drivelab.envs.metrics import METRIC_NAMES
from drivelab.envs.scenarios import ENV_IDS, SCENARIOS, Scenario, get_scenario
from drivelab.envs.states import CLASS_NAMES, VehicleBatch
from drivelab.envs.vector import DrivingVectorEnv

__all__ = [
    "ActionError", "BACKENDS", "BackendUnavailableError", "CLASS_NAMES", "CameraConfig",
    "ConfigError", "DrivelabError", "DrivingVectorEnv", "ENV_IDS", "METRIC_NAMES",
    "OBSERVATIONS", "SCENARIOS", "Scenario", "UnknownEnvError", "VehicleBatch",
    "choose_backend", "get_scenario", "make", "make_sb3",
]


def _register() -> None:
    for env_id in ENV_IDS:
        if env_id not in gymnasium.registry:
            gymnasium.register(
                id=env_id,
                entry_point="drivelab.envs.single:DrivingEnv",
                vector_entry_point="drivelab.envs.make:make_vector",
                kwargs={"env_id": env_id},
            )


_register()


def __getattr__(name: str) -> Any:
    # The SB3 adapter pulls in torch; load it only when asked for.
    if name == "make_sb3":
        from drivelab.envs.sb3 import make_sb3

        return make_sb3
    raise AttributeError(f"module 'drivelab.envs' has no attribute {name!r}")
