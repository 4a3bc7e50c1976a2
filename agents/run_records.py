"""What a run directory records about how it was made: config, command, commit, versions, machine."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from drivelab.agents.configs import TrainConfig
from drivelab.agents.errors import RunDirError
from drivelab.core import provenance
from drivelab.core.files import write_json_atomic, write_text_atomic

CONFIG_YAML, CONFIG_JSON, RUN_JSON = "config.yaml", "config.json", "run.json"


def write_config(run_dir: Path, config: TrainConfig) -> None:
    """Save the resolved config as YAML (to read) and JSON (to reload)."""
    plain = config.to_dict()
    write_text_atomic(run_dir / CONFIG_YAML, yaml.safe_dump(plain, sort_keys=False))
    write_json_atomic(run_dir / CONFIG_JSON, plain)


def _read_record(run_dir: Path) -> dict[str, Any]:
    path = run_dir / RUN_JSON
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as error:
        raise RunDirError(f"run record {path} is unreadable or corrupt ({error}); start over with --force") from None
    if not isinstance(record, dict) or not isinstance(record.get("invocations"), list):
        raise RunDirError(f"run record {path} is not a drivelab run record; start over with --force")
    return record


def record_start(run_dir: Path, command: list[str] | None, device: str, resumed_from: int | None) -> None:
    """Create or extend ``run.json`` with this invocation (command, commit, versions, machine)."""
    record = _read_record(run_dir) if (run_dir / RUN_JSON).is_file() else {"invocations": []}
    record["invocations"].append({
        "command": command if command is not None else sys.argv,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "resumed_from_step": resumed_from,
        "device": device,
        "git": provenance.git_commit(),
        "packages": provenance.package_versions(),
        "machine": provenance.machine_info(),
    })
    write_json_atomic(run_dir / RUN_JSON, record)


def previous_wall_s(run_dir: Path) -> float:
    """Training wall time [s] of the earlier, finished invocations of a run (resumes add up)."""
    if not (run_dir / RUN_JSON).is_file():
        return 0.0
    invocations = _read_record(run_dir)["invocations"]
    return float(sum(i.get("finished", {}).get("wall_s", 0.0) for i in invocations if isinstance(i, dict)))


def record_finish(run_dir: Path, summary: dict[str, Any]) -> None:
    """Add the outcome of the latest invocation to ``run.json``."""
    record = _read_record(run_dir)
    record["invocations"][-1]["finished"] = summary
    write_json_atomic(run_dir / RUN_JSON, record)
