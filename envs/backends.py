"""Simulators behind the vector env: highway-env (reference) and EnvPool (batched C++).

Both expose the same small interface to ``DrivingVectorEnv``:

- ``reset(env_ids, seeds)`` -> native observations of those envs
- ``start_reset(env_ids)`` -> a callable returning them (EnvPool resets meanwhile)
- ``step(actions)`` -> native observations, rewards, terminated, truncated (all envs)
- ``states(env_ids, detail)`` -> ``VehicleBatch`` of those envs (``"full"``, ``"pose"``, ``"ego"``)
- ``rasters(env_ids, metres_per_pixel)`` -> road raster of each env
- ``success(env_ids, truncated)`` -> whether each finished episode succeeded
"""

from __future__ import annotations

import contextlib
import functools
import logging
import operator
import warnings
from collections.abc import Callable, Iterator
from itertools import chain
from typing import Any

import gymnasium
import numpy as np
from gymnasium.vector.utils import concatenate, create_empty_array

from drivelab.envs.errors import BackendUnavailableError
from drivelab.envs.ports import MERGE_END_X_M, PortReader, arrived
from drivelab.envs.road import RoadRaster, network_signature, rasterize_network
from drivelab.envs.scenarios import ENVPOOL_DIFFERENCES, Scenario
from drivelab.envs.states import EGO, VehicleBatch, from_highway_env, objects_from_highway_env

log = logging.getLogger(__name__)

_RASTER_CACHE: dict[tuple, RoadRaster] = {}


def cached_raster(network, metres_per_pixel: float) -> RoadRaster:
    """The raster of a road network, drawn once per geometry and resolution."""
    key = (network_signature(network), metres_per_pixel)
    if key not in _RASTER_CACHE:
        _RASTER_CACHE[key] = rasterize_network(network, metres_per_pixel)
    return _RASTER_CACHE[key]


class HighwayEnvSimulator:
    """The reference backend: one highway-env environment per slot, stepped in turn."""

    name = "highway-env"

    def __init__(
        self, scenario: Scenario, num_envs: int, config: dict[str, Any], render_mode: str | None = None
    ) -> None:
        import highway_env  # noqa: F401  (registers the highway-env ids)

        self.scenario = scenario
        self.config = config
        extra = {"render_mode": render_mode} if render_mode is not None else {}
        with warnings.catch_warnings():
            # drivelab ids map to highway-env's v0 scenarios on purpose (EnvPool 1.2.5 ports v0;
            # the equivalence tests compare the two), so gymnasium's "newer version" notice is noise.
            warnings.filterwarnings("ignore", message=".*is out of date.*")
            with traffic_rules(scenario.family):
                self.envs = [_make_highway_env(scenario.highway_env_id, config, extra) for _ in range(num_envs)]
        self.num_envs = num_envs
        first = self.envs[0]
        self.single_observation_space = first.observation_space
        self.single_action_space = first.action_space
        self.dt = 1.0 / first.unwrapped.config["policy_frequency"]
        self._obs = create_empty_array(self.single_observation_space, num_envs)
        self._last_info: list[dict] = [{} for _ in range(num_envs)]

    @property
    def unwrapped(self) -> list:
        return [env.unwrapped for env in self.envs]

    def reset(self, env_ids: np.ndarray, seeds: list[int | None]) -> Any:
        observations = []
        with traffic_rules(self.scenario.family):
            for i, seed in zip(env_ids, seeds):
                obs, info = self.envs[i].reset(seed=seed)
                self._last_info[i] = info
                observations.append(obs)
        space = self.single_observation_space
        return concatenate(space, observations, create_empty_array(space, len(observations)))

    def start_reset(self, env_ids: np.ndarray) -> Callable[[], Any]:
        """Reset finished envs (unseeded): here all the work happens when the result is asked for."""
        return lambda: self.reset(env_ids, [None] * len(env_ids))

    def step(self, actions: np.ndarray):
        rewards = np.zeros(self.num_envs)
        terminated = np.zeros(self.num_envs, bool)
        truncated = np.zeros(self.num_envs, bool)
        observations = []
        with traffic_rules(self.scenario.family):
            for i, env in enumerate(self.envs):
                obs, rewards[i], terminated[i], truncated[i], self._last_info[i] = env.step(actions[i])
                observations.append(obs)
        self._obs = concatenate(self.single_observation_space, observations, self._obs)
        return self._obs, rewards, terminated, truncated

    def states(self, env_ids: np.ndarray, detail: str = "full", view_m: float | None = None) -> VehicleBatch:
        # Reading every vehicle costs little next to highway-env's own step: detail is moot.
        return from_highway_env([self.envs[i].unwrapped for i in env_ids])

    def rasters(self, env_ids: np.ndarray, metres_per_pixel: float) -> list[RoadRaster]:
        return [cached_raster(self.envs[i].unwrapped.road.network, metres_per_pixel) for i in env_ids]

    def objects(self, env_ids: np.ndarray) -> VehicleBatch:
        """Road objects of some envs (obstacles, walls, parking's goal), fixed within an episode."""
        return objects_from_highway_env([self.envs[i].unwrapped for i in env_ids])

    def success(self, env_ids: np.ndarray, truncated: np.ndarray) -> np.ndarray:
        out = np.zeros(len(env_ids), bool)
        for k, i in enumerate(env_ids):
            env = self.envs[i].unwrapped
            ego = env.vehicle
            kind = self.scenario.success
            if kind == "survive":
                out[k] = bool(truncated[k]) and not ego.crashed
            elif kind == "is_success":
                out[k] = bool(self._last_info[i].get("is_success", False))
            elif self.scenario.family == "intersection":
                out[k] = not ego.crashed and bool(env.has_arrived(ego))
            elif self.scenario.family == "merge":
                out[k] = not ego.crashed and ego.position[0] > MERGE_END_X_M
            elif self.scenario.family == "exit":
                out[k] = not ego.crashed and bool(env._is_success())
        return out

    def close(self) -> None:
        for env in self.envs:
            env.close()


def _make_highway_env(highway_env_id: str, config: dict[str, Any], extra: dict[str, Any]) -> gymnasium.Env:
    """``gymnasium.make`` a highway-env scenario with config overrides and render mode.

    Some scenario classes take neither ``config`` nor ``render_mode`` arguments (parking-parked,
    lane-keeping): they are configured after construction instead, which highway-env applies
    at the next reset, and get the render mode set on the env (what their parent class's
    constructor would have done), so highway-env's scene renderer works for them too.
    """
    try:
        return gymnasium.make(highway_env_id, config=config, **extra)
    except TypeError as error:
        if "config" not in str(error) and "render_mode" not in str(error):
            raise
    try:
        env = gymnasium.make(highway_env_id, **extra)
    except TypeError as error:
        if "render_mode" not in str(error):
            raise
        env = gymnasium.make(highway_env_id)
        env.unwrapped.render_mode = extra.get("render_mode")
    env.unwrapped.configure(config)
    return env


# highway-env's IntersectionEnv sets these IDMVehicle class attributes for the whole process
# when it makes its traffic, so every scenario simulated later in that process would drive
# with them. Each simulator sets its scenario's values around its own work and restores them.
_IDM_DEFAULTS = {"DISTANCE_WANTED": 10.0, "COMFORT_ACC_MAX": 3.0, "COMFORT_ACC_MIN": -5.0}  # highway-env 1.12.1
_IDM_INTERSECTION = {"DISTANCE_WANTED": 7.0, "COMFORT_ACC_MAX": 6.0, "COMFORT_ACC_MIN": -3.0}


@contextlib.contextmanager
def traffic_rules(family: str) -> Iterator[None]:
    """highway-env's IDM parameters for the traffic of a scenario ``family``, restored afterwards."""
    from highway_env.vehicle.behavior import IDMVehicle

    wanted = _IDM_INTERSECTION if family == "intersection" else _IDM_DEFAULTS
    saved = {name: getattr(IDMVehicle, name) for name in wanted}
    for name, value in wanted.items():
        setattr(IDMVehicle, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(IDMVehicle, name, value)


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


@functools.lru_cache(maxsize=None)
def reference_network(highway_env_id: str, lanes_count: int | None = None):
    """The road network highway-env builds for a scenario (EnvPool's ports build the same one).

    Straight highways take their lane count; the other scenarios have one fixed road, read from
    a highway-env instance built once per process.
    """
    import highway_env  # noqa: F401  (registers the highway-env ids)
    from highway_env.road.road import RoadNetwork

    if lanes_count is not None:
        return RoadNetwork.straight_road_network(lanes_count, speed_limit=30)
    with warnings.catch_warnings(), traffic_rules(highway_env_id.split("-")[0]):
        warnings.filterwarnings("ignore", message=".*is out of date.*")
        env = gymnasium.make(highway_env_id).unwrapped
        env.reset(seed=0)
    network = env.road.network
    env.close()
    return network


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
