"""Weights-only checkpoints: one safetensors file holding tensors plus a JSON spec.

The spec (``kind``, the config that rebuilds the model, class names, ...) lives in the
safetensors metadata, so loading never unpickles anything. Files are written atomically.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from drivelab.perception.errors import CheckpointError

FORMAT_VERSION = 1
_SPEC_KEY = "drivelab_spec"


def save_checkpoint(path: str | os.PathLike, model: nn.Module, spec: dict[str, Any]) -> Path:
    """Write ``model``'s state dict and ``spec`` to ``path`` atomically.

    Args:
        path: Target ``.safetensors`` file.
        model: The module whose ``state_dict`` is saved.
        spec: JSON-serialisable description; must contain ``kind``.

    Returns:
        The written path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    spec = {"format_version": FORMAT_VERSION, **spec}
    # safetensors refuses shared or non-contiguous storage; clone each tensor.
    tensors = {key: value.detach().cpu().contiguous().clone() for key, value in model.state_dict().items()}
    handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        save_file(tensors, tmp_name, metadata={_SPEC_KEY: json.dumps(spec, sort_keys=True)})
        os.replace(tmp_name, path)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return path


def read_checkpoint(
    path: str | os.PathLike, kinds: tuple[str, ...] | None = None
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read the spec and tensors of a checkpoint.

    Args:
        path: A file written by :func:`save_checkpoint`.
        kinds: Accepted ``spec["kind"]`` values; ``None`` accepts any.

    Returns:
        ``(spec, state_dict)``.

    Raises:
        CheckpointError: The file is missing, corrupt, not a drivelab checkpoint, or of
            another kind.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"checkpoint {path} is not a readable safetensors file: {error}") from error
    if _SPEC_KEY not in metadata:
        raise CheckpointError(f"checkpoint {path} has no drivelab spec; was it written by drivelab?")
    try:
        spec = json.loads(metadata[_SPEC_KEY])
    except json.JSONDecodeError as error:
        raise CheckpointError(f"checkpoint {path} has a corrupt spec: {error}") from error
    if kinds is not None and spec.get("kind") not in kinds:
        raise CheckpointError(
            f"checkpoint {path} holds a {spec.get('kind')!r} model; expected one of {list(kinds)}"
        )
    return spec, state


def load_state_strict(model: nn.Module, state: dict[str, torch.Tensor], path: str | os.PathLike) -> None:
    """Load ``state`` into ``model``, turning any key or shape mismatch into a CheckpointError."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong_shape = [
        f"{key} {tuple(state[key].shape)} vs {tuple(own[key].shape)}"
        for key in sorted(set(own) & set(state))
        if own[key].shape != state[key].shape
    ]
    if missing or unexpected or wrong_shape:
        details = "; ".join(
            part
            for part in (
                f"missing {missing[:4]}" if missing else "",
                f"unexpected {unexpected[:4]}" if unexpected else "",
                f"shape mismatch {wrong_shape[:4]}" if wrong_shape else "",
            )
            if part
        )
        raise CheckpointError(f"checkpoint {path} does not fit the architecture in its spec: {details}")
    model.load_state_dict(state)
