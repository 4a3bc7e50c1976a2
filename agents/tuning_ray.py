"""Trials of a study as Ray tasks: each task is one more worker process on the shared study.

Ray only schedules; the study's storage coordinates, exactly as with ``--workers`` or several
machines. So every node must reach the storage: PostgreSQL, or a SQLite file on a file system
all nodes share (paths are made absolute before the tasks are sent). A task that fails is not
retried by Ray: its trial is already failed in the study, and the next run continues it.
Ray is imported only here, when ``--ray`` is used.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from drivelab.agents.suite_ray import connect
from drivelab.agents.tuning import Prepared, optimize
from drivelab.core.errors import DrivelabError


def _absolute(prepared: Prepared) -> Prepared:
    """Storage file and study folder as absolute paths: Ray workers do not share the driver's cwd."""
    settings, url = prepared.settings, prepared.storage_url
    if url.startswith("sqlite:///"):
        url = "sqlite:///" + str(Path(url[len("sqlite:///"):]).resolve())
    settings = replace(settings, out=settings.folder.resolve(), storage=url)
    return replace(prepared, settings=settings, storage_url=url)


def _trials_task(prepared: Prepared, n_trials: int, worker: int, threads: int | None) -> int:
    """One Ray task: ``n_trials`` trials of the study in the task's worker process."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    optimize(prepared, n_trials, worker)
    return n_trials


def run_on_ray(prepared: Prepared, address: str, tasks: int, threads: int | None = None) -> None:
    """Run the study's trials as ``tasks`` Ray tasks (one CPU each) on the cluster at ``address``.

    Args:
        address: ``local`` (start Ray on this machine), ``auto`` or ``HOST:PORT``.

    Raises:
        DrivelabError: no cluster at ``address``, or a task failed (its reason in one line).
    """
    import ray

    prepared = _absolute(prepared)
    trials = prepared.settings.trials
    shares = [trials // tasks + (i < trials % tasks) for i in range(tasks)]
    disconnect = connect(address)
    try:
        remote = ray.remote(num_cpus=1, max_retries=0)(_trials_task)
        refs = [remote.remote(prepared, share, i, threads) for i, share in enumerate(shares) if share]
        try:
            ray.get(refs)
        except ray.exceptions.RayError as error:
            cause = getattr(error, "cause", None) or error
            reason = str(cause).strip().splitlines()[-1] if str(cause).strip() else type(cause).__name__
            raise DrivelabError(f"a Ray task of study {prepared.settings.study!r} failed: {reason}") from None
    finally:
        disconnect()
