"""Start PPO or DQN from a trained policy (``init_from``), typically a behaviour-cloning run.

PPO: every weight of the clone is copied (bc trains PPO's own actor-critic class), then the
value head alone is fitted to the discounted returns of the clone driving in the training env
(``value_warmup_steps`` env steps; the shared encoder and the policy head are untouched), so the
first PPO update does not push the policy around with advantages from a random critic.

DQN: the camera encoder is copied and the Q-network is then fitted, on the clone's frames, to
``G(s) + logits(s, a) - mean_a logits(s, a)``, where G is the discounted return observed from s:
greedy Q-actions are the clone's and their values have the scale of the returns. The replay buffer
is pre-filled with the same transitions (the expert data of the clone's bc run when there is one,
else the clone's own rollouts), rewards as the env gave them (crash penalty included).

Everything a user can get wrong (a missing path, a baseline, another camera, observation,
action space or network size) is refused in one line before any training step.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3 import DQN, PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecEnv

import drivelab.envs as de
from drivelab.agents.configs import TrainConfig
from drivelab.agents.errors import ConfigError
from drivelab.agents.expert_data import MANIFEST, ExpertData, load
from drivelab.agents.imitation import EXPERT_DATA
from drivelab.agents.loading import BASELINE_PREFIX, load_policy
from drivelab.agents.policies import TrainedPolicy
from drivelab.core.config import from_mapping

log = logging.getLogger("drivelab.agents")

SOURCES = {"ppo": ("bc", "ppo"), "dqn": ("bc", "ppo")}  # what each algorithm can start from
FIT_EPOCHS = 4  # passes over the data when fitting the value head (PPO) or the Q-network (DQN)
FIT_BATCH = 256
MIN_FIT_STEPS = 100
MAX_FIT_STEPS = 300  # ~1 min on one CPU thread with highway-fast's frames and network
FIT_ROWS = 50_000  # most expert rows read for the Q-network's fit and the replay buffer


def check_init_from(config: TrainConfig) -> TrainedPolicy:
    """Load ``config.init_from`` and check it fits the run (before any env is built).

    Raises:
        ConfigError: a missing path, a baseline, another algorithm, observation, camera, encoder
            or head size than the run's.
    """
    label = config.init_from
    if label.startswith(BASELINE_PREFIX):
        raise ConfigError(f"init_from needs a trained network (a bc or ppo run or export), not {label}")
    if not Path(label).exists():
        raise ConfigError(f"init_from {label} does not exist; give a bc or ppo run folder or its export (policy.json)")
    clone = load_policy(label)
    if not isinstance(clone, TrainedPolicy):
        raise ConfigError(f"init_from {label} is not an exported network")
    spec = clone.spec
    if spec.get("algo") not in SOURCES[config.algo]:
        raise ConfigError(f"{config.algo} can start from {' or '.join(SOURCES[config.algo])} policies; "
                          f"{label} is a {spec.get('algo')} policy")
    mine = {"observation": config.observation, "policy_net": config.policy,
            "net_arch": list(config.algo_config.net_arch)}
    theirs = {"observation": spec.get("observation"), "policy_net": spec.get("policy_net"),
              "net_arch": list(spec.get("net_arch") or [])}
    if config.observation == "camera":
        mine["camera"] = from_mapping(de.CameraConfig, config.camera, "camera")
        theirs["camera"] = from_mapping(de.CameraConfig, spec.get("camera") or {}, "camera")
        mine["encoder"] = (config.encoder.name, config.encoder.features_dim)
        theirs["encoder"] = (spec["encoder"]["name"], spec["encoder"]["features_dim"])
    different = [key for key in mine if mine[key] != theirs[key]]
    if different:
        details = "; ".join(f"{key}: run {mine[key]} vs init_from {theirs[key]}" for key in different)
        raise ConfigError(f"init_from {label} does not fit this run ({details}); train the clone with the "
                          f"run's settings or set them to the clone's (e.g. --set {config.algo}.net_arch=...)")
    return clone


def check_fits(clone: TrainedPolicy, env: VecEnv) -> None:
    """The clone's spaces against the training env's (an action space only the env knows)."""
    if clone.action_space != env.action_space or clone.observation_space.shape != env.observation_space.shape:
        raise ConfigError(
            f"init_from {clone.source.label if clone.source else clone.name} acts in "
            f"{clone.observation_space.shape} -> {clone.action_space}, this run's env in "
            f"{env.observation_space.shape} -> {env.action_space}; start from a policy of the same scenario and camera"
        )


def warm_start(model: BaseAlgorithm, config: TrainConfig, clone: TrainedPolicy, env: VecEnv) -> None:
    """Put the clone into a fresh PPO or DQN (see the module docstring)."""
    check_fits(clone, env)
    if isinstance(model, PPO):
        model.policy.load_state_dict(clone.sb3_policy.state_dict())
        if config.value_warmup_steps > 0:
            rollout = drive(model, env, config.value_warmup_steps)
            loss = fit_values(model, rollout, config.ppo.gamma)
            model.logger.record("warm_start/value_loss", loss)
            model.logger.record("warm_start/value_steps", len(rollout.actions))
    elif isinstance(model, DQN):
        data = _expert_transitions(config)  # the env's own rewards: charged crash_penalty here
        data = _with_crash_penalty(data, config.crash_penalty) if data is not None else \
            drive(model, env, max(config.value_warmup_steps, 1), clone=clone)  # env's CrashPenalty charged it
        model.q_net.features_extractor.load_state_dict(clone.sb3_policy.features_extractor.state_dict())
        loss = fit_q_to_logits(model, clone, data, config.dqn.gamma)
        model.q_net_target.load_state_dict(model.q_net.state_dict())
        stored = prefill_replay(model, data)
        model.logger.record("warm_start/q_fit_loss", loss)
        model.logger.record("warm_start/replay_prefill", stored)
    log.info("started %s from %s", config.algo, config.init_from)


def drive(model: BaseAlgorithm, env: VecEnv, steps: int, clone: TrainedPolicy | None = None) -> ExpertData:
    """The clone (``model.policy`` for PPO, sampling; ``clone`` greedy for DQN) driving ``steps`` env steps."""
    rows: dict[str, list[np.ndarray]] = {k: [] for k in ("obs", "act", "rew", "term", "trunc", "next", "crash")}
    observation = env.reset()
    for _ in range(max(steps // env.num_envs, 1)):
        if clone is not None:
            actions = clone.act(observation)
        else:
            actions, _ = model.policy.predict(observation, deterministic=False)
        following, rewards, dones, infos = env.step(actions)
        truncated = np.array([info.get("TimeLimit.truncated", False) for info in infos])
        next_obs = following.copy()
        for i in np.flatnonzero(dones):
            next_obs[i] = infos[i]["terminal_observation"]
        crashed = np.array([bool(info.get("driving", {}).get("crashed", False)) for info in infos])
        for key, value in zip(rows, (observation, actions, rewards, dones & ~truncated, truncated, next_obs, crashed)):
            rows[key].append(np.asarray(value))
        observation = following
    stacked = {key: np.stack(values) for key, values in rows.items()}  # (T, B, ...) time-major
    flat = {key: value.reshape(-1, *value.shape[2:]) for key, value in stacked.items()}
    window_end = np.zeros(len(flat["act"]), bool)
    window_end[-env.num_envs:] = True
    return ExpertData(flat["obs"], flat["act"], flat["rew"].astype(np.float32), flat["term"].astype(bool),
                      flat["trunc"].astype(bool), flat["next"], window_end, env.num_envs, flat["crash"])


def discounted_returns(data: ExpertData, gamma: float) -> np.ndarray:
    """G_t = r_t + gamma * G_{t+1} within each env's episodes (rows time-major, B per step), 0 past a window."""
    ends = data.terminated | data.truncated
    if data.window_end is not None:
        ends = ends | data.window_end
    rewards = data.rewards.reshape(-1, data.num_envs)  # (T, B)
    ends = ends.reshape(-1, data.num_envs)
    num_envs = data.num_envs
    returns = np.zeros_like(rewards)
    running = np.zeros(num_envs, np.float32)
    for t in range(len(rewards) - 1, -1, -1):
        running = rewards[t] + gamma * running * ~ends[t]
        returns[t] = running
    return returns.reshape(-1)


def _minibatches(rows: int, seed: int) -> Any:
    """Row indices of FIT_EPOCHS shuffled passes, at least MIN_FIT_STEPS and at most MAX_FIT_STEPS batches."""
    rng = np.random.default_rng(seed)
    batches_per_pass = -(-rows // FIT_BATCH)
    steps = 0
    for _ in range(max(FIT_EPOCHS, -(-MIN_FIT_STEPS // batches_per_pass))):
        order = rng.permutation(rows)
        for start in range(0, rows, FIT_BATCH):
            if steps == MAX_FIT_STEPS:  # the fit is part of the run's wall-clock budget
                return
            steps += 1
            yield order[start:start + FIT_BATCH]


def fit_values(model: PPO, rollout: ExpertData, gamma: float) -> float:
    """Fit only PPO's value head (its MLP and output layer) to the rollout's discounted returns."""
    policy = model.policy
    targets = torch.as_tensor(discounted_returns(rollout, gamma), device=policy.device)
    parameters = [*policy.mlp_extractor.value_net.parameters(), *policy.value_net.parameters()]
    optimizer = torch.optim.Adam(parameters, lr=float(model.lr_schedule(1.0)))
    losses = []
    policy.set_training_mode(False)  # no augmentation: the features the policy sees
    for index in _minibatches(len(targets), model.seed or 0):
        observations = torch.as_tensor(rollout.observations[index], device=policy.device)
        with torch.no_grad():
            features = policy.extract_features(observations)
            features = features[1] if isinstance(features, tuple) else features
        values = policy.value_net(policy.mlp_extractor.forward_critic(features)).squeeze(-1)
        loss = torch.nn.functional.mse_loss(values, targets[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return float(np.mean(losses[-max(len(losses) // FIT_EPOCHS, 1):]))


def fit_q_to_logits(model: DQN, clone: TrainedPolicy, data: ExpertData, gamma: float) -> float:
    """Fit DQN's Q-network to G(s) + centred clone logits on the data's frames (encoder included)."""
    q_net, device = model.q_net, model.device
    returns = torch.as_tensor(discounted_returns(data, gamma), device=device)
    optimizer = torch.optim.Adam(q_net.parameters(), lr=float(model.lr_schedule(1.0)))
    losses = []
    for index in _minibatches(len(returns), model.seed or 0):
        observations = torch.as_tensor(data.observations[index], device=device)
        with torch.no_grad():
            logits = clone.sb3_policy.get_distribution(observations).distribution.logits  # (b, A)
            targets = returns[index, None] + logits - logits.mean(dim=1, keepdim=True)
        loss = torch.nn.functional.mse_loss(q_net(observations), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return float(np.mean(losses[-max(len(losses) // FIT_EPOCHS, 1):]))


def _expert_transitions(config: TrainConfig) -> ExpertData | None:
    """The expert transitions recorded by the clone's bc run, when the run and its data are found."""
    path = Path(config.init_from)
    for folder in (path, path.parent, path.parent.parent):
        recording = folder / EXPERT_DATA / "round_0"
        if (recording / MANIFEST).is_file():
            data = load(recording, transitions=True)
            steps = min(len(data), max(config.dqn.buffer_size * config.dqn.n_envs, FIT_ROWS)) // data.num_envs
            keep = steps * data.num_envs  # whole vector steps, so rows stay time-major
            return ExpertData(
                data.observations[:keep], data.actions[:keep], data.rewards[:keep], data.terminated[:keep],
                data.truncated[:keep], data.next_observations[:keep], data.window_end[:keep], data.num_envs,
                data.crashed[:keep] if data.crashed is not None else None,
            )
    log.info("init_from %s has no recorded expert data beside it: the clone's own rollouts fill the buffer",
             config.init_from)
    return None


def _with_crash_penalty(data: ExpertData, penalty: float) -> ExpertData:
    """The recorded rewards charged ``penalty`` on the steps where the ego crashed, as ``CrashPenalty`` does."""
    if penalty > 0:
        # recordings made before crashes were stored: a crash is a termination (true on highway,
        # where an episode ends early only by crashing; not where arriving ends it too)
        crashed = data.crashed if data.crashed is not None else data.terminated
        data.rewards = data.rewards - penalty * crashed
    return data


def prefill_replay(model: DQN, data: ExpertData) -> int:
    """Write the transitions into DQN's replay buffer (rows of n_envs, as the buffer stores them)."""
    buffer, n = model.replay_buffer, model.n_envs
    rows = min(len(data) // n, buffer.buffer_size)
    used = rows * n

    def shaped(values: np.ndarray) -> np.ndarray:
        return values[:used].reshape(rows, n, *values.shape[1:])

    buffer.observations[:rows] = shaped(data.observations)
    buffer.next_observations[:rows] = shaped(data.next_observations)
    buffer.actions[:rows] = shaped(data.actions).reshape(rows, n, -1)
    buffer.rewards[:rows] = shaped(data.rewards)
    buffer.dones[:rows] = shaped(data.terminated | data.truncated)
    buffer.timeouts[:rows] = shaped(data.truncated)
    buffer.pos, buffer.full = rows % buffer.buffer_size, rows == buffer.buffer_size
    return used
