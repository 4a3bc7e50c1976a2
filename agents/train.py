"""Train PPO or DQN on a drivelab scenario from one ``TrainConfig``, into one run directory.

``algo: bc`` (behaviour cloning of an expert) runs through ``drivelab.agents.imitation`` into the
same layout; ``init_from`` starts PPO or DQN from a clone's weights (``drivelab.agents.warm_start``).

Run directory layout::

    config.yaml, config.json   resolved config (JSON is what ``--resume`` reloads)
    run.json                   per invocation: command, git commit, package versions, machine
    tb/                        TensorBoard logs (charts/, losses/, perf/, eval/)
    metrics.jsonl              the same scalars, one JSON object per dump
    checkpoints/               resumable checkpoints (see drivelab.agents.checkpoints)
    evaluations.jsonl          every periodic evaluation on held-out seeds
    best/                      weights-only export of the best evaluated policy (+ its result)
    final/                     weights-only export at the end of training

SIGINT (Ctrl-C) or SIGTERM (a scheduler's preemption) stops training at the next step; the
checkpoint and the final export are written as at a normal end (no final evaluation), and
``TrainResult.interrupted_by`` names the signal (the CLI then exits 130 or 143).

Resuming (SB3 allows this much): weights, optimizer state, step counter, learning-rate and
exploration schedules, DQN's replay buffer and the global RNG states are restored. The envs
restart from fresh episodes (simulator state is not saved) and a PPO rollout in progress at
the kill is collected again.
"""

from __future__ import annotations

import logging
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3 import DQN, PPO, SAC, HerReplayBuffer
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

import drivelab.envs as de
from drivelab.agents.callbacks import (
    EpisodeMetricsCallback,
    PeriodicEvalCallback,
    RunCheckpointer,
    StopOnSignal,
    TimeBudgetCallback,
    TrainingProgressBar,
)
from drivelab.agents.checkpoints import CheckpointInfo, find_last_checkpoint, load_checkpoint
from drivelab.agents.clone_anchor import CloneAnchor, CloneKLSchedule, CloneMargin
from drivelab.agents.configs import TrainConfig
from drivelab.agents.errors import ConfigError
from drivelab.agents.evaluation import EvaluationResult
from drivelab.agents.export import export_policy
from drivelab.agents.imitation import train_bc
from drivelab.agents.networks import policy_class, policy_kwargs
from drivelab.agents.protocol import TRAIN_SEED_LIMIT
from drivelab.agents.run_records import previous_wall_s, record_finish, record_start, write_config
from drivelab.agents.runs import (  # noqa: F401 - resolve_device, env_kwargs, load_run_config: public here too
    BEST,
    CHECKPOINTS,
    EVALUATIONS,
    FINAL,
    METRICS,
    RESUMABLE_CHANGES,
    TrainResult,
    best_so_far,
    check_run_dir,
    env_kwargs,
    load_run_config,
    make_logger,
    resolve_device,
    resume_config,
    selection_evaluation,
)
from drivelab.agents.spec import read_spec
from drivelab.agents.warm_start import check_fits, check_init_from, warm_start
from drivelab.core.files import ensure_dir
from drivelab.envs.config import longest_episode_steps
from drivelab.envs.goals import GOAL_FAMILIES, has_goal

log = logging.getLogger("drivelab.agents")

class CrashPenalty(VecEnvWrapper):
    """Subtracts ``penalty`` from the reward of the step on which an env's ego crashes.

    Training-only reward shaping: the ``episode`` infos keep the env's own return, so the logged
    returns, like evaluation, stay comparable with unshaped runs.
    """

    def __init__(self, venv: VecEnv, penalty: float) -> None:
        super().__init__(venv)
        self.penalty = penalty

    def reset(self):
        return self.venv.reset()

    def step_wait(self):
        obs, rewards, dones, infos = self.venv.step_wait()
        for i in np.flatnonzero(dones):
            if infos[i].get("driving", {}).get("crashed"):
                rewards[i] -= self.penalty
        return obs, rewards, dones, infos


def check_hindsight(config: TrainConfig) -> None:
    """Hindsight replay needs goals to relabel, and a finished episode in every env before it samples.

    Raises:
        ConfigError: a scenario without goals, or ``sac.learning_starts`` shorter than one
            full episode per env (SB3 would fail mid-run).
    """
    scenario = de.get_scenario(config.env_id)
    if not has_goal(scenario):
        raise ConfigError(
            f"sac.her_goals relabels goals, but {config.env_id} has none (goal scenarios: {', '.join(GOAL_FAMILIES)}); "
            "set sac.her_goals=0 for plain replay"
        )
    longest = longest_episode_steps(scenario, config.env_config)
    if longest is not None and config.sac.learning_starts < longest * config.sac.n_envs:
        raise ConfigError(
            f"sac.learning_starts ({config.sac.learning_starts}) must let every env finish an episode before "
            f"hindsight replay samples: at least {longest} steps x {config.sac.n_envs} envs = "
            f"{longest * config.sac.n_envs}; raise it or lower sac.n_envs"
        )


def make_training_env(config: TrainConfig, seed: int) -> VecEnv:
    """The SB3 vector env of a run (batched backend), checked against the algorithm.

    Raises:
        ConfigError: DQN on a continuous-action scenario, SAC on a discrete one, hindsight
            replay without goals, or a bad env/camera config.
    """
    if config.sac is not None and config.sac.her_goals > 0:
        check_hindsight(config)
    env: VecEnv = de.make_sb3(config.env_id, num_envs=config.algo_config.n_envs, seed=seed, **env_kwargs(config))
    if config.algo == "sac" and not isinstance(env.action_space, gym.spaces.Box):
        env.close()
        raise ConfigError(
            f"SAC needs continuous actions, but {config.env_id} has discrete actions {env.action_space}; "
            "use --algo ppo or dqn"
        )
    if config.algo == "dqn" and not isinstance(env.action_space, gym.spaces.Discrete):
        env.close()
        raise ConfigError(
            f"DQN needs discrete actions, but {config.env_id} has continuous actions "
            f"{env.action_space}; use --algo ppo"
        )
    if config.crash_penalty > 0:
        env = CrashPenalty(env, config.crash_penalty)
    return env


def build_model(config: TrainConfig, env: VecEnv, device: str) -> BaseAlgorithm:
    """A fresh SB3 algorithm for a config."""
    hyper = config.algo_config
    network = policy_class(config.algo, config.policy)
    kwargs = policy_kwargs(
        config.algo, config.policy, hyper.net_arch, config.encoder, load_encoder_weights=config.encoder.pretrained
    )
    common = {"policy_kwargs": kwargs, "seed": config.seed, "device": device, "verbose": 0}
    if config.algo == "sac":
        her: dict[str, Any] = {}
        if hyper.her_goals > 0:
            her = {"replay_buffer_class": HerReplayBuffer, "replay_buffer_kwargs": {
                "n_sampled_goal": hyper.her_goals, "goal_selection_strategy": hyper.her_strategy,
                "copy_info_dict": True}}  # relabelled crashes keep the crash term (envs.goals)
        return SAC(
            network, env, learning_rate=hyper.learning_rate, buffer_size=hyper.buffer_size,
            learning_starts=hyper.learning_starts, batch_size=hyper.batch_size, tau=hyper.tau, gamma=hyper.gamma,
            train_freq=hyper.train_freq, gradient_steps=hyper.gradient_steps, **her, **common,
        )
    if config.algo == "ppo":
        return PPO(
            network, env, learning_rate=hyper.learning_rate, n_steps=hyper.n_steps,
            batch_size=hyper.batch_size, n_epochs=hyper.n_epochs, gamma=hyper.gamma,
            gae_lambda=hyper.gae_lambda, clip_range=hyper.clip_range, ent_coef=hyper.ent_coef,
            vf_coef=hyper.vf_coef, max_grad_norm=hyper.max_grad_norm, **common,
        )
    return DQN(
        network, env, learning_rate=hyper.learning_rate, buffer_size=hyper.buffer_size,
        learning_starts=hyper.learning_starts, batch_size=hyper.batch_size, gamma=hyper.gamma,
        train_freq=hyper.train_freq, gradient_steps=hyper.gradient_steps, n_steps=hyper.n_steps,
        target_update_interval=hyper.target_update_interval,
        exploration_fraction=hyper.exploration_fraction,
        exploration_initial_eps=hyper.exploration_initial_eps,
        exploration_final_eps=hyper.exploration_final_eps, max_grad_norm=hyper.max_grad_norm, **common,
    )


def train(
    config: TrainConfig,
    run_dir: Path | str,
    resume: bool = False,
    force: bool = False,
    command: list[str] | None = None,
    progress_bar: bool = True,
    log_every_steps: int | None = None,
    extra_callbacks: list[BaseCallback] | None = None,
    on_evaluation: Callable[[int, EvaluationResult], bool] | None = None,
) -> TrainResult:
    """Train (or continue training) one run.

    Args:
        config: the run's config; with ``resume`` only ``RESUMABLE_CHANGES`` may differ from
            the saved one.
        run_dir: the run directory.
        resume: continue from the last checkpoint of ``run_dir``.
        force: delete an existing run in ``run_dir`` first (only once everything else checked).
        command: the command line to record (``sys.argv`` by default).
        progress_bar: show a tqdm bar.
        log_every_steps: env steps between log dumps (default: about 50 per run).
        extra_callbacks: more SB3 callbacks (tests, benchmarks).
        on_evaluation: called with (step, result) after every periodic held-out evaluation;
            returning False stops training there (a tuner's pruner), as a normal end.

    Raises:
        RunDirError, ConfigError, CheckpointError: with what to do instead; nothing on disk
            is changed before these checks pass.
    """
    run_dir = Path(run_dir)
    check_run_dir(run_dir, resume, force)
    if resume:
        config = resume_config(run_dir, config)
    device = resolve_device(config.device)
    if config.algo == "bc":
        return train_bc(config, run_dir, resume=resume, force=force, command=command, device=device,
                        progress_bar=progress_bar, on_evaluation=on_evaluation)
    checkpoint: CheckpointInfo | None = find_last_checkpoint(run_dir / CHECKPOINTS) if resume else None
    # The clone: to start from (a fresh run), and to stay near (clone_kl_coef, clone_margin_coef, resumes
    # too: its network is not in checkpoints); loaded and checked before any env is built.
    anchored = config.clone_kl_coef > 0 or config.clone_margin_coef > 0
    needs_clone = config.init_from and (checkpoint is None or anchored)
    clone = check_init_from(config) if needs_clone else None
    start_step = checkpoint.step if checkpoint else 0
    n_envs = config.algo_config.n_envs
    # Resumed runs reset their envs with other (still training-range) seeds than the first start.
    env_seed = (config.seed + start_step) % (TRAIN_SEED_LIMIT - n_envs)
    env = make_training_env(config, env_seed)
    model: BaseAlgorithm | None = None
    logger: Logger | None = None
    try:
        if checkpoint is not None:
            model = load_checkpoint(checkpoint, env, device)
            env.seed(env_seed)
        else:
            model = build_model(config, env, device)
        if clone is not None:
            check_fits(clone, env)
        if force and run_dir.exists():
            shutil.rmtree(run_dir)
        ensure_dir(run_dir)
        write_config(run_dir, config)
        # Training time so far: the checkpoint's (which counts invocations that were killed), else
        # the finished invocations' (checkpoints written before this was recorded).
        wall_before_s = previous_wall_s(run_dir)
        if checkpoint is not None and checkpoint.training_wall_s is not None:
            wall_before_s = checkpoint.training_wall_s
        record_start(run_dir, command, device, start_step if resume else None)
        logger = make_logger(run_dir, start_step if resume else None)
        model.set_logger(logger)
        started = time.perf_counter()
        if clone is not None and checkpoint is None:  # a fresh run: the clone's weights, then (PPO) values
            warm_start(model, config, clone, env)
            wall_before_s += time.perf_counter() - started
        callbacks = list(extra_callbacks or [])
        if clone is not None and config.clone_kl_coef > 0:
            callbacks.append(CloneKLSchedule(CloneAnchor(model, clone.sb3_policy, config.clone_kl_coef,
                                                         config.clone_kl_decay_steps)))
        if clone is not None and config.clone_margin_coef > 0:
            CloneMargin(model, clone.sb3_policy, config.clone_margin_coef, config.clone_margin,
                        config.clone_kl_decay_steps)
        result = _learn(model, config, run_dir, progress_bar, log_every_steps, callbacks, wall_before_s,
                        on_evaluation)
        record_finish(run_dir, {"num_timesteps": result.num_timesteps, "steps_per_s": result.steps_per_s,
                                "best_eval": result.best_eval, "wall_s": time.perf_counter() - started,
                                "interrupted_by": result.interrupted_by})
        return result
    finally:
        env.close()
        if logger is not None:
            logger.close()


def _learn(
    model: BaseAlgorithm,
    config: TrainConfig,
    run_dir: Path,
    progress_bar: bool,
    log_every_steps: int | None,
    extra_callbacks: list[BaseCallback],
    wall_before_s: float,
    on_evaluation: Callable[[int, EvaluationResult], bool] | None = None,
) -> TrainResult:
    remaining = config.total_steps - model.num_timesteps
    best: dict[str, Any] = {}
    start_steps, start_time = model.num_timesteps, time.perf_counter()

    def wall_s() -> float:  # training time of the whole run so far, across resumes
        return wall_before_s + time.perf_counter() - start_time

    def on_best(result: EvaluationResult) -> None:
        summary = {"step": int(model.num_timesteps), **result.summary()}
        best.update(summary)
        export_policy(model, config, run_dir / BEST, extra={"eval": summary, "training_wall_s": wall_s()})

    stop = StopOnSignal()  # Ctrl-C or a scheduler's SIGTERM: stop, checkpoint (RunCheckpointer) and export
    callbacks: list[BaseCallback] = []
    if progress_bar:
        callbacks.append(TrainingProgressBar(config.total_steps))
    if config.eval_every_steps > 0:
        callbacks.append(
            PeriodicEvalCallback(selection_evaluation(config, lambda: model), on_best, config.eval_every_steps,
                                 run_dir / EVALUATIONS, best_mean_return=best_so_far(run_dir),
                                 skip_final=lambda: stop.received is not None, on_evaluation=on_evaluation)
        )
    callbacks.append(RunCheckpointer(run_dir / CHECKPOINTS, config.algo, config.checkpoint_every_steps, wall_s))
    callbacks.append(EpisodeMetricsCallback(log_every_steps or max(config.total_steps // 50, 1)))
    if config.max_minutes > 0:
        callbacks.append(TimeBudgetCallback(wall_s, config.max_minutes * 60.0))
    callbacks.extend(extra_callbacks)
    callbacks.append(stop)
    try:
        if remaining > 0:
            model.learn(remaining, callback=CallbackList(callbacks), log_interval=None, reset_num_timesteps=False)
        else:
            log.info("run %s already has %d >= %d steps", run_dir, model.num_timesteps, config.total_steps)
    finally:
        stop.restore()
    elapsed = time.perf_counter() - start_time
    final = export_policy(model, config, run_dir / FINAL, extra={"training_wall_s": wall_s()})
    if not best and best_so_far(run_dir) > float("-inf"):  # the best was found before a resume
        best = read_spec(run_dir / BEST)[0]["eval"]
    return TrainResult(
        run_dir=run_dir,
        num_timesteps=int(model.num_timesteps),
        best_eval=best or None,
        final_export=final,
        steps_per_s=(model.num_timesteps - start_steps) / elapsed if elapsed > 0 else 0.0,
        interrupted_by=signal.Signals(stop.received).name if stop.received is not None else None,
    )
