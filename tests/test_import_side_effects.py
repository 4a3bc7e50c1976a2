"""Importing any drivelab module changes no process state: environment variables, torch's thread
count and grad mode, the root logger. (A library that sets SDL_VIDEODRIVER at import stops
`drivelab watch` from ever opening a window; one that disables grad mode breaks training.)"""

import json
import os
import subprocess
import sys

PACKAGES = ("core", "envs", "perception", "agents", "benchmarks")
# Third-party packages that set environment variables of their own at import (OpenCV: Qt and
# library paths; gymnasium/pygame: PYGAME_HIDE_SUPPORT_PROMPT): imported before the reference
# state is taken, so only what drivelab itself does is measured.
THIRD_PARTY = ("torch", "cv2", "pygame", "gymnasium", "highway_env", "stable_baselines3")

# Runs in a fresh interpreter: import every module of every package one by one, and after each
# compare the state with the state before any drivelab import; report the module that changed it
# (then take the changed state as the new reference, so each change is reported once).
PROBE = r"""
import importlib, json, logging, os, pkgutil, sys, traceback
import torch

def state():
    root = logging.getLogger()
    return {
        "environ": dict(os.environ),
        "torch_threads": torch.get_num_threads(),
        "grad_enabled": torch.is_grad_enabled(),
        "root_logger_level": root.level,
        "root_logger_handlers": [repr(h) for h in root.handlers],
    }

def changes(before, after):
    out = {}
    for key in before:
        if key == "environ":
            diff = {k: (before[key].get(k), after[key].get(k))
                    for k in set(before[key]) | set(after[key]) if before[key].get(k) != after[key].get(k)}
            if diff:
                out[key] = diff
        elif before[key] != after[key]:
            out[key] = (before[key], after[key])
    return out

third_party, packages = sys.argv[1].split(","), sys.argv[2:]
for name in third_party:
    importlib.import_module(name)
reference = state()
modules, offenders, failures = [], {}, {}
for package in packages:
    root = importlib.import_module(f"drivelab.{package}")
    names = [f"drivelab.{package}"] + [m.name for m in pkgutil.walk_packages(root.__path__, f"drivelab.{package}.")
                                       if not m.name.endswith(".__main__")]  # scripts: they run when imported
    for name in names:
        try:
            importlib.import_module(name)
        except BaseException:
            failures[name] = traceback.format_exc(limit=3)
            continue
        modules.append(name)
        now = state()
        diff = changes(reference, now)
        if diff:
            offenders[name] = diff
            reference = now
print(json.dumps({"modules": modules, "offenders": offenders, "failures": failures}, default=str))
"""


def test_importing_every_drivelab_module_changes_no_process_state():
    # Without SDL's variables, so that a module that sets one (even with setdefault) is caught.
    env = {key: value for key, value in os.environ.items() if not key.startswith("SDL_")}
    completed = subprocess.run([sys.executable, "-c", PROBE, ",".join(THIRD_PARTY), *PACKAGES],
                               capture_output=True, text=True, timeout=300, env=env)
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert not report["failures"], "modules that fail to import:\n" + "\n".join(
        f"{name}:\n{error}" for name, error in report["failures"].items()
    )
    assert not report["offenders"], f"modules that change process state at import: {report['offenders']}"
    # the walk really reached every layer, down to the command modules
    for expected in ("drivelab.core.files", "drivelab.envs.vector", "drivelab.agents.evaluation",
                     "drivelab.benchmarks.cli.watch", "drivelab.benchmarks.bench.train_speed",
                     "drivelab.benchmarks.viewer.episode"):
        assert expected in report["modules"]
