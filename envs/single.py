"""``make``: one driving env with the gymnasium ``Env`` API, as ``gymnasium.make`` returns."""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np

from drivelab.envs.errors import ConfigError
from drivelab.envs.make import make_vec
from drivelab.envs.states import VehicleBatch


class DrivingEnv(gymnasium.Env):
    """A batch of one, unbatched. At episode end ``info["driving"]`` holds the metrics.

    Every step's ``info`` also carries highway-env's per-step ``speed`` [m/s] and ``crashed``
    of the ego vehicle.

    Args: as ``drivelab.envs.make_vec`` without ``num_envs``.
    """

    metadata = {"render_modes": []}

    def __init__(self, env_id: str, **kwargs: Any) -> None:
        if "num_envs" in kwargs:
            raise ConfigError("make() builds one env; use make_vec(env_id, num_envs=N) for a batch")
        self.vector = make_vec(env_id, num_envs=1, **kwargs)
        self.backend = self.vector.backend
        self.observation_space = self.vector.single_observation_space
        self.action_space = self.vector.single_action_space
        self._closed = False

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[Any, dict[str, Any]]:
        self._check_open()
        super().reset(seed=seed)
        obs, infos = self.vector.reset(seed=seed, options=options)
        return _first(obs), self._info(infos)

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        self._check_open()
        batch = np.asarray(action)[None]
        obs, rewards, terminated, truncated, infos = self.vector.step(batch)
        info = self._info(infos)
        if infos.get("_final_obs", np.zeros(1, bool))[0]:
            obs_single = infos["final_obs"][0]
        else:
            obs_single = _first(obs)
        return obs_single, float(rewards[0]), bool(terminated[0]), bool(truncated[0]), info

    def vehicle_states(self) -> VehicleBatch:
        """Every vehicle's state (a batch of one; slot 0 is the ego)."""
        self._check_open()
        return self.vector.vehicle_states()

    def close(self) -> None:
        if not self._closed:
            self.vector.close()
            self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise gymnasium.error.ClosedEnvironmentError("this env was closed; make a new one")

    def _info(self, infos: dict[str, Any]) -> dict[str, Any]:
        info = _unbatch_info(infos)
        speed, crashed = self.vector.ego_step_info()
        info["speed"] = float(speed[0])
        info["crashed"] = bool(crashed[0])
        return info


def make(env_id: str, **kwargs: Any) -> DrivingEnv:
    """Make one driving env (a ``gymnasium.Env``), as ``gymnasium.make(env_id)`` does.

    Args:
        env_id: a drivelab id, e.g. ``"drivelab/highway-fast-v0"``.
        **kwargs: ``backend``, ``observation``, ``config``, ``camera``, ``seed``,
            ``render_mode``, as for ``make_vec``.

    Example:
        >>> env = make("drivelab/highway-fast-v0", observation="camera")
        >>> obs, info = env.reset(seed=0)
        >>> obs.shape
        (4, 64, 128)
    """
    return DrivingEnv(env_id, **kwargs)


def _first(obs: Any) -> Any:
    if isinstance(obs, dict):
        return {k: _first(v) for k, v in obs.items()}
    return obs[0]


def _unbatch_info(infos: dict) -> dict:
    info: dict[str, Any] = {}
    if infos.get("_driving", np.zeros(1, bool))[0]:
        info["driving"] = {k: v[0].item() for k, v in infos["driving"].items()}
    if "ground_truth" in infos:
        info["ground_truth"] = infos["ground_truth"][0]
    return info
