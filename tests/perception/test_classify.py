"""Classification pipeline on scikit-learn's digits and a multi-label task on drawn frames."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from perception_helpers import draw_frames
from sklearn.metrics import accuracy_score, f1_score

from drivelab.core.config import from_mapping
from drivelab.core.errors import CheckpointError, ConfigError
from drivelab.perception.classify import (
    ClassifierTrainConfig,
    evaluate_classifier,
    load_classifier,
    predict_scores,
    train_classifier,
)
from drivelab.perception.errors import DatasetError
from drivelab.perception.readers import ClassificationDataset, read_classification


def test_digits_reach_high_accuracy(tmp_path: Path) -> None:
    train = read_classification("digits", None, "train", resize_hw=(32, 32))
    val = read_classification("digits", None, "val", resize_hw=(32, 32))
    record = train_classifier(train, val, tmp_path, ClassifierTrainConfig(epochs=8, seed=0), progress=False)
    model = load_classifier(tmp_path / "best.safetensors")
    metrics = evaluate_classifier(model, val, tmp_path / "eval")
    assert metrics["accuracy"] >= 0.96
    predicted = predict_scores(model, val.images).argmax(axis=1)  # reference: sklearn on the same predictions
    assert metrics["accuracy"] == pytest.approx(accuracy_score(val.labels, predicted))
    assert metrics["macro_f1"] == pytest.approx(f1_score(val.labels, predicted, average="macro"))
    assert np.asarray(metrics["confusion_matrix"]).sum() == len(val)
    assert record["best_val_macro_f1"] == pytest.approx(max(h["val_macro_f1"] for h in record["history"]))
    for name in ("metrics.json", "report.txt", "confusion_matrix.png"):
        assert (tmp_path / "eval" / name).exists()
    assert json.loads((tmp_path / "run.json").read_text())["machine"]["cpu_count"] >= 1


def _lane_task(count: int, seed: int) -> ClassificationDataset:
    """Multi-label: is there a car above the ego row / below it / at all left of x=64."""
    images, boxes, _ = draw_frames(count, seed)
    labels = np.array([[int((b[1:, 1] < 30).any()), int((b[1:, 1] > 34).any()), int((b[1:, 0] < 64).any())]
                       for b in boxes], np.int64)
    return ClassificationDataset(images, labels, ("car_above", "car_below", "car_left_half"), multi_label=True)


def test_multi_label_learns_and_same_seed_same_model(tmp_path: Path) -> None:
    train, val = _lane_task(320, 0), _lane_task(96, 1)
    config = ClassifierTrainConfig(epochs=6, seed=1, batch_size=32)
    first = train_classifier(train, val, tmp_path / "a", config, progress=False)
    second = train_classifier(train, val, tmp_path / "b", config, progress=False)
    assert first["history"] == second["history"]
    metrics = evaluate_classifier(load_classifier(tmp_path / "a" / "best.safetensors"), val, tmp_path / "eval")
    assert metrics["macro_f1"] > 0.8
    assert np.asarray(metrics["confusion_matrix"]).shape == (3, 2, 2)


def test_wrong_inputs_are_named(tmp_path: Path) -> None:
    train = read_classification("digits", None, "train", resize_hw=(16, 16))
    train_classifier(train.subset(np.arange(64)), train.subset(np.arange(64)), tmp_path,
                     ClassifierTrainConfig(epochs=1), progress=False)
    model = load_classifier(tmp_path / "last.safetensors")
    other_size = read_classification("digits", None, "val", resize_hw=(32, 32))
    with pytest.raises(DatasetError, match="images are 32x32x1"):
        evaluate_classifier(model, other_size)
    bad = train.subset(np.arange(4))
    bad.labels[2] = 12
    with pytest.raises(DatasetError, match="entry 2 has label 12 out of range"):
        evaluate_classifier(model, bad)
    (tmp_path / "broken.safetensors").write_bytes((tmp_path / "last.safetensors").read_bytes()[:100])
    with pytest.raises(CheckpointError, match="broken.safetensors"):
        load_classifier(tmp_path / "broken.safetensors")


def test_unknown_config_key_names_valid_keys() -> None:
    with pytest.raises(ConfigError, match=r"unknown classifier training config key 'epoch'. Valid keys: epochs"):
        from_mapping(ClassifierTrainConfig, {"epoch": 3}, "classifier training config")
    assert from_mapping(ClassifierTrainConfig, {"epochs": 3}, "classifier training config").epochs == 3


@pytest.mark.parametrize(("values", "message"), [
    ({"epochs": "20"}, r"'epochs' expects int, got '20'"),
    ({"epochs": 0}, r"'epochs' must be in \[1, "),
    ({"batch_size": 0}, r"'batch_size' must be in \[1, "),
    ({"learning_rate": 0.0}, r"'learning_rate' must be in \(0, "),
    ({"augment_shift_px": -4}, r"'augment_shift_px' must be in \[0, "),
    ({"features_dim": 2.5}, r"'features_dim' expects int"),
])
def test_training_config_is_typed_and_bounded(values: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_mapping(ClassifierTrainConfig, values, "classifier training config")


def test_training_refuses_a_directly_built_bad_config(tmp_path: Path) -> None:
    """Bounds hold for configs built without the parser too, before anything is written."""
    train = read_classification("digits", None, "train", resize_hw=(16, 16)).subset(np.arange(8))
    with pytest.raises(ConfigError, match="'epochs' must be in"):
        train_classifier(train, train, tmp_path / "run", ClassifierTrainConfig(epochs=0), progress=False)
    assert not (tmp_path / "run").exists()
