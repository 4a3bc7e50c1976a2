"""The leaderboard behaves the same on an SQLite file and on a real PostgreSQL server: round
trips, identity and replacement, partial entries, atomic failure, read-only opening, refusing a
database that is not a board, and migration of a schema-1 board.

Each test runs once per database (``board_db``: a file path, or a fresh database on the
session's own server; see conftest.py). SQLite-only details (file headers, WAL side files,
corrupt files) are in tests/benchmarks/test_leaderboard.py.
"""

from __future__ import annotations

import contextlib
import math
import os
import sqlite3

import pytest
from board_samples import ENV_ID, V1_TABLES, make_episodes, make_metadata, run

from drivelab.benchmarks.leaderboard.database import is_url
from drivelab.benchmarks.leaderboard.postgres import VERSION_TABLE, postgres_ddl
from drivelab.benchmarks.leaderboard.store import (
    SCHEMA_VERSION,
    Leaderboard,
    LeaderboardError,
    RunRecord,
    check_board_path,
    hash_config,
)


@contextlib.contextmanager
def raw(db: str):
    """Run SQL on the board's database behind the store's back: ``execute(sql, params)`` with ``?``."""
    if is_url(db):
        import psycopg

        connection = psycopg.connect(db, autocommit=True)

        def execute(sql, params=()):
            return connection.execute(sql.replace("?", "%s"), params)
    else:
        connection = sqlite3.connect(db, isolation_level=None)
        execute = connection.execute
    try:
        yield execute
    finally:
        connection.close()


def tables_of(db: str) -> set[str]:
    """The tables in the board's database (none for a missing SQLite file)."""
    if not is_url(db):
        if not os.path.exists(db):
            return set()
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as connection:
            return {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    with raw(db) as execute:
        return {row[0] for row in execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")}


def test_submissions_round_trip_and_replace_by_identity(board_db):
    episodes = make_episodes(5)
    with Leaderboard(board_db) as board:
        first = board.submit(make_metadata(), [RunRecord("a" * 64, "p.safetensors", episodes, 7)])
        assert first.previous is None and board.row_counts() == {"entries": 1, "runs": 1, "episodes": 5}
        (entry,) = board.entries()
        assert entry.id == first.entry_id and entry.metadata == make_metadata()
        assert entry.metadata.config_hash == hash_config({"n_steps": 128, "learning_rate": 3e-4})
        assert entry.metadata.training_steps == 5_000_000_000  # 64-bit integers in both
        (stored,) = entry.runs
        assert (stored.policy_label, stored.training_seed) == ("p.safetensors", 7)
        assert math.isnan(stored.episodes[1].max_abs_jerk)  # NaN stored as NULL, read back as nan
        assert stored.episodes[0] == episodes[0] and stored.episodes[2:] == tuple(episodes[2:])

        second = board.submit(make_metadata(algorithm="ppo-v2"), [run(3, offset=9.0), run(2, sha="b" * 64)])
        assert second.entry_id == first.entry_id and second.updated
        assert second.previous.num_episodes == 5 and second.previous.metadata.algorithm == "ppo"
        assert board.row_counts() == {"entries": 1, "runs": 2, "episodes": 5}
        for change in ({"env_id": "drivelab/merge-v0"}, {"protocol_version": "drivelab-eval-v2"},
                       {"backend": "envpool"}, {"agent_name": "renamed"}, {"submitter": "mallory"}):  # fmt: skip
            assert board.submit(make_metadata(**change), [run(1)]).previous is None
        assert board.row_counts() == {"entries": 6, "runs": 7, "episodes": 10}
        assert [e.metadata.env_id for e in board.entries(env_id="drivelab/merge-v0")] == ["drivelab/merge-v0"]
        assert len(board.entries(env_id=ENV_ID, protocol_version="drivelab-eval-v1")) == 4
        (original,) = [e for e in board.entries() if e.id == first.entry_id]
        assert original.metadata.algorithm == "ppo-v2" and original.runs[0].episodes[0].episode_return == 9.0


def test_partial_entries_and_failed_submissions(board_db):
    with Leaderboard(board_db) as board:
        board.submit(make_metadata(), [run(100)])
        board.submit(make_metadata(agent_name="short"), [run(5)])
        board.submit(make_metadata(agent_name="unset", protocol_episodes=None), [run(5)])  # the protocol's 100
        assert {e.metadata.agent_name: e.partial for e in board.entries()} == {
            "ppo-cnn": False, "short": True, "unset": True}
        before = board.entries()
        duplicate_index = make_episodes(2) + make_episodes(1)  # breaks UNIQUE (run, episode index)
        for name in ("ppo-cnn", "other"):  # a replacement and a new entry: nothing of either stays
            with pytest.raises(LeaderboardError, match="(?i)unique"):
                board.submit(make_metadata(agent_name=name), [RunRecord("c" * 64, "p", duplicate_index)])
        assert board.entries() == before
        assert board.row_counts() == {"entries": 3, "runs": 3, "episodes": 110}
        with pytest.raises(LeaderboardError, match="at least one"):
            board.submit(make_metadata(), [])


def test_reading_never_writes_and_a_missing_board_is_not_created(board_db):
    check_board_path(board_db)  # a new board may go there; nothing is created by checking
    with pytest.raises(LeaderboardError, match="no leaderboard"):
        Leaderboard(board_db, readonly=True)
    with pytest.raises(LeaderboardError, match="no leaderboard"):
        Leaderboard(board_db, create=False)
    assert tables_of(board_db) == set()
    with Leaderboard(board_db) as board:
        assert board.schema_version == SCHEMA_VERSION
        board.submit(make_metadata(), [run(5)])
    tables = tables_of(board_db)
    with Leaderboard(board_db, readonly=True) as board:
        (entry,) = board.entries()
        assert entry.num_episodes == 5 and board.row_counts()["episodes"] == 5
        with pytest.raises(LeaderboardError, match="read-only"):
            board.submit(make_metadata(agent_name="x"), [run(1)])
    check_board_path(board_db)
    assert tables_of(board_db) == tables
    with Leaderboard(board_db) as board:
        assert board.row_counts() == {"entries": 1, "runs": 1, "episodes": 5}


def test_a_database_that_is_not_a_board_is_refused_untouched(board_db):
    with raw(board_db) as execute:
        execute("CREATE TABLE photos (id INTEGER, name TEXT)")
        execute("INSERT INTO photos VALUES (1, 'beach')")
    for readonly in (False, True):
        with pytest.raises(LeaderboardError, match="not a drivelab leaderboard.*untouched"):
            Leaderboard(board_db, readonly=readonly)
    with pytest.raises(LeaderboardError, match="not a drivelab leaderboard"):
        check_board_path(board_db)
    assert tables_of(board_db) == {"photos"}
    with raw(board_db) as execute:
        assert list(execute("SELECT * FROM photos")) == [(1, "beach")]


# --- Migration of a schema-1 board ----------------------------------------------------------

_V1_SCHEMA = V1_TABLES


def _v1_board(db: str, rows) -> None:
    """A board as schema 1 wrote it, ids given in order: (sha, submitter, name, updated_at, episodes)."""
    with raw(db) as execute:
        execute("BEGIN")
        for statement in _V1_SCHEMA.split(";"):
            execute(postgres_ddl(statement) if is_url(db) else statement)
        if is_url(db):  # where PostgreSQL boards keep their version
            execute(f"CREATE TABLE {VERSION_TABLE} (version INTEGER NOT NULL)")
            execute(f"INSERT INTO {VERSION_TABLE} VALUES (1)")
        else:
            execute("PRAGMA user_version = 1")
        for sha, submitter, name, updated_at, count in rows:
            entry_id = execute(
                "INSERT INTO entries (env_id, protocol_version, policy_sha256, submitter, agent_name, algorithm, "
                "backend, config_hash, config_json, package_versions_json, git_commit, training_steps, "
                "training_wall_s, hardware, created_at, updated_at) VALUES (?, 'drivelab-eval-v1', ?, ?, ?, "
                "'ppo', 'highway-env', 'h', '{}', '{}', 'abc', 1000, 12.5, 'cpu', '2026-11-01T00:00:00+00:00', ?) "
                "RETURNING id", (ENV_ID, sha, submitter, name, updated_at)).fetchone()[0]  # fmt: skip
            run_id = execute("INSERT INTO runs (entry_id, run_index, policy_sha256, policy_label, training_seed) "
                             "VALUES (?, 0, ?, 'p', 3) RETURNING id", (entry_id, sha)).fetchone()[0]  # fmt: skip
            for i in range(count):
                execute(
                    "INSERT INTO episodes (run_id, episode_index, seed, episode_return, length, crashed, success, "
                    "mean_speed, distance_m, lane_changes, right_lane_share, on_road_share, max_abs_jerk, failed) "
                    "VALUES (?, ?, ?, ?, 10, 0, 1, 20.0, 200.0, 1, 0.5, 1.0, NULL, 0)",
                    (run_id, i, 10_000_000 + i, float(entry_id * 10 + i)),
                )
        execute("COMMIT")


def _schema_version(db: str) -> int:
    with raw(db) as execute:
        query = f"SELECT version FROM {VERSION_TABLE}" if is_url(db) else "PRAGMA user_version"
        return execute(query).fetchone()[0]


def test_a_schema_1_board_is_read_unchanged_and_migrated_by_the_first_writer(board_db):
    # Entries 1 and 3 share an identity (alice/ppo re-submitted with new weights under schema 1).
    _v1_board(board_db, [("a" * 64, "alice", "ppo", "2026-11-01T00:00:00+00:00", 100),
                         ("b" * 64, "bob", "idm", "2026-11-02T00:00:00+00:00", 20),
                         ("c" * 64, "alice", "ppo", "2026-11-03T00:00:00+00:00", 100)])  # fmt: skip
    with Leaderboard(board_db, readonly=True) as board:
        assert board.schema_version == 1
        before = board.entries()
    assert _schema_version(board_db) == 1
    assert [(e.id, e.metadata.agent_name, e.partial) for e in before] == [
        (1, "ppo", False), (2, "idm", True), (3, "ppo", False)]
    with Leaderboard(board_db) as board:  # a writer migrates in place
        assert board.schema_version == SCHEMA_VERSION
        after = board.entries()
        assert board.row_counts() == {"entries": 3, "runs": 3, "episodes": 220}
        # Nothing dropped: the older of the two alice/ppo entries keeps its data under a new name.
        assert [(e.id, e.metadata.agent_name) for e in after] == [(1, "ppo (entry 1)"), (2, "idm"), (3, "ppo")]
        assert [e.runs for e in after] == [e.runs for e in before]
        assert [e.metadata.protocol_episodes for e in after] == [100, 100, 100]
        # The identity key is in force: alice/ppo now updates entry 3.
        outcome = board.submit(make_metadata(sha="d" * 64, agent_name="ppo"), [run(2, sha="d" * 64)])
        assert outcome.entry_id == 3 and outcome.previous.metadata.policy_sha256 == "c" * 64
        assert board.row_counts() == {"entries": 3, "runs": 3, "episodes": 122}
        # ... and the old key is gone: alice's new agent may reuse entry 3's old weights.
        assert board.submit(make_metadata(sha="c" * 64, agent_name="other"), [run(1, sha="c" * 64)]).previous is None
    assert _schema_version(board_db) == SCHEMA_VERSION
    with Leaderboard(board_db) as board:  # opening a migrated board again changes nothing
        assert board.row_counts() == {"entries": 4, "runs": 4, "episodes": 123}


def test_a_read_only_postgresql_session_is_refused_writes_by_the_server(postgres_server):
    import psycopg

    url = postgres_server.create_database()
    Leaderboard(url).close()
    with Leaderboard(url, readonly=True) as board:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            board._db.execute("CREATE TABLE sneaky (x INTEGER)")  # even past the store's own check
