"""The run directory every training algorithm shares: checks, saved config, logger, evaluation, result.

PPO and DQN (``drivelab.agents.train``) and behaviour cloning (``drivelab.agents.imitation``)
write the same layout through these functions, so a run of any algorithm resumes, logs,
evaluates and exports the same way (see ``drivelab.agents.train`` for the layout).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from stable_baselines3.common.logger import Logger

import drivelab.envs as de
from drivelab.agents.callbacks import JsonLinesWriter, NamespacedWriter, ResumableTensorBoard, truncate_jsonl
from drivelab.agents.configs import TrainConfig
from drivelab.agents.errors import ConfigError, RunDirError
from drivelab.agents.evaluation import EvaluationResult, evaluate
from drivelab.agents.policies import TrainedPolicy
from drivelab.agents.run_records import CONFIG_JSON, RUN_JSON
from drivelab.agents.spec import read_spec
from drivelab.core.config import from_mapping
from drivelab.core.errors import DrivelabError
from drivelab.core.files import check_writable

CHECKPOINTS, BEST, FINAL = "checkpoints", "best", "final"
METRICS, EVALUATIONS = "metrics.jsonl", "evaluations.jsonl"
# Only these may differ between a run's saved config and a --resume invocation.
RESUMABLE_CHANGES = ("total_steps", "device", "max_minutes")


@dataclass(frozen=True)
class TrainResult:
    """Outcome of ``train``."""

    run_dir: Path
    num_timesteps: int
    best_eval: dict[str, Any] | None  # summary of the best evaluation, None when none ran
    final_export: Path  # policy.json of the final weights-only export
    steps_per_s: float  # env steps per second of this invocation, end to end
    interrupted_by: str | None = None  # "SIGINT" or "SIGTERM" when a signal stopped it (checkpoint saved)


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``.

    Raises:
        ConfigError: CUDA asked for but not available.
    """
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asked for, but torch sees no CUDA GPU; use --device auto or cpu")
    return device


def env_kwargs(config: TrainConfig) -> dict[str, Any]:
    """Keyword arguments of ``drivelab.envs.make``/``make_sb3`` for a run's scenario."""
    return {
        "backend": config.backend,
        "observation": config.observation,
        "config": dict(config.env_config) or None,
        "camera": (dict(config.camera) or None) if config.observation == "camera" else None,
    }


def load_run_config(run_dir: Path) -> TrainConfig:
    """The resolved config saved in a run directory."""
    path = run_dir / CONFIG_JSON
    try:
        return from_mapping(TrainConfig, json.loads(path.read_text()), f"saved config {path}")
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as error:
        raise RunDirError(f"cannot resume {run_dir}: its config {path} is missing or corrupt ({error})") from error


def resume_config(run_dir: Path, requested: TrainConfig | None) -> TrainConfig:
    """The config to resume with: the saved one, with the ``RESUMABLE_CHANGES`` from ``requested``.

    Raises:
        RunDirError: ``requested`` differs from the saved config in anything else.
    """
    saved = load_run_config(run_dir)
    if requested is None:
        return saved
    old, new = saved.to_dict(), requested.to_dict()
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k) and k not in RESUMABLE_CHANGES)
    if changed:
        details = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed)
        raise RunDirError(
            f"cannot resume {run_dir} with a different config ({details}); only "
            f"{', '.join(RESUMABLE_CHANGES)} may change. Start a new run (--run-dir) or --force"
        )
    return saved.replace(**{key: getattr(requested, key) for key in RESUMABLE_CHANGES})


def check_run_dir(run_dir: Path, resume: bool, force: bool) -> None:
    """Refuse to touch an existing run unless asked to resume or to start over.

    Raises:
        RunDirError: with what to pass instead.
    """
    if resume and force:
        raise RunDirError("--resume and --force contradict each other; pass one")
    check_writable(run_dir, folder=True)
    exists = run_dir.exists() and any(run_dir.iterdir())
    if resume and not (run_dir / CONFIG_JSON).is_file():
        raise RunDirError(f"cannot resume {run_dir}: it holds no run (no {CONFIG_JSON}); drop --resume")
    if exists and not resume and not force:
        raise RunDirError(
            f"run directory {run_dir} already exists; pass --resume to continue it or --force to "
            "delete it and start over"
        )
    if exists and force and not (run_dir / RUN_JSON).is_file():
        raise RunDirError(f"{run_dir} is not empty and not a drivelab run; refusing to delete it with --force")


def make_logger(run_dir: Path, resumed_step: int | None) -> Logger:
    """TensorBoard + ``metrics.jsonl``; on a resume, the rows of rolled-back steps are dropped first."""
    if resumed_step is not None:
        truncate_jsonl(run_dir / METRICS, resumed_step)
        truncate_jsonl(run_dir / EVALUATIONS, resumed_step)
    return Logger(
        folder=str(run_dir),
        output_formats=[
            NamespacedWriter(ResumableTensorBoard(str(run_dir / "tb"), purge_step=resumed_step)),
            NamespacedWriter(JsonLinesWriter(run_dir / METRICS)),
        ],
    )


def best_so_far(run_dir: Path) -> float:
    if not (run_dir / BEST).is_dir():
        return float("-inf")
    try:
        spec, _ = read_spec(run_dir / BEST)
        return float(spec["eval"]["mean_return"])
    except (DrivelabError, KeyError, TypeError, ValueError):  # an unreadable best export is replaced
        return float("-inf")


def selection_evaluation(config: TrainConfig, model_ref: Callable[[], Any]) -> Callable[[], EvaluationResult]:
    """Best-model selection: the current policy on the held-out selection seeds, through ``evaluate``.

    ``model_ref()`` returns anything with a ``.policy`` (an SB3 algorithm, a behaviour-cloning model).
    """
    seeds = range(config.eval_seed, config.eval_seed + config.eval_episodes)

    kwargs = env_kwargs(config)
    if config.eval_backend != "train":
        kwargs["backend"] = config.eval_backend

    def make_env(num_envs: int) -> Any:
        return de.make_vec(config.env_id, num_envs=num_envs, seed=config.eval_seed, **kwargs)

    def run() -> EvaluationResult:
        policy = TrainedPolicy(model_ref().policy, name="eval")
        return evaluate(policy, config.env_id, seeds=seeds, num_envs=config.eval_envs, make_env=make_env)

    return run

