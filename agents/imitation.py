"""Behaviour cloning (with optional DAgger rounds) into PPO's actor-critic network, as a training run.

``train(config)`` with ``algo: bc`` lands here. The run records the expert driving on the batched
backend (``drivelab.agents.expert_data``, inside the run's wall-clock budget), then fits the
policy network PPO uses (``policy_class("bc", ...)`` is PPO's class) by maximum likelihood of the
expert's actions: cross-entropy on the action logits for discrete actions, the Gaussian
log-likelihood for continuous ones. Run folder, config, ``run.json``, logs, periodic held-out
evaluation (``PeriodicEvalCallback``, so ``on_evaluation`` works), ``best/`` and ``final/``
exports are those of every other algorithm; the exports say ``algo: bc``.

Extra run-folder content::

    expert_data/round_0/   the expert's recording (chunks + manifest); round_R/ for DAgger round R
                           (rounds after ``bc.dagger_rounds``: ``bc.reference_rounds`` recorded on the
                           protocol's reference backend, highway-env, in worker processes)
    checkpoints/bc_state.pt  network, optimizer, position (round, epoch, batch), step, torch RNG

Steps of a bc run count training samples: ``num_timesteps`` grows by the batch size per
gradient step, and ``total_steps`` / ``eval_every_steps`` are read in those units.
"""

from __future__ import annotations

import logging
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.policies import ActorCriticPolicy
from tqdm import tqdm

import drivelab.envs as de
from drivelab.agents.callbacks import PeriodicEvalCallback, StopOnSignal, TimeBudgetCallback
from drivelab.agents.configs import BCConfig, TrainConfig
from drivelab.agents.errors import CheckpointError, ConfigError
from drivelab.agents.evaluation import EvaluationResult
from drivelab.agents.expert_data import ExpertData, RecordingSpec, load, record
from drivelab.agents.export import export_policy
from drivelab.agents.loading import load_policy
from drivelab.agents.networks import policy_class, policy_kwargs
from drivelab.agents.policies import Policy, TrainedPolicy
from drivelab.agents.protocol import load_protocol
from drivelab.agents.run_records import previous_wall_s, record_finish, record_start, write_config
from drivelab.agents.runs import (
    BEST,
    CHECKPOINTS,
    EVALUATIONS,
    FINAL,
    TrainResult,
    best_so_far,
    env_kwargs,
    make_logger,
    selection_evaluation,
)
from drivelab.agents.spec import read_spec
from drivelab.core.files import atomic_output, ensure_dir

log = logging.getLogger("drivelab.agents")

EXPERT_DATA = "expert_data"
STATE_FILE = "bc_state.pt"


class ClonedModel:
    """What SB3 callbacks and ``export_policy`` read from an algorithm, for a network trained here."""

    def __init__(self, policy: ActorCriticPolicy, logger: Logger | None = None) -> None:
        self.policy = policy
        self.observation_space = policy.observation_space
        self.action_space = policy.action_space
        self.num_timesteps = 0  # training samples seen
        self.logger = logger

    def get_env(self) -> None:
        return None


def build_clone_network(
    config: TrainConfig, observation_space: gym.Space, action_space: gym.Space, device: str
) -> ActorCriticPolicy:
    """PPO's actor-critic for a bc config (same class and keyword arguments as ``build_model``'s PPO)."""
    kwargs = policy_kwargs("bc", config.policy, config.bc.net_arch, config.encoder,
                           load_encoder_weights=config.encoder.pretrained)
    network = policy_class("bc", config.policy)(observation_space, action_space, lambda _: 0.0, **kwargs)
    return network.to(device)


def action_log_likelihood(policy: ActorCriticPolicy, observations: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """log pi(a | o) per sample (B,): categorical for discrete actions, diagonal Gaussian for continuous."""
    return policy.get_distribution(observations).log_prob(actions)


def agreement(
    policy: ActorCriticPolicy, data: ExpertData, rows: np.ndarray, batch_size: int = 1024
) -> dict[str, float]:
    """Held-out fit: share of rows where the greedy action equals the expert's (discrete), and mean NLL.

    For continuous actions ``agreement`` is the mean squared error of the distribution's mean.
    """
    device = policy.device
    matches, nll, count = 0.0, 0.0, 0
    policy.set_training_mode(False)
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            index = rows[start:start + batch_size]
            observations = torch.as_tensor(data.observations[index], device=device)
            actions = torch.as_tensor(data.actions[index], device=device)
            distribution = policy.get_distribution(observations)
            nll -= float(distribution.log_prob(actions).sum())
            greedy = distribution.get_actions(deterministic=True)
            if isinstance(policy.action_space, gym.spaces.Discrete):
                matches += float((greedy == actions).sum())
            else:
                matches += float(((greedy - actions) ** 2).mean(dim=-1).sum())
            count += len(index)
    count = max(count, 1)
    return {"agreement" if isinstance(policy.action_space, gym.spaces.Discrete) else "mean_mse": matches / count,
            "nll": nll / count}


def bc_loss(policy: ActorCriticPolicy, observations: torch.Tensor, actions: torch.Tensor,
            weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean negative log-likelihood of the expert's actions; ``weights[a]`` scales the discrete action a's terms."""
    log_likelihood = action_log_likelihood(policy, observations, actions)
    if weights is not None:
        log_likelihood = log_likelihood * weights[actions.long()]
    return -log_likelihood.mean()


def class_weights(action_space: gym.Space, actions: np.ndarray, balance: float,
                  skip: tuple[int, ...] = ()) -> np.ndarray | None:
    """Per-action loss weights ``share(a) ** -balance``, scaled so they average 1 over ``actions``.

    ``None`` (plain likelihood) for continuous actions or ``balance == 0``. An action absent from
    ``actions`` gets weight 0 (it appears in no loss term anyway). Actions in ``skip`` are not
    balanced: they weigh as the most common action does.
    """
    if balance == 0 or not isinstance(action_space, gym.spaces.Discrete) or len(actions) == 0:
        return None
    counts = np.bincount(np.asarray(actions, np.int64).ravel(), minlength=int(action_space.n)).astype(np.float64)
    share = counts / counts.sum()
    weights = np.zeros_like(share)
    seen = counts > 0
    weights[seen] = share[seen] ** -balance
    left_alone = [a for a in skip if seen[a]]
    weights[left_alone] = share.max() ** -balance
    weights /= float((share * weights).sum())  # mean over the rows = sum over actions of share * weight = 1
    return weights.astype(np.float32)


def _save_state(path: Path, model: ClonedModel, optimizer: torch.optim.Optimizer, position: dict[str, int],
                training_wall_s: float) -> None:
    """Everything a resume needs, written atomically (a kill leaves the previous state)."""
    state = {"policy": model.policy.state_dict(), "optimizer": optimizer.state_dict(),
             "num_timesteps": int(model.num_timesteps), "torch_rng": torch.get_rng_state(),
             "training_wall_s": float(training_wall_s), **position}
    with atomic_output(path) as tmp:
        torch.save(state, tmp)


def _load_state(path: Path, model: ClonedModel, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location=model.policy.device, weights_only=True)
        model.policy.load_state_dict(state["policy"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"].cpu())
    except (OSError, RuntimeError, KeyError, ValueError, TypeError, EOFError) as error:
        raise CheckpointError(f"bc checkpoint {path} cannot be loaded ({error}); start over with --force") from error
    model.num_timesteps = int(state["num_timesteps"])
    return state


def _recording_spec(config: TrainConfig, round_: int) -> RecordingSpec:
    """Round 0: the expert alone; 1..dagger_rounds: DAgger on the run's backend; then the reference rounds."""
    hyper: BCConfig = config.bc
    samples, num_envs, backend = hyper.dagger_samples, hyper.n_envs, config.backend
    if round_ == 0:
        samples = hyper.samples
    elif round_ > hyper.dagger_rounds:
        samples, num_envs, backend = hyper.reference_samples, hyper.reference_envs, load_protocol().reference_backend
    return RecordingSpec(
        env_id=config.env_id, expert=hyper.expert, seed=config.seed, samples=samples, num_envs=num_envs,
        chunk_size=hyper.chunk_size, backend=backend,
        camera=dict(config.camera) if config.observation == "camera" else {},
        env_config=dict(config.env_config), round=round_, beta=1.0 if round_ == 0 else hyper.dagger_beta ** round_,
        observation=config.observation,
    )


def _record_round(config: TrainConfig, run_dir: Path, round_: int, expert: Policy, learner: Policy | None,
                  time_left_s: Any) -> tuple[Path, int] | None:
    """Record one round chunk by chunk (a complete round is only checked); None when time ran out first."""
    folder = run_dir / EXPERT_DATA / f"round_{round_}"
    spec = _recording_spec(config, round_)
    while True:
        manifest = record(folder, spec, expert, learner, max_new_chunks=1)
        if manifest["complete"]:
            log.info("expert data round %d: %d samples in %s", round_, manifest["samples"], folder)
            return folder, int(manifest["samples"])
        if time_left_s() <= 0:
            return None


def _check(config: TrainConfig) -> tuple[Policy, gym.Space, gym.Space]:
    """The expert and the spaces, checked before anything is written."""
    expert = load_policy(config.bc.expert, config.env_id)
    probe = de.make_vec(config.env_id, num_envs=1, **env_kwargs(config))
    try:
        expert.check_env(probe)
        space = probe.single_action_space
    finally:
        probe.close()
    skip = config.bc.class_balance_skip
    if skip and not (isinstance(space, gym.spaces.Discrete) and max(skip) < space.n):
        raise ConfigError(f"bc.class_balance_skip {list(skip)} names actions {config.env_id} does not have "
                          f"(action space {space}); list discrete actions 0..n-1, or leave it empty")
    return expert, probe.single_observation_space, space


def train_bc(
    config: TrainConfig,
    run_dir: Path,
    *,
    resume: bool,
    force: bool,
    command: list[str] | None,
    device: str,
    progress_bar: bool = True,
    on_evaluation: Any = None,
) -> TrainResult:
    """Record the expert, then clone it; see the module docstring. Called by ``train``."""
    expert, observation_space, action_space = _check(config)
    state_path = run_dir / CHECKPOINTS / STATE_FILE
    if resume and not state_path.is_file():
        log.info("no bc checkpoint in %s yet: resuming from the recorded data", run_dir)
    network = build_clone_network(config, observation_space, action_space, device)
    optimizer = torch.optim.Adam(network.parameters(), lr=config.bc.learning_rate)
    if force and run_dir.exists():
        shutil.rmtree(run_dir)
    ensure_dir(run_dir)
    write_config(run_dir, config)
    model = ClonedModel(network)
    position = {"round": 0, "epoch": 0, "batch": 0}
    wall_before_s = previous_wall_s(run_dir)
    if resume and state_path.is_file():
        state = _load_state(state_path, model, optimizer)
        position = {key: int(state[key]) for key in position}
        wall_before_s = float(state["training_wall_s"])
    record_start(run_dir, command, device, model.num_timesteps if resume else None)
    model.logger = make_logger(run_dir, model.num_timesteps if resume else None)
    started = time.perf_counter()
    try:
        result = _fit(model, optimizer, config, run_dir, expert, position, wall_before_s, progress_bar,
                      on_evaluation)
        record_finish(run_dir, {"num_timesteps": result.num_timesteps, "steps_per_s": result.steps_per_s,
                                "best_eval": result.best_eval, "wall_s": time.perf_counter() - started,
                                "interrupted_by": result.interrupted_by})
        return result
    finally:
        model.logger.close()


def _fit(model: ClonedModel, optimizer: torch.optim.Optimizer, config: TrainConfig, run_dir: Path, expert: Policy,
         position: dict[str, int], wall_before_s: float, progress_bar: bool, on_evaluation: Any) -> TrainResult:
    hyper: BCConfig = config.bc
    start_time, start_steps = time.perf_counter(), model.num_timesteps
    best: dict[str, Any] = {}

    def wall_s() -> float:
        return wall_before_s + time.perf_counter() - start_time

    def time_left_s() -> float:
        return config.max_minutes * 60.0 - wall_s() if config.max_minutes > 0 else float("inf")

    def on_best(result: EvaluationResult) -> None:
        summary = {"step": int(model.num_timesteps), **result.summary()}
        best.update(summary)
        export_policy(model, config, run_dir / BEST, extra={"eval": summary, "training_wall_s": wall_s()})

    stop = StopOnSignal()
    callbacks: list[BaseCallback] = [stop]
    if config.eval_every_steps > 0:
        callbacks.append(PeriodicEvalCallback(
            selection_evaluation(config, lambda: model), on_best, config.eval_every_steps, run_dir / EVALUATIONS,
            best_mean_return=best_so_far(run_dir), skip_final=lambda: stop.received is not None,
            on_evaluation=on_evaluation))
    if config.max_minutes > 0:
        callbacks.append(TimeBudgetCallback(wall_s, config.max_minutes * 60.0))
    hooks = CallbackList(callbacks)
    hooks.init_callback(model)  # type: ignore[arg-type] - ClonedModel has what the callbacks read
    hooks.on_training_start({}, {})
    bar = tqdm(desc="bc", unit="sample", unit_scale=True, disable=not progress_bar, initial=model.num_timesteps)
    folders: list[Path] = []
    first_round_rows = 0
    running = True
    try:
        for round_ in range(hyper.dagger_rounds + hyper.reference_rounds + 1):
            learner = TrainedPolicy(model.policy, name="learner") if round_ > 0 else None
            recorded = _record_round(config, run_dir, round_, expert, learner, time_left_s)
            if recorded is None:
                running = False
                break
            folders.append(recorded[0])
            first_round_rows = first_round_rows or recorded[1]
            if round_ < position["round"]:  # fitted before a resume
                continue
            data = load(folders)
            held_out, train_rows = _split(len(data), first_round_rows, config)
            running = _epochs(model, optimizer, config, data, train_rows, held_out, round_, position, hooks, bar,
                              lambda: _save_state(run_dir / CHECKPOINTS / STATE_FILE, model, optimizer, position,
                                                  wall_s()))
            if not running:
                break
            position.update(round=round_ + 1, epoch=0, batch=0)
    finally:
        bar.close()
        stop.restore()
    ensure_dir(run_dir / CHECKPOINTS)
    _save_state(run_dir / CHECKPOINTS / STATE_FILE, model, optimizer, position, wall_s())
    hooks.on_training_end()
    model.logger.dump(step=model.num_timesteps)  # the final evaluation's eval/ values
    final = export_policy(model, config, run_dir / FINAL, extra={"training_wall_s": wall_s()})
    if not best and best_so_far(run_dir) > float("-inf"):
        best = read_spec(run_dir / BEST)[0]["eval"]
    elapsed = time.perf_counter() - start_time
    log.info("bc stopped at %d samples (%s)", model.num_timesteps, "done" if running else "stopped early")
    return TrainResult(
        run_dir=run_dir, num_timesteps=int(model.num_timesteps), best_eval=best or None, final_export=final,
        steps_per_s=(model.num_timesteps - start_steps) / elapsed if elapsed > 0 else 0.0,
        interrupted_by=signal.Signals(stop.received).name if stop.received is not None else None,
    )


def _split(rows: int, first_round_rows: int, config: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """Held-out rows (a seeded share of the expert's own round) and training rows (the rest, DAgger's too)."""
    order = np.random.default_rng([config.seed, 7]).permutation(first_round_rows)
    held_out = np.sort(order[: int(first_round_rows * config.bc.holdout_fraction)])
    mask = np.ones(rows, bool)
    mask[held_out] = False
    return held_out, np.flatnonzero(mask)


def _epochs(model: ClonedModel, optimizer: torch.optim.Optimizer, config: TrainConfig, data: ExpertData,
            train_rows: np.ndarray, held_out: np.ndarray, round_: int, position: dict[str, int],
            hooks: CallbackList, bar: tqdm, checkpoint: Any) -> bool:
    """The epochs of one round; False when training must stop (budget, signal, pruner, total_steps)."""
    hyper: BCConfig = config.bc
    policy, device = model.policy, model.policy.device
    batches = max(len(train_rows) // hyper.batch_size, 1)
    weights = class_weights(policy.action_space, data.actions[train_rows], hyper.class_balance,
                            hyper.class_balance_skip)
    weights = None if weights is None else torch.as_tensor(weights, device=device)
    for epoch in range(position["epoch"], hyper.epochs):
        order = train_rows[np.random.default_rng([config.seed, round_, epoch]).permutation(len(train_rows))]
        losses: list[float] = []
        epoch_started, epoch_steps = time.perf_counter(), model.num_timesteps
        for batch in range(position["batch"] if epoch == position["epoch"] else 0, batches):
            position.update(epoch=epoch, batch=batch)
            policy.set_training_mode(True)
            index = np.sort(order[batch * hyper.batch_size:(batch + 1) * hyper.batch_size])
            observations = torch.as_tensor(data.observations[index], device=device)  # (b, C, H, W) uint8 or (b, ...)
            actions = torch.as_tensor(data.actions[index], device=device)  # (b,) or (b, A)
            loss = bc_loss(policy, observations, actions, weights)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), hyper.max_grad_norm)
            optimizer.step()
            losses.append(loss.item())
            model.num_timesteps += len(index)
            bar.update(len(index))
            position.update(batch=batch + 1)
            if not hooks.on_step() or model.num_timesteps >= config.total_steps:
                _log_epoch(model, data, held_out, losses, round_, epoch, epoch_started, epoch_steps)
                return False
            hooks.on_rollout_start()  # periodic evaluation when due
        position.update(epoch=epoch + 1, batch=0)
        _log_epoch(model, data, held_out, losses, round_, epoch, epoch_started, epoch_steps)
        checkpoint()
    return True


def _log_epoch(model: ClonedModel, data: ExpertData, held_out: np.ndarray, losses: list[float], round_: int,
               epoch: int, started: float, start_steps: int) -> None:
    logger = model.logger
    if losses:
        logger.record("losses/bc_loss", float(np.mean(losses)))
    if len(held_out):
        for key, value in agreement(model.policy, data, held_out).items():
            logger.record(f"losses/holdout_{key}", value)
    logger.record("charts/dagger_round", round_)
    logger.record("charts/epoch", epoch)
    logger.record("charts/expert_samples", len(data))
    elapsed = time.perf_counter() - started
    if elapsed > 0:
        logger.record("perf/samples_per_s", (model.num_timesteps - start_steps) / elapsed)
    logger.dump(step=model.num_timesteps)
