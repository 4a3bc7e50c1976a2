"""``ShardedVectorEnv``: EnvPool's batch split over worker processes that each draw their own frames.

One process steps EnvPool's C++ envs on its threads, but reads their vehicle states and draws
camera frames in Python under one interpreter lock: on highway-fast that is ~90 us of Python
per env-step beside ~60 us of C++, so one process stays near 10k camera steps/s however many
cores it has, and while it draws EnvPool's threads wait. Here each of N worker processes
(``drivelab.envs.processes``) runs a whole ``DrivingVectorEnv`` over a contiguous shard of the
envs, with its own EnvPool (cores / N threads) and its own camera. Camera frames come back
through one shared-memory buffer; rewards, flags, native observations and infos are pickled
over each worker's socket and merged here.

Results equal one ``DrivingVectorEnv`` with the same seeds: EnvPool seeds and steps each env on
its own (env i: ``seed + i``, its own random stream), so which pool holds an env does not
change it (``tests/envs/test_sharded.py``).
"""

from __future__ import annotations

import logging
from multiprocessing import resource_tracker, shared_memory
from typing import Any

import gymnasium
import numpy as np
from gymnasium.vector.utils import batch_space, create_empty_array

from drivelab.envs.camera import CameraConfig
from drivelab.envs.envpool_sim import EnvPoolSimulator
from drivelab.envs.errors import simulator_errors
from drivelab.envs.processes import DEFAULT_TIMEOUT_S, ProcessGroup, usable_cpus
from drivelab.envs.scenarios import Scenario
from drivelab.envs.states import VehicleBatch, replace_rows
from drivelab.envs.vector import DrivingVectorEnv, check_actions, env_seeds, put_rows

log = logging.getLogger(__name__)


class _EnvShard:
    """What one worker runs: a ``DrivingVectorEnv`` on EnvPool over envs ``offset .. offset + n - 1``."""

    COMMANDS = ("reset", "step", "vehicle_states", "road_objects")

    def __init__(
        self,
        scenario: Scenario,
        offset: int,
        num_envs: int,
        observation: str,
        config: dict[str, Any],
        camera: CameraConfig | None,
        seed: int,
        threads: int,
        frames: str | None,
    ) -> None:
        self._shm = None
        with simulator_errors("envpool", scenario.env_id, config):
            sim = EnvPoolSimulator(scenario, num_envs, config, seed=seed + offset, threads=threads)
        self.env = DrivingVectorEnv(sim, scenario, observation, camera)
        self._out = None
        if frames is not None:  # this shard's rows of the parent's frame buffer
            self._shm = shared_memory.SharedMemory(name=frames)
            # The parent owns the segment: this process must not unlink it when it exits.
            resource_tracker.unregister(self._shm._name, "shared_memory")  # noqa: SLF001 - Python < 3.13
            shape = self.env.single_observation_space.shape
            whole = np.ndarray((offset + num_envs, *shape), np.uint8, buffer=self._shm.buf)
            self._out = whole[offset:]

    def hello(self) -> tuple[Any, Any, float, CameraConfig | None]:
        env = self.env
        return env.single_observation_space, env.single_action_space, env.dt, env.camera_config

    def _obs(self, obs: Any) -> Any:
        if self._out is None:
            return obs
        self._out[:] = obs
        return None

    def reset(self, seeds: list[int] | None) -> tuple[Any, dict, tuple]:
        obs, infos = self.env.reset(seed=seeds)
        return self._obs(obs), infos, self.env.ego_step_info()

    def step(self, actions: np.ndarray) -> tuple:
        obs, rewards, terminated, truncated, infos = self.env.step(actions)
        return self._obs(obs), rewards, terminated, truncated, infos, self.env.ego_step_info()

    def vehicle_states(self) -> VehicleBatch:
        return self.env.vehicle_states()

    def road_objects(self) -> VehicleBatch:
        return self.env.road_objects()

    def close(self) -> None:
        self.env.close()
        self._out = None
        if self._shm is not None:
            self._shm.close()


class ShardedVectorEnv(gymnasium.vector.VectorEnv):
    """B envs on EnvPool, split over ``num_workers`` processes; the same API and results as
    ``DrivingVectorEnv`` on the envpool backend (``vehicle_states``, ``road_objects`` and
    ``ego_step_info`` included).

    Attributes:
        backend: ``"envpool"``.
        num_workers: worker processes.
        threads_per_worker: EnvPool threads in each worker.
    """

    metadata = DrivingVectorEnv.metadata
    backend = "envpool"

    def __init__(
        self,
        scenario: Scenario,
        num_envs: int,
        num_workers: int,
        observation: str,
        config: dict[str, Any],
        camera: CameraConfig | None,
        seed: int | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.scenario = scenario
        self.num_envs = num_envs
        self.num_workers = max(1, min(int(num_workers), num_envs))
        self.threads_per_worker = max(1, usable_cpus() // self.num_workers)
        self.observation_mode = observation
        self.sim_config = config
        self._shards = np.array_split(np.arange(num_envs), self.num_workers)
        self._shm: shared_memory.SharedMemory | None = None
        self._frames: np.ndarray | None = None
        frames_name = None
        if observation == "camera":
            shape = (num_envs, *camera.observation_shape)
            self._shm = shared_memory.SharedMemory(create=True, size=int(np.prod(shape)))
            self._frames = np.ndarray(shape, np.uint8, buffer=self._shm.buf)
            frames_name = self._shm.name
        try:
            self._group = ProcessGroup(
                "drivelab.envs.sharded:_EnvShard",
                [(scenario, int(ids[0]), len(ids), observation, dict(config), camera, seed or 0,
                  self.threads_per_worker, frames_name) for ids in self._shards],
                label=scenario.env_id, timeout_s=timeout_s,
            )
        except BaseException:
            self._release_frames()
            raise
        space, action_space, self.dt, self.camera_config = self._group.hellos[0]
        self.single_observation_space, self.single_action_space = space, action_space
        self.observation_space = batch_space(space, num_envs)
        self.action_space = batch_space(action_space, num_envs)
        self._pending_seed = seed
        self._ego_step: tuple[np.ndarray, np.ndarray] | None = None
        log.info("envpool: %d envs of %s in %d worker processes, %d EnvPool threads each",
                 num_envs, scenario.env_id, self.num_workers, self.threads_per_worker)

    # -- public API (DrivingVectorEnv's) ------------------------------------------------------

    def reset(self, *, seed: int | list[int] | None = None, options: dict | None = None):
        """Reset every env. An int seed gives env i the seed ``seed + i``; a list, one per env."""
        if seed is None:
            seed, self._pending_seed = self._pending_seed, None
        seeds = env_seeds(seed, self.num_envs)
        args = [(None if seeds[ids[0]] is None else [seeds[i] for i in ids],) for ids in self._shards]
        replies = self._group.call_all("reset", args)
        self._ego_step = _concat_pairs([r[2] for r in replies])
        return self._observation([r[0] for r in replies]), merge_infos([r[1] for r in replies], self._sizes())

    def step(self, actions):
        """Step every env (each worker its shard); finished envs are reset in the same call."""
        actions = check_actions(actions, self.single_action_space, self.num_envs, self.scenario.env_id)
        replies = self._group.call_all("step", [(actions[ids],) for ids in self._shards])
        rewards, terminated, truncated = (np.concatenate([r[k] for r in replies]) for k in (1, 2, 3))
        self._ego_step = _concat_pairs([r[5] for r in replies])
        infos = merge_infos([r[4] for r in replies], self._sizes())
        return self._observation([r[0] for r in replies]), rewards, terminated, truncated, infos

    def vehicle_states(self) -> VehicleBatch:
        """Every vehicle of every env at the current step (slot 0 = ego)."""
        return self._merge_batches(self._group.call_all("vehicle_states"))

    def road_objects(self) -> VehicleBatch:
        """Road objects of every env now (obstacles, walls, parking's goal spot)."""
        return self._merge_batches(self._group.call_all("road_objects"))

    def ego_step_info(self) -> tuple[np.ndarray, np.ndarray]:
        """The ego's speed [m/s] and crashed flag ``(B,)`` at the last step, before any autoreset."""
        if self._ego_step is None:
            raise RuntimeError("call reset() before ego_step_info()")
        return self._ego_step

    @property
    def processes(self) -> list:
        return self._group.processes

    def close_extras(self, **kwargs: Any) -> None:
        self._group.close()
        self._release_frames()

    # -- internals --------------------------------------------------------------------------

    def _sizes(self) -> list[int]:
        return [len(ids) for ids in self._shards]

    def _observation(self, parts: list[Any]) -> Any:
        if self._frames is not None:
            return self._frames.copy()
        obs = create_empty_array(self.single_observation_space, self.num_envs)
        for ids, part in zip(self._shards, parts):
            put_rows(obs, ids, part)
        return obs

    def _merge_batches(self, parts: list[VehicleBatch]) -> VehicleBatch:
        """One batch from the shards' batches, padded to the most slots, as one process reads it."""
        merged = VehicleBatch.empty(self.num_envs, 0)
        for ids, part in zip(self._shards, parts):
            merged = replace_rows(merged, ids, part)
        return merged

    def _release_frames(self) -> None:
        if self._shm is not None:
            self._frames = None
            self._shm.close()
            self._shm.unlink()
            self._shm = None


def _concat_pairs(pairs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    return np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs])


def merge_infos(parts: list[dict], sizes: list[int]) -> dict:
    """Gymnasium vector infos of consecutive env blocks as one batch's infos.

    Per-env arrays (and lists, like ``ground_truth``) are concatenated; a key only some blocks
    have is filled with zeros (``None`` in object arrays) elsewhere, so its ``_key`` mask is False
    there, as one env over all blocks would report it; nested dicts merge the same way.
    """
    out: dict = {}
    keys = list(dict.fromkeys(key for part in parts for key in part))
    for key in keys:
        values = [part.get(key) for part in parts]
        template = next(v for v in values if v is not None)
        if isinstance(template, dict):
            out[key] = merge_infos([v if v is not None else {} for v in values], sizes)
        elif isinstance(template, np.ndarray):
            filled = [v if v is not None else _empty_like(template, n) for v, n in zip(values, sizes)]
            if template.dtype == object:  # e.g. final_obs: one observation (or None) per env
                merged = np.empty(sum(sizes), object)
                for i, item in enumerate(item for v in filled for item in v):
                    merged[i] = item
                out[key] = merged
            else:
                out[key] = np.concatenate(filled)
        elif isinstance(template, list):
            out[key] = [item for v, n in zip(values, sizes) for item in (v if v is not None else [None] * n)]
        else:
            out[key] = template
    return out


def _empty_like(template: np.ndarray, n: int) -> np.ndarray:
    if template.dtype == object:
        return np.empty((n, *template.shape[1:]), object)
    return np.zeros((n, *template.shape[1:]), template.dtype)
