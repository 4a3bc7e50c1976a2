"""A leaderboard as one JSON file: every entry with its runs and episodes, to keep beside the pages.

The board itself (``runs/leaderboard.db``, or a PostgreSQL database) lives outside the repository,
so a new machine had the pages (``LEADERBOARD.md``, the per-seed RL reports) but not what they were
computed from: rewriting them, or adding one agent, meant evaluating every agent again. ``export``
writes a board's whole content to a JSON file (``benchmarks/results/leaderboard_board.json``,
written by ``drivelab bench leaderboard`` with the pages); ``load_into`` submits the file's entries
that a board does not hold yet, so a fresh board starts where the pages were written.

The file keeps everything the pages read: each entry's metadata, its runs (policy label, digest,
training seed) and every episode's metrics; video paths as recorded. An entry's created/updated
times are the board's own (a loaded entry is new to that board).

Example:
    >>> from drivelab.benchmarks.leaderboard import board_file
    >>> board_file.export("runs/leaderboard.db", "benchmarks/results/leaderboard_board.json")  # doctest: +SKIP
    >>> board_file.load_into("benchmarks/results/leaderboard_board.json", "runs/new.db")  # doctest: +SKIP
    3
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any

from drivelab.agents.evaluation import EpisodeRecord
from drivelab.benchmarks.leaderboard.database import LeaderboardError
from drivelab.benchmarks.leaderboard.records import EntryMetadata, RunRecord, StoredEntry
from drivelab.benchmarks.leaderboard.store import Leaderboard
from drivelab.core.files import write_json_atomic

FORMAT = "drivelab-leaderboard-board"
VERSION = 1


class BoardFileError(LeaderboardError):
    """A board file that cannot be read (missing, not JSON, another format or version)."""


def _plain(value: Any) -> Any:
    """NaN -> None (JSON has no NaN), recursively."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def entry_json(entry: StoredEntry) -> dict[str, Any]:
    """One stored entry as JSON values (metadata, runs, episodes)."""
    metadata = dataclasses.asdict(entry.metadata)
    runs = [{"policy_sha256": run.policy_sha256, "policy_label": run.policy_label,
             "training_seed": run.training_seed,
             "episodes": [dataclasses.asdict(episode) for episode in run.episodes]}
            for run in entry.runs]  # fmt: skip
    return _plain({"metadata": metadata, "runs": runs})


def _episode(values: dict[str, Any]) -> EpisodeRecord:
    fields = {field.name for field in dataclasses.fields(EpisodeRecord)}
    record = {name: (math.nan if value is None and name != "video_path" else value)
              for name, value in values.items() if name in fields}  # fmt: skip
    return EpisodeRecord(**record)


def entry_from_json(values: dict[str, Any]) -> tuple[EntryMetadata, list[RunRecord]]:
    """``entry_json``'s inverse: what ``Leaderboard.submit`` takes."""
    metadata = EntryMetadata(**values["metadata"])
    runs = [RunRecord(policy_sha256=run["policy_sha256"], policy_label=run["policy_label"],
                      training_seed=run["training_seed"], episodes=tuple(_episode(e) for e in run["episodes"]))
            for run in values["runs"]]  # fmt: skip
    return metadata, runs


def export(db: str | os.PathLike, path: str | os.PathLike) -> int:
    """Write every entry of board ``db`` to ``path`` (atomically); returns the number of entries.

    Raises:
        LeaderboardError: the board cannot be opened.
    """
    with Leaderboard(db, readonly=True) as board:
        entries = board.entries()
    ordered = sorted(entries, key=lambda e: (e.metadata.env_id, e.metadata.agent_name, e.metadata.submitter,
                                             e.metadata.protocol_version, e.metadata.backend))
    write_json_atomic(Path(path), {"format": FORMAT, "version": VERSION,
                                   "entries": [entry_json(entry) for entry in ordered]})
    return len(ordered)


def read(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The entries of a board file.

    Raises:
        BoardFileError: the file is missing, not JSON, or not a board file of this version.
    """
    try:
        content = json.loads(Path(path).read_text())
    except OSError as error:
        raise BoardFileError(f"cannot read the board file {path}: {error.strerror or error}") from error
    except ValueError as error:
        raise BoardFileError(f"{path} is not JSON ({error}); restore it from git or delete it") from error
    if not isinstance(content, dict) or content.get("format") != FORMAT or content.get("version") != VERSION:
        raise BoardFileError(f"{path} is not a drivelab board file (format {FORMAT!r}, version {VERSION})")
    return list(content["entries"])


def load_into(path: str | os.PathLike, db: str | os.PathLike) -> int:
    """Submit to board ``db`` (created if missing) the entries of ``path`` it does not hold yet.

    An entry is "held" when the board has one of the same identity (submitter, agent, scenario,
    protocol, backend): the board's own, evaluated on it, is kept. Returns the entries added.

    Raises:
        BoardFileError: the file cannot be read; LeaderboardError: the board cannot be written.
    """
    entries = read(path)
    try:
        parsed = [entry_from_json(values) for values in entries]
    except (KeyError, TypeError) as error:
        raise BoardFileError(f"{path} has an entry this drivelab cannot read ({error!r}); "
                             "restore it from git or delete it") from error  # fmt: skip
    with Leaderboard(db) as board:
        held = {entry.metadata.identity for entry in board.entries()}
        added = 0
        for metadata, runs in parsed:
            if metadata.identity not in held:
                board.submit(metadata, runs)
                added += 1
    return added
