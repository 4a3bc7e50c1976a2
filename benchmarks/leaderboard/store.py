"""The leaderboard store: tables ``entries``, ``runs`` and ``episodes`` in an SQLite file or a
PostgreSQL database, with the same behaviour in both (the SQL is written once; ``database.py``
and ``postgres.py`` hold what differs).

Identity: an entry is identified by ``(submitter, agent_name, env_id, protocol_version,
backend)``, never by the policy's digest alone. Submitting again under the same identity
updates that entry (its runs and episodes are replaced) and ``submit`` returns the entry it
replaced, so the caller can say what changed; a different submitter or agent name always
gets its own entry. An entry with fewer episodes per run than its protocol asks for is kept
but marked *partial* (``StoredEntry.partial``); rankings place it below every complete entry.

Writes are safe under concurrency: every submission is one transaction that first locks its
entry (SQLite: ``BEGIN IMMEDIATE`` in WAL mode, one writer at a time; PostgreSQL: an advisory
lock on the identity, so submissions of different entries go on together), so an entry is
stored whole or not at all, and a submission that meets contention (a busy file, a lock
timeout, a deadlock) is retried whole, a bounded number of times. A new board is never seen
half-created (SQLite: built in a temporary file and linked into place; PostgreSQL: created in
one transaction under an advisory lock).

Reading never writes: ``Leaderboard(db, readonly=True)`` opens the file with SQLite's
``mode=ro`` or a read-only PostgreSQL session (no schema creation, no migration, no
journal-mode switch). A database that is not a drivelab leaderboard (an empty file included) is
refused and never overwritten. A board of the previous schema (1) is migrated in place by the
first writer that opens it.

Example:
    >>> with Leaderboard("runs/leaderboard.db") as board:          # doctest: +SKIP
    ...     outcome = board.submit(metadata, [RunRecord(sha256, "policy.safetensors", episodes)])
    >>> outcome.entry_id, outcome.previous is None                  # doctest: +SKIP
    (1, True)
    >>> Leaderboard("postgresql://alice@db.example.org/drivelab")    # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import fields
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import numpy as np

from drivelab.agents.evaluation import EpisodeRecord
from drivelab.benchmarks.leaderboard.database import (
    BUSY_TIMEOUT_S,
    CorruptDatabaseError,
    LeaderboardError,
    board_exists,
    describe,
    is_url,
    open_database,
)
from drivelab.benchmarks.leaderboard.records import (
    EntryMetadata,
    RunRecord,
    StoredEntry,
    Submission,
    hash_config,
    protocol_episodes,
)
from drivelab.benchmarks.leaderboard.schema import IDENTITY, SCHEMA_VERSION, TABLES, create_schema, migrate

__all__ = [
    "DEFAULT_DB_PATH", "SCHEMA_VERSION", "CorruptDatabaseError", "EntryMetadata", "Leaderboard",
    "LeaderboardError", "RunRecord", "StoredEntry", "Submission", "check_board_path", "hash_config",
    "protocol_episodes",
]  # fmt: skip

DEFAULT_DB_PATH = Path("runs/leaderboard.db")
T = TypeVar("T")

_EPISODE_COLUMNS = tuple(f.name for f in fields(EpisodeRecord))  # index, seed, ... video_path
_EPISODE_SELECT = ", ".join(["episode_index", *_EPISODE_COLUMNS[1:]])


def _sql_value(value: Any) -> Any:
    """A plain Python value for either database: numpy scalars as Python numbers, bools as 0/1
    (the columns are integers), NaN as NULL (SQLite stores it so; PostgreSQL is made to agree)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_, int, np.integer)):
        return int(value)
    value = float(value)
    return None if math.isnan(value) else value


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Leaderboard:
    """A leaderboard (SQLite file or PostgreSQL database); use as a context manager or call ``close()``.

    Args:
        db: the database file (default ``runs/leaderboard.db``) or a
            ``postgresql://user[:password]@host[:port]/dbname`` URL (an existing database).
        create: create the board (and its folder, for a file) if missing; else a missing board
            is an error.
        readonly: open for reading only (SQLite ``mode=ro``, a read-only PostgreSQL session):
            nothing is created, migrated or switched; ``submit`` fails. Implies ``create=False``.
        busy_timeout_s: how long a statement waits while another process writes.

    Raises:
        LeaderboardError: the board is missing (``create=False``), cannot be created, opened or
            reached, or is a board of an unknown schema.
        CorruptDatabaseError: the file is not a readable SQLite database (empty included).
    """

    def __init__(
        self,
        db: str | Path = DEFAULT_DB_PATH,
        *,
        create: bool = True,
        readonly: bool = False,
        busy_timeout_s: float = BUSY_TIMEOUT_S,
    ) -> None:
        self.path = None if is_url(db) else Path(db)  # the file, for an SQLite board
        self.location = describe(db)  # for messages: a path, or a URL with its password masked
        self.readonly = readonly
        self._db = open_database(db, readonly=readonly, create=create, busy_timeout_s=busy_timeout_s,
                                 create_schema=create_schema)  # fmt: skip
        try:
            self.schema_version = self._db.retry(self._open_schema)
        except self._db.errors as error:
            self._db.close()
            raise self._db.open_error(error) from error
        except LeaderboardError:
            self._db.close()
            raise

    @property
    def kind(self) -> str:
        """The database: ``"sqlite"`` or ``"postgresql"``."""
        return self._db.kind

    @property
    def contention_retries(self) -> int:
        """How many transactions on this connection were retried after contention (a busy file,
        a serialization failure): a measure of how hard writers competed."""
        return self._db.retries

    def __enter__(self) -> Leaderboard:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    def _check_is_leaderboard(self, version: int, tables: set[str]) -> None:
        if version not in (1, SCHEMA_VERSION) or not set(TABLES) <= tables:
            raise LeaderboardError(
                f"{self.location} is not a drivelab leaderboard of schema {SCHEMA_VERSION} "
                f"(schema version {version}, tables {sorted(tables)}); it was left untouched. "
                "Pass another --db"
            )

    def _open_schema(self) -> int:
        """Check the board (read-only) before changing anything; migrate an older schema.

        Returns the schema version of the board as it is now.
        """
        with self._db.transaction(write=False):  # one read snapshot
            version, tables = self._db.schema_state()
        self._check_is_leaderboard(version, tables)
        if self.readonly:
            return version
        self._db.prepare_writer()
        if version == SCHEMA_VERSION:
            return version
        with self._db.schema_lock():
            version, tables = self._db.schema_state()  # another process may have migrated it
            self._check_is_leaderboard(version, tables)
            migrate(self._db, version, protocol_episodes)
        return SCHEMA_VERSION

    def _write(self, work: Callable[[], T]) -> T:
        """Run ``work()`` in one write transaction, retried whole on contention.

        Raises:
            LeaderboardError: the write failed; the transaction was rolled back whole.
        """
        if self.readonly:
            raise LeaderboardError(f"{self.location} was opened read-only; it cannot be written")

        def transaction() -> T:
            with self._db.transaction(write=True):
                return work()

        try:
            return self._db.retry(transaction)
        except self._db.errors as error:
            text = " ".join(str(error).split())
            raise LeaderboardError(f"could not write to {self.location}: {text}") from error

    def submit(self, metadata: EntryMetadata, runs: Sequence[RunRecord]) -> Submission:
        """Store an entry with its runs and episodes in one transaction.

        An entry with the same identity (submitter, agent name, scenario, protocol, backend)
        is updated: its metadata and runs are replaced, and the old entry is returned in
        ``Submission.previous``. Any other submission makes a new entry.

        Raises:
            LeaderboardError: no runs or an empty run, or the write failed (nothing stored).
        """
        if not runs or any(not run.episodes for run in runs):
            raise LeaderboardError("a submission needs at least one run with at least one episode")
        if metadata.protocol_episodes is None:
            wanted = protocol_episodes(metadata.protocol_version)
            metadata = dataclasses.replace(metadata, protocol_episodes=wanted)
        return self._write(lambda: self._submit_once(metadata, runs))

    def _submit_once(self, metadata: EntryMetadata, runs: Sequence[RunRecord]) -> Submission:
        self._db.lock_entry(metadata.identity)
        now = _utc_now()
        values = {
            "env_id": metadata.env_id,
            "protocol_version": metadata.protocol_version,
            "policy_sha256": metadata.policy_sha256,
            "submitter": metadata.submitter,
            "agent_name": metadata.agent_name,
            "algorithm": metadata.algorithm,
            "backend": metadata.backend,
            "config_hash": metadata.config_hash,
            "config_json": json.dumps(metadata.config, sort_keys=True, default=str),
            "package_versions_json": json.dumps(dict(metadata.package_versions), sort_keys=True),
            "git_commit": metadata.git_commit,
            "training_steps": _sql_value(metadata.training_steps),
            "training_wall_s": _sql_value(metadata.training_wall_s),
            "hardware": metadata.hardware,
            "protocol_episodes": _sql_value(metadata.protocol_episodes),
            "updated_at": now,
        }
        row = self._db.execute(
            f"SELECT * FROM entries WHERE {' AND '.join(f'{c} = ?' for c in IDENTITY)}", metadata.identity
        ).fetchone()
        previous = None
        if row is None:
            entry_id = self._db.insert("entries", {**values, "created_at": now})
        else:
            previous = self._read_entry(row)
            entry_id = previous.id
            assignments = ", ".join(f"{name} = ?" for name in values)
            self._db.execute(f"UPDATE entries SET {assignments} WHERE id = ?", (*values.values(), entry_id))
            self._db.execute("DELETE FROM runs WHERE entry_id = ?", (entry_id,))  # cascades to episodes
        for run_index, run in enumerate(runs):
            self._insert_run(entry_id, run_index, run)
        return Submission(entry_id, previous)

    def _insert_run(self, entry_id: int, run_index: int, run: RunRecord) -> None:
        run_id = self._db.insert("runs", {
            "entry_id": entry_id, "run_index": run_index, "policy_sha256": run.policy_sha256,
            "policy_label": run.policy_label, "training_seed": _sql_value(run.training_seed),
        })  # fmt: skip
        columns = ["run_id", "episode_index", *_EPISODE_COLUMNS[1:], "failed"]
        rows = [
            (run_id, *(_sql_value(getattr(e, name)) for name in _EPISODE_COLUMNS), int(bool(e.failed)))
            for e in run.episodes
        ]
        self._db.insert_many("episodes", columns, rows)

    def _read(self, work: Callable[[], T]) -> T:
        """Run ``work()`` in one read snapshot."""
        try:
            with self._db.transaction(write=False):
                return work()
        except self._db.errors as error:
            raise LeaderboardError(f"could not read {self.location}: {error}") from error

    def row_counts(self) -> dict[str, int]:
        """Number of rows in each table."""
        def count() -> dict[str, int]:
            return {t: int(self._db.execute(f"SELECT COUNT(*) AS n FROM {t}").fetchone()["n"]) for t in TABLES}

        return self._read(count)

    def entries(
        self, env_id: str | None = None, protocol_version: str | None = None
    ) -> list[StoredEntry]:
        """Every entry (optionally of one scenario and protocol), with runs and episodes."""
        filters = {"env_id": env_id, "protocol_version": protocol_version}
        given = {column: value for column, value in filters.items() if value is not None}
        where = f"WHERE {' AND '.join(f'{c} = ?' for c in given)} " if given else ""

        def read() -> list[StoredEntry]:
            rows = self._db.execute(f"SELECT * FROM entries {where}ORDER BY id", list(given.values())).fetchall()
            return [self._read_entry(row) for row in rows]

        return self._read(read)

    def _read_entry(self, row: dict[str, Any]) -> StoredEntry:
        if "protocol_episodes" in row:
            wanted = row["protocol_episodes"]
        else:  # a schema-1 board opened read-only (not migrated)
            wanted = protocol_episodes(row["protocol_version"])
        metadata = EntryMetadata(
            submitter=row["submitter"],
            agent_name=row["agent_name"],
            algorithm=row["algorithm"],
            env_id=row["env_id"],
            protocol_version=row["protocol_version"],
            policy_sha256=row["policy_sha256"],
            backend=row["backend"],
            config=json.loads(row["config_json"]),
            package_versions=json.loads(row["package_versions_json"]),
            git_commit=row["git_commit"],
            training_steps=row["training_steps"],
            training_wall_s=row["training_wall_s"],
            hardware=row["hardware"],
            protocol_episodes=wanted,
        )
        runs = []
        for run in self._db.execute(
            "SELECT * FROM runs WHERE entry_id = ? ORDER BY run_index", (row["id"],)
        ).fetchall():
            episodes = self._db.execute(
                f"SELECT {_EPISODE_SELECT} FROM episodes WHERE run_id = ? ORDER BY episode_index", (run["id"],)
            ).fetchall()
            runs.append(
                RunRecord(
                    policy_sha256=run["policy_sha256"],
                    policy_label=run["policy_label"],
                    training_seed=run["training_seed"],
                    episodes=tuple(_episode_from_row(e) for e in episodes),
                )
            )
        return StoredEntry(row["id"], metadata, row["created_at"], row["updated_at"], tuple(runs))


def check_board_path(db: str | os.PathLike) -> None:
    """Check, before any evaluation, that ``db`` can take a submission; changes nothing.

    An existing board must be a drivelab leaderboard (opened read-only to see); a missing one
    must be creatable there (a writable folder; a PostgreSQL database where the user may
    create tables). A URL is connected to, so a bad URL, an unreachable server or a refused
    login is reported now, not after the evaluation.

    Raises:
        LeaderboardError: the board exists but is not usable, or the server cannot be used.
        OutputPathError: the board's file could not be created there.
    """
    if board_exists(db):
        Leaderboard(db, readonly=True).close()


def _episode_from_row(row: dict[str, Any]) -> EpisodeRecord:
    record = {name: row["episode_index" if name == "index" else name] for name in _EPISODE_COLUMNS}
    for name, value in record.items():  # NaN is stored as NULL
        if value is None and name != "video_path":
            record[name] = math.nan
    record["crashed"] = bool(record["crashed"])
    record["success"] = bool(record["success"])
    return EpisodeRecord(**record)
