"""Evaluate-and-submit in one Python call: entry identity, updates that say what changed, run-set
checks and option checks before any evaluation (on a fake vector env: no simulator)."""

from __future__ import annotations

import json

import pytest
from fakes import FakeDrivingVecEnv

from drivelab.agents import IdlePolicy, evaluate
from drivelab.benchmarks.leaderboard import submit
from drivelab.benchmarks.leaderboard.store import CorruptDatabaseError, Leaderboard
from drivelab.core.errors import ConfigError, DrivelabError, OutputPathError

ENV_ID = "drivelab/highway-fast-v0"


class CountingEnvs:
    """``make_env`` for ``evaluate``: fake envs, counting how many were built."""

    def __init__(self, return_offset: float = 0.0, backend: str = "highway-env") -> None:
        self.built = 0
        self.return_offset = return_offset
        self.backend = backend

    def __call__(self, num_envs: int) -> FakeDrivingVecEnv:
        self.built += 1
        return FakeDrivingVecEnv(num_envs, return_offset=self.return_offset, backend=self.backend)


def test_evaluate_and_submit_in_one_call_then_update_says_old_vs_new(tmp_path):
    db = tmp_path / "board.db"
    first = submit.evaluate_and_submit(["baseline:idle"], ENV_ID, db=db, name="idle", submitter="alice",
                                       episodes=12, make_env=CountingEnvs(), record_failures=tmp_path / "f",
                                       max_failure_videos=0)  # fmt: skip
    assert first.previous is None and first.partial  # 12 of the protocol's 100 episodes
    lines = submit.submission_lines(first)
    assert lines[0].startswith(f"submitted new entry {first.entry_id} (alice / idle on {ENV_ID}")
    assert "partial entry" in lines[-1]
    expected = evaluate(IdlePolicy(), ENV_ID, episodes=12, make_env=FakeDrivingVecEnv)
    with Leaderboard(db, readonly=True) as board:
        (entry,) = board.entries()
    assert entry.runs[0].episodes == expected.episodes and entry.partial
    assert entry.metadata.backend == "highway-env" and entry.metadata.algorithm == "idle"
    assert entry.metadata.protocol_episodes == 100 and "numpy" in entry.metadata.package_versions
    failures = json.loads((tmp_path / "f" / "failures.json").read_text())
    assert [f["seed"] for f in failures] == [e.seed for e in expected.episodes if e.failed]

    second = submit.evaluate_and_submit(["baseline:idle"], ENV_ID, db=db, name="idle", submitter="alice",
                                        episodes=12, make_env=CountingEnvs(return_offset=1.0))  # fmt: skip
    assert second.entry_id == first.entry_id and second.previous.runs[0].episodes == expected.episodes
    text = "\n".join(submit.submission_lines(second))
    old_mean = expected.metric("episode_return").mean()
    assert f"updated entry {first.entry_id}" in text
    assert f"mean return {old_mean:.3f} -> {old_mean + 1.0:.3f}" in text
    with Leaderboard(db, readonly=True) as board:
        assert board.row_counts() == {"entries": 1, "runs": 1, "episodes": 12}


def test_another_submitter_or_name_never_replaces_an_entry(tmp_path):
    db = tmp_path / "board.db"
    options = dict(db=db, episodes=5, make_env=CountingEnvs())
    alice = submit.evaluate_and_submit(["baseline:idle"], ENV_ID, name="idle", submitter="alice", **options)
    with Leaderboard(db, readonly=True) as board:
        (before,) = board.entries()
    hijack = submit.evaluate_and_submit(["baseline:idle"], ENV_ID, name="hijack", submitter="mallory",
                                        episodes=1, db=db, make_env=CountingEnvs(return_offset=99.0))  # fmt: skip
    renamed = submit.evaluate_and_submit(["baseline:idle"], ENV_ID, name="idle-2", submitter="alice", **options)
    assert hijack.previous is None and renamed.previous is None
    assert len({alice.entry_id, hijack.entry_id, renamed.entry_id}) == 3
    with Leaderboard(db, readonly=True) as board:
        entries = {e.id: e for e in board.entries()}
    assert entries[alice.entry_id] == before  # untouched


def test_duplicate_or_mixed_runs_are_refused_before_evaluating(tmp_path):
    envs = CountingEnvs()
    with pytest.raises(submit.SubmissionError, match="same policy"):
        submit.evaluate_and_submit(["baseline:idle", "baseline:idle"], ENV_ID, db=tmp_path / "b.db", name="x",
                                   make_env=envs)  # fmt: skip
    with pytest.raises(submit.SubmissionError, match="algorithm='idle'.*algorithm='random'"):
        submit.evaluate_and_submit(["baseline:idle", "baseline:random"], ENV_ID, db=tmp_path / "b.db", name="x",
                                   make_env=envs)  # fmt: skip
    assert envs.built == 0 and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "options, error, match",
    [
        ({"num_envs": 0}, ConfigError, "--num-envs"),
        ({"max_failure_videos": -1}, ConfigError, "--max-failure-videos"),
        ({"training_steps": -5}, ConfigError, "--training-steps"),
        ({"training_wall_s": float("nan")}, ConfigError, "--training-wall-s"),
        ({"training_wall_s": float("inf")}, ConfigError, "--training-wall-s"),
        ({"episodes": 0}, ConfigError, "--episodes"),
        ({"backend": "carla"}, ConfigError, "not allowed"),
        ({"record_failures": "/proc/x"}, OutputPathError, "--record-failures"),
        ({"name": " "}, ConfigError, "needs a name"),
        ({"policies": ["baseline:teleport"]}, DrivelabError, "unknown baseline"),
    ],
)
def test_bad_options_fail_before_evaluating_and_leave_nothing(tmp_path, options, error, match):
    envs = CountingEnvs()
    arguments = {"policies": ["baseline:idle"], "name": "x", **options}
    with pytest.raises(error, match=match):
        submit.evaluate_and_submit(arguments.pop("policies"), ENV_ID, db=tmp_path / "board.db", make_env=envs,
                                   **arguments)  # fmt: skip
    assert envs.built == 0
    assert list(tmp_path.iterdir()) == []  # not even an empty board


def test_a_non_board_file_is_refused_before_evaluating(tmp_path):
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"\x00garbage" * 100)
    envs = CountingEnvs()
    with pytest.raises(CorruptDatabaseError, match="untouched"):
        submit.evaluate_and_submit(["baseline:idle"], ENV_ID, db=corrupt, name="x", make_env=envs)
    assert corrupt.read_bytes() == b"\x00garbage" * 100 and envs.built == 0


def test_evaluate_policies_without_a_board(tmp_path):
    evaluation = submit.evaluate_policies(["baseline:idle"], ENV_ID, episodes=3, make_env=CountingEnvs())
    assert [r.episodes[0].seed for r in evaluation.results] == [10_000_000]
    assert evaluation.sources[0].label == "baseline:idle"
    lines = submit.summary_lines(evaluation.results, evaluation.protocol)
    assert lines[0] == f"{ENV_ID} [highway-env, drivelab-eval-v1]: 1 run(s) x 3 episodes"
    assert list(tmp_path.iterdir()) == []
