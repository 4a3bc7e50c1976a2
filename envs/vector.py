"""``DrivingVectorEnv``: a gymnasium 1.x vector env over either simulator, with same-step autoreset.

One step: the simulator steps every env; the ego states are sampled for the driving metrics;
the camera draws all frames in one compiled call; finished envs are reset at once (same-step
autoreset), their last observation kept in ``infos["final_obs"]`` and their driving metrics in
``infos["driving"]``. On the envpool backend nothing here loops over envs in Python except
reading EnvPool's per-env debug-state objects (the only API that exposes every vehicle).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from drivelab.envs.camera import BatchedCamera, CameraConfig
from drivelab.envs.errors import ActionError, ConfigError, simulator_errors
from drivelab.envs.goals import crashed_steps, goal_reward
from drivelab.envs.metrics import EpisodeTracker
from drivelab.envs.scenarios import Scenario
from drivelab.envs.states import VehicleBatch, replace_rows

log = logging.getLogger(__name__)

MAX_SEED = 2**31 - 1  # EnvPool stores env seeds as 32-bit ints; both backends take the same range


class DrivingVectorEnv(gymnasium.vector.VectorEnv):
    """B driving environments stepped as one batch.

    Attributes:
        backend: ``"envpool"`` or ``"highway-env"``.
        scenario: the ``Scenario`` being simulated.
        dt: seconds per policy step.
    """

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}

    def __init__(
        self,
        simulator: Any,
        scenario: Scenario,
        observation: str,
        camera: CameraConfig | None,
        seed: int | None = None,
    ) -> None:
        self.sim = simulator
        self.sim_config = simulator.config
        self.scenario = scenario
        self.backend = simulator.name
        self.num_envs = simulator.num_envs
        self.dt = simulator.dt
        self.observation_mode = observation
        if camera is not None and camera.align == "auto":
            camera = dataclasses.replace(camera, align=scenario.camera_align)
        self.camera_config = camera
        self.single_action_space = simulator.single_action_space
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        if observation == "camera":
            self.single_observation_space = spaces.Box(0, 255, camera.observation_shape, np.uint8)
            self.camera = BatchedCamera(camera, self.num_envs)
        else:
            self.single_observation_space = simulator.single_observation_space
            self.camera = None
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.tracker = EpisodeTracker(self.num_envs, self.dt)
        self._all = np.arange(self.num_envs)
        self._pending_seed = seed
        self._detail = "pose" if self.camera is not None else "ego"
        self._view_m = camera.view_reach_m if camera is not None else None
        self._states: VehicleBatch | None = None  # what this step read (see ``_detail``)
        self._full_states: VehicleBatch | None = None  # every field, read on demand
        self._rasters: list = []
        self._native_obs: Any = None
        self._ego_step: tuple[np.ndarray, np.ndarray] = (np.zeros(0), np.zeros(0, bool))
        self._objects = VehicleBatch.empty(self.num_envs, 0)  # road objects the camera draws

    # -- public API -------------------------------------------------------------------------

    def vehicle_states(self) -> VehicleBatch:
        """Every vehicle of every env at the current step (slot 0 = ego)."""
        if self._native_obs is None:
            raise RuntimeError("call reset() before vehicle_states()")
        if self._full_states is None:  # read lazily: the camera and metrics need less
            self._full_states = self.sim.states(self._all, "full")
        return self._full_states

    def compute_reward(self, achieved_goal: np.ndarray, desired_goal: np.ndarray, info: Any = None) -> np.ndarray:
        """The reward of reaching ``achieved_goal`` when ``desired_goal`` was asked, per row, for
        hindsight relabelling (HER): highway-env's parking ``compute_reward``, plus its crash term
        on the steps ``info`` (this env's infos, or SB3's per-env dicts) says crashed."""
        rows = int(np.prod(np.shape(achieved_goal)[:-1]))
        return goal_reward(self.scenario, self.sim_config, achieved_goal, desired_goal, crashed_steps(info, rows))

    def ego_step_info(self) -> tuple[np.ndarray, np.ndarray]:
        """The ego's speed [m/s] and crashed flag ``(B,)`` at the last step, before any autoreset."""
        if self._native_obs is None:
            raise RuntimeError("call reset() before ego_step_info()")
        return self._ego_step

    def road_objects(self) -> VehicleBatch:
        """Road objects of every env now (obstacles, walls, parking's goal spot); (B, 0) where none.

        Rule-based drivers read them (the parking driver heads for the goal)."""
        if self._native_obs is None:
            raise RuntimeError("call reset() before road_objects()")
        return self._read_objects(self._all)

    def reset(self, *, seed: int | list[int] | None = None, options: dict | None = None):
        """Reset every env. An int seed gives env i the seed ``seed + i``; a list, one per env."""
        self._check_open()
        if seed is None:
            seed, self._pending_seed = self._pending_seed, None
        seeds = env_seeds(seed, self.num_envs)
        with simulator_errors(self.backend, self.scenario.env_id, self.sim_config):
            self._native_obs = self.sim.reset(self._all, seeds)
            self._states = self.sim.states(self._all, self._detail, self._view_m)
            self._full_states = None
        self.tracker.start(self._all, seeds, self._states)
        self._ego_step = (self._states.speed[:, 0].copy(), self._states.crashed[:, 0].copy())
        if self.camera is not None:
            self._rasters = self.sim.rasters(self._all, self.camera_config.metres_per_pixel)
            self._objects = self._read_objects(self._all)
            self.camera.render(self._states, self._rasters, np.ones(self.num_envs, bool), objects=self._objects)
        infos: dict[str, Any] = {}
        self._add_ground_truth(infos)
        return self._observation(), infos

    def step(self, actions):
        """Step every env; finished envs are reset in the same call (same-step autoreset)."""
        self._check_open()
        actions = self._check_actions(actions)
        native, rewards, terminated, truncated = self.sim.step(actions)
        self._native_obs = native
        # Read only what this step needs: poses for the camera, the ego for the metrics.
        states = self.sim.states(self._all, self._detail, self._view_m)
        self._full_states = None
        # A crash terminates, also on the time-limit step (EnvPool reports that one as truncated).
        crashed_at_limit = np.asarray(truncated, bool) & states.crashed[:, 0]
        if crashed_at_limit.any():
            terminated = np.asarray(terminated, bool) | crashed_at_limit
            truncated = np.asarray(truncated, bool) & ~crashed_at_limit
        done = terminated | truncated
        ended = np.flatnonzero(done)
        # Finished envs start resetting now (on EnvPool's threads) while this thread draws.
        finish_reset = self.sim.start_reset(ended) if len(ended) else None
        self.tracker.update(rewards, states)
        self._ego_step = (states.speed[:, 0].copy(), states.crashed[:, 0].copy())  # before any autoreset
        if self.camera is not None:
            self.camera.render(states, self._rasters, np.zeros(self.num_envs, bool), objects=self._objects)
        self._states = states
        infos: dict[str, Any] = {}
        if finish_reset is not None:
            self._autoreset(ended, finish_reset, states.crashed[:, 0], truncated, infos)
        self._add_ground_truth(infos)
        return self._observation(), rewards, terminated, truncated, infos

    def close_extras(self, **kwargs: Any) -> None:
        self.sim.close()

    # -- internals --------------------------------------------------------------------------

    def _read_objects(self, env_ids: np.ndarray) -> VehicleBatch:
        # Road objects stay put within an episode, so they are read at resets only (every
        # simulator reads them; one without ``objects`` draws none).
        if not hasattr(self.sim, "objects"):
            return VehicleBatch.empty(len(env_ids), 0)
        return self.sim.objects(env_ids)

    def _check_open(self) -> None:
        if self.closed:
            raise gymnasium.error.ClosedEnvironmentError("this env was closed; make a new one")

    def _autoreset(
        self,
        ended: np.ndarray,
        finish_reset: Callable[[], Any],
        ego_crashed: np.ndarray,
        truncated: np.ndarray,
        infos: dict,
    ) -> None:
        final_obs = np.empty(self.num_envs, dtype=object)
        for i in ended:  # only the finished envs' last observations are copied
            final_obs[i] = self.camera.observation(i) if self.camera is not None else _take(self._native_obs, i)
        mask = np.zeros(self.num_envs, bool)
        mask[ended] = True
        success = self.sim.success(ended, truncated[ended]) & ~ego_crashed[ended]  # crashed => no success
        metrics = self.tracker.finish(ended, ego_crashed[ended], success)
        driving = {}
        for name, values in metrics.items():
            column = np.zeros(self.num_envs, values.dtype)
            column[ended] = values
            driving[name] = column
        new_obs = finish_reset()
        put_rows(self._native_obs, ended, new_obs)
        rows = self.sim.states(ended, self._detail, self._view_m)
        self._states = replace_rows(self._states, ended, rows)
        self.tracker.start(ended, [None] * len(ended), rows)
        if self.camera is not None:
            rasters = self.sim.rasters(ended, self.camera_config.metres_per_pixel)
            for k, i in enumerate(ended):
                self._rasters[i] = rasters[k]
            objects = self._read_objects(ended)  # the new episodes' (parking: a new goal)
            self._objects = replace_rows(self._objects, ended, objects)
            self.camera.render(rows, rasters, np.ones(len(ended), bool), env_ids=ended, objects=objects)
        infos.update(
            final_obs=final_obs, _final_obs=mask,
            final_info={"driving": driving, "_driving": mask}, _final_info=mask,
            driving=driving, _driving=mask,
        )

    def _observation(self):
        if self.camera is not None:
            return self.camera.observation()
        return _copy(self._native_obs)

    def _add_ground_truth(self, infos: dict) -> None:
        if self.camera is not None and self.camera_config.ground_truth:
            infos["ground_truth"] = self.camera.ground_truth(self._states)

    def _check_actions(self, actions) -> np.ndarray:
        return check_actions(actions, self.single_action_space, self.num_envs, self.scenario.env_id)


def env_seeds(seed: int | list[int] | None, num_envs: int) -> list[int | None]:
    """One seed per env from ``reset``'s argument: None, an int (env i gets ``seed + i``) or a list.

    Raises:
        ConfigError: a list of the wrong length, or a seed outside [0, MAX_SEED].
    """
    if seed is None:
        return [None] * num_envs
    if isinstance(seed, (int, np.integer)):
        seeds = [int(seed) + i for i in range(num_envs)]
    else:
        seeds = [int(s) for s in seed]
        if len(seeds) != num_envs:
            raise ConfigError(f"reset got {len(seeds)} seeds for {num_envs} envs")
    bad = [s for s in seeds if not 0 <= s <= MAX_SEED]
    if bad:
        raise ConfigError(f"seeds must be integers in [0, {MAX_SEED}] (one per env: seed + i); got {bad[0]}")
    return seeds


def check_actions(actions: Any, space: spaces.Space, n: int, env_id: str) -> np.ndarray:
    """A batch of ``n`` actions of ``space`` as an array, or ``ActionError`` saying what is wrong."""
    array = np.asarray(actions)
    if isinstance(space, spaces.Discrete):
        if array.shape == (n, 1):
            array = array[:, 0]
        if array.shape != (n,):
            raise ActionError(f"{env_id} expects a batch of {n} discrete actions, shape ({n},); "
                              f"got shape {array.shape}")
        if array.dtype.kind not in "iu":
            raise ActionError(f"{env_id} expects integer actions (0..{space.n - 1}); got dtype {array.dtype}")
        if array.min() < space.start or array.max() >= space.start + space.n:
            raise ActionError(
                f"{env_id} actions must lie in {space.start}..{space.start + space.n - 1}; "
                f"got {array.min()}..{array.max()}"
            )
        return array.astype(np.int64, copy=False)
    if isinstance(space, spaces.Box):
        expected = (n, *space.shape)
        if array.shape != expected:
            raise ActionError(f"{env_id} expects continuous actions of shape {expected}; got {array.shape}")
        if array.dtype.kind != "f" or not np.all(np.isfinite(array)):
            raise ActionError(f"{env_id} expects finite float actions; got dtype {array.dtype}")
        return array
    return array


def _take(observation: Any, i: int) -> Any:
    if isinstance(observation, dict):
        return {k: _take(v, i) for k, v in observation.items()}
    return observation[i].copy()


def put_rows(observation: Any, env_ids: np.ndarray, values: Any) -> None:
    """``observation[env_ids] = values`` for batched observations, nested dicts and tuples too."""
    if isinstance(observation, dict):
        for k in observation:
            put_rows(observation[k], env_ids, values[k])
    elif isinstance(observation, tuple):
        for target, part in zip(observation, values):
            put_rows(target, env_ids, part)
    else:
        observation[env_ids] = values


def _copy(observation: Any) -> Any:
    if isinstance(observation, dict):
        return {k: _copy(v) for k, v in observation.items()}
    return np.array(observation, copy=True)
