"""Killed and interrupted runs: a signal checkpoints and exits 130/143; a resume after SIGKILL
keeps the killed segment's training time and drops the rolled-back steps from the logs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from drivelab.agents import train
from drivelab.agents.checkpoints import find_last_checkpoint
from drivelab.agents.train import load_run_config

CLI = [sys.executable, "-m", "drivelab.benchmarks.cli"]
# 1,600 steps (logged every 32): long enough to be stopped well before the end.
TINY = ["--steps", "1600",  # logs every 32 steps; stopped long before the end
         "--set", "camera={width: 64, height: 32, metres_per_pixel: 1.0, stack: 2}",
        "--set", "ppo.n_envs=4", "--set", "ppo.n_steps=16", "--set", "ppo.batch_size=32", "--set", "ppo.n_epochs=1",
        "--set", "encoder.name=fast", "--set", "encoder.features_dim=32", "--set", "eval_every_steps=0",
        "--set", "checkpoint_every_steps=64", "--threads", "1", "--no-progress"]


def _start(run_dir: Path) -> subprocess.Popen:
    env = {**os.environ, "SDL_VIDEODRIVER": "offscreen"}
    return subprocess.Popen([*CLI, "train", "--run-dir", str(run_dir), *TINY], env=env, cwd=run_dir.parent,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_checkpoint(process: subprocess.Popen, run_dir: Path, step: int) -> None:
    deadline = time.monotonic() + 240
    while True:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no checkpoint within 4 minutes"
        try:
            if find_last_checkpoint(run_dir / "checkpoints").step >= step:
                return
        except Exception:  # not written yet
            pass
        time.sleep(0.2)


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_saves_a_checkpoint_and_exits_128_plus_signal(signum, status, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    process = _start(run_dir)
    try:
        _wait_for_checkpoint(process, run_dir, 64)
        process.send_signal(signum)
        _, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == status, err
    assert "Traceback" not in err and f"{signum.name}: stopped at step" in err
    finished = json.loads((run_dir / "run.json").read_text())["invocations"][-1]["finished"]
    assert finished["interrupted_by"] == signum.name
    checkpoint = find_last_checkpoint(run_dir / "checkpoints")
    assert checkpoint.step == finished["num_timesteps"]  # saved where it stopped, not at the last multiple
    assert (run_dir / "final" / "policy.json").is_file()


def test_resume_after_sigkill_counts_the_killed_time_and_truncates_logs(tmp_path: Path, read_jsonl) -> None:
    run_dir = tmp_path / "run"
    process = _start(run_dir)
    try:
        _wait_for_checkpoint(process, run_dir, 128)
        time.sleep(1.0)  # let it train (and log) past the checkpoint before the kill
    finally:
        process.kill()
        process.communicate()
    checkpoint = find_last_checkpoint(run_dir / "checkpoints")
    assert checkpoint.training_wall_s > 0
    invocations = json.loads((run_dir / "run.json").read_text())["invocations"]
    assert "finished" not in invocations[0]  # killed: the old accounting would count 0 s for it
    config = load_run_config(run_dir).replace(total_steps=checkpoint.step + 64)
    resumed = train(config, run_dir, resume=True, progress_bar=False)
    spec = json.loads(resumed.final_export.read_text())
    assert spec["training_wall_s"] > checkpoint.training_wall_s  # the killed segment counts
    steps = [row["step"] for row in read_jsonl(run_dir / "metrics.jsonl")]
    assert steps == sorted(set(steps))  # no step twice: rows past the checkpoint were dropped
    assert steps[-1] == resumed.num_timesteps
