"""Bad inputs to `drivelab eval` and `drivelab leaderboard`: one clear line, exit != 0, nothing written.

Each case runs the CLI from a working folder holding only a valid board and an empty file, and
checks: exit status != 0, exactly one stderr line starting ``drivelab: error:``, no traceback, no
new or changed file. Every eval case fails before any evaluation starts. The cases of issue 11
run the real CLI in a subprocess (``CASES``); further cases (``MORE_CASES``) run the same
``main`` in this process, because every subprocess pays torch's import (seconds on 2 cores).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from drivelab.benchmarks.leaderboard.store import EntryMetadata, Leaderboard, RunRecord

ENV = "drivelab/highway-fast-v0"
EVAL = ["eval", "--policy", "baseline:idle", "--env", ENV]
SUBMIT = [*EVAL, "--submit", "--name", "idle", "--db", "board.db"]

# (case id, argv, what the one error line must contain)
CASES = [
    ("eval-num-envs-0", [*EVAL, "--num-envs", "0"], "--num-envs must be an integer >= 1"),
    ("eval-num-envs-negative", [*EVAL, "--num-envs", "-3"], "--num-envs must be an integer >= 1"),
    ("eval-max-failure-videos-negative", [*EVAL, "--max-failure-videos", "-1"], "--max-failure-videos"),
    ("eval-training-steps-negative", [*SUBMIT, "--training-steps", "-5"], "--training-steps must be"),
    ("eval-training-wall-s-nan", [*SUBMIT, "--training-wall-s", "nan"], "--training-wall-s must be a finite"),
    ("eval-name-without-submit", [*EVAL, "--name", "x"], "--name only describe"),
    ("eval-record-failures-proc", [*EVAL, "--record-failures", "/proc/x"], "--record-failures /proc/x"),
    ("eval-same-policy-twice", ["eval", "--policy", "baseline:idle", "baseline:idle", "--env", ENV,
                                "--submit", "--name", "x", "--db", "new.db"], "are the same policy"),
    ("eval-baseline-mixed-with-another-agent", ["eval", "--policy", "baseline:idle", "baseline:random",
                                                "--env", ENV, "--submit", "--name", "x", "--db", "new.db"],
     "runs of one entry must share algorithm"),
    ("leaderboard-unknown-env", ["leaderboard", "--db", "board.db", "--env", "drivelab/nope-v0"],
     "unknown scenario 'drivelab/nope-v0'"),
    ("leaderboard-unknown-protocol", ["leaderboard", "--db", "board.db", "--protocol", "v99"],
     "unknown protocol 'v99'"),
    ("leaderboard-reps-huge", ["leaderboard", "--db", "board.db", "--reps", "1000000000"],
     "--reps must be an integer in [1, 100000]"),
    ("leaderboard-empty-file", ["leaderboard", "--db", "empty.db"], "is an empty file"),
]
MORE_CASES = [
    ("eval-training-wall-s-negative", [*SUBMIT, "--training-wall-s", "-1"], "--training-wall-s must be a finite"),
    ("eval-submit-without-name", [*EVAL, "--submit", "--db", "board.db"], "--submit needs --name"),
    ("eval-record-failures-a-file", [*EVAL, "--record-failures", "empty.db"], "is a file"),
    ("eval-episodes-0", [*EVAL, "--episodes", "0"], "--episodes must be an integer >= 1"),
    ("eval-episodes-too-many", [*EVAL, "--episodes", "101"], "--episodes must be in [1, 100]"),
    ("eval-unknown-env", ["eval", "--policy", "baseline:idle", "--env", "drivelab/nope-v0"], "no seeds for"),
    ("eval-unknown-protocol", [*EVAL, "--protocol", "v99"], "unknown protocol 'v99'"),
    ("eval-unknown-baseline", ["eval", "--policy", "baseline:nope", "--env", ENV], "unknown baseline"),
    ("eval-missing-policy-file", ["eval", "--policy", "nope.safetensors", "--env", ENV], "does not exist"),
    ("eval-submit-to-empty-file", [*EVAL, "--submit", "--name", "x", "--db", "empty.db"], "is an empty file"),
    ("eval-submit-to-a-folder", [*EVAL, "--submit", "--name", "x", "--db", "."], "is a directory"),
    ("leaderboard-reps-0", ["leaderboard", "--db", "board.db", "--reps", "0"], "--reps must be"),
    ("leaderboard-missing-board", ["leaderboard", "--db", "missing.db"], "no leaderboard at missing.db"),
    ("leaderboard-html-without-out", ["leaderboard", "--db", "board.db", "--format", "html"], "--out FOLDER"),
]


def _drivelab_command() -> list[str]:
    """``python -m drivelab.benchmarks.cli`` where the package can run as a module, else the same via -c."""
    if importlib.util.find_spec("drivelab.benchmarks.cli.__main__") is not None:
        return [sys.executable, "-m", "drivelab.benchmarks.cli"]
    return [sys.executable, "-c", "import sys; from drivelab.benchmarks.cli import main; sys.exit(main(sys.argv[1:]))"]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cwd")
    with Leaderboard(folder / "board.db") as board:
        metadata = EntryMetadata(submitter="alice", agent_name="idle", algorithm="idle", env_id=ENV,
                                 protocol_version="drivelab-eval-v1", policy_sha256="a" * 64, backend="highway-env")
        board.submit(metadata, [RunRecord("a" * 64, "baseline:idle", _episodes())])
    (folder / "empty.db").touch()
    return folder


def _episodes():
    from drivelab.agents.evaluation import EpisodeRecord

    return [EpisodeRecord(index=i, seed=10_000_000 + i, episode_return=float(i), length=10, crashed=False,
                          success=True, mean_speed=20.0, distance_m=100.0, lane_changes=0, right_lane_share=0.5,
                          on_road_share=1.0, max_abs_jerk=1.0) for i in range(5)]  # fmt: skip


@pytest.mark.parametrize("argv, expected", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_input_is_one_clear_line_and_writes_nothing(workdir, argv, expected):
    before = _snapshot(workdir)
    env = {**os.environ, "SDL_VIDEODRIVER": "offscreen"}
    done = subprocess.run([*_drivelab_command(), *argv], cwd=workdir, env=env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0, done.stdout
    assert "Traceback" not in done.stderr
    assert len(lines) == 1 and lines[0].startswith("drivelab: error:"), done.stderr
    assert expected in lines[0]
    assert _snapshot(workdir) == before  # no new, changed or removed file (the board byte-identical)
    assert (workdir / "empty.db").stat().st_size == 0


@pytest.mark.parametrize("argv, expected", [case[1:] for case in MORE_CASES], ids=[case[0] for case in MORE_CASES])
def test_more_bad_inputs_in_process(workdir, argv, expected, monkeypatch, capsys):
    from drivelab.benchmarks.cli import main

    monkeypatch.chdir(workdir)
    before = _snapshot(workdir)
    assert main(argv) != 0
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("drivelab: error:") and expected in lines[0], lines
    assert _snapshot(workdir) == before
