"""What a run directory records about how it was made: config, command, commit, versions, machine."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from drivelab.agents.configs import TrainConfig
from drivelab.agents.errors import RunDirError
from drivelab.core import provenance
from drivelab.core.errors import OutputPathError
from drivelab.core.files import check_writable, write_json_atomic, write_text_atomic

CONFIG_YAML, CONFIG_JSON, RUN_JSON = "config.yaml", "config.json", "run.json"


def probe_writable(path: Path, *, folder: bool = False) -> None:
    """``check_writable``, then a real test: create and remove a temp file where ``path`` will go.

    Permission bits are not enough: root may write anywhere by them, yet ``/proc`` or a read-only
    mount refuse every new file. Leaves nothing behind.

    Raises:
        OutputPathError: saying why ``path`` cannot be written.
    """
    path = check_writable(path, folder=folder)
    parent = path if folder and path.is_dir() else path.parent
    while not parent.exists():
        parent = parent.parent
    try:
        handle, probe = tempfile.mkstemp(dir=parent, prefix=".drivelab-probe-")
    except OSError as error:
        raise OutputPathError(f"cannot write {path}: {error.strerror or error} in {parent}") from None
    os.close(handle)
    os.unlink(probe)


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
