"""ONNX export with an onnxruntime parity check, dynamic int8 quantization, and speed figures.

Nothing here changes process state: torch runs with the caller's thread count (the CLI sets it
from ``--threads``); onnxruntime sessions get their own ``threads``.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from drivelab.core.errors import CheckpointError
from drivelab.core.files import atomic_output


class TupleOutputs(nn.Module):
    """Wraps a model so its outputs are a tuple (ONNX needs positional outputs)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(frames)
        return tuple(out.values()) if isinstance(out, dict) else (out,)


def output_names(model: nn.Module, example: torch.Tensor) -> list[str]:
    """Names of the model's outputs: dict keys, or ``logits``/``features`` for a tensor."""
    with torch.no_grad():
        out = model(example[:1])
    return list(out) if isinstance(out, dict) else ["output"]


def export_onnx(model: nn.Module, example: torch.Tensor, path: str | os.PathLike, opset: int = 17) -> Path:
    """Export ``model`` (uint8 (B, C, H, W) input, dynamic batch) to ONNX, atomically."""
    model = model.eval()
    names = output_names(model, example)
    dynamic = {"frames": {0: "batch"}, **{name: {0: "batch"} for name in names}}
    with atomic_output(path) as tmp:
        # The TorchScript exporter: the dynamo exporter needs onnxscript, which is not installed.
        torch.onnx.export(TupleOutputs(model), (example,), str(tmp), input_names=["frames"], output_names=names,
                          dynamic_axes=dynamic, opset_version=opset, dynamo=False)
    return Path(path)


def onnx_session(path: str | os.PathLike, threads: int = 1) -> Any:
    """An onnxruntime CPU session with ``threads`` intra-op threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own exception types for bad files
        raise CheckpointError(f"onnxruntime cannot load {path}: {error}") from error


def parity(model: nn.Module, session: Any, frames: torch.Tensor) -> dict[str, float]:
    """Largest absolute difference per output between torch and onnxruntime on ``frames``."""
    with torch.no_grad():
        reference = TupleOutputs(model.eval())(frames)
    outputs = session.run(None, {"frames": frames.numpy()})
    names = [o.name for o in session.get_outputs()]
    return {name: float(np.max(np.abs(ref.numpy() - out))) for name, ref, out in zip(names, reference, outputs)}


def quantize_int8(
    onnx_path: str | os.PathLike, out_path: str | os.PathLike, op_types: tuple[str, ...] = ("MatMul", "Gemm")
) -> Path:
    """Dynamic int8 quantization (int8 weights, activations quantized at run time).

    Only ``op_types`` are quantized: by default the fully connected layers, where int8 pays
    off on CPU; onnxruntime's ConvInteger kernels were slower than float convolutions here.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="drivelab-quantize-") as work:
        # onnxruntime's recommended pre-processing (shape inference, graph optimisation) first.
        prepared = Path(work) / "prepared.onnx"
        quant_pre_process(str(onnx_path), str(prepared))
        with atomic_output(out_path) as tmp:
            quantize_dynamic(str(prepared), str(tmp), weight_type=QuantType.QInt8, op_types_to_quantize=list(op_types))
    return Path(out_path)


def frames_per_second(run: Callable[[], object], batch: int, repeats: int = 20, warmup: int = 3) -> float:
    """Throughput of ``run`` (one batch per call) [frames/s], median over ``repeats`` calls."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return batch / float(np.median(times))


def export_and_check(
    model: nn.Module, frames: torch.Tensor, out_dir: str | os.PathLike, threads: int = 1,
    atol: float = 1e-4, repeats: int = 20,
) -> dict[str, Any]:
    """Export to ONNX, check parity, quantize to int8, and measure throughput of all three.

    Args:
        model: A drivelab model taking uint8 frames.
        frames: (B, C, H, W) uint8 batch used for parity and timing.
        out_dir: Receives ``model.onnx`` and ``model.int8.onnx``.
        threads: Intra-op CPU threads of the onnxruntime sessions (torch keeps the process's
            setting, reported as ``torch_threads``).
        atol: Largest accepted |torch - onnxruntime| for the float model.

    Returns:
        Paths, parity per output, whether it passed, frames/s and speed-ups against torch.
    """
    out_dir = Path(out_dir)
    float_path = export_onnx(model, frames, out_dir / "model.onnx")
    int8_path = quantize_int8(float_path, out_dir / "model.int8.onnx")
    float_session, int8_session = onnx_session(float_path, threads), onnx_session(int8_path, threads)
    float_diff, int8_diff = parity(model, float_session, frames), parity(model, int8_session, frames)
    feed = {"frames": frames.numpy()}
    with torch.no_grad():
        torch_fps = frames_per_second(lambda: model(frames), len(frames), repeats)
    onnx_fps = frames_per_second(lambda: float_session.run(None, feed), len(frames), repeats)
    int8_fps = frames_per_second(lambda: int8_session.run(None, feed), len(frames), repeats)
    return {
        "onnx": str(float_path), "onnx_int8": str(int8_path),
        "batch": len(frames), "threads": threads, "torch_threads": torch.get_num_threads(),
        "max_abs_diff": float_diff, "max_abs_diff_int8": int8_diff,
        "parity_ok": all(value <= atol for value in float_diff.values()), "atol": atol,
        "frames_per_s": {"torch": torch_fps, "onnxruntime": onnx_fps, "onnxruntime_int8": int8_fps},
        "speedup_vs_torch": {"onnxruntime": onnx_fps / torch_fps, "onnxruntime_int8": int8_fps / torch_fps},
    }
