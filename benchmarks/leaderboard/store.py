"""The leaderboard store: one SQLite file with tables ``entries``, ``runs`` and ``episodes``.

An *entry* is one agent on one scenario under one protocol version and backend, owned by its
submitter; it holds one or more *runs* (training runs, e.g. training seeds), each with its
evaluation *episodes*.

Identity: an entry is identified by ``(submitter, agent_name, env_id, protocol_version,
backend)``, never by the policy's digest alone. Submitting again under the same identity
updates that entry (its runs and episodes are replaced) and ``submit`` returns the entry it
replaced, so the caller can say what changed; a different submitter or agent name always
gets its own entry. An entry with fewer episodes per run than its protocol asks for is kept
but marked *partial* (``StoredEntry.partial``); rankings place it below every complete entry.

Writes are safe under concurrency: the database runs in WAL mode, every submission is one
``BEGIN IMMEDIATE`` transaction (so an entry is stored whole or not at all), and a writer that
finds the database busy waits (``busy_timeout``) and then retries. A new board is built in a
temporary file and linked into place, so no process ever sees a half-created board.

Reading never writes: ``Leaderboard(path, readonly=True)`` opens the file with SQLite's
``mode=ro`` (no schema creation, no migration, no journal-mode switch). A file that is not a
drivelab leaderboard (an empty file included) is refused and never overwritten. A board of the
previous schema (1) is migrated in place by the first writer that opens it.

Example:
    >>> with Leaderboard("runs/leaderboard.db") as board:          # doctest: +SKIP
    ...     outcome = board.submit(metadata, [RunRecord(sha256, "policy.safetensors", episodes)])
    >>> outcome.entry_id, outcome.previous is None                  # doctest: +SKIP
    (1, True)
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import numpy as np

from drivelab.agents.evaluation import EpisodeRecord
from drivelab.agents.protocol import ProtocolError, load_protocol
from drivelab.benchmarks.leaderboard.schema import (
    IDENTITY,
    SCHEMA_VERSION,
    TABLES,
    create_schema,
    migrate_from_v1,
)
from drivelab.core.errors import DrivelabError, OutputPathError
from drivelab.core.files import check_writable, ensure_dir, sha256_bytes

DEFAULT_DB_PATH = Path("runs/leaderboard.db")
T = TypeVar("T")
_SQLITE_MAGIC = b"SQLite format 3\x00"
_BUSY_TIMEOUT_S = 60.0  # how long one statement waits for another writer
_RETRIES = 8  # whole-transaction retries after the busy timeout ran out

_EPISODE_COLUMNS = tuple(f.name for f in fields(EpisodeRecord))  # index, seed, ... video_path


class LeaderboardError(DrivelabError, RuntimeError):
    """The leaderboard file cannot be opened, created or written."""


class CorruptDatabaseError(LeaderboardError):
    """The file is not a (readable) drivelab leaderboard; it is left untouched."""


def hash_config(config: Mapping[str, Any]) -> str:
    """SHA-256 of a config's canonical JSON (sorted keys), the entry's config fingerprint."""
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return sha256_bytes(canonical.encode())


def protocol_episodes(version: str) -> int | None:
    """Episodes per run the protocol ``version`` asks for; None for a version not shipped here."""
    try:
        return load_protocol(version).episodes
    except ProtocolError:
        return None


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
    protocol_episodes: int | None = None  # episodes per run the protocol asks for; None: its default

    @property
    def config_hash(self) -> str:
        """``hash_config(self.config)``."""
        return hash_config(self.config)

    @property
    def identity(self) -> tuple[str, str, str, str, str]:
        """``(submitter, agent_name, env_id, protocol_version, backend)``: what names an entry."""
        return (self.submitter, self.agent_name, self.env_id, self.protocol_version, self.backend)


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

    @property
    def partial(self) -> bool:
        """Whether some run has fewer episodes than the entry's protocol asks for."""
        wanted = self.metadata.protocol_episodes
        return wanted is not None and any(len(run.episodes) < wanted for run in self.runs)


@dataclass(frozen=True)
class Submission:
    """What ``Leaderboard.submit`` did: the entry's id and, for an update, what it replaced."""

    entry_id: int
    previous: StoredEntry | None  # the entry before this submission replaced it; None if new

    @property
    def updated(self) -> bool:
        """Whether an existing entry (same identity) was replaced."""
        return self.previous is not None


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


def _is_corruption(error: sqlite3.OperationalError) -> bool:
    text = str(error).lower()
    return "malformed" in text or "not a database" in text or "corrupt" in text


def _check_sqlite_file(path: Path) -> None:
    """Refuse an existing file that is not an SQLite database, before SQLite touches it."""
    if path.is_dir():
        raise LeaderboardError(f"leaderboard path {path} is a directory; pass a file with --db")
    if not path.exists():
        return
    with open(path, "rb") as handle:
        magic = handle.read(len(_SQLITE_MAGIC))
    if magic != _SQLITE_MAGIC:
        what = "an empty file" if not magic else "not an SQLite database (corrupt or another file)"
        raise CorruptDatabaseError(
            f"{path} is {what}, not a drivelab leaderboard; it was left untouched. "
            "Move it away or pass another --db"
        )


def _create_board(path: Path, busy_timeout_s: float) -> None:
    """Create an empty board at ``path`` whole: built in a temporary file, then linked into place.

    A hard link never replaces a file, so of two processes creating the same board at once one
    wins and the other opens the winner's board; nobody ever sees a half-created (empty) file.
    """
    try:
        ensure_dir(path.parent)
    except OutputPathError as error:
        raise LeaderboardError(f"cannot create {path.parent}: {error}; pass another --db") from error
    # SQLite creates the file itself (mode 0644 less the umask); the name is unique to this call.
    staging = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.new")
    try:
        connection = sqlite3.connect(staging, timeout=busy_timeout_s, isolation_level=None)
        try:
            connection.execute("PRAGMA journal_mode = WAL")  # stored in the file's header
            connection.execute("BEGIN IMMEDIATE")
            create_schema(connection)
            connection.execute("COMMIT")
        finally:
            connection.close()
        try:
            os.link(staging, path)
        except FileExistsError:
            pass  # another process created it first: use theirs
    except (OSError, sqlite3.Error) as error:
        raise LeaderboardError(f"cannot create {path}: {error}") from error
    finally:
        for leftover in (staging, *(staging.with_name(staging.name + s) for s in ("-wal", "-shm"))):
            leftover.unlink(missing_ok=True)


class Leaderboard:
    """A leaderboard SQLite file; use as a context manager or call ``close()``.

    Args:
        path: the database file (default ``runs/leaderboard.db``).
        create: create the board (and its folder) if missing; else a missing file is an error.
        readonly: open for reading only (SQLite ``mode=ro``): nothing is created, migrated or
            switched; ``submit`` fails. Implies ``create=False``.
        busy_timeout_s: how long a statement waits while another process writes.

    Raises:
        LeaderboardError: the file is missing (``create=False``), cannot be created or opened,
            or is a board of an unknown schema.
        CorruptDatabaseError: the file is not a readable SQLite database (empty included).
    """

    def __init__(
        self,
        path: str | Path = DEFAULT_DB_PATH,
        *,
        create: bool = True,
        readonly: bool = False,
        busy_timeout_s: float = _BUSY_TIMEOUT_S,
    ) -> None:
        self.path = Path(path)
        self.readonly = readonly
        _check_sqlite_file(self.path)
        if not self.path.exists():
            if readonly or not create:
                raise LeaderboardError(
                    f"no leaderboard at {self.path}; submit one with `drivelab eval --submit` "
                    "or pass --db"
                )
            _create_board(self.path, busy_timeout_s)
            _check_sqlite_file(self.path)
        try:
            if readonly:
                uri = f"{self.path.resolve().as_uri()}?mode=ro"
                self._connection = sqlite3.connect(
                    uri, uri=True, timeout=busy_timeout_s, isolation_level=None
                )
            else:
                self._connection = sqlite3.connect(
                    self.path, timeout=busy_timeout_s, isolation_level=None  # we issue BEGIN ourselves
                )
        except sqlite3.Error as error:
            raise LeaderboardError(f"cannot open leaderboard {self.path}: {error}") from error
        self._connection.row_factory = sqlite3.Row
        try:
            self._connection.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            self.schema_version = self._retry(self._open_schema)
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

    def _retry(self, work: Callable[[], T]) -> T:
        """Run ``work()``; when the database stays busy past the timeout, retry with backoff."""
        for attempt in range(_RETRIES):
            try:
                return work()
            except sqlite3.OperationalError as error:
                if not _is_busy(error) or attempt == _RETRIES - 1:
                    raise
                time.sleep(0.05 * 2**attempt)
        raise AssertionError("unreachable")

    @contextlib.contextmanager
    def _transaction(self, begin: str = "BEGIN IMMEDIATE") -> Any:
        self._connection.execute(begin)
        try:
            yield
            self._connection.execute("COMMIT")
        except BaseException:
            if self._connection.in_transaction:
                self._connection.execute("ROLLBACK")
            raise

    def _write(self, work: Callable[[], T]) -> T:
        """Run ``work()`` in one ``BEGIN IMMEDIATE`` transaction (retried while the file is busy).

        Raises:
            LeaderboardError: the write failed; the transaction was rolled back whole.
        """
        if self.readonly:
            raise LeaderboardError(f"{self.path} was opened read-only; it cannot be written")

        def transaction() -> T:
            with self._transaction():
                return work()

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
        if version not in (1, SCHEMA_VERSION) or not set(TABLES) <= tables:
            raise LeaderboardError(
                f"{self.path} is not a drivelab leaderboard of schema {SCHEMA_VERSION} "
                f"(user_version {version}, tables {sorted(tables)}); it was left untouched. "
                "Pass another --db"
            )

    def _open_schema(self) -> int:
        """Check the file (read-only) before changing anything; migrate an older schema.

        Returns the schema version of the file as it is now.
        """
        connection = self._connection
        connection.execute("PRAGMA foreign_keys = ON")
        check = connection.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise sqlite3.DatabaseError(f"integrity check failed: {check}")
        with self._transaction("BEGIN"):  # one read snapshot
            version, tables = self._schema_state()
        self._check_is_leaderboard(version, tables)
        if self.readonly or version == SCHEMA_VERSION:
            if not self.readonly and connection.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                connection.execute("PRAGMA journal_mode = WAL")
            return version
        if connection.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA foreign_keys = OFF")  # dropping the old entries table must not cascade
        try:
            with self._transaction():
                version, tables = self._schema_state()  # another process may have migrated it
                self._check_is_leaderboard(version, tables)
                if version == 1:
                    migrate_from_v1(connection, protocol_episodes)
        finally:
            connection.execute("PRAGMA foreign_keys = ON")
        return SCHEMA_VERSION

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
            "protocol_episodes": _sql_value(metadata.protocol_episodes),
            "updated_at": now,
        }
        row = connection.execute(
            f"SELECT * FROM entries WHERE {' AND '.join(f'{c} = ?' for c in IDENTITY)}",
            metadata.identity,
        ).fetchone()
        previous = None
        if row is None:
            columns = ", ".join([*values, "created_at"])
            marks = ", ".join("?" * (len(values) + 1))
            cursor = connection.execute(
                f"INSERT INTO entries ({columns}) VALUES ({marks})", (*values.values(), now)
            )
            entry_id = int(cursor.lastrowid)
        else:
            previous = self._read_entry(row)
            entry_id = previous.id
            assignments = ", ".join(f"{name} = ?" for name in values)
            connection.execute(
                f"UPDATE entries SET {assignments} WHERE id = ?", (*values.values(), entry_id)
            )
            connection.execute("DELETE FROM runs WHERE entry_id = ?", (entry_id,))  # cascades
        for run_index, run in enumerate(runs):
            self._insert_run(entry_id, run_index, run)
        return Submission(entry_id, previous)

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

    def row_counts(self) -> dict[str, int]:
        """Number of rows in each table."""
        return {
            table: int(self._connection.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
            for table in TABLES
        }

    def entries(
        self, env_id: str | None = None, protocol_version: str | None = None
    ) -> list[StoredEntry]:
        """Every entry (optionally of one scenario and protocol), with runs and episodes."""
        query = (
            "SELECT * FROM entries WHERE (? IS NULL OR env_id = ?) "
            "AND (? IS NULL OR protocol_version = ?) ORDER BY id"
        )
        try:
            with self._transaction("BEGIN"):  # one consistent snapshot for all reads
                rows = self._connection.execute(
                    query, (env_id, env_id, protocol_version, protocol_version)
                ).fetchall()
                return [self._read_entry(row) for row in rows]
        except sqlite3.Error as error:
            raise LeaderboardError(f"could not read {self.path}: {error}") from error

    def _read_entry(self, row: sqlite3.Row) -> StoredEntry:
        if "protocol_episodes" in row.keys():
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


def check_board_path(path: str | Path) -> None:
    """Check, before any evaluation, that ``path`` can take a submission; changes nothing.

    An existing file must be a drivelab leaderboard (opened read-only to see); a missing one
    must be creatable.

    Raises:
        LeaderboardError: the file exists but is not a usable board.
        OutputPathError: the board could not be created there.
    """
    path = Path(path)
    _check_sqlite_file(path)
    if path.exists():
        Leaderboard(path, readonly=True).close()
    else:
        check_writable(path)


def _episode_from_row(values: tuple[Any, ...]) -> EpisodeRecord:
    record = dict(zip(_EPISODE_COLUMNS, values))
    for name, value in record.items():  # SQLite stores NaN as NULL
        if value is None and name != "video_path":
            record[name] = math.nan
    record["crashed"] = bool(record["crashed"])
    record["success"] = bool(record["success"])
    return EpisodeRecord(**record)
