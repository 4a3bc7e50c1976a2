"""The leaderboard store: one SQLite file with tables ``entries``, ``runs`` and ``episodes``.

An *entry* is one submitted agent on one scenario under one protocol version; it holds one or
more *runs* (training runs, e.g. training seeds), each with its evaluation *episodes*.

Writes are safe under concurrency: the database runs in WAL mode, every submission is one
``BEGIN IMMEDIATE`` transaction (so an entry is stored whole or not at all), and a writer that
finds the database busy waits (``busy_timeout``) and then retries. Re-submitting the same
policy digest under the same protocol and scenario replaces that entry's runs and episodes
instead of adding a second entry. A file that is not a drivelab leaderboard is refused and
never overwritten.

Example:
    >>> board = Leaderboard("runs/leaderboard.db")                  # doctest: +SKIP
    >>> run = RunRecord(sha256, "policy.safetensors", episodes)      # doctest: +SKIP
    >>> entry_id = board.submit(metadata, [run])                    # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import numpy as np

from drivelab.benchmarks.protocol import EpisodeRecord
from drivelab.envs.errors import DrivelabError

DEFAULT_DB_PATH = Path("runs/leaderboard.db")
SCHEMA_VERSION = 1  # stored in PRAGMA user_version
T = TypeVar("T")
_SQLITE_MAGIC = b"SQLite format 3\x00"
_BUSY_TIMEOUT_S = 60.0  # how long one statement waits for another writer
_RETRIES = 8  # whole-transaction retries after the busy timeout ran out

_SCHEMA = """
CREATE TABLE entries (
    id INTEGER PRIMARY KEY,
    env_id TEXT NOT NULL,
    protocol_version TEXT NOT NULL,
    policy_sha256 TEXT NOT NULL,
    submitter TEXT NOT NULL,
    agent_name TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    backend TEXT NOT NULL,
    config_hash TEXT NOT NULL,
    config_json TEXT NOT NULL,
    package_versions_json TEXT NOT NULL,
    git_commit TEXT NOT NULL,
    training_steps INTEGER,
    training_wall_s REAL,
    hardware TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (policy_sha256, protocol_version, env_id)
);
CREATE TABLE runs (
    id INTEGER PRIMARY KEY,
    entry_id INTEGER NOT NULL REFERENCES entries(id) ON DELETE CASCADE,
    run_index INTEGER NOT NULL,
    policy_sha256 TEXT NOT NULL,
    policy_label TEXT NOT NULL,
    training_seed INTEGER,
    UNIQUE (entry_id, run_index)
);
CREATE TABLE episodes (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    episode_index INTEGER NOT NULL,
    seed INTEGER NOT NULL,
    episode_return REAL,
    length INTEGER NOT NULL,
    crashed INTEGER NOT NULL,
    success INTEGER NOT NULL,
    mean_speed REAL,
    distance_m REAL,
    lane_changes INTEGER NOT NULL,
    right_lane_share REAL,
    on_road_share REAL,
    max_abs_jerk REAL,
    failed INTEGER NOT NULL,
    video_path TEXT,
    UNIQUE (run_id, episode_index)
);
CREATE INDEX runs_by_entry ON runs(entry_id);
CREATE INDEX episodes_by_run ON episodes(run_id);
"""
_TABLES = ("entries", "runs", "episodes")
_EPISODE_COLUMNS = tuple(f.name for f in fields(EpisodeRecord))  # index, seed, ... video_path


class LeaderboardError(DrivelabError, RuntimeError):
    """The leaderboard file cannot be opened, created or written."""


class CorruptDatabaseError(LeaderboardError):
    """The file is not a (readable) drivelab leaderboard; it is left untouched."""


def hash_config(config: Mapping[str, Any]) -> str:
    """SHA-256 of a config's canonical JSON (sorted keys), the entry's config fingerprint."""
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class EntryMetadata:
    """What an entry records about the agent, its provenance and its evaluation."""

    submitter: str
    agent_name: str
    algorithm: str
    env_id: str
    protocol_version: str
    policy_sha256: str  # of the policy file; of all run digests for multi-run entries
    backend: str
    config: Mapping[str, Any] = field(default_factory=dict)  # full training + eval config
    package_versions: Mapping[str, str] = field(default_factory=dict)
    git_commit: str = "unknown"
    training_steps: int | None = None
    training_wall_s: float | None = None
    hardware: str = "unknown"

    @property
    def config_hash(self) -> str:
        """``hash_config(self.config)``."""
        return hash_config(self.config)


@dataclass(frozen=True)
class RunRecord:
    """One training run of an entry and its evaluation episodes."""

    policy_sha256: str
    policy_label: str  # path or baseline name as given
    episodes: Sequence[EpisodeRecord]
    training_seed: int | None = None


@dataclass(frozen=True)
class StoredEntry:
    """An entry read back from the database."""

    id: int
    metadata: EntryMetadata
    created_at: str
    updated_at: str
    runs: tuple[RunRecord, ...]

    @property
    def num_episodes(self) -> int:
        """Episodes over all runs."""
        return sum(len(run.episodes) for run in self.runs)


def _sql_value(value: Any) -> Any:
    """A plain Python value for SQLite (numpy scalars would be stored as blobs)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    return float(value)


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _is_busy(error: sqlite3.OperationalError) -> bool:
    text = str(error).lower()
    return "locked" in text or "busy" in text


def _check_sqlite_file(path: Path) -> None:
    """Refuse an existing file that is not an SQLite database, before SQLite touches it."""
    if path.is_dir():
        raise LeaderboardError(f"leaderboard path {path} is a directory; pass a file with --db")
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb") as handle:
        magic = handle.read(len(_SQLITE_MAGIC))
    if magic != _SQLITE_MAGIC:
        raise CorruptDatabaseError(
            f"{path} is not an SQLite database (corrupt or another file); it was left untouched. "
            "Move it away or pass another --db"
        )


class Leaderboard:
    """A leaderboard SQLite file; use as a context manager or call ``close()``.

    Args:
        path: the database file (default ``runs/leaderboard.db``).
        create: create the file (and its folder) if missing; else a missing file is an error.
        busy_timeout_s: how long a statement waits while another process writes.
    """

    def __init__(
        self,
        path: str | Path = DEFAULT_DB_PATH,
        *,
        create: bool = True,
        busy_timeout_s: float = _BUSY_TIMEOUT_S,
    ) -> None:
        self.path = Path(path)
        _check_sqlite_file(self.path)
        if not self.path.exists():
            if not create:
                raise LeaderboardError(
                    f"no leaderboard at {self.path}; submit one with `drivelab eval --submit` "
                    "or pass --db"
                )
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise LeaderboardError(f"cannot create {self.path.parent}: {error}") from error
        try:
            self._connection = sqlite3.connect(
                self.path, timeout=busy_timeout_s, isolation_level=None  # we issue BEGIN ourselves
            )
        except sqlite3.Error as error:
            raise LeaderboardError(f"cannot open leaderboard {self.path}: {error}") from error
        try:
            self._connection.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            self._retry(self._open_schema)
        except sqlite3.DatabaseError as error:
            self._connection.close()
            if isinstance(error, sqlite3.OperationalError) and not _is_corruption(error):
                raise LeaderboardError(f"cannot use leaderboard {self.path}: {error}") from error
            raise CorruptDatabaseError(
                f"{self.path} is a corrupt or unreadable database ({error}); it was left "
                "untouched. Move it away or pass another --db"
            ) from error
        except LeaderboardError:
            self._connection.close()
            raise

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
        self._connection.close()

    def _retry(self, work: Any) -> Any:
        """Run ``work()``; when the database stays busy past the timeout, retry with backoff."""
        for attempt in range(_RETRIES):
            try:
                return work()
            except sqlite3.OperationalError as error:
                if not _is_busy(error) or attempt == _RETRIES - 1:
                    raise
                time.sleep(0.05 * 2**attempt)
        raise AssertionError("unreachable")

    def _write(self, work: Callable[[], T]) -> T:
        """Run ``work()`` in one ``BEGIN IMMEDIATE`` transaction (retried while the file is busy).

        Raises:
            LeaderboardError: the write failed; the transaction was rolled back whole.
        """

        def transaction() -> T:
            self._connection.execute("BEGIN IMMEDIATE")
            try:
                result = work()
                self._connection.execute("COMMIT")
            except BaseException:
                self._connection.execute("ROLLBACK")
                raise
            return result

        try:
            return self._retry(transaction)
        except sqlite3.Error as error:
            raise LeaderboardError(f"could not write to {self.path}: {error}") from error

    def _schema_state(self) -> tuple[int, set[str]]:
        version = self._connection.execute("PRAGMA user_version").fetchone()[0]
        query = "SELECT name FROM sqlite_master WHERE type = 'table'"
        tables = {row[0] for row in self._connection.execute(query)}
        return int(version), tables

    def _check_is_leaderboard(self, version: int, tables: set[str]) -> None:
        empty = version == 0 and not tables
        if not empty and (version != SCHEMA_VERSION or not set(_TABLES) <= tables):
            raise LeaderboardError(
                f"{self.path} is not a drivelab leaderboard of schema {SCHEMA_VERSION} "
                f"(user_version {version}, tables {sorted(tables)}); it was left untouched. "
                "Pass another --db"
            )

    def _open_schema(self) -> None:
        """Check the file (read-only) before changing anything; create the schema if empty."""
        connection = self._connection
        connection.execute("PRAGMA foreign_keys = ON")
        check = connection.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise sqlite3.DatabaseError(f"integrity check failed: {check}")
        connection.execute("BEGIN")  # one read snapshot: a concurrent creator may be committing
        try:
            state = self._schema_state()
        finally:
            connection.execute("COMMIT")
        self._check_is_leaderboard(*state)
        if connection.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("BEGIN IMMEDIATE")
        try:
            version, tables = self._schema_state()  # another process may have created it
            self._check_is_leaderboard(version, tables)
            if not tables:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        connection.execute(statement)
                connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise

    def submit(self, metadata: EntryMetadata, runs: Sequence[RunRecord]) -> int:
        """Store an entry with its runs and episodes in one transaction; return the entry id.

        If an entry with the same policy digest, protocol version and scenario exists, its
        metadata is updated and its runs and episodes are replaced.
        """
        if not runs or any(not run.episodes for run in runs):
            raise LeaderboardError("a submission needs at least one run with at least one episode")
        return int(self._write(lambda: self._submit_once(metadata, runs)))

    def _submit_once(self, metadata: EntryMetadata, runs: Sequence[RunRecord]) -> int:
        connection = self._connection
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
            "updated_at": now,
        }
        row = connection.execute(
            "SELECT id FROM entries WHERE policy_sha256 = ? AND protocol_version = ? "
            "AND env_id = ?",
            (metadata.policy_sha256, metadata.protocol_version, metadata.env_id),
        ).fetchone()
        if row is None:
            columns = ", ".join([*values, "created_at"])
            marks = ", ".join("?" * (len(values) + 1))
            cursor = connection.execute(
                f"INSERT INTO entries ({columns}) VALUES ({marks})", (*values.values(), now)
            )
            entry_id = int(cursor.lastrowid)
        else:
            entry_id = int(row[0])
            assignments = ", ".join(f"{name} = ?" for name in values)
            connection.execute(
                f"UPDATE entries SET {assignments} WHERE id = ?", (*values.values(), entry_id)
            )
            connection.execute("DELETE FROM runs WHERE entry_id = ?", (entry_id,))  # cascades
        for run_index, run in enumerate(runs):
            self._insert_run(entry_id, run_index, run)
        return entry_id

    def _insert_run(self, entry_id: int, run_index: int, run: RunRecord) -> None:
        cursor = self._connection.execute(
            "INSERT INTO runs (entry_id, run_index, policy_sha256, policy_label, training_seed) "
            "VALUES (?, ?, ?, ?, ?)",
            (entry_id, run_index, run.policy_sha256, run.policy_label,
             _sql_value(run.training_seed)),  # fmt: skip
        )
        run_id = int(cursor.lastrowid)
        columns = ["run_id", "episode_index", *_EPISODE_COLUMNS[1:], "failed"]
        rows = [
            (run_id, *(_sql_value(getattr(e, name)) for name in _EPISODE_COLUMNS), bool(e.failed))
            for e in run.episodes
        ]
        self._connection.executemany(
            f"INSERT INTO episodes ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
            rows,
        )

    def remove_superseded(self, env_id: str, agent_names: Sequence[str]) -> int:
        """Keep only the newest entry of each agent name (per submitter and protocol) on a scenario.

        For a benchmark that owns its database and re-evaluates an agent whose policies changed
        (new weights, new digest, so ``submit`` made a new entry). Returns how many entries went.
        """

        def remove() -> int:
            marks = ", ".join("?" * len(agent_names))
            rows = self._connection.execute(
                f"SELECT id, agent_name, submitter, protocol_version FROM entries WHERE env_id = ? "
                f"AND agent_name IN ({marks}) ORDER BY updated_at DESC, id DESC",
                (env_id, *agent_names),
            ).fetchall()
            newest: set[tuple[str, str, str]] = set()
            stale = []
            for entry_id, *key in rows:
                if tuple(key) in newest:
                    stale.append(entry_id)
                newest.add(tuple(key))
            self._connection.executemany("DELETE FROM entries WHERE id = ?", [(i,) for i in stale])  # cascades
            return len(stale)

        return self._write(remove) if agent_names else 0

    def row_counts(self) -> dict[str, int]:
        """Number of rows in each table."""
        return {
            table: int(self._connection.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
            for table in _TABLES
        }

    def entries(
        self, env_id: str | None = None, protocol_version: str | None = None
    ) -> list[StoredEntry]:
        """Every entry (optionally of one scenario and protocol), with runs and episodes."""
        query = (
            "SELECT * FROM entries WHERE (? IS NULL OR env_id = ?) "
            "AND (? IS NULL OR protocol_version = ?) ORDER BY id"
        )
        self._connection.row_factory = sqlite3.Row
        try:
            self._connection.execute("BEGIN")  # one consistent snapshot for all reads
            rows = self._connection.execute(
                query, (env_id, env_id, protocol_version, protocol_version)
            ).fetchall()
            result = [self._read_entry(row) for row in rows]
            self._connection.execute("COMMIT")
        except sqlite3.Error as error:
            if self._connection.in_transaction:
                self._connection.execute("ROLLBACK")
            raise LeaderboardError(f"could not read {self.path}: {error}") from error
        finally:
            self._connection.row_factory = None
        return result

    def _read_entry(self, row: sqlite3.Row) -> StoredEntry:
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
        )
        runs = []
        for run in self._connection.execute(
            "SELECT * FROM runs WHERE entry_id = ? ORDER BY run_index", (row["id"],)
        ).fetchall():
            episodes = self._connection.execute(
                f"SELECT {', '.join(['episode_index', *_EPISODE_COLUMNS[1:]])} FROM episodes "
                "WHERE run_id = ? ORDER BY episode_index",
                (run["id"],),
            ).fetchall()
            runs.append(
                RunRecord(
                    policy_sha256=run["policy_sha256"],
                    policy_label=run["policy_label"],
                    training_seed=run["training_seed"],
                    episodes=tuple(_episode_from_row(tuple(e)) for e in episodes),
                )
            )
        return StoredEntry(row["id"], metadata, row["created_at"], row["updated_at"], tuple(runs))


def _episode_from_row(values: tuple[Any, ...]) -> EpisodeRecord:
    record = dict(zip(_EPISODE_COLUMNS, values))
    for name, value in record.items():  # SQLite stores NaN as NULL
        if value is None and name != "video_path":
            record[name] = math.nan
    record["crashed"] = bool(record["crashed"])
    record["success"] = bool(record["success"])
    return EpisodeRecord(**record)


def _is_corruption(error: sqlite3.OperationalError) -> bool:
    text = str(error).lower()
    return "malformed" in text or "not a database" in text or "corrupt" in text
