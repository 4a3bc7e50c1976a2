"""What a run directory records about how it was made: config, command, commit, versions, machine."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from drivelab.agents.configs import TrainConfig
from drivelab.core import provenance as records

CONFIG_YAML, CONFIG_JSON, RUN_JSON = "config.yaml", "config.json", "run.json"


def git_commit(folder: Path | None = None) -> dict[str, Any]:
    """Commit and dirty flag of the git checkout holding ``folder`` (this package by default)."""
    described = records.git_commit(folder)
    if described == "unknown":
        return {"commit": None, "dirty": None}
    return {"commit": described.removesuffix("-dirty"), "dirty": described.endswith("-dirty")}


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that decide a run's numbers."""
    return records.package_versions()


def machine_info() -> dict[str, Any]:
    """CPU, accelerator and Python facts for result files."""
    cuda = torch.cuda.is_available()
    return {
        **records.machine_info(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if cuda else None,
    }


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_config(run_dir: Path, config: TrainConfig) -> None:
    """Save the resolved config as YAML (to read) and JSON (to reload)."""
    plain = config.to_dict()
    _write_atomic(run_dir / CONFIG_YAML, yaml.safe_dump(plain, sort_keys=False))
    _write_atomic(run_dir / CONFIG_JSON, json.dumps(plain, indent=2))


def record_start(run_dir: Path, command: list[str] | None, device: str, resumed_from: int | None) -> None:
    """Create or extend ``run.json`` with this invocation (command, commit, versions, machine)."""
    path = run_dir / RUN_JSON
    record: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {"invocations": []}
    record["invocations"].append({
        "command": command if command is not None else sys.argv,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "resumed_from_step": resumed_from,
        "device": device,
        "git": git_commit(),
        "packages": package_versions(),
        "machine": machine_info(),
    })
    _write_atomic(path, json.dumps(record, indent=2))


def previous_wall_s(run_dir: Path) -> float:
    """Training wall time [s] of the earlier, finished invocations of a run (resumes add up)."""
    path = run_dir / RUN_JSON
    if not path.is_file():
        return 0.0
    invocations = json.loads(path.read_text())["invocations"]
    return float(sum(i.get("finished", {}).get("wall_s", 0.0) for i in invocations))


def record_finish(run_dir: Path, summary: dict[str, Any]) -> None:
    """Add the outcome of the latest invocation to ``run.json``."""
    path = run_dir / RUN_JSON
    record = json.loads(path.read_text())
    record["invocations"][-1]["finished"] = summary
    _write_atomic(path, json.dumps(record, indent=2))
