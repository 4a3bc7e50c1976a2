"""Detector: targets decode back to the boxes, NMS, loss values, and learning on synthetic frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from drivelab.perception.checkpoints import save_checkpoint
from drivelab.perception.classify import Classifier, ClassifierConfig, checkpoint_spec as classifier_spec
from drivelab.perception.detect import (
    CenterNet, DetectorConfig, decode, encode_targets, focal_loss, load_detector, nms,
)
from drivelab.perception.detection import DetectorTrainConfig, evaluate_detector, train_detector, write_overlays
from drivelab.perception.errors import CheckpointError, ConfigError
from drivelab.perception.readers import read_coco


def _targets_as_outputs(targets: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    outputs = {key: torch.from_numpy(value)[None] for key, value in targets.items() if key != "mask"}
    outputs["heatmap"] = torch.logit(outputs["heatmap"].clamp(1e-6, 1 - 1e-6))
    return outputs


@pytest.mark.parametrize("stride", [2, 4])
def test_targets_decode_to_the_same_boxes(stride: int) -> None:
    config = DetectorConfig(output_stride=stride)
    boxes = np.array([[33, 30, 43, 34], [86, 38, 96, 42], [0, 10, 7, 14], [120, 50, 128, 54]], float)
    classes = np.array([1, 0, 0, 0])
    targets = encode_targets(boxes, classes, config)
    assert targets["heatmap"].max() == 1.0 and targets["mask"].sum() == 4
    (decoded,) = decode(_targets_as_outputs(targets), stride, score_threshold=0.5)
    order = np.lexsort((decoded["boxes"][:, 1].numpy(), decoded["boxes"][:, 0].numpy()))
    expected = np.lexsort((boxes[:, 1], boxes[:, 0]))
    np.testing.assert_allclose(decoded["boxes"].numpy()[order], boxes[expected], atol=1e-5)
    np.testing.assert_array_equal(decoded["classes"].numpy()[order], classes[expected])


def test_nms_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 50, (40, 2))
    boxes = torch.tensor(np.concatenate([xy, xy + rng.uniform(5, 20, (40, 2))], axis=1), dtype=torch.float32)
    scores = torch.tensor(rng.random(40), dtype=torch.float32)
    kept = nms(boxes, scores, 0.3).tolist()

    def iou(a, b):
        w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = w * h
        return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)

    expected = []
    for i in np.argsort(-scores.numpy(), kind="stable"):
        if all(iou(boxes[i].tolist(), boxes[j].tolist()) <= 0.3 for j in expected):
            expected.append(int(i))
    assert kept == expected


def test_focal_loss_closed_form() -> None:
    # One positive at p = 0.5 and one negative (target 0) at p = 0.5:
    # positive: -log(0.5) * 0.5^2, negative: -log(0.5) * 0.5^2 * 1; one object.
    logits = torch.zeros(1, 1, 1, 2)
    target = torch.tensor([[[[1.0, 0.0]]]])
    assert focal_loss(logits, target).item() == pytest.approx(2 * np.log(2) * 0.25, rel=1e-5)


def test_config_rejects_bad_stride() -> None:
    with pytest.raises(ConfigError, match="output_stride"):
        DetectorConfig(output_stride=8)


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


def test_classifier_checkpoint_is_not_a_detector(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "c.safetensors", Classifier(ClassifierConfig(("a", "b"))),
                           classifier_spec(ClassifierConfig(("a", "b"))))
    with pytest.raises(CheckpointError, match=r"c.safetensors holds a 'classifier' model"):
        load_detector(path)
