"""The SQLite leaderboard: round trips, re-submission, atomicity, corrupt files, concurrency."""

from __future__ import annotations

import math
import multiprocessing
import sqlite3

import numpy as np
import pytest

from drivelab.benchmarks.leaderboard import (
    CorruptDatabaseError,
    EntryMetadata,
    Leaderboard,
    LeaderboardError,
    RunRecord,
    hash_config,
)
from drivelab.benchmarks.protocol import EpisodeRecord

ENV_ID = "drivelab/highway-fast-v0"


def make_episodes(count: int, offset: float = 0.0, first_seed: int = 10_000_000) -> list[EpisodeRecord]:
    return [
        EpisodeRecord(index=i, seed=first_seed + i, episode_return=offset + 0.5 * i, length=10 + i,
                      crashed=i % 3 == 0, success=i % 3 != 0, mean_speed=np.float64(21.5),
                      distance_m=200.0 + i, lane_changes=np.int64(i % 2), right_lane_share=0.25,
                      on_road_share=1.0, max_abs_jerk=math.nan if i == 1 else 4.0)  # fmt: skip
        for i in range(count)
    ]


def make_metadata(sha: str = "a" * 64, env_id: str = ENV_ID, **changes) -> EntryMetadata:
    values = dict(submitter="alice", agent_name="ppo-cnn", algorithm="ppo", env_id=env_id,
                  protocol_version="drivelab-eval-v1", policy_sha256=sha, backend="highway-env",
                  config={"learning_rate": 3e-4, "n_steps": 128},
                  package_versions={"numpy": np.__version__}, git_commit="abc123",
                  training_steps=100_000, training_wall_s=321.5, hardware="x86_64 2 CPUs")  # fmt: skip
    values.update(changes)
    return EntryMetadata(**values)


def test_submission_round_trips(tmp_path):
    episodes = make_episodes(5)
    with Leaderboard(tmp_path / "sub" / "board.db") as board:
        entry_id = board.submit(make_metadata(), [RunRecord("a" * 64, "p.safetensors", episodes, 7)])
        assert board.row_counts() == {"entries": 1, "runs": 1, "episodes": 5}
        (entry,) = board.entries()
    assert entry.id == entry_id
    assert entry.metadata == make_metadata()
    assert entry.metadata.config_hash == hash_config({"n_steps": 128, "learning_rate": 3e-4})
    (run,) = entry.runs
    assert (run.policy_label, run.training_seed) == ("p.safetensors", 7)
    assert math.isnan(run.episodes[1].max_abs_jerk)  # NaN survives as NULL -> nan
    assert run.episodes[0] == episodes[0] and run.episodes[2:] == tuple(episodes[2:])


def test_resubmission_replaces_entry_instead_of_duplicating(tmp_path):
    with Leaderboard(tmp_path / "board.db") as board:
        first = board.submit(make_metadata(), [RunRecord("a" * 64, "p", make_episodes(4))])
        second = board.submit(
            make_metadata(agent_name="renamed"),
            [RunRecord("a" * 64, "p", make_episodes(3, offset=9.0)), RunRecord("b" * 64, "q", make_episodes(2))],
        )
        assert first == second
        assert board.row_counts() == {"entries": 1, "runs": 2, "episodes": 5}
        (entry,) = board.entries()
        assert entry.metadata.agent_name == "renamed"
        assert entry.runs[0].episodes[0].episode_return == 9.0
        # Another scenario or protocol is another entry.
        board.submit(make_metadata(env_id="drivelab/merge-v0"), [RunRecord("a" * 64, "p", make_episodes(1))])
        board.submit(make_metadata(protocol_version="drivelab-eval-v2"), [RunRecord("a" * 64, "p", make_episodes(1))])
        assert board.row_counts()["entries"] == 3
        assert [e.metadata.env_id for e in board.entries(env_id="drivelab/merge-v0")] == ["drivelab/merge-v0"]


def test_remove_superseded_keeps_the_newest_entry_of_each_agent(tmp_path):
    with Leaderboard(tmp_path / "board.db") as board:
        old = board.submit(make_metadata("a" * 64), [RunRecord("a" * 64, "p", make_episodes(4))])
        other_submitter = board.submit(make_metadata("b" * 64, submitter="bob"), [RunRecord("b" * 64, "p", make_episodes(2))])
        other_agent = board.submit(make_metadata("c" * 64, agent_name="idm"), [RunRecord("c" * 64, "p", make_episodes(2))])
        other_env = board.submit(make_metadata("d" * 64, env_id="drivelab/merge-v0"), [RunRecord("d" * 64, "p", make_episodes(2))])
        new = board.submit(make_metadata("e" * 64), [RunRecord("e" * 64, "p", make_episodes(3))])
        assert board.remove_superseded(ENV_ID, ["ppo-cnn", "idm"]) == 1
        assert sorted(e.id for e in board.entries()) == sorted([other_submitter, other_agent, other_env, new])
        assert old not in [e.id for e in board.entries()]
        assert board.row_counts() == {"entries": 4, "runs": 4, "episodes": 9}  # the old runs went too
        assert board.remove_superseded(ENV_ID, ["ppo-cnn"]) == 0


def test_failed_submission_leaves_no_partial_entry(tmp_path):
    with Leaderboard(tmp_path / "board.db") as board:
        board.submit(make_metadata(), [RunRecord("a" * 64, "p", make_episodes(4))])
        before = board.entries()
        duplicate_index = make_episodes(2) + make_episodes(1)  # violates UNIQUE(run, index)
        for sha in ("a" * 64, "c" * 64):  # a replacement and a new entry
            with pytest.raises(LeaderboardError, match="UNIQUE"):
                board.submit(make_metadata(sha=sha), [RunRecord(sha, "p", duplicate_index)])
        assert board.row_counts() == {"entries": 1, "runs": 1, "episodes": 4}
        assert board.entries() == before
        with pytest.raises(LeaderboardError, match="at least one"):
            board.submit(make_metadata(), [])


def test_corrupt_or_foreign_files_are_refused_untouched(tmp_path):
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
                        (foreign, LeaderboardError)):  # fmt: skip
        content = path.read_bytes()
        with pytest.raises(error, match="untouched"):
            Leaderboard(path)
        assert path.read_bytes() == content


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
            board.submit(make_metadata(sha=sha, submitter=f"w{worker}"), [RunRecord(sha, "p", make_episodes(1))])


def _submit_shared(path: str, worker: int) -> None:
    order = np.random.default_rng(worker).permutation(25)
    with Leaderboard(path) as board:
        for i in order:
            sha = f"{i:064d}"
            episodes = make_episodes(4, offset=100.0 * worker)
            board.submit(make_metadata(sha=sha, submitter=f"w{worker}"), [RunRecord(sha, "p", episodes)])


def _run_workers(target, path: str) -> None:
    context = multiprocessing.get_context("fork")
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
        worker = int(entry.metadata.submitter[1:])
        returns = [e.episode_return for e in entry.runs[0].episodes]
        assert returns == [100.0 * worker + 0.5 * i for i in range(4)]
