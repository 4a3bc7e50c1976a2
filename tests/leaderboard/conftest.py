"""Fixtures for the leaderboard tests: a real PostgreSQL server (started once per session) and
``board_db``, which runs a test once on an SQLite file and once on a fresh PostgreSQL database."""

from __future__ import annotations

import pytest
from pg_server import running_server


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL server of our own on 127.0.0.1 (skips if PostgreSQL or psycopg is absent)."""
    pytest.importorskip("psycopg", reason="psycopg 3 is not installed: pip install 'drivelab[postgres]'")
    try:
        with running_server() as server:
            yield server
    except LookupError as error:
        pytest.skip(str(error))


@pytest.fixture(params=["sqlite", "postgresql"])
def board_db(request, tmp_path) -> str:
    """Where a new board goes: a file path, or the URL of a new, empty PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "board.db")
    return request.getfixturevalue("postgres_server").create_database()
