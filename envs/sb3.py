"""Stable-Baselines3 ``VecEnv`` adapter over ``DrivingVectorEnv``.

SB3 resets finished envs inside ``step`` (same-step autoreset) and expects per-env info dicts
with ``terminal_observation`` and ``TimeLimit.truncated``; this adapter also adds
``episode`` ({"r", "l"}, as SB3's Monitor does, so ``rollout/ep_rew_mean`` is logged),
``is_success`` and the driving metrics under ``driving``. Importing this module imports SB3
and therefore torch, which is why ``drivelab.envs`` loads it lazily.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import VecEnv

from drivelab.envs.errors import BackendUnavailableError
from drivelab.envs.make import make_vec
from drivelab.envs.vector import DrivingVectorEnv


class DrivingSB3VecEnv(VecEnv):
    """SB3 view of a ``DrivingVectorEnv``: no Python loop over env stepping."""

    def __init__(self, vector: DrivingVectorEnv) -> None:
        self.vector = vector
        self.backend = vector.backend
        self._actions: np.ndarray | None = None
        self._seed: int | list[int] | None = None
        super().__init__(vector.num_envs, vector.single_observation_space, vector.single_action_space)

    def reset(self):
        obs, _ = self.vector.reset(seed=self._seed)
        self._seed = None
        self.reset_infos = [{} for _ in range(self.num_envs)]
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self):
        obs, rewards, terminated, truncated, infos = self.vector.step(self._actions)
        dones = terminated | truncated
        info_list: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        for i in np.flatnonzero(dones):
            driving = {k: v[i].item() for k, v in infos["driving"].items()}
            info_list[i] = {
                "terminal_observation": infos["final_obs"][i],
                "TimeLimit.truncated": bool(truncated[i] and not terminated[i]),
                "episode": {"r": driving["return"], "l": int(driving["length"]), "t": 0.0},
                "is_success": bool(driving["success"]),
                "driving": driving,
            }
        if "ground_truth" in infos:
            for i, truth in enumerate(infos["ground_truth"]):
                info_list[i]["ground_truth"] = truth
        return obs, rewards.astype(np.float32), dones, info_list

    def seed(self, seed: int | None = None):
        self._seed = seed
        return [None if seed is None else seed + i for i in range(self.num_envs)]

    def vehicle_states(self):
        return self.vector.vehicle_states()

    def close(self) -> None:
        self.vector.close()

    def get_attr(self, attr_name: str, indices=None) -> list[Any]:
        return [getattr(self.vector, attr_name)] * len(self._indices(indices))

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        setattr(self.vector, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs) -> list[Any]:
        result = getattr(self.vector, method_name)(*method_args, **method_kwargs)
        return [result] * len(self._indices(indices))

    def env_is_wrapped(self, wrapper_class, indices=None) -> list[bool]:
        return [False] * len(self._indices(indices))

    def get_images(self) -> list[np.ndarray]:
        """The newest camera frame of every env as RGB (H, W, 3), for SB3's video recorder."""
        if self.vector.camera is None:
            raise BackendUnavailableError(
                "images come from the camera: make the env with observation='camera', or use `drivelab watch`"
            )
        newest = self.vector.camera.stack[:, -1].transpose(0, 2, 3, 1)  # (B, H, W, C)
        rgb = np.repeat(newest, 3, axis=3) if newest.shape[3] == 1 else newest
        return list(rgb.copy())

    def _indices(self, indices) -> list[int]:
        if indices is None:
            return list(range(self.num_envs))
        if isinstance(indices, int):
            return [indices]
        return list(indices)


def make_sb3(env_id: str, num_envs: int = 1, **kwargs: Any) -> DrivingSB3VecEnv:
    """``make_vec`` for Stable-Baselines3: same arguments, returns an SB3 ``VecEnv``."""
    return DrivingSB3VecEnv(make_vec(env_id, num_envs=num_envs, **kwargs))
