"""ONNX export: onnxruntime, run here, matches torch; the int8 model is quantized and close."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from drivelab.perception.centernet import CenterNet, DetectorConfig
from drivelab.perception.classify import Classifier, ClassifierConfig
from drivelab.perception.export import TupleOutputs, export_and_check


def _run_onnx(path: str, frames: torch.Tensor) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {"frames": frames.numpy()})))


@pytest.mark.parametrize("name", ["cls", "det"])
def test_classifier_and_detector_export(tmp_path: Path, name: str) -> None:
    torch.manual_seed(0)
    model = (Classifier(ClassifierConfig(("a", "b", "c"))) if name == "cls" else CenterNet(DetectorConfig())).eval()
    frames = torch.randint(0, 256, (8, 1, 64, 128), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    report = export_and_check(model, frames, tmp_path / name, repeats=2)
    expected_names = ["output"] if name == "cls" else ["heatmap", "size", "offset"]
    # Our own reference: torch outputs on other frames and another batch size (the batch axis is dynamic).
    other = torch.randint(0, 256, (3, 1, 64, 128), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        reference = dict(zip(expected_names, (t.numpy() for t in TupleOutputs(model)(other))))
    float_outputs = _run_onnx(report["onnx"], other)
    assert list(float_outputs) == expected_names
    for key, value in reference.items():
        np.testing.assert_allclose(float_outputs[key], value, rtol=1e-4, atol=1e-4, err_msg=key)
    # The reported parity is the difference measured on the report's own frames.
    with torch.no_grad():
        on_frames = dict(zip(expected_names, (t.numpy() for t in TupleOutputs(model)(frames))))
    measured = _run_onnx(report["onnx"], frames)
    for key in expected_names:
        assert report["max_abs_diff"][key] == pytest.approx(float(np.abs(measured[key] - on_frames[key]).max()),
                                                            abs=1e-7)
    assert report["parity_ok"] == all(v <= report["atol"] for v in report["max_abs_diff"].values())
    # The int8 model really holds quantized layers where there are fully connected ones, and stays close.
    ops = {node.op_type for node in onnx.load(report["onnx_int8"]).graph.node}
    if name == "cls":
        assert {"DynamicQuantizeLinear", "MatMulInteger"} <= ops
    int8_outputs = _run_onnx(report["onnx_int8"], other)
    for key, value in reference.items():
        # int8 weights of the linear layer change the logits a little, not wholesale
        assert float(np.abs(int8_outputs[key] - value).max()) < 0.5, key
    assert set(report["frames_per_s"]) == {"torch", "onnxruntime", "onnxruntime_int8"}
