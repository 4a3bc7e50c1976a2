"""The highway-env simulator (the reference), and what both simulators share.

``HighwayEnvSimulator`` here and ``EnvPoolSimulator`` (``drivelab.envs.envpool_sim``, batched
C++) expose the same small interface to ``DrivingVectorEnv``:

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
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import gymnasium
import numpy as np
from gymnasium.vector.utils import concatenate, create_empty_array

from drivelab.envs.lane_lookup import fast_lane_lookup
from drivelab.envs.ports import MERGE_END_X_M
from drivelab.envs.road import RoadRaster, network_signature, rasterize_network
from drivelab.envs.scenarios import Scenario
from drivelab.envs.states import VehicleBatch, from_highway_env, objects_from_highway_env

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
        self, scenario: Scenario, num_envs: int, config: dict[str, Any], render_mode: str | None = None,
        native_observations: bool = True,
    ) -> None:
        import highway_env  # noqa: F401  (registers the highway-env ids)

        self.scenario = scenario
        self.config = config
        # Camera frames are drawn from vehicle states: highway-env's own observation is then
        # skipped where that changes nothing else (``_skip_observation``); zeros stand in for it.
        self.native_observations = native_observations
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
        with traffic_rules(self.scenario.family), fast_lane_lookup():
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
        with traffic_rules(self.scenario.family), fast_lane_lookup():
            for i, env in enumerate(self.envs):
                if not self.native_observations:
                    _skip_observation(env.unwrapped, self.single_observation_space)
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


def _skip_observation(env: Any, space: gymnasium.Space) -> None:
    """Make this episode's observation type of a highway-env ``env`` return zeros, where observing
    has no effect on the simulation: highway-env's kinematics table and occupancy grid (a pandas
    table of the nearest vehicles, about a fifth of a roundabout step) unless their rows are
    shuffled, which draws from the env's random stream. highway-env builds a new observation type
    at each reset, so this is asked before every step (a no-op once done)."""
    from highway_env.envs.common.observation import KinematicObservation, OccupancyGridObservation

    observer = env.observation_type
    if "observe" in vars(observer) or type(observer) not in (KinematicObservation, OccupancyGridObservation):
        return
    if getattr(observer, "order", "sorted") == "shuffled":
        return
    observer.observe = lambda: np.zeros(space.shape, space.dtype)


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
