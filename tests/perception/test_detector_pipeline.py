"""The detector pipeline: learning on synthetic frames, COCO metrics against pycocotools, overlays."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from drivelab.perception.centernet import CenterNet, DetectorConfig, load_detector
from drivelab.perception.detector_pipeline import DetectorTrainConfig, evaluate_detector, train_detector, write_overlays
from drivelab.perception.readers import read_coco


def test_detector_learns_synthetic_frames(synthetic_coco: Path, tmp_path: Path) -> None:
    train, val = read_coco(synthetic_coco / "train.json"), read_coco(synthetic_coco / "val.json")
    config = DetectorTrainConfig(epochs=6, eval_every=6, batch_size=16, learning_rate=5e-3, seed=0)
    record = train_detector(train, val, tmp_path, config, progress=False)
    assert record["best_val_AP"] > 0.7
    model = load_detector(tmp_path / "best.safetensors")
    metrics = evaluate_detector(model, val, tmp_path / "eval")
    assert metrics["stats"]["AP50"] > 0.95
    for name, value in metrics["stats"].items():  # our numbers equal pycocotools' on real predictions
        assert value == pytest.approx(metrics["pycocotools"][name], abs=1e-12), name
    assert (tmp_path / "eval" / "pr_curve.png").exists() and (tmp_path / "tb").is_dir()
    written = write_overlays(model, val.load_images()[:3], tmp_path / "overlays")
    assert len(written) == 3 and all(p.exists() for p in written)
    video = write_overlays(model, val.load_images()[:4], tmp_path / "pred.mp4")
    assert video[0].stat().st_size > 0


def test_same_seed_same_detector(synthetic_coco: Path, tmp_path: Path) -> None:
    train = read_coco(synthetic_coco / "val.json")
    config = DetectorTrainConfig(epochs=1, eval_every=1, batch_size=16, seed=3)
    for run in ("a", "b"):
        train_detector(train, train, tmp_path / run, config, progress=False)
    a, b = load_detector(tmp_path / "a" / "last.safetensors"), load_detector(tmp_path / "b" / "last.safetensors")
    for (key, left), right in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(left, right), key


def test_untrained_detector_evaluates_to_zero_not_crash(synthetic_coco: Path) -> None:
    model = CenterNet(DetectorConfig())
    with torch.no_grad():  # no peak can pass the score threshold
        model.heatmap[-1].bias.fill_(-50.0)
    metrics = evaluate_detector(model, read_coco(synthetic_coco / "val.json"))
    assert metrics["num_detections"] == 0
    assert metrics["stats"]["AP"] == 0.0 and metrics["pycocotools"]["AP"] == 0.0
