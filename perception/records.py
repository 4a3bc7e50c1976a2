"""Run records and JSON writes of the perception pipelines (atomic, through drivelab.envs.records)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from drivelab.core import provenance as records
from drivelab.core.files import atomic_output

__all__ = ["atomic_output", "machine_info", "write_json"]


def write_json(path: str | os.PathLike, payload: Any) -> Path:
    """Write ``payload`` as indented json, atomically."""
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")
    return Path(path)


def machine_info() -> dict[str, Any]:
    """``drivelab.envs.records.machine_info()`` plus torch's threads and CUDA."""
    return {**records.machine_info(), "torch_threads": torch.get_num_threads(), "cuda": torch.cuda.is_available()}
