"""``EnvPoolSimulator``: EnvPool 1.2.5's batched C++ ports of highway-env behind ``DrivingVectorEnv``.

Which config keys each port implements (``envpool_unsupported`` says why a scenario or config
cannot run on it), and the simulator itself: stepping, seeding, same-step resets overlapped with
drawing, and reading vehicle states from the ports' debug states (``drivelab.envs.ports``).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from itertools import chain
from typing import Any

import gymnasium
import numpy as np

from drivelab.envs.backends import cached_raster, reference_network
from drivelab.envs.errors import BackendUnavailableError
from drivelab.envs.ports import PortReader, arrived
from drivelab.envs.road import RoadRaster
from drivelab.envs.scenarios import ENVPOOL_DIFFERENCES, Scenario
from drivelab.envs.states import EGO, VehicleBatch

# highway-env config key -> EnvPool spec key, for the keys EnvPool's port implements.
_ENVPOOL_KEYS = {
    "lanes_count": "lanes_count",
    "vehicles_count": "vehicles_count",
    "controlled_vehicles": "controlled_vehicles",
    "initial_lane_id": "initial_lane_id",
    "duration": "duration",
    "ego_spacing": "ego_spacing",
    "vehicles_density": "vehicles_density",
    "collision_reward": "collision_reward",
    "right_lane_reward": "right_lane_reward",
    "high_speed_reward": "high_speed_reward",
    "lane_change_reward": "lane_change_reward",
    "normalize_reward": "normalize_reward",
    "offroad_terminal": "offroad_terminal",
    "simulation_frequency": "simulation_frequency",
    "policy_frequency": "policy_frequency",
}
_ENVPOOL_EXTRA = ("reward_speed_range",)
_LANE_WIDTH_M = 4.0  # highway-env StraightLane.DEFAULT_WIDTH


# highway-env keys EnvPool's non-highway ports take as they are (same names, same meaning);
# screen and rendering keys change nothing the simulator computes.
_ENVPOOL_COMMON_KEYS = ("duration", "simulation_frequency", "policy_frequency")
_RENDER_ONLY_KEYS = ("screen_width", "screen_height", "render_agent", "scaling", "centering_position",
                     "show_trajectories", "offscreen_rendering", "manual_control", "real_time_rendering")


def _envpool_keys(scenario: Scenario) -> dict[str, str]:
    """highway-env config key -> EnvPool spec key, for the keys EnvPool's port of ``scenario`` implements."""
    if scenario.family == "highway":
        return _ENVPOOL_KEYS
    return {key: key for key in _ENVPOOL_COMMON_KEYS}


def envpool_unsupported(scenario: Scenario, config: dict[str, Any]) -> str | None:
    """Why EnvPool cannot run this scenario and config, or None when it can."""
    try:
        import envpool  # noqa: F401
    except ImportError:
        return "envpool is not installed (it ships Linux x86_64 wheels only)"
    if scenario.envpool_id is None:
        why = ENVPOOL_DIFFERENCES.get(scenario.name, "EnvPool 1.2.5 does not port it")
        return f"drivelab's envpool backend does not run {scenario.env_id} ({why})"
    keys = _envpool_keys(scenario)
    extra = _ENVPOOL_EXTRA if scenario.family == "highway" else ()
    unsupported = [k for k in config if k not in keys and k not in extra and k not in _RENDER_ONLY_KEYS]
    if unsupported:
        return f"EnvPool's port does not implement the config keys {unsupported}"
    return None



class EnvPoolSimulator:
    """EnvPool 1.2.5's batched C++ port of highway-env (highway and highway-fast).

    EnvPool fixes each env's seed when the pool is built, so ``reset`` with new seeds rebuilds
    the pool with ``env_seed`` set; seeds of later, auto-reset episodes follow EnvPool's own
    stream (deterministic given the pool's seeds).
    """

    name = "envpool"

    def __init__(
        self, scenario: Scenario, num_envs: int, config: dict[str, Any], seed: int = 0, threads: int | None = None
    ) -> None:
        reason = envpool_unsupported(scenario, config)
        if reason:
            raise BackendUnavailableError(reason + "; use backend='highway-env' or 'auto'")
        self.scenario = scenario
        self.config = config
        self.num_envs = num_envs
        keys = _envpool_keys(scenario)
        self._kwargs = {keys[k]: v for k, v in config.items() if k in keys}
        self._threads = {"num_threads": int(threads)} if threads else {}  # EnvPool's default: one per core
        if "reward_speed_range" in config:
            low, high = config["reward_speed_range"]
            self._kwargs.update(reward_speed_low=float(low), reward_speed_high=float(high))
        if "initial_lane_id" in self._kwargs and self._kwargs["initial_lane_id"] is None:
            self._kwargs["initial_lane_id"] = -1
        self._build([seed + i for i in range(num_envs)])
        spec = self.pool.spec.config
        self.dt = 1.0 / spec.policy_frequency
        self.single_observation_space = self.pool.observation_space
        self.single_action_space = self.pool.action_space
        self._discrete = isinstance(self.single_action_space, gymnasium.spaces.Discrete)
        # Straight parallel lanes (highway, highway-fast): lanes from y arithmetic, and only the
        # fields each step needs are read. Other scenarios read their real lanes from the port.
        self._straight = scenario.family == "highway"
        if self._straight:
            self.lanes_count = int(spec.lanes_count)
            self._others_collide = bool(spec.other_vehicles_check_collisions)
            self._road = reference_network(scenario.highway_env_id, self.lanes_count)
        else:
            self._road = reference_network(scenario.highway_env_id)
        self._port = PortReader()  # reads the non-highway ports' vehicles and objects
        self._rasters: dict[float, RoadRaster] = {}
        self._final_success = np.zeros(num_envs, bool)  # of the episode that ended at the last step

    def _build(self, seeds: list[int]) -> None:
        import envpool

        kwargs = dict(self._kwargs)
        if "duration" in kwargs or "policy_frequency" in kwargs:
            spec = envpool.make_spec(self.scenario.envpool_id, **kwargs).config
            kwargs["max_episode_steps"] = int(spec.duration * spec.policy_frequency)
        self.pool = envpool.make_gymnasium(
            self.scenario.envpool_id, num_envs=self.num_envs, env_seed=list(seeds), **kwargs, **self._threads
        )

    def reset(self, env_ids: np.ndarray, seeds: list[int | None]) -> np.ndarray:
        if len(env_ids) == self.num_envs and all(s is not None for s in seeds):
            # Explicit seeds restart each env's random stream: only a new pool can do that.
            self.pool.close()
            self._build([int(s) for s in seeds])
            obs, _ = self.pool.reset()
            return obs
        obs, _ = self.pool.reset(np.asarray(env_ids, np.int32))
        return obs

    def start_reset(self, env_ids: np.ndarray) -> Callable[[], np.ndarray]:
        """Send the reset of finished envs and return what waits for their first observations.

        EnvPool resets on its own threads meanwhile, so the caller can render the other envs'
        frames instead of waiting (``reset`` is these two halves back to back).
        """
        self.pool._reset(np.asarray(env_ids, np.int32))
        return lambda: self.pool.recv(reset=True, return_info=self.pool.config["gym_reset_return_info"])[0]

    def step(self, actions: np.ndarray):
        actions = actions.astype(np.int32, copy=False) if self._discrete else actions.astype(np.float32, copy=False)
        obs, rewards, terminated, truncated, info = self.pool.step(actions)
        if not self._straight:
            ended = np.flatnonzero(np.asarray(terminated) | np.asarray(truncated))
            if len(ended):  # read now: the caller starts resetting these envs next
                self._final_success[ended] = self._success_now(ended, info)
        return obs, rewards.astype(np.float64), terminated, truncated

    def states(self, env_ids: np.ndarray, detail: str = "full", view_m: float | None = None) -> VehicleBatch:
        """Vehicle states of some envs.

        Reading attributes of EnvPool's pybind objects is what costs here (~0.16 us each), so
        ``detail`` says what to read: ``"ego"`` slot 0 alone (all the metrics need), ``"pose"``
        x, y, heading (all the camera needs) with the ego's speed, or ``"full"``. With
        ``view_m``, "pose" reads y and heading only of vehicles within ``view_m`` of the ego
        along x, and marks the others absent: the camera cannot see them anyway. The crashed
        flag of other vehicles is read only where they can crash at all.
        """
        debug = self.pool.debug_states(np.asarray(env_ids, np.int32))
        if not self._straight:
            return self._port.states(debug, ego_only=detail == "ego")
        vehicles = [d.vehicles[:1] for d in debug] if detail == "ego" else [d.vehicles for d in debug]
        names = ["x", "y", "heading"]
        if detail != "pose":
            names.append("speed")
        if self._others_collide or detail == "ego":
            names.append("crashed")
        getter = operator.attrgetter(*names)
        slots = max(len(v) for v in vehicles)
        batch = VehicleBatch.empty(len(vehicles), slots)
        uniform = all(len(v) == slots for v in vehicles)
        if detail == "pose" and view_m is not None and uniform:
            self._read_near(vehicles, names, view_m, batch)
        elif uniform:
            # One flat pass over the pybind objects; fromiter avoids nested Python lists.
            flat = chain.from_iterable(chain.from_iterable(map(getter, v)) for v in vehicles)
            values = np.fromiter(flat, np.float64, len(vehicles) * slots * len(names)).reshape(-1, slots, len(names))
            batch.present[:] = True
        else:
            values = np.zeros((len(vehicles), slots, len(names)))
            for b, v in enumerate(vehicles):
                values[b, : len(v)] = list(map(getter, v))
                batch.present[b, : len(v)] = True
        if not (detail == "pose" and view_m is not None and uniform):
            for k, name in enumerate(names):
                setattr(batch, name, values[..., k] > 0.5 if name == "crashed" else values[..., k])
        if "speed" not in names:
            batch.speed[:, 0] = [v[0].speed for v in vehicles]
        if "crashed" not in names:
            batch.crashed[:, 0] = [v[0].crashed for v in vehicles]
        batch.track_id[:] = np.arange(slots)
        batch.class_id[:, 0] = EGO
        # Straight parallel lanes of width 4 m from y = 0: highway-env's closest lane is the
        # nearest lane centre, and a vehicle is on the road within half a lane of an edge lane.
        lanes_count = self.lanes_count
        batch.lane_index = np.clip(np.rint(batch.y / _LANE_WIDTH_M), 0, lanes_count - 1).astype(np.int64)
        batch.on_road = np.abs(batch.y - batch.lane_index * _LANE_WIDTH_M) <= _LANE_WIDTH_M / 2
        batch.lanes_count[:] = lanes_count
        return batch

    @staticmethod
    def _read_near(vehicles: list, names: list[str], view_m: float, batch: VehicleBatch) -> None:
        """Fill ``batch`` from every vehicle's x, and the other fields of those near the ego."""
        n, slots = batch.x.shape
        get_x = operator.attrgetter("x")
        x = np.fromiter(chain.from_iterable(map(get_x, v) for v in vehicles), np.float64, n * slots).reshape(n, slots)
        near = np.abs(x - x[:, :1]) <= view_m  # (B, V); the ego is always near itself
        rows, slots_near = np.nonzero(near)
        rest = names[1:]
        getter = operator.attrgetter(*rest)
        flat = chain.from_iterable(getter(vehicles[b][k]) for b, k in zip(rows.tolist(), slots_near.tolist()))
        values = np.fromiter(flat, np.float64, len(rows) * len(rest)).reshape(-1, len(rest))
        batch.x = x
        for k, name in enumerate(rest):
            target = getattr(batch, name)
            target[rows, slots_near] = values[:, k] > 0.5 if name == "crashed" else values[:, k]
        batch.present = near

    def objects(self, env_ids: np.ndarray) -> VehicleBatch:
        """Road objects of some envs (merge's obstacle, parking's walls and goal); none on highways."""
        if self._straight:
            return VehicleBatch.empty(len(env_ids), 0)
        return self._port.objects(self.pool.debug_states(np.asarray(env_ids, np.int32)))

    def rasters(self, env_ids: np.ndarray, metres_per_pixel: float) -> list[RoadRaster]:
        if metres_per_pixel not in self._rasters:  # the road never changes within a pool
            self._rasters[metres_per_pixel] = cached_raster(self._road, metres_per_pixel)
        return [self._rasters[metres_per_pixel]] * len(env_ids)

    def success(self, env_ids: np.ndarray, truncated: np.ndarray) -> np.ndarray:
        if self.scenario.success == "survive":  # survived to the time limit; a crash terminates
            return np.asarray(truncated, bool)
        return self._final_success[env_ids].copy()

    def _success_now(self, env_ids: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        """highway-env's success of the episodes that just ended in ``env_ids`` (before any reset)."""
        if self.scenario.success == "is_success":  # parking: the port reports it
            return np.asarray(info["is_success"], bool)[env_ids]
        if self.scenario.success != "arrive":
            return np.zeros(len(env_ids), bool)
        debug = self.pool.debug_states(np.asarray(env_ids, np.int32))
        return np.array([arrived(self.scenario.family, d) for d in debug], bool)

    def close(self) -> None:
        self.pool.close()
