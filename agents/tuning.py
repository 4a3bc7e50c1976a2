"""Hyperparameter sweeps with Optuna: TPE sampling, pruning on held-out evaluations, shared storage.

The design follows rl-zoo3's ``-optimize --storage``. A study lives in an Optuna RDB storage (a
SQLite file for one machine, PostgreSQL for several), so any number of processes or machines
running ``drivelab tune`` with the same ``--study`` and ``--storage`` add trials to one study,
and rerunning continues it. Each trial is an ordinary training run (``drivelab.agents.train``)
in ``<out>/trial_<n>``; the periodic held-out evaluations feed the pruner through
``train(on_evaluation=...)``.

Objective: the *best* held-out mean return of the trial (the protocol's selection seeds,
``TrainConfig.eval_seed``), because the best evaluation is the policy a run keeps (``best/``) and
the one ``drivelab eval RUN/best`` scores; the last one would rank runs by where a noisy curve
happened to stop. The crash rate of that evaluation is stored as the trial's user attribute.

Trials left RUNNING by a killed process stop sending heartbeats; the next process on the study
fails them and queues each again once with the same parameters (Optuna's heartbeat and
``RetryHeartbeatStaleTrialCallback``).

Optuna is imported only inside these functions, so nothing changes when tuning is not used.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from drivelab.agents.configs import TrainConfig, load_train_config
from drivelab.agents.errors import ConfigError
from drivelab.agents.evaluation import EvaluationResult
from drivelab.agents.train import train
from drivelab.agents.tuning_space import (
    ParamSpec,
    encode_choice,
    read_search_space,
    search_space_path,
    space_to_plain,
    suggest,
)
from drivelab.core.errors import DrivelabError
from drivelab.core.files import check_writable, ensure_dir

log = logging.getLogger("drivelab.agents.tuning")

DEFAULT_STORAGE = "sqlite:///runs/tune/study.db"
PRUNERS = ("median", "hyperband", "none")
STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")  # also a folder name
HEARTBEAT_S = 60  # a RUNNING trial without a heartbeat for GRACE_S is failed and queued again
GRACE_S = 180
MAX_RETRIES = 1


@dataclass(frozen=True)
class TuneSettings:
    """One ``drivelab tune`` invocation (picklable: worker processes receive it)."""

    env_id: str
    algo: str
    study: str
    trials: int  # trials this invocation runs (over all its workers); a rerun adds more
    storage: str = DEFAULT_STORAGE
    out: Path | None = None  # default runs/tune/<study>
    total_steps: int | None = None  # per-trial budget (default from the hyperparams YAML)
    max_minutes: float | None = None  # per-trial wall-clock budget
    eval_every_steps: int | None = None  # default: 5 held-out evaluations per trial
    seed: int = 0  # training seed of every trial, and the sampler's seed
    pruner: Literal["median", "hyperband", "none"] = "median"
    startup_trials: int = 5  # random trials before TPE, and complete trials before pruning
    search_space: Path | None = None  # default agents/hyperparams/search/<algo>.yaml
    hyperparams: Path | None = None  # base YAML (default: the scenario's shipped one)
    overrides: Mapping[str, Any] = field(default_factory=dict)  # --set on every trial
    heartbeat_s: int = HEARTBEAT_S
    grace_s: int = GRACE_S
    command: tuple[str, ...] = ()  # the drivelab tune command, recorded in every trial's run.json

    @property
    def folder(self) -> Path:
        return self.out if self.out is not None else Path("runs") / "tune" / self.study


@dataclass(frozen=True)
class Prepared:
    """What ``prepare`` checked: the base config every trial starts from and the search space."""

    settings: TuneSettings
    base: TrainConfig
    space: dict[str, ParamSpec]
    storage_url: str

    def trial_config(self, params: Mapping[str, Any]) -> TrainConfig:
        """The config of one trial: the base config with the sampled values over it."""
        return load_train_config(self.settings.env_id, self.settings.algo,
                                 {**base_overrides(self.settings, self.base), **params}, self.settings.hyperparams)

    def signature(self) -> dict[str, Any]:
        """What must match to add trials to an existing study (values are comparable only then)."""
        config = self.base.to_dict()
        return {"env_id": self.base.env_id, "algo": self.base.algo, "total_steps": self.base.total_steps,
                "max_minutes": self.base.max_minutes, "eval_every_steps": self.base.eval_every_steps,
                "eval_seed": self.base.eval_seed, "eval_episodes": self.base.eval_episodes,
                "seed": self.base.seed, "search_space": space_to_plain(self.space),
                "base_config": {k: v for k, v in config.items() if k not in ("dqn", "ppo")},
                "base_hyperparams": config.get(self.base.algo)}


def base_overrides(settings: TuneSettings, config: TrainConfig | None = None) -> dict[str, Any]:
    """Dotted overrides every trial gets: the budget, the seed and the user's ``--set`` pairs."""
    values: dict[str, Any] = {**settings.overrides, "seed": settings.seed}
    if settings.total_steps is not None:
        values["total_steps"] = settings.total_steps
    if settings.max_minutes is not None:
        values["max_minutes"] = settings.max_minutes
    if settings.eval_every_steps is not None:
        values["eval_every_steps"] = settings.eval_every_steps
    elif config is not None:
        values["eval_every_steps"] = config.eval_every_steps
    return values


def storage_url(url: str) -> str:
    """Check a storage URL; plain ``postgresql://`` (or ``postgres://``) gets the psycopg 3 driver.

    Raises:
        ConfigError: anything but ``sqlite:///FILE`` or ``postgresql[+psycopg]://...``.
    """
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            return "postgresql+psycopg://" + url[len(plain):]
    if url.startswith("postgresql+psycopg://"):
        return url
    if url.startswith("sqlite:///") and len(url) > len("sqlite:///") and url != "sqlite:///:memory:":
        return url
    raise ConfigError(
        f"storage {url!r} is not supported; give sqlite:///PATH (one machine, e.g. {DEFAULT_STORAGE}) or "
        "postgresql://USER:PASSWORD@HOST:PORT/DB (shared by several machines)"
    )


def masked(url: str) -> str:
    """A storage URL without its password, for messages and records."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def prepare(settings: TuneSettings) -> Prepared:
    """Check everything a sweep needs before any training: options, configs, space, output folder.

    Raises:
        ConfigError, OutputPathError: one line saying what is wrong and what to do.
    """
    if settings.trials < 1:
        raise ConfigError(f"--trials must be at least 1, got {settings.trials}")
    if not STUDY_NAME.match(settings.study):
        raise ConfigError(f"study name {settings.study!r} must be letters, digits, '.', '_' or '-' (it names a folder)")
    if settings.pruner not in PRUNERS:
        raise ConfigError(f"unknown pruner {settings.pruner!r}. Valid: {', '.join(PRUNERS)}")
    if settings.startup_trials < 0 or settings.heartbeat_s < 1 or settings.grace_s <= settings.heartbeat_s:
        raise ConfigError("--startup-trials must be >= 0, and the heartbeat grace longer than its interval")
    url = storage_url(settings.storage)
    base = load_train_config(settings.env_id, settings.algo, base_overrides(settings), settings.hyperparams)
    if settings.eval_every_steps is None:  # default: five held-out evaluations per trial, for the pruner
        settings = replace(settings, eval_every_steps=max(base.total_steps // 5, 1))
        base = base.replace(eval_every_steps=settings.eval_every_steps)
    if base.eval_every_steps <= 0:
        raise ConfigError("tuning needs periodic held-out evaluations; set --eval-every to a positive step count")
    space = read_search_space(settings.search_space or search_space_path(settings.algo), base)
    check_writable(settings.folder, folder=True)
    if url.startswith("sqlite:///"):
        check_writable(Path(url[len("sqlite:///"):]))
    return Prepared(settings, base, space, url)


def open_storage(prepared: Prepared) -> Any:
    """Optuna's RDB storage with heartbeats (stale RUNNING trials are failed and retried once).

    Raises:
        ConfigError: the database cannot be reached or opened (the message keeps the password out).
    """
    import optuna
    import sqlalchemy.exc

    url = prepared.storage_url
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:///"):
        ensure_dir(Path(url[len("sqlite:///"):]).parent)
        engine_kwargs = {"connect_args": {"timeout": 60}}  # several worker processes share the file
    settings = prepared.settings
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                url, engine_kwargs=engine_kwargs, heartbeat_interval=settings.heartbeat_s,
                grace_period=settings.grace_s,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES),
            )
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as error:
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        raise ConfigError(f"cannot open the study storage {masked(url)}: {reason}") from error


def _pruner(prepared: Prepared) -> Any:
    import optuna

    settings, base = prepared.settings, prepared.base
    if settings.pruner == "median":  # no pruning before a third of the budget: early curves say little
        return optuna.pruners.MedianPruner(n_startup_trials=settings.startup_trials,
                                           n_warmup_steps=base.total_steps // 3)
    if settings.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=base.eval_every_steps, max_resource=base.total_steps,
                                              reduction_factor=3)
    return optuna.pruners.NopPruner()


def load_study(prepared: Prepared, storage: Any, worker: int = 0) -> Any:
    """Create the study or load it (``load_if_exists``), refusing one made for another setup.

    The TPE seed is the user's seed, the worker index and the trials already stored, so reruns
    and parallel workers do not propose the same random start-up points again.

    Raises:
        ConfigError: the stored study was created for another env, algorithm, budget or space.
    """
    import optuna

    name = prepared.settings.study
    signature = json.loads(json.dumps(prepared.signature()))  # as stored: lists, not tuples
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize", load_if_exists=True)
    stored = study.user_attrs.get("drivelab")
    if stored is None:
        study.set_user_attr("drivelab", signature)
    elif stored != signature:
        changed = sorted(k for k in set(stored) | set(signature) if stored.get(k) != signature.get(k))
        raise ConfigError(f"study {name!r} in {masked(prepared.storage_url)} was created with other settings "
                          f"({', '.join(changed)} differ); use the same options or another --study name")
    sampler_seed = prepared.settings.seed + 7919 * worker + len(study.trials)
    sampler = optuna.samplers.TPESampler(seed=sampler_seed, n_startup_trials=prepared.settings.startup_trials)
    return optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=_pruner(prepared))


def enqueue_base(prepared: Prepared, study: Any) -> bool:
    """Queue the base config (the shipped hyperparameters) as the study's first trial.

    It then trains at the same budget, seed and evaluation seeds as every other trial: the
    reference the tuned values must beat. Only a study without trials gets it.

    Raises:
        ConfigError: a base value lies outside the search space (Optuna could not compare it).
    """
    if study.trials:
        return False
    plain, params = prepared.base.to_dict(), {}
    for key, spec in prepared.space.items():
        value: Any = plain
        for part in key.split("."):
            value = value[part]
        inside = (value in spec.choices) if spec.type == "categorical" else spec.low <= value <= spec.high
        if not inside:
            raise ConfigError(f"the base config's {key} = {value!r} lies outside the search space; widen the space "
                              "or drop --enqueue-base")
        params[key] = encode_choice(value) if spec.type == "categorical" else value
    study.enqueue_trial(params, user_attrs={"base_config": True}, skip_if_exists=True)
    return True


class PruningReporter:
    """The ``on_evaluation`` hook of a trial: reports each held-out evaluation, asks the pruner.

    The reported value is the best mean return so far (what the objective returns), so the
    pruner compares trials by the same measure. The last evaluation of the budget is never pruned.
    """

    def __init__(self, trial: Any, total_steps: int) -> None:
        self.trial, self.total_steps = trial, total_steps
        self.best: dict[str, Any] | None = None
        self.pruned_at: int | None = None

    def __call__(self, step: int, result: EvaluationResult) -> bool:
        summary = {"step": int(step), **result.summary()}
        if self.best is None or summary["mean_return"] > self.best["mean_return"]:
            self.best = summary
        self.trial.report(self.best["mean_return"], int(step))
        if step < self.total_steps and self.trial.should_prune():
            self.pruned_at = int(step)
            return False
        return True


def run_trial(prepared: Prepared, trial: Any) -> float:
    """Train one trial in ``<out>/trial_<n>``; returns its best held-out mean return.

    Raises:
        optuna.TrialPruned: the pruner stopped it (its run folder stays, like any run).
        KeyboardInterrupt: a signal stopped training (Optuna fails the trial; rerun continues).
    """
    import optuna

    params = suggest(trial, prepared.space)
    config = prepared.trial_config(params)
    run_dir = prepared.settings.folder / f"trial_{trial.number}"
    for key, value in (("run_dir", str(run_dir)), ("host", socket.gethostname()), ("pid", os.getpid())):
        trial.set_user_attr(key, value)
    reporter = PruningReporter(trial, config.total_steps)
    command = list(prepared.settings.command) or None
    # A trial number is unique in its study: a folder already there is a leftover of an earlier storage.
    result = train(config, run_dir, force=True, command=command, progress_bar=False, on_evaluation=reporter)
    trial.set_user_attr("num_timesteps", result.num_timesteps)
    trial.set_user_attr("steps_per_s", round(result.steps_per_s, 1))
    if result.interrupted_by is not None:
        raise KeyboardInterrupt(f"trial {trial.number} stopped by {result.interrupted_by}")
    best = result.best_eval or reporter.best
    if best is None:
        raise DrivelabError(f"trial {trial.number} ran no held-out evaluation")
    for key in ("crash_rate", "step", "mean_speed", "episodes"):
        trial.set_user_attr("best_step" if key == "step" else key, best[key])
    if reporter.pruned_at is not None:
        raise optuna.TrialPruned(f"pruned at step {reporter.pruned_at}")
    return float(best["mean_return"])


def optimize(prepared: Prepared, n_trials: int, worker: int = 0) -> None:
    """Run ``n_trials`` trials of the study in this process (one of possibly many workers)."""
    study = load_study(prepared, open_storage(prepared), worker)
    ensure_dir(prepared.settings.folder)
    # A refused sampled combination fails its trial (recorded, the study goes on); anything else stops.
    study.optimize(lambda trial: run_trial(prepared, trial), n_trials=n_trials, catch=(ConfigError,),
                   gc_after_trial=True)
    log.info("worker %d: %d trials in study %s", worker, len(study.trials), study.study_name)
