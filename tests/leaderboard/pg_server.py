"""A real, throwaway PostgreSQL server for the leaderboard tests: ``initdb`` + ``pg_ctl`` from the
system's PostgreSQL (Debian's ``postgresql`` package) into a temporary folder, listening on
127.0.0.1 only, on a free port, with ``fsync`` off (nothing here must survive a crash).

PostgreSQL refuses to run as root; when the tests run as root the server runs as the
``postgres`` user (which the package creates), else ``nobody``, and its folder belongs to it.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

SUPERUSER = "drivelab"  # initdb -U: the role the tests connect as (trust authentication, loopback)


def find_bindir() -> Path | None:
    """The folder holding initdb and pg_ctl: ``pg_config --bindir``, PATH, or Debian's versioned folders."""
    candidates = []
    if shutil.which("pg_config"):
        result = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=False)
        candidates.append(Path(result.stdout.strip()))
    if shutil.which("initdb"):
        candidates.append(Path(shutil.which("initdb")).parent)
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    return None


def server_user() -> str | None:
    """Who runs the server: None for the current user, else an unprivileged one (we are root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise RuntimeError("running as root and neither a 'postgres' nor a 'nobody' user exists to run PostgreSQL")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PostgresServer:
    """One running server; ``url(dbname)`` names a database on it, ``create_database`` makes one."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.user = server_user()
        self.root = Path(tempfile.mkdtemp(prefix="drivelab-pg-"))
        self.data = self.root / "data"
        self.port = 0
        self._databases = 0
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)

    def _run(self, *command: str) -> subprocess.CompletedProcess:
        prefix = ["runuser", "-u", self.user, "--"] if self.user is not None else []
        return subprocess.run([*prefix, *command], capture_output=True, text=True, check=False, cwd=self.root)

    def _check(self, result: subprocess.CompletedProcess, what: str) -> None:
        if result.returncode != 0:
            log = (self.root / "server.log").read_text() if (self.root / "server.log").exists() else ""
            raise RuntimeError(f"{what} failed ({result.returncode}): {result.stdout}{result.stderr}{log[-2000:]}")

    def start(self) -> None:
        """initdb, then pg_ctl start on a free loopback port (retried on another port if taken)."""
        initdb = self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", SUPERUSER,
                           "-E", "UTF8", "--locale=C", "--no-sync")  # fmt: skip
        self._check(initdb, "initdb")
        for _ in range(3):
            self.port = _free_port()
            options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off "
                       "-c synchronous_commit=off -c full_page_writes=off")  # fmt: skip
            result = self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"),
                               "-o", options, "-w", "-t", "60", "start")  # fmt: skip
            if result.returncode == 0:
                return
        self._check(result, "pg_ctl start")

    def stop(self) -> None:
        """Stop the server at once and delete its folder."""
        with contextlib.suppress(OSError):
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, dbname: str = "postgres", user: str = SUPERUSER) -> str:
        """The URL of database ``dbname`` on this server."""
        return f"postgresql://{user}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, prefix: str = "board") -> str:
        """A new, empty database; returns its URL."""
        import psycopg

        self._databases += 1
        name = f"{prefix}_{os.getpid()}_{self._databases}"
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@contextlib.contextmanager
def running_server() -> Iterator[PostgresServer]:
    """A started server, stopped and deleted afterwards; raises ``LookupError`` if PostgreSQL is absent."""
    bindir = find_bindir()
    if bindir is None:
        raise LookupError("PostgreSQL server binaries (initdb, pg_ctl) not found; install Debian's "
                          "postgresql package (.ci/run does)")  # fmt: skip
    server = PostgresServer(bindir)
    try:
        server.start()
        yield server
    finally:
        server.stop()
