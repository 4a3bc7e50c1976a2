"""Driving metrics accumulated per env over an episode, vectorised over the batch.

Samples are taken once per policy step from the ego's state (slot 0 of a ``VehicleBatch``),
including the state right after reset, so an episode of L steps has L + 1 samples.
"""

from __future__ import annotations

import numpy as np

from drivelab.envs.states import VehicleBatch

METRIC_NAMES: tuple[str, ...] = (
    "return", "length", "crashed", "success", "mean_speed", "distance_m", "lane_changes",
    "right_lane_share", "on_road_share", "max_abs_jerk", "seed",
)


class EpisodeTracker:
    """Accumulates return, length and the ego's driving statistics for B envs."""

    def __init__(self, num_envs: int, dt: float) -> None:
        self.dt = dt  # seconds per policy step
        n = num_envs
        self.ret = np.zeros(n)
        self.length = np.zeros(n, np.int64)
        self.samples = np.zeros(n, np.int64)
        self.speed_sum = np.zeros(n)
        self.distance = np.zeros(n)
        self.lane_changes = np.zeros(n, np.int64)
        self.right_lane = np.zeros(n, np.int64)
        self.on_road = np.zeros(n, np.int64)
        self.max_jerk = np.zeros(n)
        self.last_xy = np.zeros((n, 2))
        self.last_lane = np.zeros(n, np.int64)
        self.last_speed = np.zeros(n)
        self.last_accel = np.full(n, np.nan)
        self.seed = np.full(n, -1, np.int64)

    def start(self, env_ids: np.ndarray, seeds: list[int | None], states: VehicleBatch) -> None:
        """Begin episodes for ``env_ids``; ``states`` holds the rows of those envs."""
        for array in (self.ret, self.speed_sum, self.distance, self.max_jerk):
            array[env_ids] = 0.0
        for array in (self.length, self.samples, self.lane_changes, self.right_lane, self.on_road):
            array[env_ids] = 0
        self.seed[env_ids] = [-1 if s is None else int(s) for s in seeds]
        self.last_accel[env_ids] = np.nan
        self._sample(env_ids, states, first=True)

    def _sample(self, env_ids: np.ndarray, states: VehicleBatch, first: bool) -> None:
        xy = np.stack([states.x[:, 0], states.y[:, 0]], -1)
        speed = states.speed[:, 0]
        lane = states.lane_index[:, 0]
        if not first:
            self.distance[env_ids] += np.hypot(*(xy - self.last_xy[env_ids]).T)
            self.lane_changes[env_ids] += lane != self.last_lane[env_ids]
            accel = (speed - self.last_speed[env_ids]) / self.dt
            jerk = np.abs(accel - self.last_accel[env_ids]) / self.dt  # nan on the first step
            self.max_jerk[env_ids] = np.fmax(self.max_jerk[env_ids], np.nan_to_num(jerk, nan=0.0))
            self.last_accel[env_ids] = accel
        self.samples[env_ids] += 1
        self.speed_sum[env_ids] += speed
        self.right_lane[env_ids] += lane == states.lanes_count - 1
        self.on_road[env_ids] += states.on_road[:, 0]
        self.last_xy[env_ids] = xy
        self.last_lane[env_ids] = lane
        self.last_speed[env_ids] = speed

    def update(self, rewards: np.ndarray, states: VehicleBatch) -> None:
        """Record one step of every env (states after the step, before any reset)."""
        all_envs = np.arange(len(self.ret))
        self.ret += rewards
        self.length += 1
        self._sample(all_envs, states, first=False)

    def finish(self, env_ids: np.ndarray, crashed: np.ndarray, success: np.ndarray) -> dict[str, np.ndarray]:
        """The metrics of the episodes ending now in ``env_ids``, each a (len(env_ids),) array."""
        samples = self.samples[env_ids]
        return {
            "return": self.ret[env_ids].copy(),
            "length": self.length[env_ids].copy(),
            "crashed": np.asarray(crashed, bool),
            "success": np.asarray(success, bool),
            "mean_speed": self.speed_sum[env_ids] / samples,
            "distance_m": self.distance[env_ids].copy(),
            "lane_changes": self.lane_changes[env_ids].copy(),
            "right_lane_share": self.right_lane[env_ids] / samples,
            "on_road_share": self.on_road[env_ids] / samples,
            "max_abs_jerk": self.max_jerk[env_ids].copy(),
            "seed": self.seed[env_ids].copy(),
        }
