"""``DrivingEnv``: one driving env with the gymnasium ``Env`` API (``gymnasium.make``)."""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np

from drivelab.envs.make import make


class DrivingEnv(gymnasium.Env):
    """A batch of one, unbatched. At episode end ``info["driving"]`` holds the metrics.

    Args: as ``drivelab.envs.make`` without ``num_envs``.
    """

    metadata = {"render_modes": []}

    def __init__(self, env_id: str, **kwargs: Any) -> None:
        self.vector = make(env_id, num_envs=1, **kwargs)
        self.backend = self.vector.backend
        self.observation_space = self.vector.single_observation_space
        self.action_space = self.vector.single_action_space

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        obs, infos = self.vector.reset(seed=seed, options=options)
        return _first(obs), _unbatch_info(infos)

    def step(self, action):
        batch = np.asarray(action)[None]
        obs, rewards, terminated, truncated, infos = self.vector.step(batch)
        info = _unbatch_info(infos)
        if infos.get("_final_obs", np.zeros(1, bool))[0]:
            obs_single = infos["final_obs"][0]
        else:
            obs_single = _first(obs)
        return obs_single, float(rewards[0]), bool(terminated[0]), bool(truncated[0]), info

    def vehicle_states(self):
        return self.vector.vehicle_states()

    def close(self) -> None:
        self.vector.close()


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
