"""Training checkpoints that survive being killed at any instant.

Layout inside a run's ``checkpoints/`` folder::

    step_000000020480/        one complete checkpoint
        model.zip             SB3 save: weights, optimizer state, step counter, schedules
        replay_buffer.pkl     off-policy algorithms (DQN, SAC) only
        rng.json              torch and numpy global RNG states
        manifest.json         size and SHA-256 of each file above
    last.json                 pointer to the newest complete checkpoint (same content as its manifest)

A checkpoint is assembled in a hidden staging folder (``drivelab.core.files.atomic_dir``), its
files fsynced, renamed into place, and only then is ``last.json`` replaced (atomically). A
SIGKILL at any point leaves either the old or the new pointer, both naming complete folders.
Loading verifies the size and SHA-256 of every file (replay buffers included) and falls back to
the newest intact folder, saying so in the log, when the newest one is damaged.

SB3 ``.zip`` checkpoints pickle Python objects (schedules, spaces); they are meant for resuming
your own runs. Policies to share are exported weights-only (``drivelab.agents.export``).
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import shutil
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3 import DQN, PPO, SAC
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.vec_env import VecEnv

from drivelab.agents.errors import CheckpointError
from drivelab.core.files import atomic_dir, ensure_dir, sha256_file, write_json_atomic

log = logging.getLogger("drivelab.agents")

POINTER_NAME = "last.json"
MODEL_FILE = "model.zip"
REPLAY_FILE = "replay_buffer.pkl"
RNG_FILE = "rng.json"
MANIFEST_FILE = "manifest.json"
ALGORITHMS: dict[str, type[BaseAlgorithm]] = {"ppo": PPO, "dqn": DQN, "sac": SAC}
# SB3 ``load`` overrides for a SAC that only acts: a 1-transition plain buffer instead of its
# (hindsight) replay buffer, which needs an env and would allocate buffer_size transitions.
ACT_ONLY_SAC = {"replay_buffer_class": None, "replay_buffer_kwargs": {}, "buffer_size": 1}


@dataclass(frozen=True)
class CheckpointInfo:
    """A complete checkpoint on disk."""

    folder: Path
    step: int
    algo: str
    files: dict[str, dict[str, Any]]  # name -> {"bytes": int, "sha256": str | None}
    training_wall_s: float | None = None  # the run's training time when it was saved (killed segments too)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:  # makes the renames in a folder durable
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _describe(path: Path) -> dict[str, Any]:
    return {"bytes": path.stat().st_size, "sha256": sha256_file(path)}


def _rng_state() -> dict[str, Any]:
    kind, keys, position, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state().tolist(),
        "numpy": [kind, keys.tolist(), int(position), int(has_gauss), float(cached)],
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached))


def save_checkpoint(
    model: BaseAlgorithm, algo: str, folder: Path | str, keep: int = 2, training_wall_s: float | None = None
) -> CheckpointInfo:
    """Save model, optimizer, step counter (and DQN's replay buffer) as the newest checkpoint.

    Args:
        model: the SB3 algorithm being trained.
        algo: ``"ppo"``, ``"dqn"`` or ``"sac"``.
        folder: the run's ``checkpoints/`` folder.
        keep: how many complete checkpoints to keep (the newest ones).
        training_wall_s: the run's training time so far [s]; a resume continues from it, so
            time spent in invocations that were killed still counts.

    Returns:
        The checkpoint written.
    """
    folder = ensure_dir(folder)
    step = int(model.num_timesteps)
    name = f"step_{step:014d}"
    target = folder / name
    current = _read_pointer(folder)
    if current is not None and current.folder == target:
        return current  # this step is already saved
    # atomic_dir replaces a stale folder of the same step (one the pointer does not name).
    with atomic_dir(target) as staging:
        with open(staging / MODEL_FILE, "wb") as handle:
            model.save(handle)
        if isinstance(model, OffPolicyAlgorithm) and model.replay_buffer is not None:
            with open(staging / REPLAY_FILE, "wb") as handle:
                model.save_replay_buffer(handle)
        with open(staging / RNG_FILE, "w") as handle:
            json.dump(_rng_state(), handle)
        files = {}
        for path in sorted(staging.iterdir()):
            _fsync_file(path)
            files[path.name] = _describe(path)
        manifest = {"step": step, "algo": algo, "folder": name, "files": files, "training_wall_s": training_wall_s}
        write_json_atomic(staging / MANIFEST_FILE, manifest, sort_keys=True)
        _fsync_file(staging / MANIFEST_FILE)
    _fsync_dir(folder)
    write_json_atomic(folder / POINTER_NAME, manifest, sort_keys=True)
    _fsync_dir(folder)
    info = CheckpointInfo(target, step, algo, files, training_wall_s)
    _prune(folder, keep=keep, protect=target)
    return info


def _prune(folder: Path, keep: int, protect: Path) -> None:
    complete = sorted(p for p in folder.glob("step_*") if p.is_dir())
    for old in complete[:-keep] if keep > 0 else complete:
        if old != protect:
            shutil.rmtree(old, ignore_errors=True)
    for stale in folder.glob(".step_*.*"):  # staging folders of killed processes (one trainer per run)
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)


def _verify(checkpoint_folder: Path, manifest: dict[str, Any]) -> CheckpointInfo:
    files = manifest.get("files")
    if not isinstance(files, dict) or MODEL_FILE not in files:
        raise CheckpointError(f"checkpoint manifest in {checkpoint_folder} lists no {MODEL_FILE}")
    for name, expected in files.items():
        path = checkpoint_folder / name
        if not path.is_file():
            raise CheckpointError(f"checkpoint file {path} is missing")
        actual = _describe(path) if expected.get("sha256") else {"bytes": path.stat().st_size, "sha256": None}
        if actual != expected:
            raise CheckpointError(
                f"checkpoint file {path} is truncated or corrupt ({actual['bytes']} bytes, "
                f"expected {expected['bytes']})"
            )
    wall_s = manifest.get("training_wall_s")
    wall_s = float(wall_s) if isinstance(wall_s, (int, float)) and not isinstance(wall_s, bool) else None
    return CheckpointInfo(checkpoint_folder, int(manifest["step"]), str(manifest["algo"]), files, wall_s)


def _read_pointer(folder: Path) -> CheckpointInfo | None:
    try:
        manifest = json.loads((folder / POINTER_NAME).read_text())
        return CheckpointInfo(folder / manifest["folder"], int(manifest["step"]), manifest["algo"], manifest["files"],
                              manifest.get("training_wall_s"))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def find_last_checkpoint(folder: Path | str) -> CheckpointInfo:
    """The newest intact checkpoint: the pointer's, else the newest folder that verifies.

    Raises:
        CheckpointError: no intact checkpoint, with what was wrong with each candidate.
    """
    folder = Path(folder)
    problems: list[str] = []
    pointer = _read_pointer(folder)
    if pointer is not None:
        try:
            return _verify(pointer.folder, {"step": pointer.step, "algo": pointer.algo, "files": pointer.files,
                                            "training_wall_s": pointer.training_wall_s})
        except (CheckpointError, AttributeError, TypeError, ValueError) as error:
            problems.append(str(error))
    elif (folder / POINTER_NAME).exists():
        problems.append(f"pointer {folder / POINTER_NAME} is corrupt")
    for candidate in sorted((p for p in folder.glob("step_*") if p.is_dir()), reverse=True):
        if pointer is not None and candidate == pointer.folder:
            continue  # already checked above
        try:
            manifest = json.loads((candidate / MANIFEST_FILE).read_text())
            found = _verify(candidate, manifest)
        except (OSError, ValueError, KeyError, TypeError, AttributeError, CheckpointError) as error:
            problems.append(f"{candidate.name}: {error}")
            continue
        if problems:
            log.warning("resuming from %s (step %d): the newer checkpoint data is damaged (%s)",
                        found.folder.name, found.step, "; ".join(problems))
        return found
    detail = "; ".join(problems) if problems else "none was ever written"
    raise CheckpointError(
        f"no intact checkpoint in {folder} ({detail}); start the run over with --force"
    )


def load_checkpoint(
    info: CheckpointInfo, env: VecEnv | None, device: str, **model_overrides: Any
) -> BaseAlgorithm:
    """Rebuild the algorithm of a checkpoint, with optimizer state, step counter and replay buffer.

    Args:
        info: from ``find_last_checkpoint``.
        env: the vector env to continue training in (None to only act).
        device: torch device.
        model_overrides: attributes to set on the loaded algorithm (SB3 ``load`` kwargs).

    Raises:
        CheckpointError: a file that verified but cannot be read back.
    """
    algorithm = ALGORITHMS[info.algo]
    act_only_sac = env is None and info.algo == "sac"  # no hindsight buffer (it needs an env), none allocated
    if act_only_sac:
        model_overrides = {"custom_objects": ACT_ONLY_SAC, **model_overrides}
    try:
        model = algorithm.load(info.folder / MODEL_FILE, env=env, device=device, **model_overrides)
        if REPLAY_FILE in info.files and isinstance(model, OffPolicyAlgorithm) and not act_only_sac:
            with warnings.catch_warnings():
                # A resume resets every env, so the episode a hindsight buffer was saved in is
                # over: truncating it, as SB3 does by default, is right; its warning is noise.
                warnings.filterwarnings("ignore", "The last trajectory in the replay buffer will be truncated")
                model.load_replay_buffer(info.folder / REPLAY_FILE)
        _set_rng_state(json.loads((info.folder / RNG_FILE).read_text()))
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError, RuntimeError, TypeError,
            AttributeError, pickle.UnpicklingError) as error:
        raise CheckpointError(f"checkpoint {info.folder} cannot be loaded: {error}") from error
    return model
