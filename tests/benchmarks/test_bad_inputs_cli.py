"""Bad inputs to `drivelab watch`, `demo` and `bench ...`: one clear line, exit != 0, nothing written.

Each case runs the real command line in a fresh process in an empty folder, so a case that
starts work before checking its arguments (and writes something, or prints a traceback) fails.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

# The `drivelab` command, run by this interpreter.
DRIVELAB = [sys.executable, "-m", "drivelab.benchmarks.cli"]

CASES = {
    # watch: every output path and the seed range are checked before any episode is rendered
    # (unknown overlays and baselines: tests/benchmarks/test_watch.py)
    "watch --record /proc": ["watch", "--policy", "baseline:idm", "--record", "/proc/x.mp4"],
    "watch --record a folder": ["watch", "--policy", "baseline:idm", "--record", "."],
    "watch --record x.txt": ["watch", "--policy", "baseline:idm", "--record", "x.txt"],
    "watch --seed huge": ["watch", "--policy", "baseline:idm", "--record", "x.mp4", "--seed", "99999999999999999999"],
    "watch --episodes 0": ["watch", "--policy", "baseline:idm", "--record", "x.mp4", "--episodes", "0"],
    # demo: all arguments first, before the env demo, training or any folder
    "demo --out /proc": ["demo", "--out", "/proc/x"],
    "demo --episodes 0": ["demo", "--out", "o", "--episodes", "0"],
    "demo --train-steps -1": ["demo", "--out", "o", "--train-steps", "-1"],
    "demo --env nope": ["demo", "--out", "o", "--env", "drivelab/nope-v0"],
    # bench
    "bench env --scenarios nope": ["bench", "env", "--scenarios", "nope", "--out", "r.json"],
    "bench env --seconds nan": ["bench", "env", "--seconds", "nan", "--out", "r.json"],
    "bench train-speed --steps 0": ["bench", "train-speed", "--steps", "0", "--out", "r.json"],
    "bench pretrained missing encoder": ["bench", "pretrained", "--encoder", "missing.safetensors"],
    "bench readme no results": ["bench", "readme", "--results", "missing"],
    "bench imitation --set bad key": ["bench", "imitation", "--set", "camera.nope=1", "--out", "r.json"],
}


def _files(folder: Path) -> set[Path]:
    return {p.relative_to(folder) for p in folder.rglob("*")}


@pytest.mark.parametrize("argv", CASES.values(), ids=CASES.keys())
def test_bad_input_gets_one_line_and_leaves_nothing(argv, tmp_path):
    before = _files(tmp_path)
    env = dict(os.environ, SDL_VIDEODRIVER="offscreen")
    completed = subprocess.run([*DRIVELAB, *argv], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert completed.returncode != 0
    assert "Traceback" not in completed.stderr
    errors = [line for line in completed.stderr.splitlines() if line.startswith("drivelab: error:")]
    assert len(errors) == 1 and completed.stderr.strip() == errors[0], completed.stderr
    assert _files(tmp_path) == before
