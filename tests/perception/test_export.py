"""ONNX export: onnxruntime matches torch; int8 model runs; figures are reported."""

from __future__ import annotations

from pathlib import Path

import torch

from drivelab.perception.classify import Classifier, ClassifierConfig
from drivelab.perception.detect import CenterNet, DetectorConfig
from drivelab.perception.export import export_and_check


def test_classifier_and_detector_export(tmp_path: Path) -> None:
    torch.manual_seed(0)
    frames = torch.randint(0, 256, (8, 1, 64, 128), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    for name, model in (("cls", Classifier(ClassifierConfig(("a", "b", "c")))), ("det", CenterNet(DetectorConfig()))):
        report = export_and_check(model.eval(), frames, tmp_path / name, repeats=2)
        assert report["parity_ok"], report["max_abs_diff"]
        assert Path(report["onnx_int8"]).exists()
        assert set(report["max_abs_diff"]) == ({"output"} if name == "cls" else {"heatmap", "size", "offset"})
        assert all(v > 0 for v in report["frames_per_s"].values())
        # int8 weights of the linear layer change the logits a little, not wholesale
        assert max(report["max_abs_diff_int8"].values()) < 0.5
