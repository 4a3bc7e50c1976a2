"""A tiny in-memory vector env with drivelab's API (no simulator), shared by the runner and leaderboard tests."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

DRIVING_KEYS = ("return", "length", "crashed", "success", "mean_speed", "distance_m",
                "lane_changes", "right_lane_share", "on_road_share", "max_abs_jerk", "seed")


class FakeDrivingVecEnv:
    """A tiny in-memory vector env following the drivelab API (same-step autoreset).

    Each episode is driven by an RNG seeded with its reset seed; auto-reset episodes continue
    that RNG and report seed -1. Rewards depend on the actions, so a policy whose state is
    reset at the wrong time gets different numbers.
    """

    metadata = {"autoreset_mode": "same-step"}
    single_action_space = gym.spaces.Discrete(5)  # DiscreteMetaAction
    single_observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)

    def __init__(self, num_envs: int, return_offset: float = 0.0, backend: str = "highway-env") -> None:
        self.num_envs = num_envs
        self.backend = backend
        self.return_offset = return_offset  # added to every episode's return (an agent with new weights)
        self.closed = False
        self._rngs = [np.random.default_rng(0)] * num_envs
        self._seed = np.full(num_envs, -1)
        self._steps = np.zeros(num_envs, dtype=int)
        self._length = np.zeros(num_envs, dtype=int)
        self._return = np.zeros(num_envs)
        self._lane_changes = np.zeros(num_envs, dtype=int)

    def _start(self, env: int) -> None:
        self._steps[env] = 0
        self._return[env] = 0.0
        self._lane_changes[env] = 0
        self._length[env] = 3 + self._rngs[env].integers(0, 8)

    def _observation(self) -> np.ndarray:
        return np.stack([self._steps, self._seed]).T.astype(np.float32)  # (B, 2)

    def reset(self, seed=None, options=None):
        assert isinstance(seed, list) and len(seed) == self.num_envs
        for env, env_seed in enumerate(seed):
            self._rngs[env] = np.random.default_rng(env_seed)
            self._seed[env] = env_seed
            self._start(env)
        return self._observation(), {}

    def step(self, actions):
        actions = np.asarray(actions)
        assert actions.shape == (self.num_envs,)
        reward = np.array([r.random() for r in self._rngs]) + 0.25 * actions  # (B,)
        self._return += reward
        self._lane_changes += (actions == 0) | (actions == 2)
        self._steps += 1
        done = self._steps >= self._length
        driving = {key: np.zeros(self.num_envs) for key in DRIVING_KEYS}
        for env in np.flatnonzero(done):
            crashed = bool(self._rngs[env].random() < 0.3)
            values = {"return": self._return[env] + self.return_offset, "length": self._steps[env], "crashed": crashed,
                      "success": not crashed, "mean_speed": 20.0 + self._seed[env] % 2,
                      "distance_m": 20.0 * self._steps[env], "lane_changes": self._lane_changes[env],
                      "right_lane_share": 0.5, "on_road_share": 1.0, "max_abs_jerk": 3.0,
                      "seed": self._seed[env]}
            for key, value in values.items():
                driving[key][env] = value
            self._seed[env] = -1
            self._start(env)
        infos = {"driving": driving, "_driving": done.copy()} if done.any() else {}
        return self._observation(), reward, done, np.zeros_like(done), infos

    def close(self) -> None:
        self.closed = True
