"""What a result or run was made on: machine, package versions, git commit and command.

One schema for every layer (``machine_info``). It imports no torch: the torch facts
(``torch_threads``, ``cuda``) are read only when the caller has already imported torch, and
are ``None`` otherwise, so the keys are always the same.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

PACKAGES = (
    "drivelab", "numpy", "numba", "gymnasium", "highway-env", "envpool", "torch",
    "stable-baselines3", "safetensors", "opencv-python", "scikit-learn", "pycocotools", "onnxruntime",
)
UNKNOWN_COMMIT = "unknown"


def git_commit(cwd: str | Path | None = None) -> str:
    """The current commit, with ``-dirty`` when tracked files have changes; ``"unknown"`` outside git."""
    where = cwd or Path(__file__).resolve().parent
    try:
        run = lambda *args: subprocess.run(  # noqa: E731 - two calls, same options
            ["git", *args], cwd=where, capture_output=True, text=True, check=True
        ).stdout.strip()
        commit = run("rev-parse", "HEAD")
        dirty = run("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return UNKNOWN_COMMIT
    return commit + ("-dirty" if dirty else "")


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Installed versions of the packages that shape results."""
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def cpu_model() -> str:
    """The CPU's model name, from /proc/cpuinfo where there is one."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def command_line() -> str:
    """The command that started this process, as a user would type it."""
    return " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])


def _torch_facts() -> dict[str, Any]:
    torch = sys.modules.get("torch")  # only when already imported: core never imports torch
    if torch is None:
        return {"torch_threads": None, "cuda": None}
    cuda = torch.cuda.is_available()
    return {"torch_threads": torch.get_num_threads(), "cuda": torch.cuda.get_device_name(0) if cuda else None}


def machine_info() -> dict[str, Any]:
    """Machine, software and invocation facts to store beside a result.

    ``cuda`` is the GPU's name, or ``None`` (no GPU, or torch not in use).
    """
    return {
        "timestamp_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command_line(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "git_commit": git_commit(),
        "packages": package_versions(),
        **_torch_facts(),
    }


def hardware_summary() -> str:
    """The CPU (and the GPU, when torch is in use and sees one) this process runs on, in one line."""
    parts = [f"{cpu_model()} ({os.cpu_count()} CPUs, {platform.machine()})"]
    gpu = _torch_facts()["cuda"]
    if gpu:
        parts.append(gpu)
    return ", ".join(parts)
