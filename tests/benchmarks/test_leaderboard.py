"""The SQLite leaderboard: round trips, entry identity, atomicity, corrupt files, read-only
opening, migration of a schema-1 board, concurrency."""

from __future__ import annotations

import math
import multiprocessing
import os
import sqlite3

import numpy as np
import pytest
from board_samples import ENV_ID, V1_TABLES, make_episodes, make_metadata

from drivelab.benchmarks.leaderboard.store import (
    SCHEMA_VERSION,
    CorruptDatabaseError,
    Leaderboard,
    LeaderboardError,
    RunRecord,
    hash_config,
)


def test_submission_round_trips(tmp_path):
    episodes = make_episodes(5)
    with Leaderboard(tmp_path / "sub" / "board.db") as board:
        entry_id = board.submit(make_metadata(), [RunRecord("a" * 64, "p.safetensors", episodes, 7)]).entry_id
        assert board.row_counts() == {"entries": 1, "runs": 1, "episodes": 5}
        (entry,) = board.entries()
    assert entry.id == entry_id
    assert entry.metadata == make_metadata()
    assert entry.metadata.config_hash == hash_config({"n_steps": 128, "learning_rate": 3e-4})
    (run,) = entry.runs
    assert (run.policy_label, run.training_seed) == ("p.safetensors", 7)
    assert math.isnan(run.episodes[1].max_abs_jerk)  # NaN survives as NULL -> nan
    assert run.episodes[0] == episodes[0] and run.episodes[2:] == tuple(episodes[2:])


def test_resubmission_under_the_same_identity_updates_the_entry_and_returns_the_old_one(tmp_path):
    with Leaderboard(tmp_path / "board.db") as board:
        first = board.submit(make_metadata(), [RunRecord("a" * 64, "p", make_episodes(4))])
        assert first.previous is None and not first.updated
        second = board.submit(
            make_metadata(algorithm="ppo-v2"),
            [RunRecord("a" * 64, "p", make_episodes(3, offset=9.0)), RunRecord("b" * 64, "q", make_episodes(2))],
        )
        assert first.entry_id == second.entry_id and second.updated
        assert second.previous.num_episodes == 4 and second.previous.metadata.algorithm == "ppo"
        assert board.row_counts() == {"entries": 1, "runs": 2, "episodes": 5}
        (entry,) = board.entries()
        assert entry.metadata.algorithm == "ppo-v2"
        assert entry.runs[0].episodes[0].episode_return == 9.0
        # Another scenario, protocol, backend, agent name or submitter is another entry, even
        # with the same policy digest: nobody replaces somebody else's entry.
        for change in ({"env_id": "drivelab/merge-v0"}, {"protocol_version": "drivelab-eval-v2"},
                       {"backend": "envpool"}, {"agent_name": "renamed"}, {"submitter": "mallory"}):  # fmt: skip
            outcome = board.submit(make_metadata(**change), [RunRecord("a" * 64, "p", make_episodes(1))])
            assert outcome.previous is None
        assert board.row_counts()["entries"] == 6
        assert [e.metadata.env_id for e in board.entries(env_id="drivelab/merge-v0")] == ["drivelab/merge-v0"]
        (original,) = [e for e in board.entries() if e.id == first.entry_id]
        assert original.num_episodes == 5 and original.metadata.submitter == "alice"


def test_new_weights_under_the_same_name_update_the_entry_and_others_stay(tmp_path):
    with Leaderboard(tmp_path / "board.db") as board:
        def submit(sha, count, **change):
            return board.submit(make_metadata(sha, **change), [RunRecord(sha, "p", make_episodes(count))])

        old = submit("a" * 64, 4).entry_id
        other_submitter = submit("b" * 64, 2, submitter="bob")
        other_agent = submit("c" * 64, 2, agent_name="idm")
        other_env = submit("d" * 64, 2, env_id="drivelab/merge-v0")
        new = submit("e" * 64, 3)
        assert new.entry_id == old and new.previous.metadata.policy_sha256 == "a" * 64
        ids = [other_submitter.entry_id, other_agent.entry_id, other_env.entry_id, new.entry_id]
        assert sorted(e.id for e in board.entries()) == sorted(ids)
        assert board.row_counts() == {"entries": 4, "runs": 4, "episodes": 9}  # the old runs went
        (entry,) = [e for e in board.entries() if e.id == old]
        assert entry.metadata.policy_sha256 == "e" * 64


def test_an_entry_with_fewer_episodes_than_the_protocol_is_partial(tmp_path):
    with Leaderboard(tmp_path / "board.db") as board:
        board.submit(make_metadata(), [RunRecord("a" * 64, "p", make_episodes(100))])
        board.submit(make_metadata(agent_name="short"), [RunRecord("b" * 64, "p", make_episodes(5))])
        # Without a count, the store takes the protocol's (100 for drivelab-eval-v1).
        unset = make_metadata(agent_name="unset", protocol_episodes=None)
        board.submit(unset, [RunRecord("c" * 64, "p", make_episodes(5))])
        partial = {e.metadata.agent_name: e.partial for e in board.entries()}
    assert partial == {"ppo-cnn": False, "short": True, "unset": True}


def test_failed_submission_leaves_no_partial_entry(tmp_path):
    with Leaderboard(tmp_path / "board.db") as board:
        board.submit(make_metadata(), [RunRecord("a" * 64, "p", make_episodes(4))])
        before = board.entries()
        duplicate_index = make_episodes(2) + make_episodes(1)  # violates UNIQUE(run, index)
        for name in ("ppo-cnn", "other"):  # a replacement and a new entry
            with pytest.raises(LeaderboardError, match="UNIQUE"):
                board.submit(make_metadata(agent_name=name), [RunRecord("c" * 64, "p", duplicate_index)])
        assert board.row_counts() == {"entries": 1, "runs": 1, "episodes": 4}
        assert board.entries() == before
        with pytest.raises(LeaderboardError, match="at least one"):
            board.submit(make_metadata(), [])


def test_corrupt_or_foreign_files_are_refused_untouched(tmp_path):
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    no_tables = tmp_path / "no-tables.db"
    with sqlite3.connect(no_tables) as connection:
        connection.execute("PRAGMA user_version = 0")
        connection.execute("CREATE TABLE t (x)")
        connection.execute("DROP TABLE t")
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database\n" * 50)
    good = tmp_path / "good.db"
    with Leaderboard(good) as board:
        board.submit(make_metadata(), [RunRecord("a" * 64, "p", make_episodes(50))])
    damaged = tmp_path / "damaged.db"
    data = bytearray(good.read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)  # smash the first page's b-tree
    damaged.write_bytes(bytes(data))
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as connection:
        connection.execute("CREATE TABLE photos (id INTEGER)")
    for path, error in ((garbage, CorruptDatabaseError), (damaged, CorruptDatabaseError),
                        (foreign, LeaderboardError), (empty, CorruptDatabaseError),
                        (no_tables, LeaderboardError)):  # fmt: skip
        content = path.read_bytes()
        for readonly in (False, True):
            with pytest.raises(error, match="untouched"):
                Leaderboard(path, readonly=readonly)
            assert path.read_bytes() == content
    # Only SQLite's own WAL side files of the damaged copy of a WAL board may appear.
    names = {p.name for p in tmp_path.iterdir()} - {"damaged.db-shm", "damaged.db-wal"}
    assert names == {"empty.db", "no-tables.db", "garbage.db", "good.db", "damaged.db", "foreign.db"}


def test_missing_or_uncreatable_database_is_a_clear_error(tmp_path):
    with pytest.raises(LeaderboardError, match="no leaderboard"):
        Leaderboard(tmp_path / "missing.db", create=False)
    assert not (tmp_path / "missing.db").exists()
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(LeaderboardError, match="cannot create"):
        Leaderboard(blocker / "runs" / "board.db")
    with pytest.raises(LeaderboardError, match="directory"):
        Leaderboard(tmp_path)


def _submit_distinct(path: str, worker: int) -> None:
    with Leaderboard(path) as board:
        for i in range(25):
            sha = f"{worker:02d}{i:062d}"
            metadata = make_metadata(sha=sha, submitter=f"w{worker}", agent_name=f"agent-{i}")
            board.submit(metadata, [RunRecord(sha, "p", make_episodes(1))])


def _submit_shared(path: str, worker: int) -> None:
    order = np.random.default_rng(worker).permutation(25)
    with Leaderboard(path) as board:
        for i in order:  # the same 25 identities from every worker; the worker is in `hardware`
            sha = f"{i:064d}"
            episodes = make_episodes(4, offset=100.0 * worker)
            metadata = make_metadata(sha=sha, submitter="shared", agent_name=f"agent-{i}", hardware=f"w{worker}")
            board.submit(metadata, [RunRecord(sha, "p", episodes)])


def _run_workers(target, path: str) -> None:
    # spawn, not fork: the test process may hold torch's, numba's or EnvPool's threads, and a
    # forked child of a threaded process can crash (it did: a segfault while collecting garbage).
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=target, args=(path, w)) for w in range(4)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=120)
    assert [p.exitcode for p in workers] == [0, 0, 0, 0]


def test_concurrent_submissions_lose_no_row(tmp_path):
    path = str(tmp_path / "board.db")
    _run_workers(_submit_distinct, path)  # 4 processes x 25 submissions of 1 episode
    with Leaderboard(path) as board:
        assert board.row_counts() == {"entries": 100, "runs": 100, "episodes": 100}
        entries = board.entries()
    assert sorted(e.metadata.submitter for e in entries) == sorted(f"w{w}" for w in range(4) for _ in range(25))
    assert all(e.num_episodes == 1 for e in entries)


def test_concurrent_resubmissions_leave_consistent_entries(tmp_path):
    path = str(tmp_path / "board.db")
    _run_workers(_submit_shared, path)  # 4 processes x 25 submissions of the same 25 policies
    with Leaderboard(path) as board:
        assert board.row_counts() == {"entries": 25, "runs": 25, "episodes": 100}
        entries = board.entries()
    for entry in entries:  # every entry holds exactly one submission, never a mix
        worker = int(entry.metadata.hardware[1:])
        returns = [e.episode_return for e in entry.runs[0].episodes]
        assert returns == [100.0 * worker + 0.5 * i for i in range(4)]


# --- Reading never writes -------------------------------------------------------------------


def _journal_mode_in_header(path) -> tuple[int, int]:
    """Bytes 18 and 19 of an SQLite file: (1, 1) rollback journal, (2, 2) WAL."""
    data = path.read_bytes()
    return data[18], data[19]


def test_reading_opens_read_only_and_leaves_the_file_byte_identical(tmp_path):
    db = tmp_path / "board.db"
    with Leaderboard(db) as board:
        board.submit(make_metadata(), [RunRecord("a" * 64, "p", make_episodes(5))])
    with sqlite3.connect(db) as connection:  # a board someone switched back to a rollback journal
        connection.execute("PRAGMA journal_mode = DELETE")
    content = db.read_bytes()
    assert _journal_mode_in_header(db) == (1, 1)
    with Leaderboard(db, readonly=True) as board:
        (entry,) = board.entries()
        assert board.row_counts()["episodes"] == 5
        with pytest.raises(LeaderboardError, match="read-only"):
            board.submit(make_metadata(agent_name="x"), [RunRecord("b" * 64, "p", make_episodes(1))])
    assert entry.num_episodes == 5
    assert db.read_bytes() == content  # not switched to WAL, nothing written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["board.db"]
    with pytest.raises(LeaderboardError, match="no leaderboard"):
        Leaderboard(tmp_path / "missing.db", readonly=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["board.db"]


def test_a_new_board_is_never_seen_half_created(tmp_path):
    db = tmp_path / "sub" / "board.db"
    with Leaderboard(db) as board:
        assert board.row_counts() == {"entries": 0, "runs": 0, "episodes": 0}
        assert board.schema_version == SCHEMA_VERSION
    assert _journal_mode_in_header(db) == (2, 2)
    assert sorted(p.name for p in db.parent.iterdir()) == ["board.db"]  # no staging file left
    assert db.stat().st_mode & 0o777 == 0o644 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# --- Migration of a schema-1 board ----------------------------------------------------------

_V1_SCHEMA = V1_TABLES + """;
CREATE INDEX runs_by_entry ON runs(entry_id);
CREATE INDEX episodes_by_run ON episodes(run_id);
PRAGMA user_version = 1;
"""


def _v1_board(path, rows):
    """A board as schema 1 wrote it: (entry id, sha, submitter, name, updated_at, episodes)."""
    with sqlite3.connect(path) as connection:
        connection.executescript(_V1_SCHEMA)
        for entry_id, sha, submitter, name, updated_at, count in rows:
            connection.execute(
                "INSERT INTO entries VALUES (?, ?, 'drivelab-eval-v1', ?, ?, ?, 'ppo', 'highway-env', 'h', "
                "'{}', '{}', 'abc', 1000, 12.5, 'cpu', '2026-11-01T00:00:00+00:00', ?)",
                (entry_id, ENV_ID, sha, submitter, name, updated_at),
            )
            connection.execute("INSERT INTO runs VALUES (?, ?, 0, ?, 'p', 3)", (entry_id, entry_id, sha))
            for i in range(count):
                connection.execute(
                    "INSERT INTO episodes (run_id, episode_index, seed, episode_return, length, crashed, success, "
                    "mean_speed, distance_m, lane_changes, right_lane_share, on_road_share, max_abs_jerk, failed) "
                    "VALUES (?, ?, ?, ?, 10, 0, 1, 20.0, 200.0, 1, 0.5, 1.0, NULL, 0)",
                    (entry_id, i, 10_000_000 + i, float(entry_id * 10 + i)),
                )


def test_a_schema_1_board_is_read_without_change_and_migrated_by_the_first_writer(tmp_path):
    db = tmp_path / "v1.db"
    # Entries 1 and 3 share an identity (alice/ppo re-submitted with new weights under schema 1).
    _v1_board(db, [(1, "a" * 64, "alice", "ppo", "2026-11-01T00:00:00+00:00", 100),
                   (2, "b" * 64, "bob", "idm", "2026-11-02T00:00:00+00:00", 20),
                   (3, "c" * 64, "alice", "ppo", "2026-11-03T00:00:00+00:00", 100)])  # fmt: skip
    content = db.read_bytes()
    with Leaderboard(db, readonly=True) as board:
        assert board.schema_version == 1
        before = board.entries()
    assert db.read_bytes() == content
    assert [(e.id, e.metadata.agent_name, e.partial) for e in before] == [
        (1, "ppo", False), (2, "idm", True), (3, "ppo", False)]
    assert math.isnan(before[0].runs[0].episodes[0].max_abs_jerk)

    with Leaderboard(db) as board:  # a writer migrates in place
        assert board.schema_version == SCHEMA_VERSION
        after = board.entries()
        assert board.row_counts() == {"entries": 3, "runs": 3, "episodes": 220}
        # Nothing dropped: the older of the two alice/ppo entries keeps its data under a new name.
        assert [(e.id, e.metadata.agent_name) for e in after] == [(1, "ppo (entry 1)"), (2, "idm"), (3, "ppo")]
        assert [e.runs for e in after] == [e.runs for e in before]
        assert [e.metadata.protocol_episodes for e in after] == [100, 100, 100]
        # The identity key is in force: alice/ppo now updates entry 3.
        outcome = board.submit(make_metadata(sha="d" * 64, agent_name="ppo", algorithm="ppo"),
                               [RunRecord("d" * 64, "p", make_episodes(2))])  # fmt: skip
        assert outcome.entry_id == 3 and outcome.previous.metadata.policy_sha256 == "c" * 64
        assert board.row_counts() == {"entries": 3, "runs": 3, "episodes": 122}
    with sqlite3.connect(db) as connection:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert connection.execute("PRAGMA foreign_key_check").fetchall() == []
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    with Leaderboard(db) as board:  # opening a migrated board again changes nothing
        assert board.row_counts() == {"entries": 3, "runs": 3, "episodes": 122}
