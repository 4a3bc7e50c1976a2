"""`drivelab bench imitation --reuse`: runs of the very same command and their evaluations are not redone."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from drivelab.benchmarks.bench.imitation import BENCH_COMMAND, BENCH_EVAL, _evaluate, _train
from drivelab.benchmarks.cli import main

TINY = ["--set", "total_steps=64", "--set", "ppo.n_envs=4", "--set", "ppo.n_steps=16", "--set", "ppo.batch_size=32",
        "--set", "ppo.n_epochs=1", "--set", "ppo.net_arch=[16]", "--set", "camera.width=32",
        "--set", "camera.height=16", "--set", "camera.stack=2", "--set", "encoder.features_dim=16",
        "--set", "eval_every_steps=0", "--set", "checkpoint_every_steps=64"]


def _argv(run_dir: Path, seed: int) -> list[str]:
    return ["train", "--env", "drivelab/highway-fast-v0", "--algo", "ppo", "--seed", str(seed), "--threads", "1",
            "--no-progress", "--force", *TINY, "--run-dir", str(run_dir)]


def _started(run_dir: Path) -> list[str]:
    return [i["started_at"] for i in json.loads((run_dir / "run.json").read_text())["invocations"]]


def test_reuse_skips_only_runs_of_the_same_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "ppo-s0"
    args = argparse.Namespace(dispatch=main, reuse=True)
    _train(args, _argv(run_dir, 0))
    assert json.loads((run_dir / BENCH_COMMAND).read_text()) == _argv(run_dir, 0)
    first = _started(run_dir)
    weights = (run_dir / "final" / "policy.safetensors").read_bytes()
    (run_dir / "sentinel").touch()  # training again (--force) starts from an empty folder

    _train(args, _argv(run_dir, 0))  # same command: reused
    assert "reusing" in capsys.readouterr().out
    assert (run_dir / "sentinel").exists() and _started(run_dir) == first

    _train(args, _argv(run_dir, 1))  # another seed: trained again from scratch
    assert "reusing" not in capsys.readouterr().out
    assert json.loads((run_dir / BENCH_COMMAND).read_text()) == _argv(run_dir, 1)
    assert not (run_dir / "sentinel").exists() and len(_started(run_dir)) == 1
    assert (run_dir / "final" / "policy.safetensors").read_bytes() != weights

    _train(argparse.Namespace(dispatch=main, reuse=False), _argv(run_dir, 1))  # without --reuse: trained
    assert "reusing" not in capsys.readouterr().out


def test_reuse_reads_back_an_evaluation_of_the_same_policy_and_episodes(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "ppo-s0"
    _train(argparse.Namespace(dispatch=main, reuse=False), _argv(run_dir, 0))
    cache = run_dir / BENCH_EVAL
    first = _evaluate(str(run_dir), 2, cache)
    assert "reusing" not in capsys.readouterr().out and first["episodes"] == 2
    stored = json.loads(cache.read_text())
    stored["result"]["mean_return"] = 1234.5  # what comes back is the stored row, not a new evaluation
    cache.write_text(json.dumps(stored))
    assert _evaluate(str(run_dir), 2, cache)["mean_return"] == 1234.5
    assert "reusing the evaluation" in capsys.readouterr().out
    again = _evaluate(str(run_dir), 3, cache)  # other episodes: evaluated again
    assert again["episodes"] == 3 and again["mean_return"] != 1234.5
