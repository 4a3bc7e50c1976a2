"""Suites on a Ray cluster: every (scenario, algo, seed) run of a suite is one Ray task.

The runs, their records and the summary are ``drivelab.agents.suite``'s; this module only
decides where each run trains and how its files reach ``runs_dir``:

- **Shared file system** (every node sees the driver's ``runs_dir`` at the same path; checked
  by a probe file unless told): a task trains straight into its run folder.
- **No shared file system**: a task trains into a temporary folder on its node. Each new
  checkpoint is sent, with the run's records, to a small actor on the driver's node that writes
  it into ``runs_dir`` (``atomic_dir``: a run folder is always one consistent snapshot); at the
  end the whole folder (exports, records, checkpoints, TensorBoard logs) comes back the same way.
  A run that was interrupted earlier is shipped to its task as a tar of its folder. Folders travel
  whole: a DQN checkpoint carries its replay buffer, so prefer a shared file system for big ones.

Finished runs are skipped before any task starts. A task that fails or is lost (its worker or
node died, the scheduler stopped it) is started again, up to ``max_retries`` times, from the
last checkpoint that reached ``runs_dir``; after that the run is recorded as failed with the
reasons, and the other runs go on. Errors a user can fix (``DrivelabError``: a bad config, a
corrupt run folder) fail the run at once: a retry would fail the same way.

Ray is imported inside the functions that use it: without ``--ray`` it is never imported.
"""

from __future__ import annotations

import io
import secrets
import socket
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from stable_baselines3.common.callbacks import BaseCallback

from drivelab.agents.checkpoints import POINTER_NAME
from drivelab.agents.suite import (
    FAILED,
    SKIPPED,
    TRAINED,
    SuiteConfig,
    SuiteRun,
    finished_run,
    plan,
    run_record,
    start_mode,
    suite_record,
    train_run,
)
from drivelab.agents.train import CHECKPOINTS
from drivelab.core.errors import ConfigError, DrivelabError
from drivelab.core.files import atomic_dir, check_writable, ensure_dir, write_text_atomic

MAX_RETRIES = 10  # more only hides a run that cannot finish
SHARED_FS_CHOICES = ("auto", "yes", "no")


class ClusterError(DrivelabError, RuntimeError):
    """A Ray cluster that cannot be reached or cannot run a suite's runs (too few CPUs/GPUs)."""


# ---- run folders as bytes (no shared file system) ----

def pack_folder(folder: Path) -> bytes:
    """A run folder as an uncompressed tar (checkpoints are already compressed zips)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(folder, arcname=".")
    return buffer.getvalue()


def unpack_folder(data: bytes, folder: Path) -> None:
    """Replace ``folder`` by the tar ``data`` at once (``atomic_dir``): the old one or the new one."""
    with atomic_dir(folder) as staging, tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        tar.extractall(staging, filter="data")  # refuses absolute paths, links out, devices


class RunFolderStore:
    """The Ray actor (on the driver's node) that owns ``runs_dir`` when nodes share no file system.

    Calls run one at a time, so snapshots of a run and the driver's reads of it never interleave.
    """

    def __init__(self, runs_dir: str) -> None:
        self.runs_dir = Path(runs_dir)

    def store(self, name: str, data: bytes) -> None:
        unpack_folder(data, self.runs_dir / name)

    def pack(self, name: str) -> bytes | None:
        folder = self.runs_dir / name
        return pack_folder(folder) if (folder / "config.json").is_file() else None


class CheckpointShipper(BaseCallback):
    """Sends the run folder to the driver's ``RunFolderStore`` after every new checkpoint.

    Runs after ``RunCheckpointer`` (extra callbacks come later in ``train``'s list), at rollout
    starts, where checkpoints are written; a changed ``last.json`` means a new one.
    """

    def __init__(self, run_dir: Path, name: str, store: Any) -> None:
        super().__init__()
        self.run_dir, self.name, self.store = run_dir, name, store
        self._seen: int | None = None

    def _pointer_mtime(self) -> int | None:
        try:
            return (self.run_dir / CHECKPOINTS / POINTER_NAME).stat().st_mtime_ns
        except OSError:
            return None

    def _on_training_start(self) -> None:
        self._seen = self._pointer_mtime()  # the shipped checkpoint is in runs_dir already

    def _on_rollout_start(self) -> None:
        mtime = self._pointer_mtime()
        if mtime is not None and mtime != self._seen:
            import ray

            ray.get(self.store.store.remote(self.name, pack_folder(self.run_dir)))
            self._seen = mtime

    def _on_step(self) -> bool:
        return True


# ---- what runs in a task ----

def train_task(run: SuiteRun, threads: int, shared_fs: bool, store: Any, shipped: bytes | None,
               command: list[str]) -> tuple[dict[str, Any], bytes | None]:
    """Train one run in a Ray worker; returns (outcome, the run folder as a tar or None).

    The worker is this task's process (Ray's entry point, like a CLI ``run``): its torch
    threads are set to the run's CPUs.
    """
    import ray

    torch.set_num_threads(threads)
    node = f"{socket.gethostname()} ({ray.get_runtime_context().get_node_id()[:8]})"
    if shared_fs:
        result = train_run(run.config, run.run_dir, command=command)
        return {"interrupted_by": result.interrupted_by, "node": node}, None
    with tempfile.TemporaryDirectory(prefix="drivelab-run-") as scratch:
        local = Path(scratch) / run.run_dir.name
        if shipped is not None:
            unpack_folder(shipped, local)
        shipper = CheckpointShipper(local, run.run_dir.name, store)
        result = train_run(run.config, local, command=command, extra_callbacks=[shipper])
        return {"interrupted_by": result.interrupted_by, "node": node}, pack_folder(local)


def probe_task(path: str, token: str) -> bool:
    """Whether this node sees the driver's probe file (a shared file system)."""
    try:
        return Path(path).read_text() == token
    except OSError:
        return False


# ---- the driver ----

@dataclass
class _Attempt:
    run: SuiteRun
    index: int
    started: float
    attempts: int = 0
    errors: list[str] = field(default_factory=list)


def connect(address: str) -> Callable[[], None]:
    """Connect to (or, for ``local``, start) a Ray cluster; returns how to disconnect."""
    import ray

    if ray.is_initialized():  # the caller's own ray.init: keep it
        return lambda: None
    _check_reachable(address)
    try:
        if address == "local":
            ray.init(include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    except (ConnectionError, ValueError, RuntimeError) as error:
        raise ClusterError(
            f"cannot connect to a Ray cluster at {address} ({str(error).splitlines()[0]}); start one with "
            "`ray start --head`, pass its address (--ray HOST:PORT), or use --ray local"
        ) from None
    return ray.shutdown


def _check_reachable(address: str) -> None:
    """Refuse a HOST:PORT nothing listens on at once (Ray would retry for minutes)."""
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return  # auto, local, ray://... : Ray's own checks answer quickly
    try:
        socket.create_connection((host, int(port)), timeout=10).close()
    except OSError as error:
        raise ClusterError(
            f"no Ray cluster answers at {address} ({error.strerror or error}); start one with "
            "`ray start --head --port PORT` or check the address"
        ) from None


def _check_fits(suite: SuiteConfig) -> list[dict[str, Any]]:
    """The alive nodes; raises if no node can hold one run (Ray would wait for ever)."""
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    need = suite.resources
    fits = [n for n in nodes if n["Resources"].get("CPU", 0) >= need.cpus_per_run
            and n["Resources"].get("GPU", 0) >= need.gpus_per_run]
    if not fits:
        largest = ", ".join(f"{n['Resources'].get('CPU', 0):g} CPUs/{n['Resources'].get('GPU', 0):g} GPUs"
                            for n in nodes) or "no alive node"
        raise ClusterError(
            f"suite {suite.name} asks {need.cpus_per_run} CPUs and {need.gpus_per_run:g} GPUs per run, "
            f"but no node of the cluster has that ({largest}); lower resources in the suite file"
        )
    return nodes


def _shared_fs(runs_dir: Path, nodes: list[dict[str, Any]]) -> bool:
    """Whether every node that can train sees ``runs_dir``: a probe file written here, read there."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    token = secrets.token_hex(16)
    probe = write_text_atomic(runs_dir / f".drivelab-fs-probe.{token[:8]}", token)
    try:
        remote = ray.remote(probe_task)
        refs = [remote.options(num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
                .remote(str(probe), token) for n in nodes if n["Resources"].get("CPU", 0) > 0]
        return all(ray.get(refs, timeout=120))
    finally:
        probe.unlink(missing_ok=True)


def _reason(error: BaseException) -> str:
    """One line saying why an attempt failed."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0] if lines else ''}"[:300]


def run_suite_ray(
    suite: SuiteConfig,
    address: str = "auto",
    shared_fs: str = "auto",
    max_retries: int = 2,
    announce: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train every unfinished run of a suite as a Ray task; the record is ``run_suite``'s.

    Args:
        suite: the suite (``resources`` say what one run takes).
        address: ``auto`` (the cluster this machine belongs to), ``HOST:PORT``, or ``local`` (a
            Ray instance started for this call). Ignored when ``ray.init`` was called already.
        shared_fs: ``auto`` (probe), ``yes`` or ``no``: whether nodes see ``runs_dir``.
        max_retries: how often a failed or lost run is started again (from its last checkpoint).
        announce: prints progress lines.

    Raises:
        ClusterError: no cluster at ``address``, or no node with a run's CPUs and GPUs.
        ConfigError: a bad ``shared_fs`` or ``max_retries``.
    """
    if shared_fs not in SHARED_FS_CHOICES:
        raise ConfigError(f"shared_fs must be one of {', '.join(SHARED_FS_CHOICES)}, got {shared_fs!r}")
    if not 0 <= max_retries <= MAX_RETRIES:
        raise ConfigError(f"max_retries must be in [0, {MAX_RETRIES}], got {max_retries}")
    runs_dir = check_writable(Path(suite.runs_dir).resolve(), folder=True)
    planned = [SuiteRun(r.scenario, r.algo, r.seed, r.config, runs_dir / r.run_dir.name) for r in plan(suite)]
    started_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    disconnect = connect(address)
    try:
        import ray

        nodes = _check_fits(suite)
        ensure_dir(runs_dir)
        shared = shared_fs == "yes" or (shared_fs == "auto" and _shared_fs(runs_dir, nodes))
        runs = _run_all(suite, planned, runs_dir, shared, max_retries, announce)
        runner = {"kind": "ray", "address": ray.get_runtime_context().gcs_address, "shared_fs": shared,
                  "max_retries": max_retries, "nodes": len(nodes),
                  "cluster_resources": {k: v for k, v in ray.cluster_resources().items() if k in ("CPU", "GPU")}}
        return suite_record(suite, started_at, runs, runner)
    finally:
        disconnect()


def _run_all(suite: SuiteConfig, planned: list[SuiteRun], runs_dir: Path, shared: bool, max_retries: int,
             announce: Callable[[str], None]) -> list[dict[str, Any]]:
    """Submit every unfinished run, retry lost ones, and return the run records in grid order."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    store = None
    if not shared:  # the driver's node owns runs_dir; the store lives there
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        store = ray.remote(RunFolderStore).options(num_cpus=0, scheduling_strategy=here).remote(str(runs_dir))
    task = ray.remote(train_task).options(num_cpus=suite.resources.cpus_per_run,
                                          num_gpus=suite.resources.gpus_per_run, num_returns=2, max_retries=0)
    command = list(sys.argv)
    records: dict[int, dict[str, Any]] = {}
    pending: dict[Any, tuple[_Attempt, Any]] = {}

    def submit(attempt: _Attempt) -> None:
        shipped = None if shared else ray.get(store.pack.remote(attempt.run.run_dir.name))
        resuming = start_mode(attempt.run.run_dir)[0]
        attempt.attempts += 1
        outcome, files = task.remote(attempt.run, suite.resources.cpus_per_run, shared, store, shipped, command)
        pending[outcome] = (attempt, files)
        retry = f" attempt {attempt.attempts}/{max_retries + 1}" if attempt.attempts > 1 else ""
        announce(f"[{attempt.index}/{len(planned)}] {attempt.run.scenario} {attempt.run.algo} seed "
                 f"{attempt.run.seed} -> {attempt.run.run_dir} on ray{' (resuming)' if resuming else ''}{retry}")

    for index, run in enumerate(planned, start=1):
        if finished_run(run.run_dir, run.config) is not None:
            announce(f"[{index}/{len(planned)}] {run.scenario} {run.algo} seed {run.seed} -> {run.run_dir} "
                     "(finished earlier: skipped)")
            records[index] = run_record(run, SKIPPED, 0.0, attempts=0)
        else:
            submit(_Attempt(run, index, time.perf_counter()))
    try:
        while pending:
            [ready], _ = ray.wait(list(pending), num_returns=1)
            attempt, files = pending.pop(ready)
            error, fatal = _collect(ready, files, attempt, store)
            if error is None:
                records[attempt.index] = run_record(attempt.run, TRAINED, time.perf_counter() - attempt.started,
                                                    attempt.attempts, attempt.errors)
                continue
            attempt.errors.append(error)
            if fatal or attempt.attempts > max_retries:
                announce(f"[{attempt.index}/{len(planned)}] failed after {attempt.attempts} attempt(s): {error}")
                records[attempt.index] = run_record(attempt.run, FAILED, time.perf_counter() - attempt.started,
                                                    attempt.attempts, attempt.errors)
            else:
                announce(f"[{attempt.index}/{len(planned)}] lost ({error}); starting it again")
                submit(attempt)
    except BaseException:  # Ctrl-C in the driver: stop the tasks (their checkpoints stay)
        for ref in pending:
            ray.cancel(ref)
        raise
    return [records[i] for i in sorted(records)]


def _collect(outcome_ref: Any, files_ref: Any, attempt: _Attempt, store: Any) -> tuple[str | None, bool]:
    """Write a finished task's files into ``runs_dir``.

    Returns:
        (None, False) when the run finished, else why it did not and whether retrying is futile.
    """
    import ray
    from ray.exceptions import RayError, RayTaskError

    try:
        outcome = ray.get(outcome_ref)
        if store is not None:
            ray.get(store.store.remote(attempt.run.run_dir.name, files_ref))
    except RayTaskError as error:
        if isinstance(error.cause, DrivelabError):  # a bad config or run folder fails the same way again
            return f"{type(error.cause).__name__}: {error.cause}", True
        return _reason(error.cause if isinstance(error.cause, BaseException) else error), False
    except RayError as error:  # worker or node died, object lost, actor died
        return _reason(error), False
    if outcome["interrupted_by"]:  # the node's scheduler stopped the worker; its checkpoint is saved
        return f"stopped by {outcome['interrupted_by']} on {outcome['node']}", False
    return None, False
