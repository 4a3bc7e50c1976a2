"""drivelab.envs: highway-env scenarios on a batched backend, with camera frames and ground truth.

Quick start::

    import drivelab.envs as de
    vec = de.make_vec("drivelab/highway-fast-v0", num_envs=64, observation="camera", seed=0)
    obs, info = vec.reset()                         # (64, 4, 64, 128) uint8
    obs, reward, terminated, truncated, info = vec.step(vec.action_space.sample())
    env = de.make("drivelab/highway-fast-v0")       # one gymnasium.Env

``gymnasium.make("drivelab/highway-fast-v0")`` and ``gymnasium.make_vec(..., num_envs=N)``
work too once this package is imported (or with the module prefix:
``gymnasium.make("drivelab.envs:drivelab/highway-fast-v0")``).
``make_sb3`` (Stable-Baselines3 ``VecEnv``) is loaded on first use, so importing
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
    WorkerError,
)
from drivelab.envs.make import BACKENDS, OBSERVATIONS, choose_backend, make_vec
from drivelab.envs.metrics import METRIC_NAMES
from drivelab.envs.scenarios import ENV_IDS, SCENARIOS, Scenario, get_scenario
from drivelab.envs.single import DrivingEnv, make
from drivelab.envs.states import CLASS_NAMES, VehicleBatch
from drivelab.envs.vector import DrivingVectorEnv

__all__ = [
    "ActionError", "BACKENDS", "BackendUnavailableError", "CLASS_NAMES", "CameraConfig",
    "ConfigError", "DrivelabError", "DrivingEnv", "DrivingVectorEnv", "ENV_IDS", "METRIC_NAMES",
    "OBSERVATIONS", "SCENARIOS", "Scenario", "UnknownEnvError", "VehicleBatch", "WorkerError",
    "choose_backend", "get_scenario", "make", "make_sb3", "make_vec",
]


def _register() -> None:
    for env_id in ENV_IDS:
        if env_id not in gymnasium.registry:
            gymnasium.register(
                id=env_id,
                entry_point="drivelab.envs.single:DrivingEnv",
                vector_entry_point="drivelab.envs.make:vector_entry_point",
                kwargs={"env_id": env_id},
            )


_register()


def __getattr__(name: str) -> Any:
    # The SB3 adapter pulls in torch; load it only when asked for.
    if name == "make_sb3":
        from drivelab.envs.sb3 import make_sb3

        return make_sb3
    raise AttributeError(f"module 'drivelab.envs' has no attribute {name!r}")
