"""Every bad input to `drivelab perception ...` gets one clear line, a non-zero exit and no new files.

Each case runs the real command line in a subprocess, in a folder that holds a few valid inputs
(a detector checkpoint, a frame, a tiny COCO dataset, a file where a folder is wanted and a
CIFAR-10 folder whose meta file holds a list), and checks: exit status != 0, exactly one
non-empty stderr line starting with "drivelab: error:", no traceback, nothing new on disk.
"""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
from perception_helpers import draw_frames, write_coco_dataset

from drivelab.perception.centernet import CenterNet, DetectorConfig, checkpoint_spec
from drivelab.perception.checkpoints import save_checkpoint

# The `drivelab` console script, run with this interpreter.
CLI = [sys.executable, "-c", "import sys; from drivelab.benchmarks.cli import main; sys.exit(main())"]
PREDICT = ["perception", "predict", "--checkpoint", "det.safetensors", "--images", "frame.png"]
TRAIN_DET = ["perception", "train-detector", "--data", "coco", "--no-progress"]
MAKE = ["perception", "make-dataset", "--frames", "3", "--num-envs", "1", "--no-progress"]

# (case id, arguments, a piece of the expected message). The cases the issue lists run the real
# command in a subprocess; MORE_CASES (same checks) run in-process, which spares a torch import each.
CASES = [
    ("make-dataset --out /proc/x", [*MAKE, "--out", "/proc/x"], "/proc/x"),
    ("make-dataset --out <a file>", [*MAKE, "--out", "afile"], "afile is a file"),
    ("make-dataset --num-envs 0", [*MAKE, "--out", "o", "--num-envs", "0"], "'num_envs' must be in [1,"),
    ("make-dataset --random-action-prob 2", [*MAKE, "--out", "o", "--random-action-prob", "2"],
     "'random_action_prob' must be in [0, 1]"),
    ("make-dataset --env typo", [*MAKE, "--out", "o", "--env", "drivelab/highway-fats-v0"], "highway-fats-v0"),
    ("make-dataset --camera typo", [*MAKE, "--out", "o", "--camera", "colour=rgb"], "unknown --camera key"),
    ("train-detector --epochs 0", [*TRAIN_DET, "--out", "o", "--epochs", "0"], "'epochs' must be in [1,"),
    ("train-detector --batch-size 0", [*TRAIN_DET, "--out", "o", "--batch-size", "0"], "'batch_size' must be in [1,"),
    ("train-detector --width-mult 0", [*TRAIN_DET, "--out", "o", "--width-mult", "0"], "'width_mult' must be in [1,"),
    ("train-detector --out /proc/x", [*TRAIN_DET, "--out", "/proc/x", "--epochs", "1"], "/proc/x"),
    ("train-classifier --resize 0x0", ["perception", "train-classifier", "--format", "digits", "--resize", "0x0",
                                       "--out", "o"], "--resize must be HxW"),
    ("train-classifier CIFAR meta holding a list", ["perception", "train-classifier", "--format", "cifar10",
                                                    "--data", "cifar", "--out", "o", "--no-progress"],
     "batches.meta is corrupt: it holds a list"),
    ("predict --out /proc/x.mp4", [*PREDICT, "--out", "/proc/x.mp4"], "/proc/x.mp4"),
    ("predict --limit 0", [*PREDICT, "--out", "o", "--limit", "0"], "--limit must be >= 1"),
]
MORE_CASES = [
    ("make-dataset --camera bad colour", [*MAKE, "--out", "o", "--camera", "color=rbg"], "'color'"),
    ("make-dataset --camera huge", [*MAKE, "--out", "o", "--camera", "width=100000"], "width"),
    ("make-dataset --backend typo", [*MAKE, "--out", "o", "--backend", "envpol"], "'backend'"),
    ("make-dataset --frames 2", [*MAKE, "--out", "o", "--frames", "2"], "'frames' must be in [3,"),
    ("make-dataset --seed -1", [*MAKE, "--out", "o", "--seed", "-1"], "'seed' must be in [0,"),
    ("train-detector --out <a file>", [*TRAIN_DET, "--out", "afile"], "afile is a file"),
    ("train-detector --threads 0", [*TRAIN_DET, "--out", "o", "--threads", "0"], "--threads must be in [1,"),
    ("train-detector --data missing", ["perception", "train-detector", "--data", "nope.json", "--out", "o"],
     "nope.json does not exist"),
    ("train-classifier --resize abc", ["perception", "train-classifier", "--format", "digits", "--resize", "abc",
                                       "--out", "o"], "--resize expects HxW"),
    ("train-classifier --lr -1", ["perception", "train-classifier", "--format", "digits", "--lr", "-1", "--out", "o"],
     "'learning_rate' must be in (0,"),
    ("eval-classifier missing checkpoint", ["perception", "eval-classifier", "--format", "digits",
                                            "--checkpoint", "none.safetensors", "--out", "o"],
     "none.safetensors does not exist"),
    ("eval-detector --out <a file>", ["perception", "eval-detector", "--checkpoint", "det.safetensors",
                                      "--data", "coco", "--split", "val", "--out", "afile"], "afile is a file"),
    ("predict --fps 0", [*PREDICT, "--out", "o.mp4", "--fps", "0"], "--fps must be >= 1"),
    ("predict --score-threshold 2", [*PREDICT, "--out", "o", "--score-threshold", "2"], "--score-threshold"),
    ("explain --out x.txt", ["perception", "explain", "--checkpoint", "det.safetensors", "--image", "frame.png",
                             "--out", "x.txt"], "--out must be an image file"),
    ("export --out <a file>", ["perception", "export", "--checkpoint", "det.safetensors", "--out", "afile"],
     "afile is a file"),
]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bad_inputs")
    (root / "afile").write_text("not a folder\n")
    save_checkpoint(root / "det.safetensors", CenterNet(DetectorConfig()), checkpoint_spec(DetectorConfig()))
    cv2.imwrite(str(root / "frame.png"), np.zeros((64, 128), np.uint8))
    for name, count, seed in (("train", 4, 0), ("val", 2, 1)):
        write_coco_dataset(root / "coco", name, *draw_frames(count, seed))
    (root / "cifar").mkdir()
    with open(root / "cifar" / "batches.meta", "wb") as handle:
        pickle.dump([b"airplane", b"automobile"], handle)  # a list where CIFAR-10 has a dict
    with open(root / "cifar" / "data_batch_1", "wb") as handle:
        pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]}, handle)
    return root


def _tree(root: Path) -> dict[str, float]:
    return {str(p.relative_to(root)): p.stat().st_mtime for p in root.rglob("*")}


def _check(status: int, stderr: str, message: str) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert status != 0
    assert "Traceback" not in stderr, stderr
    assert len(lines) == 1 and lines[0].startswith("drivelab: error:"), stderr
    assert message in lines[0], lines[0]


@pytest.fixture(scope="module")
def subprocess_runs(workdir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple]:
    """Every case of CASES run once, each in its own copy of the inputs, a few at a time (each pays a torch import)."""
    folders = {}
    for name, _, _ in CASES:
        folders[name] = tmp_path_factory.mktemp("case") / "work"
        shutil.copytree(workdir, folders[name])
    env = {**os.environ, "SDL_VIDEODRIVER": "offscreen"}

    def run(case: tuple) -> tuple:
        name, args, _ = case
        before = _tree(folders[name])
        done = subprocess.run([*CLI, *args], cwd=folders[name], env=env, capture_output=True, text=True, timeout=300)
        return done.returncode, done.stderr, before, _tree(folders[name])

    workers = max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 2))
    with ThreadPoolExecutor(workers) as pool:
        return dict(zip([case[0] for case in CASES], pool.map(run, CASES)))


@pytest.mark.parametrize(("name", "message"), [(case[0], case[2]) for case in CASES], ids=[case[0] for case in CASES])
def test_bad_input_gives_one_line(subprocess_runs: dict[str, tuple], name: str, message: str) -> None:
    status, stderr, before, after = subprocess_runs[name]
    _check(status, stderr, message)
    assert after == before  # nothing new, nothing touched


@pytest.mark.parametrize(("args", "message"), [case[1:] for case in MORE_CASES], ids=[c[0] for c in MORE_CASES])
def test_more_bad_inputs_in_process(workdir: Path, args: list[str], message: str, capsys: pytest.CaptureFixture,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from drivelab.benchmarks.cli import main

    monkeypatch.chdir(workdir)
    before = _tree(workdir)
    capsys.readouterr()
    status = main(args)
    _check(status, capsys.readouterr().err, message)
    assert _tree(workdir) == before
