"""The detector model: targets decode back to the boxes, NMS, loss values, config checks, loading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from drivelab.core.config import from_mapping
from drivelab.core.errors import CheckpointError, ConfigError
from drivelab.perception.centernet import (
    CenterNet,
    DetectorConfig,
    checkpoint_spec,
    decode,
    encode_targets,
    focal_loss,
    load_detector,
    nms,
)
from drivelab.perception.checkpoints import save_checkpoint
from drivelab.perception.classify import Classifier, ClassifierConfig
from drivelab.perception.classify import checkpoint_spec as classifier_spec
from drivelab.perception.detector_pipeline import DetectorTrainConfig


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


@pytest.mark.parametrize(("values", "message"), [
    ({"epochs": "20"}, r"'epochs' expects int, got '20'"),
    ({"epochs": 0}, r"'epochs' must be in \[1, "),
    ({"batch_size": 0}, r"'batch_size' must be in \[1, "),
    ({"width_mult": 0}, r"'width_mult' must be in \[1, "),
    ({"output_stride": 8}, r"'output_stride' expects one of 2, 4"),
    ({"learning_rate": -1.0}, r"'learning_rate' must be in \(0, "),
])
def test_training_config_is_typed_and_bounded(values: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_mapping(DetectorTrainConfig, values, "detector training config")


def test_a_spec_with_a_bad_model_config_is_a_checkpoint_error(tmp_path: Path) -> None:
    spec = checkpoint_spec(DetectorConfig())
    spec["model"]["width_mult"] = "16"
    path = save_checkpoint(tmp_path / "d.safetensors", CenterNet(DetectorConfig()), spec)
    with pytest.raises(CheckpointError, match=r"d.safetensors model spec key 'width_mult' expects int"):
        load_detector(path)


def test_classifier_checkpoint_is_not_a_detector(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "c.safetensors", Classifier(ClassifierConfig(("a", "b"))),
                           classifier_spec(ClassifierConfig(("a", "b"))))
    with pytest.raises(CheckpointError, match=r"c.safetensors holds a 'classifier' model"):
        load_detector(path)
