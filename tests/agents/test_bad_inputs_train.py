"""Every bad `drivelab train` / `bench rl` input is one clear line, before anything starts.

Each case runs the real CLI in a subprocess, in an empty folder, and checks: exit status not 0,
exactly one stderr line and it starts with ``drivelab: error:``, no traceback, and no file left
behind (a case that failed validation must not leave a half-made run folder).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CLI = [sys.executable, "-m", "drivelab.benchmarks.cli"]
# A few steps on small frames, so a case the CLI wrongly accepts ends quickly instead of training.
TINY = ["--steps", "8", "--set", "ppo.n_envs=2", "--set", "ppo.n_steps=4", "--set", "ppo.batch_size=8",
        "--set", "eval_every_steps=0", "--no-progress", "--threads", "1"]


def _a_file(tmp: Path) -> str:
    (tmp / "notes.txt").write_text("mine")
    return "notes.txt"


# case -> (arguments, a fragment of the message); "{file}" is replaced by an existing file's name.
# (More bad values of each kind are checked in-process by test_configs.py and test_cli_train.py.)
CASES: dict[str, tuple[list[str], str]] = {
    "negative learning rate": (["train", "--set", "ppo.learning_rate=-1"], "ppo.learning_rate"),
    "zero batch size": (["train", "--set", "ppo.batch_size=0"], "ppo.batch_size"),
    "negative threads": (["train", "--threads", "-1"], "--threads"),
    "run dir in /proc": (["train", "--run-dir", "/proc/x"], "/proc"),
    "run dir is a file": (["train", "--run-dir", "{file}"], "is a file"),
    "camera 100000 px wide": (["train", "--set", "camera.width=100000"], "2048"),
    "gamma above 1": (["train", "--set", "ppo.gamma=1.5"], "ppo.gamma"),
    "negative augmentation shift": (["train", "--set", "encoder.augment_shift_px=-4"], "augment_shift_px"),
    "net_arch not a list": (["train", "--set", "ppo.net_arch=abc"], "ppo.net_arch"),
    "vehicles_count 1e9": (["train", "--set", "env_config.vehicles_count=1e9"], "vehicles_count"),
    "zero steps": (["train", "--steps", "0"], "total_steps"),
    "unknown scenario": (["train", "--env", "drivelab/nope-v0"], "drivelab/"),
    "missing hyperparameters file": (["train", "--hyperparams", "missing.yaml"], "missing.yaml"),
    "hyperparameters file not YAML": (["train", "--hyperparams", "{file}"], "must hold a mapping"),
    "resume without a run": (["train", "--resume", "--run-dir", "nothing-here"], "cannot resume"),
    "bench rl missing suite": (["bench", "rl", "--suite", "missing.yaml"], "missing.yaml"),
    "bench rl output in /proc": (["bench", "rl", "--suite", "{suite}", "--out", "/proc/x.json"], "/proc"),
    "bench rl zero threads": (["bench", "rl", "--suite", "{suite}", "--threads", "0"], "--threads"),
}


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "SDL_VIDEODRIVER": "offscreen"}
    return subprocess.run([*CLI, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_before_any_work(case: str, tmp_path: Path) -> None:
    args, fragment = CASES[case]
    suite = Path(__file__).parents[2] / "benchmarks" / "suites" / "smoke.yaml"
    names = {"{file}": _a_file(tmp_path) if "{file}" in args else "", "{suite}": str(suite)}
    args = [names.get(arg, arg) for arg in args]
    if args[0] == "train":
        args = ["train", *TINY, *args[1:]]  # the case's own values come last and win
    before = sorted(tmp_path.rglob("*"))
    done = _run(args, tmp_path)
    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0, done.stdout
    assert "Traceback" not in done.stderr
    assert len(lines) == 1 and lines[0].startswith("drivelab: error:"), done.stderr
    assert fragment in lines[0]
    assert sorted(tmp_path.rglob("*")) == before  # nothing written, not even a run folder


def test_a_first_run_on_a_new_machine_says_only_the_error(tmp_path: Path) -> None:
    """matplotlib builds its font cache on its first import on a machine and logs that; a bad input
    on a fresh machine is still the error line alone."""
    env = {**os.environ, "SDL_VIDEODRIVER": "offscreen", "MPLCONFIGDIR": str(tmp_path / "mpl")}
    done = subprocess.run([*CLI, "train", *TINY, "--run-dir", "/proc/x"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert (tmp_path / "mpl").is_dir()  # matplotlib was imported with an empty cache
    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0 and len(lines) == 1, done.stderr
    assert lines[0].startswith("drivelab: error: cannot write /proc/x")
