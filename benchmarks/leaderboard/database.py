"""Where a leaderboard lives, and one connection to it: an SQLite file or a PostgreSQL database.

The store (``store.py``) is written once against ``Database``; what differs between the two
databases lives here and in ``postgres.py``: placeholders (``?`` here, ``%s`` in psycopg),
column types, how a transaction begins (SQLite's ``BEGIN IMMEDIATE`` vs PostgreSQL's
``SERIALIZABLE``), which errors mean "try again" (a busy file vs a serialization failure),
where the schema version is kept (SQLite's ``PRAGMA user_version`` vs a one-row table) and
how a new board is created without anyone seeing it half-made (a file linked into place vs
DDL in one transaction under an advisory lock).

A board is named by ``--db``: a file path (SQLite, the default) or a
``postgresql://user[:password]@host[:port]/dbname`` URL. psycopg is imported only for a URL.
A password in a URL is never printed: ``describe`` masks it. ``POSTGRES_URL`` is the form to
show in help texts; ``parse_location`` turns a ``--db`` argument into what the store takes.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from drivelab.core.errors import DrivelabError, OutputPathError
from drivelab.core.files import check_writable, ensure_dir

T = TypeVar("T")
POSTGRES_SCHEMES = ("postgresql", "postgres")
POSTGRES_URL = "postgresql://user[:password]@host[:port]/dbname"
BUSY_TIMEOUT_S = 60.0  # how long one statement waits for another writer
RETRIES = 10  # whole-transaction retries after contention (busy file, serialization failure)
_SQLITE_MAGIC = b"SQLite format 3\x00"
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_JITTER = random.Random()  # private: retry jitter must not consume the caller's global random state


class LeaderboardError(DrivelabError, RuntimeError):
    """The leaderboard cannot be opened, created or written."""


class CorruptDatabaseError(LeaderboardError):
    """The file is not a (readable) drivelab leaderboard; it is left untouched."""


def is_url(db: str | os.PathLike) -> bool:
    """Whether ``db`` names a database server (``scheme://...``) rather than a file."""
    return isinstance(db, str) and bool(_URL.match(db))


def parse_location(value: str) -> str | Path:
    """A ``--db`` value as the store takes it: a URL stays a string (a Path would fold its ``//``),
    anything else is a file path. For argparse's ``type=``."""
    return value if is_url(value) else Path(value)


def mask_password(url: str) -> str:
    """``url`` with any password (in the user part or a ``password=`` query) replaced by ``***``."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.partition(':')[0]}:***@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if k == "password" else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def describe(db: str | os.PathLike) -> str:
    """How a board is named in messages: a path as given, a URL without its password."""
    return mask_password(db) if is_url(db) else str(db)


def missing_board(location: str) -> LeaderboardError:
    """The error for a board that does not exist and may not be created here."""
    return LeaderboardError(
        f"no leaderboard at {location}; submit one with `drivelab eval --submit` or pass --db"
    )


class Database:
    """One connection to a board's database, in autocommit mode; transactions are explicit.

    Rows come back as dicts (column -> value) from either database. ``execute`` takes SQL with
    ``?`` placeholders, whatever the database.
    """

    kind = "sqlite"
    errors: tuple[type[BaseException], ...] = (sqlite3.Error,)  # what a failed statement raises

    def __init__(self, connection: Any, location: str, *, readonly: bool) -> None:
        self.connection = connection
        self.location = location  # for messages: a path, or a URL with its password masked
        self.readonly = readonly
        self.retries = 0  # transactions retried after contention, for the record

    # --- Dialect: what differs per database (overridden by PostgresDatabase) ----------------

    def sql(self, statement: str) -> str:
        """``statement`` in this database's placeholder style."""
        return statement

    def ddl(self, statement: str) -> str:
        """A ``CREATE`` statement written for SQLite, in this database's column types."""
        return statement

    def begin_statement(self, write: bool) -> str:
        """How a write (exclusive among writers) or a read (one snapshot) transaction begins."""
        return "BEGIN IMMEDIATE" if write else "BEGIN"

    def is_retryable(self, error: BaseException) -> bool:
        """Whether ``error`` is contention that a retry of the whole transaction can get past."""
        text = str(error).lower()
        return isinstance(error, sqlite3.OperationalError) and ("locked" in text or "busy" in text)

    @property
    def in_transaction(self) -> bool:
        """Whether a transaction is open on the connection."""
        return bool(self.connection.in_transaction)

    def schema_state(self) -> tuple[int, set[str]]:
        """The board's schema version (0 if none recorded) and the names of its tables."""
        version = self.connection.execute("PRAGMA user_version").fetchone()["user_version"]
        rows = self.connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return int(version), {row["name"] for row in rows}

    def set_schema_version(self, version: int) -> None:
        """Record the schema version (in the caller's transaction)."""
        self.connection.execute(f"PRAGMA user_version = {int(version)}")

    @contextlib.contextmanager
    def schema_lock(self) -> Iterator[None]:
        """A transaction that changes the schema, exclusive among writers and other schema changers.

        SQLite: ``BEGIN IMMEDIATE`` with foreign keys off around it, so rebuilding a table does not
        cascade (``PRAGMA foreign_keys`` is a no-op inside a transaction).
        """
        self.connection.execute("PRAGMA foreign_keys = OFF")
        try:
            with self.transaction(write=True):
                yield
        finally:
            self.connection.execute("PRAGMA foreign_keys = ON")

    def lock_entry(self, identity: Sequence[str]) -> None:
        """Make writers of the same entry take turns (first thing in a write transaction).

        SQLite: nothing to do, ``BEGIN IMMEDIATE`` already excludes every other writer.
        """

    def prepare_writer(self) -> None:
        """Once the board is known to be a drivelab board: make it ready for this writer.

        SQLite switches the file to WAL (readers go on while one process writes). Never done
        before that check, so a foreign file is left untouched, nor for a reader.
        """
        if not self.readonly and self.execute("PRAGMA journal_mode").fetchone()["journal_mode"] != "wal":
            self.execute("PRAGMA journal_mode = WAL")

    def open_error(self, error: BaseException) -> LeaderboardError:
        """The one-line error for a database error met while opening and checking the board."""
        if isinstance(error, sqlite3.Error) and is_corruption(error):
            return CorruptDatabaseError(
                f"{self.location} is a corrupt or unreadable database ({error}); it was left "
                "untouched. Move it away or pass another --db"
            )
        return LeaderboardError(f"cannot use leaderboard {self.location}: {error}")

    def close(self) -> None:
        """Close the connection."""
        self.connection.close()

    # --- Written once --------------------------------------------------------------------

    def execute(self, statement: str, params: Sequence[Any] = ()) -> Any:
        """Run one statement (``?`` placeholders); returns the cursor (rows as dicts)."""
        return self.connection.execute(self.sql(statement), tuple(params))

    def insert_many(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Insert rows with multi-row ``INSERT`` statements (within both databases' parameter limits).

        Not psycopg's ``executemany``: its pipeline logs a warning when a serialization failure
        aborts it, which a retried submission would print.
        """
        chunk = max(1, 900 // len(columns))  # parameters per statement: under any SQLite's limit (999 before 3.32)
        for first in range(0, len(rows), chunk):
            part = rows[first : first + chunk]
            marks = ", ".join([f"({', '.join('?' * len(columns))})"] * len(part))
            values = [value for row in part for value in row]
            self.execute(f"INSERT INTO {table} ({', '.join(columns)}) VALUES {marks}", values)

    def insert(self, table: str, values: dict[str, Any]) -> int:
        """Insert one row; returns its new ``id`` (``RETURNING``: SQLite >= 3.35 and PostgreSQL)."""
        columns = ", ".join(values)
        marks = ", ".join("?" * len(values))
        cursor = self.execute(f"INSERT INTO {table} ({columns}) VALUES ({marks}) RETURNING id", list(values.values()))
        return int(cursor.fetchone()["id"])

    @contextlib.contextmanager
    def transaction(self, write: bool) -> Iterator[None]:
        """One transaction: committed when the block ends, rolled back whole when it raises."""
        self.execute(self.begin_statement(write))
        try:
            yield
            self.execute("COMMIT")
        except BaseException:
            if self.in_transaction:
                self.execute("ROLLBACK")
            raise

    def retry(self, work: Callable[[], T]) -> T:
        """Run ``work()`` (one whole transaction); on contention retry it, a bounded number of times.

        The wait doubles each time, with jitter so that processes which collided do not collide
        again in step.
        """
        for attempt in range(RETRIES):
            try:
                return work()
            except self.errors as error:
                if not self.is_retryable(error) or attempt == RETRIES - 1:
                    raise
                self.retries += 1
                time.sleep(min(2.0, 0.02 * 2**attempt) * (0.5 + _JITTER.random()))
        raise AssertionError("unreachable")


def open_database(db: str | os.PathLike, *, readonly: bool, create: bool,
                  busy_timeout_s: float = BUSY_TIMEOUT_S,
                  create_schema: Callable[[Database], None]) -> Database:  # fmt: skip
    """Connect to the board named by ``db``, creating it (``create_schema``) when missing and allowed.

    Raises:
        LeaderboardError: the board is missing (and may not be created here), cannot be created
            or reached; one line that says what to do.
        CorruptDatabaseError: the file is not an SQLite database.
    """
    _check_not_folded(db)
    if is_url(db):
        return _server(str(db)).open_postgres(str(db), readonly=readonly, create=create,
                                              busy_timeout_s=busy_timeout_s, create_schema=create_schema)  # fmt: skip
    return _open_sqlite(Path(db), readonly=readonly, create=create, busy_timeout_s=busy_timeout_s,
                        create_schema=create_schema)  # fmt: skip


def board_exists(db: str | os.PathLike) -> bool:
    """Whether ``db`` holds a board (something to check read-only); if not, that one can be made there.

    Changes nothing. Raises ``LeaderboardError`` (or ``OutputPathError``) if neither holds.
    """
    _check_not_folded(db)
    if is_url(db):
        return _server(str(db)).board_exists(str(db))
    path = Path(db)
    check_sqlite_file(path)
    if path.exists():
        return True
    check_writable(path)
    return False


def _check_not_folded(db: str | os.PathLike) -> None:
    """Refuse a URL that became a ``Path`` (``postgresql:/user@host/db``): it would silently make
    an SQLite file in a folder called ``postgresql:``."""
    if not isinstance(db, str) and re.match(rf"^({'|'.join(POSTGRES_SCHEMES)}):/", str(db)):
        raise LeaderboardError(
            f"--db {describe(str(db).replace(':/', '://', 1))} is a URL but reached the store as a file path; "
            "pass it as a string (argparse: type=parse_location)"
        )


def _server(url: str) -> Any:
    """The module serving ``url``'s scheme (imported now: psycopg only for a PostgreSQL URL)."""
    scheme = url.partition("://")[0].lower()
    if scheme not in POSTGRES_SCHEMES:
        raise LeaderboardError(
            f"unsupported --db URL scheme {scheme!r} in {describe(url)}; pass a file path (SQLite) or {POSTGRES_URL}"
        )
    from drivelab.benchmarks.leaderboard import postgres

    return postgres


# --- SQLite ---------------------------------------------------------------------------------


def _dict_row(cursor: sqlite3.Cursor, values: tuple[Any, ...]) -> dict[str, Any]:
    return {column[0]: value for column, value in zip(cursor.description, values)}


def is_corruption(error: sqlite3.Error) -> bool:
    """Whether SQLite's ``error`` says the file is not a (sound) database."""
    text = str(error).lower()
    return not isinstance(error, sqlite3.OperationalError) or any(
        word in text for word in ("malformed", "not a database", "corrupt")
    )


def check_sqlite_file(path: Path) -> None:
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


def _connect_sqlite(target: Path, *, readonly: bool, busy_timeout_s: float) -> Database:
    if readonly:  # mode=ro: SQLite itself refuses every write, the journal-mode switch included
        uri = f"{target.resolve().as_uri()}?mode=ro"
        connection = sqlite3.connect(uri, uri=True, timeout=busy_timeout_s, isolation_level=None)
    else:
        connection = sqlite3.connect(target, timeout=busy_timeout_s, isolation_level=None)
    connection.row_factory = _dict_row
    connection.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
    return Database(connection, str(target), readonly=readonly)


def _create_sqlite(path: Path, busy_timeout_s: float, create_schema: Callable[[Database], None]) -> None:
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
        database = _connect_sqlite(staging, readonly=False, busy_timeout_s=busy_timeout_s)
        try:
            database.execute("PRAGMA journal_mode = WAL")  # stored in the file's header
            with database.schema_lock():
                create_schema(database)
        finally:
            database.close()
        try:
            os.link(staging, path)
        except FileExistsError:
            pass  # another process created it first: use theirs
    except (OSError, sqlite3.Error) as error:
        raise LeaderboardError(f"cannot create {path}: {error}") from error
    finally:
        for leftover in (staging, *(staging.with_name(staging.name + s) for s in ("-wal", "-shm"))):
            leftover.unlink(missing_ok=True)


def _open_sqlite(path: Path, *, readonly: bool, create: bool, busy_timeout_s: float,
                 create_schema: Callable[[Database], None]) -> Database:  # fmt: skip
    check_sqlite_file(path)
    if not path.exists():
        if readonly or not create:
            raise missing_board(str(path))
        _create_sqlite(path, busy_timeout_s, create_schema)
        check_sqlite_file(path)
    try:
        database = _connect_sqlite(path, readonly=readonly, busy_timeout_s=busy_timeout_s)
    except sqlite3.Error as error:
        raise LeaderboardError(f"cannot open leaderboard {path}: {error}") from error
    try:
        database.execute("PRAGMA foreign_keys = ON")
        check = database.execute("PRAGMA quick_check").fetchone()["quick_check"]
        if check != "ok":
            raise sqlite3.DatabaseError(f"integrity check failed: {check}")
    except sqlite3.Error as error:
        database.close()
        raise database.open_error(error) from error
    return database
