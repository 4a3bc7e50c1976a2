"""`drivelab perception ...` end to end on tiny inputs; bad input exits 2 with one clear line."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from drivelab.benchmarks.cli import main


def test_classifier_commands(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    assert main(["perception", "train-classifier", "--format", "digits", "--resize", "16x16", "--epochs", "1",
                 "--out", str(run), "--no-progress"]) == 0
    assert main(["perception", "eval-classifier", "--format", "digits", "--resize", "16x16", "--split", "val",
                 "--checkpoint", str(run / "best.safetensors"), "--out", str(tmp_path / "eval")]) == 0
    assert "macro avg" in capsys.readouterr().out
    assert (tmp_path / "eval" / "confusion_matrix.png").exists()
    frame = tmp_path / "digit.png"
    cv2.imwrite(str(frame), np.zeros((16, 16), np.uint8))
    assert main(["perception", "explain", "--checkpoint", str(run / "best.safetensors"), "--image", str(frame),
                 "--target", "3", "--out", str(tmp_path / "explain.png")]) == 0
    assert cv2.imread(str(tmp_path / "explain.png")).shape == (64, 192, 3)
    assert main(["perception", "export", "--checkpoint", str(run / "best.safetensors"), "--batch", "4",
                 "--out", str(tmp_path / "export")]) == 0
    assert json.loads((tmp_path / "export" / "export.json").read_text())["parity_ok"]
    # A classifier checkpoint given to a detector command: one line, exit status 2.
    assert main(["perception", "eval-detector", "--checkpoint", str(run / "best.safetensors"),
                 "--data", str(tmp_path), "--out", str(tmp_path / "x")]) == 2
    assert "holds a 'classifier' model" in capsys.readouterr().err


def test_detector_commands_on_a_generated_dataset(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = tmp_path / "data"
    assert main(["perception", "make-dataset", "--frames", "30", "--num-envs", "4", "--out", str(data),
                 "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out)["counts"] == {"train": 24, "val": 3, "test": 3}
    run = tmp_path / "det"
    assert main(["perception", "train-detector", "--data", str(data), "--epochs", "1", "--eval-every", "1",
                 "--out", str(run), "--no-progress"]) == 0
    assert main(["perception", "eval-detector", "--checkpoint", str(run / "last.safetensors"), "--data", str(data),
                 "--out", str(tmp_path / "eval")]) == 0
    assert "AP50" in capsys.readouterr().out
    assert main(["perception", "predict", "--checkpoint", str(run / "last.safetensors"), "--images", str(data),
                 "--split", "val", "--out", str(tmp_path / "pred")]) == 0
    assert len(list((tmp_path / "pred").glob("*.png"))) == 3
    assert main(["perception", "train-classifier", "--format", "affordance", "--data", str(data), "--epochs", "1",
                 "--out", str(tmp_path / "aff"), "--no-progress"]) == 0


def test_bad_inputs_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["perception", "eval-classifier", "--format", "digits",
                 "--checkpoint", str(tmp_path / "none.safetensors"),
                 "--out", str(tmp_path / "o")]) == 2
    assert "none.safetensors does not exist" in capsys.readouterr().err
    (tmp_path / "cat").mkdir()
    cv2.imwrite(str(tmp_path / "cat" / "a.png"), np.zeros((4, 4), np.uint8))
    (tmp_path / "cat" / "b.png").write_bytes(b"broken")
    assert main(["perception", "train-classifier", "--format", "imagefolder", "--data", str(tmp_path),
                 "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    assert "b.png is corrupt" in capsys.readouterr().err
    assert main(["perception", "make-dataset", "--frames", "10", "--camera", "colour=rgb",
                 "--out", str(tmp_path / "d")]) == 2
    assert "unknown --camera key" in capsys.readouterr().err
