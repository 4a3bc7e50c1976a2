"""``WorkerSimulator``: the highway-env backend stepped in worker processes, so it scales with cores.

highway-env steps one env at a time in Python; exit, two-way, u-turn and lane-keeping have no
EnvPool port. Here the B envs are split into ``num_workers`` contiguous shards, each a
``HighwayEnvSimulator`` in its own fresh interpreter (``drivelab.envs.processes``).

One step is one round trip: the parent sends every worker its actions; each worker steps its
envs, reads their vehicle states, and at once resets the envs that finished (computing their
success first), then replies. Results are identical to one
``HighwayEnvSimulator`` with the same seeds: every env is the same highway-env object stepped
with the same actions and the same random stream, only in another process.

Messages are pickled numpy arrays over pipes. Observations are a few KB per step (kinematics,
time-to-collision grids) against milliseconds of highway-env work per env, so shared memory
would save nothing measurable; camera frames are drawn in the parent by ``DrivingVectorEnv``.

Workers exit on ``close()``, when the simulator is garbage collected or the interpreter exits,
and when the parent dies. A worker that dies or stops answering raises ``WorkerError`` naming
it, never a hang (``ProcessGroup``).
"""

from __future__ import annotations

import hashlib
import logging
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from gymnasium.vector.utils import create_empty_array

from drivelab.envs.backends import HighwayEnvSimulator
from drivelab.envs.errors import ConfigError
from drivelab.envs.processes import DEFAULT_TIMEOUT_S, ProcessGroup, usable_cpus
from drivelab.envs.road import RoadRaster, network_signature
from drivelab.envs.scenarios import Scenario
from drivelab.envs.states import VehicleBatch, replace_rows
from drivelab.envs.vector import put_rows

log = logging.getLogger(__name__)

MAX_NUM_WORKERS = 64
DEFAULT_MAX_WORKERS = 16  # each worker is an interpreter with highway-env, ~200 MB resident
_StatesKey = tuple[str, float | None]  # (detail, view_m) of a states() request
_Extras = tuple[bool, bool]  # whether reset replies carry (road network keys, road objects)



def resolve_num_workers(
    num_workers: int | None,
    scenario: Scenario,
    num_envs: int,
    backend: str,
    render_mode: str | None = None,
) -> int:
    """How many worker processes run the highway-env backend: 0 means this process.

    ``None`` (the default) uses one worker per usable core, at most ``num_envs`` and 16, whenever
    highway-env runs in place of EnvPool: a scenario EnvPool does not port (exit, two-way,
    u-turn, lane-keeping, ...) or ``backend="auto"`` falling back. An explicit
    ``backend="highway-env"`` on a scenario EnvPool ports stays in this process (the reference
    runs), as do one env, one core and ``render_mode`` (highway-env draws its scene here).

    Args:
        num_workers: the user's value: None, or an int in [0, 64]; 0 and 1 mean this process.
        scenario: the scenario being built.
        num_envs: batch size; more workers than envs are clamped to one env each.
        backend: the backend the user asked for (``"auto"``, ``"highway-env"``, ``"envpool"``).
        render_mode: highway-env's scene rendering, which needs the envs in this process.

    Raises:
        ConfigError: ``num_workers`` is not an integer in [0, 64], or asks for workers where
            they cannot run (``render_mode``, the envpool backend).
    """
    if num_workers is None:
        no_port = scenario.envpool_id is None
        if render_mode is not None or num_envs < 2 or not (no_port or backend == "auto"):
            return 0
        workers = min(num_envs, usable_cpus(), DEFAULT_MAX_WORKERS)
        return workers if workers >= 2 else 0
    if not isinstance(num_workers, (int, np.integer)) or isinstance(num_workers, bool):
        raise ConfigError(f"num_workers must be an integer in [0, {MAX_NUM_WORKERS}] or None; got {num_workers!r}")
    if not 0 <= num_workers <= MAX_NUM_WORKERS:
        raise ConfigError(f"num_workers must be an integer in [0, {MAX_NUM_WORKERS}] or None; got {num_workers}")
    workers = min(int(num_workers), num_envs)
    if workers >= 2 and render_mode is not None:
        raise ConfigError("render_mode draws highway-env's scene in this process; use num_workers=0 with it")
    return workers if workers >= 2 else 0


# -- the worker side ----------------------------------------------------------------------------


def network_digest(network) -> bytes:
    """A short, process-independent key of a road network's geometry (``network_signature``)."""
    return hashlib.sha1(repr(network_signature(network)).encode()).digest()


class _Shard:
    """What one worker process runs: a ``HighwayEnvSimulator`` over its envs, answering commands."""

    COMMANDS = ("reset", "step", "states", "success", "digests", "objects", "raster")

    def __init__(self, scenario: Scenario, num_envs: int, config: dict[str, Any], native_observations: bool) -> None:
        self.sim = HighwayEnvSimulator(scenario, num_envs, config, native_observations=native_observations)
        self.all = np.arange(num_envs)

    def hello(self) -> tuple[Any, Any, float]:
        """The spaces and step length, sent once the shard is built."""
        return self.sim.single_observation_space, self.sim.single_action_space, self.sim.dt

    def _digests(self, env_ids: np.ndarray) -> list[bytes]:
        return [network_digest(self.sim.envs[i].unwrapped.road.network) for i in env_ids]

    def reset(self, env_ids: np.ndarray, seeds: list[int | None], wants: list[_StatesKey], extras: _Extras) -> dict:
        return self._new_episodes(env_ids, self.sim.reset(env_ids, seeds), wants, extras)

    def step(self, actions: np.ndarray, wants: list[_StatesKey], extras: _Extras) -> dict:
        obs, rewards, terminated, truncated = self.sim.step(actions)
        reply = {
            "obs": obs, "rewards": rewards, "terminated": terminated, "truncated": truncated,
            "states": {key: self.sim.states(self.all, *key) for key in wants},
        }
        done = np.flatnonzero(np.asarray(terminated, bool) | np.asarray(truncated, bool))
        if len(done):
            # Success reads the finished state; the caller may pass either truncated flag (it
            # turns a crash on the time-limit step into a termination), so both are answered.
            reply["done"] = done
            reply["success"] = (self.sim.success(done, np.ones(len(done), bool)),
                                self.sim.success(done, np.zeros(len(done), bool)))
            # Same-step autoreset, as DrivingVectorEnv does it: unseeded, so each env continues its
            # own random stream exactly as a reset in the parent's process would.
            reply["reset"] = self._new_episodes(done, self.sim.start_reset(done)(), wants, extras)
        return reply

    def _new_episodes(self, env_ids: np.ndarray, obs: Any, wants: list[_StatesKey], extras: _Extras) -> dict:
        """A new episode's first observation, with what the parent reads at every reset: the
        states it asks each step, and (once it has asked for them) road keys and road objects."""
        digests, objects = extras
        return {
            "obs": obs,
            "states": {key: self.sim.states(env_ids, *key) for key in wants},
            "digests": self._digests(env_ids) if digests else None,
            "objects": self.sim.objects(env_ids) if objects else None,
        }

    def states(self, env_ids: np.ndarray, detail: str, view_m: float | None) -> VehicleBatch:
        return self.sim.states(env_ids, detail, view_m)

    def success(self, env_ids: np.ndarray, truncated: np.ndarray) -> np.ndarray:
        return self.sim.success(env_ids, truncated)

    def digests(self, env_ids: np.ndarray) -> list[bytes]:
        return self._digests(env_ids)

    def objects(self, env_ids: np.ndarray) -> VehicleBatch:
        return self.sim.objects(env_ids)

    def raster(self, env_ids: np.ndarray, metres_per_pixel: float) -> RoadRaster:
        return self.sim.rasters(env_ids[:1], metres_per_pixel)[0]

    def close(self) -> None:
        self.sim.close()


@dataclass
class _PendingReset:
    """Envs the workers reset in the step's round trip, not yet handed to the caller."""

    env_ids: np.ndarray  # (R,) global ids, ascending
    success_if_truncated: np.ndarray  # (R,) bool
    success_if_not: np.ndarray  # (R,) bool
    obs: Any  # native observations of the new episodes, batched over R
    states: dict[_StatesKey, VehicleBatch] = field(default_factory=dict)
    digests: list[bytes] | None = None
    objects: VehicleBatch | None = None  # their road objects, once the caller reads objects


def _pick(values: Sequence, positions: np.ndarray) -> Sequence:
    return values[positions] if isinstance(values, np.ndarray) else [values[k] for k in positions]


def _field(replies: dict[int, dict], name: str, key: Any) -> dict[int, Any]:
    """``replies[w][name][key]`` of every worker ``w`` (``key`` ``...``: ``replies[w][name]``)."""
    return {w: reply[name] if key is ... else reply[name][key] for w, reply in replies.items()}


class WorkerSimulator:
    """The highway-env backend with its envs split over worker processes.

    The same interface as ``HighwayEnvSimulator`` (see ``drivelab.envs.backends``), with one
    difference in timing, like EnvPool's: envs that finish in ``step`` are reset by their worker
    within the same round trip, and ``start_reset`` with exactly those envs (as
    ``DrivingVectorEnv`` calls it) hands their new episodes over. Until then ``success`` and the
    states of the detail asked for at the last step describe the finished episodes.

    Attributes:
        num_workers: worker processes (each runs ``num_envs / num_workers`` envs, rounded).
        timeout_s: longest wait for one worker's reply before ``WorkerError``.
    """

    name = "highway-env"

    def __init__(
        self,
        scenario: Scenario,
        num_envs: int,
        config: dict[str, Any],
        num_workers: int,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        native_observations: bool = True,
    ) -> None:
        self.scenario = scenario
        self.config = config
        self.num_envs = num_envs
        self.num_workers = max(1, min(int(num_workers), num_envs))
        shards = np.array_split(np.arange(num_envs), self.num_workers)
        self._shards = shards  # the global ids of each worker's envs, in order
        self._worker_of = np.concatenate([np.full(len(ids), w) for w, ids in enumerate(shards)])  # (B,)
        self._local = np.concatenate([np.arange(len(ids)) for ids in shards])  # (B,) index within its worker
        self._group = ProcessGroup(
            "drivelab.envs.workers:_Shard", [(scenario, len(ids), dict(config), native_observations) for ids in shards],
            label=scenario.env_id, timeout_s=timeout_s,
        )
        spaces = self._group.hellos
        self.single_observation_space, self.single_action_space, self.dt = spaces[0]
        log.info("highway-env: %d envs of %s in %d worker processes", num_envs, scenario.env_id, self.num_workers)
        self._all = np.arange(num_envs)
        self._wants: list[_StatesKey] = []  # states details prefetched with each step
        self._asked: list[_StatesKey] = []  # details asked for all envs since the last step
        self._ready: list[tuple[np.ndarray, _StatesKey, VehicleBatch]] = []  # prefetched, served once
        self._pending: _PendingReset | None = None
        self._want_digests = False  # set once rasters are asked for: replies then carry network keys
        self._digests: list[bytes | None] = [None] * num_envs
        # Road objects stay put within an episode: once asked for, every reset reply carries the
        # new episodes' objects (parking: a new goal), kept here until the next reset.
        self._want_objects = False
        self._objects: VehicleBatch | None = None  # (B, O), rows valid where _objects_known
        self._objects_known = np.zeros(num_envs, bool)
        self._rasters: dict[tuple[bytes, float], RoadRaster] = {}

    # -- the simulator interface ------------------------------------------------------------

    def reset(self, env_ids: np.ndarray, seeds: Sequence[int | None]) -> Any:
        env_ids = np.asarray(env_ids, np.int64)
        self._pending = None  # a reset supersedes any handed-over autoreset
        self._ready = []
        seeds = list(seeds)
        wants = list(self._wants)
        groups, replies = self._ask("reset", env_ids, seeds, shared=(wants, self._extras()))
        obs = create_empty_array(self.single_observation_space, len(env_ids))
        for w, pos in groups.items():
            put_rows(obs, pos, replies[w]["obs"])
            self._note_digests(env_ids[pos], replies[w]["digests"])
        self._note_objects(env_ids, groups, _field(replies, "objects", ...) if self._want_objects else None)
        for key in wants:
            self._ready.append((env_ids, key, self._merge_states(groups, _field(replies, "states", key))))
        return obs

    def start_reset(self, env_ids: np.ndarray) -> Callable[[], Any]:
        """Hand over the envs the workers reset in the last step; any other envs reset when asked."""
        env_ids = np.asarray(env_ids, np.int64)
        pending = self._pending
        if pending is None:
            return lambda: self.reset(env_ids, [None] * len(env_ids))
        if not np.array_equal(env_ids, pending.env_ids):
            raise RuntimeError(
                f"the workers reset the envs that finished ({pending.env_ids.tolist()}); "
                f"start_reset got {env_ids.tolist()}"
            )

        def finish() -> Any:
            self._pending = None
            self._ready = [(pending.env_ids, key, rows) for key, rows in pending.states.items()]
            self._note_digests(pending.env_ids, pending.digests)
            self._note_objects(pending.env_ids, None, pending.objects)
            return pending.obs

        return finish

    def step(self, actions: np.ndarray):
        if self._pending is not None:
            raise RuntimeError(
                f"envs {self._pending.env_ids.tolist()} finished and were reset by their workers; "
                "call start_reset with them before the next step"
            )
        actions = np.asarray(actions)
        if self._asked:
            self._wants = self._asked[:4]
        self._asked = []
        self._ready = []
        wants = list(self._wants)
        groups = dict(enumerate(self._shards))
        replies = self._group.call({
            w: ("step", (actions[ids], wants, self._extras())) for w, ids in groups.items()
        }, "step")
        obs = create_empty_array(self.single_observation_space, self.num_envs)
        for w, pos in groups.items():
            put_rows(obs, pos, replies[w]["obs"])
        rewards, terminated, truncated = (
            np.concatenate([replies[w][name] for w in groups])
            for name in ("rewards", "terminated", "truncated")
        )
        for key in wants:
            self._ready.append((self._all, key, self._merge_states(groups, _field(replies, "states", key))))
        self._pending = self._collect_resets(replies, wants)
        return obs, rewards, terminated, truncated

    def states(self, env_ids: np.ndarray, detail: str = "full", view_m: float | None = None) -> VehicleBatch:
        env_ids = np.asarray(env_ids, np.int64)
        key = (detail, view_m)
        if len(env_ids) == self.num_envs and np.array_equal(env_ids, self._all) and key not in self._asked:
            self._asked.append(key)
        for k, (ids, ready_key, batch) in enumerate(self._ready):
            if ready_key == key and np.array_equal(ids, env_ids):
                del self._ready[k]
                return batch
        return self._merge_states(*self._ask("states", env_ids, shared=(detail, view_m)))

    def rasters(self, env_ids: np.ndarray, metres_per_pixel: float) -> list[RoadRaster]:
        env_ids = np.asarray(env_ids, np.int64)
        self._want_digests = True
        unknown = np.array([i for i in env_ids if self._digests[i] is None], np.int64)
        if len(unknown):
            groups, replies = self._ask("digests", unknown)
            for w, pos in groups.items():
                self._note_digests(unknown[pos], replies[w])
        out = []
        for i in env_ids:
            key = (self._digests[i], metres_per_pixel)
            if key not in self._rasters:  # road networks are static: each is drawn once, by its worker
                _, replies = self._ask("raster", np.array([i]), shared=(metres_per_pixel,))
                self._rasters[key] = next(iter(replies.values()))
            out.append(self._rasters[key])
        return out

    def objects(self, env_ids: np.ndarray) -> VehicleBatch:
        """Road objects of some envs (obstacles, walls, parking's goal), as their workers read them.

        The first call asks the workers; from then on each reset reply carries the new
        episodes' objects, so reading them at resets costs no round trip.
        """
        env_ids = np.asarray(env_ids, np.int64)
        self._want_objects = True
        unknown = env_ids[~self._objects_known[env_ids]]
        if len(unknown):
            groups, replies = self._ask("objects", unknown)
            self._note_objects(unknown, groups, replies)
        return self._objects.select(env_ids)

    def success(self, env_ids: np.ndarray, truncated: np.ndarray) -> np.ndarray:
        env_ids = np.asarray(env_ids, np.int64)
        truncated = np.asarray(truncated, bool)
        pending = self._pending
        if pending is not None and np.isin(env_ids, pending.env_ids).all():
            rows = np.searchsorted(pending.env_ids, env_ids)
            return np.where(truncated, pending.success_if_truncated[rows], pending.success_if_not[rows])
        groups, replies = self._ask("success", env_ids, truncated)
        out = np.zeros(len(env_ids), bool)
        for w, pos in groups.items():
            out[pos] = replies[w]
        return out

    def close(self) -> None:
        """Stop the workers (idempotent)."""
        self._group.close()

    @property
    def processes(self) -> list[subprocess.Popen]:
        """The worker processes, in worker order (empty once closed)."""
        return self._group.processes

    @property
    def timeout_s(self) -> float:
        """Longest wait for one worker's reply before ``WorkerError``."""
        return self._group.timeout_s

    @timeout_s.setter
    def timeout_s(self, value: float) -> None:
        self._group.timeout_s = value

    # -- internals --------------------------------------------------------------------------

    def _ask(self, command: str, env_ids: np.ndarray, *per_env: Sequence, shared: tuple = ()) -> tuple[dict, dict]:
        """Send ``command`` to the workers of ``env_ids``, with their local ids and their share of
        each ``per_env`` sequence, then ``shared``; returns each worker's positions in ``env_ids``
        and its reply."""
        owners = self._worker_of[env_ids]
        groups = {int(w): np.flatnonzero(owners == w) for w in np.unique(owners)}
        messages = {
            w: (command, (self._local[env_ids[pos]], *(_pick(values, pos) for values in per_env), *shared))
            for w, pos in groups.items()
        }
        return groups, self._group.call(messages, command)

    def _merge_states(self, groups: dict[int, np.ndarray], parts: dict[int, VehicleBatch]) -> VehicleBatch:
        """One batch from the workers' batches, padded to the most vehicles, as one process reads it."""
        n = sum(len(pos) for pos in groups.values())
        merged = VehicleBatch.empty(n, 0)
        for w, pos in groups.items():
            merged = replace_rows(merged, pos, parts[w])
        return merged

    def _note_digests(self, env_ids: np.ndarray, digests: list[bytes] | None) -> None:
        for k, i in enumerate(env_ids):
            self._digests[i] = digests[k] if digests is not None else None

    def _note_objects(self, env_ids: np.ndarray, groups: dict[int, np.ndarray] | None, parts: Any) -> None:
        """Keep the road objects of new episodes of ``env_ids``: one batch over them (``groups``
        None), or each worker's part; None marks them unknown (not asked for yet)."""
        if parts is None:
            self._objects_known[env_ids] = False
            return
        rows = parts if groups is None else self._merge_states(groups, parts)
        base = self._objects if self._objects is not None else VehicleBatch.empty(self.num_envs, 0)
        self._objects = replace_rows(base, env_ids, rows)
        self._objects_known[env_ids] = True

    def _collect_resets(self, replies: dict[int, dict], wants: list[_StatesKey]) -> _PendingReset | None:
        done_by_worker = {
            w: self._shards[w][replies[w]["done"]] for w in sorted(replies) if "done" in replies[w]
        }
        if not done_by_worker:
            return None
        env_ids = np.concatenate(list(done_by_worker.values()))  # ascending: workers, in order, hold ascending blocks
        groups, start = {}, 0
        for w, ids in done_by_worker.items():
            groups[w] = np.arange(start, start + len(ids))
            start += len(ids)
        resets = {w: replies[w]["reset"] for w in groups}
        obs = create_empty_array(self.single_observation_space, len(env_ids))
        for w, pos in groups.items():
            put_rows(obs, pos, resets[w]["obs"])
        success = [np.concatenate([replies[w]["success"][k] for w in groups]).astype(bool) for k in (0, 1)]
        return _PendingReset(
            env_ids=env_ids,
            success_if_truncated=success[0],
            success_if_not=success[1],
            obs=obs,
            states={key: self._merge_states(groups, _field(resets, "states", key)) for key in wants},
            digests=[d for w in groups for d in resets[w]["digests"]] if self._want_digests else None,
            objects=self._merge_states(groups, _field(resets, "objects", ...)) if self._want_objects else None,
        )

    def _extras(self) -> _Extras:
        return self._want_digests, self._want_objects
