"""Weights-only checkpoints: one safetensors file holding tensors plus a JSON spec.

The spec (``kind``, the config that rebuilds the model, class names, ...) lives in the
safetensors metadata, so loading never unpickles anything. Files are written atomically.
Every problem with a checkpoint raises ``drivelab.core.errors.CheckpointError`` naming the file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from drivelab.core.config import from_mapping, to_plain
from drivelab.core.errors import CheckpointError, ConfigError
from drivelab.core.files import atomic_output

FORMAT_VERSION = 1
_SPEC_KEY = "drivelab_spec"
ConfigT = TypeVar("ConfigT")


def save_checkpoint(path: str | os.PathLike, model: nn.Module, spec: dict[str, Any]) -> Path:
    """Write ``model``'s state dict and ``spec`` to ``path`` atomically.

    Args:
        path: Target ``.safetensors`` file.
        model: The module whose ``state_dict`` is saved.
        spec: JSON-serialisable description; must contain ``kind``.

    Returns:
        The written path.
    """
    spec = {"format_version": FORMAT_VERSION, **spec}
    # safetensors refuses shared or non-contiguous storage; clone each tensor.
    tensors = {key: value.detach().cpu().contiguous().clone() for key, value in model.state_dict().items()}
    with atomic_output(path) as tmp:
        save_file(tensors, str(tmp), metadata={_SPEC_KEY: json.dumps(spec, sort_keys=True)})
    return Path(path)


def model_spec(kind: str, config: Any, encoder: Any, encoder_state_map: dict[str, str], **extra: Any) -> dict[str, Any]:
    """The JSON spec stored with a model's weights.

    Args:
        kind: ``"classifier"``, ``"detector"`` or ``"encoder"``.
        config: The model config dataclass that rebuilds the model (``None`` for a bare encoder).
        encoder: The ``EncoderSpec`` of the trunk inside the model (what RL agents can reuse).
        encoder_state_map: State-dict prefix of the model -> prefix inside that encoder.
        extra: More JSON fields (epoch, training config, ...).
    """
    spec: dict[str, Any] = {"kind": kind}
    if config is not None:
        spec["model"] = to_plain(config)
    return {**spec, "encoder": to_plain(encoder), "encoder_state_map": dict(encoder_state_map), **extra}


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
    if not isinstance(spec, dict):
        raise CheckpointError(f"checkpoint {path} has a corrupt spec: expected a JSON object")
    if kinds is not None and spec.get("kind") not in kinds:
        raise CheckpointError(
            f"checkpoint {path} holds a {spec.get('kind')!r} model; expected one of {list(kinds)}"
        )
    return spec, state


def spec_config(cls: type[ConfigT], spec: dict[str, Any], key: str, path: str | os.PathLike) -> ConfigT:
    """The config dataclass stored under ``spec[key]``, type- and range-checked.

    Raises:
        CheckpointError: The entry is missing or does not describe a valid ``cls``.
    """
    if key not in spec:
        raise CheckpointError(f"checkpoint {path} ({spec.get('kind')}) carries no {key!r} spec")
    try:
        return from_mapping(cls, spec[key], f"checkpoint {path} {key} spec")
    except ConfigError as error:
        raise CheckpointError(str(error)) from error


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


def load_model(
    path: str | os.PathLike, kind: str, config_cls: type[ConfigT], build: Callable[[ConfigT], nn.Module]
) -> nn.Module:
    """Rebuild a ``kind`` model from its checkpoint: config from the spec, then the weights.

    Returns:
        The model in eval mode, channels-last (oneDNN's fast path on CPU).

    Raises:
        CheckpointError: Another kind of model, a corrupt spec, or weights that do not fit.
    """
    spec, state = read_checkpoint(path, kinds=(kind,))
    model = build(spec_config(config_cls, spec, "model", path))
    load_state_strict(model, state, path)
    return model.to(memory_format=torch.channels_last).eval()
