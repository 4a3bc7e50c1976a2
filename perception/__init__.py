"""drivelab.perception: CNN encoders, camera datasets, classification, detection, explain, export.

Public names load on first use, so ``import drivelab.perception`` stays cheap::

    from drivelab.perception import EncoderExtractor, load_detector, make_dataset

Modules: ``encoders`` (CNN trunks), ``extractor`` (Stable-Baselines3 features extractor),
``images`` (containers, decoding), ``readers`` (COCO, YOLO, ImageFolder, CIFAR-10, MNIST,
digits, affordance CSV), ``datasets`` (frames + labels from the simulator), ``classify``
(classifier model and pipeline), ``centernet`` (the detector model: network, targets, loss,
decoding, loading), ``detector_pipeline`` (detector training, evaluation, prediction, overlays),
``coco_eval``, ``explain``, ``export``, ``checkpoints`` (weights-only safetensors files).

Errors: ``DatasetError`` here; ``ConfigError`` and ``CheckpointError`` from ``drivelab.core.errors``.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "EncoderSpec": "encoders", "ConvEncoder": "encoders", "build_encoder": "encoders", "TRUNK_NAMES": "encoders",
    "EncoderExtractor": "extractor", "load_encoder": "extractor", "save_encoder": "extractor",
    "ClassificationDataset": "images", "DetectionDataset": "images", "read_coco": "readers",
    "read_yolo": "readers", "read_image_folder": "readers", "read_cifar10": "readers", "read_mnist": "readers",
    "load_digits_dataset": "readers", "read_label_csv": "readers", "read_classification": "readers",
    "read_detection": "readers",
    "DatasetConfig": "datasets", "make_dataset": "datasets", "affordance_labels": "datasets",
    "Classifier": "classify", "ClassifierConfig": "classify", "ClassifierTrainConfig": "classify",
    "train_classifier": "classify", "evaluate_classifier": "classify", "load_classifier": "classify",
    "CenterNet": "centernet", "DetectorConfig": "centernet", "load_detector": "centernet", "decode": "centernet",
    "DetectorTrainConfig": "detector_pipeline", "train_detector": "detector_pipeline",
    "evaluate_detector": "detector_pipeline", "predict_detections": "detector_pipeline",
    "evaluate_coco": "coco_eval", "evaluate_with_pycocotools": "coco_eval",
    "saliency": "explain", "grad_cam": "explain",
    "export_and_check": "export",
    "DatasetError": "errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'drivelab.perception' has no attribute {name!r}")
    return getattr(importlib.import_module(f"drivelab.perception.{_EXPORTS[name]}"), name)
