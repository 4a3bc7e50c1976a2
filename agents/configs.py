"""Typed training configs (frozen dataclasses) and the per-scenario hyperparameter YAML behind them.

A training run is fully described by one ``TrainConfig``. Its defaults come from
``agents/hyperparams/<scenario>.yaml`` (``default.yaml`` for scenarios without their own file):
a ``common`` section with run-level keys and one section per algorithm. Any key that is not a
field raises ``ConfigError`` naming the valid keys, at every nesting level.

Example:
    >>> config = load_train_config("drivelab/highway-fast-v0", "ppo", {"total_steps": 1000})
    >>> config.algo_config.n_envs > 0
    True
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import drivelab.envs as de
from drivelab.agents.errors import ConfigError
from drivelab.agents.protocol import PROTOCOL_SEED_BASE, SELECTION_SEED_BASE, TRAIN_SEED_LIMIT
from drivelab.core.config import apply_overrides, bounded, from_mapping, read_yaml_mapping, to_plain
from drivelab.envs.config import validate_env_config
from drivelab.envs.make import MAX_NUM_ENVS
from drivelab.perception.encoders import TRUNK_NAMES

__all__ = [
    "ALGOS", "BCConfig", "BUILTIN_ENCODERS", "DQNConfig", "EncoderConfig", "OBSERVATIONS", "POLICY_NETS", "PPOConfig",
    "PROTOCOL_SEED_BASE", "SACConfig", "SELECTION_SEED_BASE", "TRAIN_SEED_LIMIT", "TrainConfig", "check_env_settings",
    "hyperparams_path", "load_train_config", "read_hyperparams", "scenario_name",
]

Algo = Literal["ppo", "dqn", "bc", "sac"]
Observation = Literal["camera", "native"]
PolicyNet = Literal["cnn", "mlp"]
Backend = Literal["auto", "envpool", "highway-env"]
ALGOS: tuple[str, ...] = ("ppo", "dqn", "bc", "sac")
OBSERVATIONS: tuple[str, ...] = ("camera", "native")
POLICY_NETS: tuple[str, ...] = ("cnn", "mlp")
BUILTIN_ENCODERS: tuple[str, ...] = TRUNK_NAMES  # fresh encoders; anything else is a checkpoint path

# Seed ranges (from the evaluation protocol, the one source) keep training, model selection
# and the evaluation protocol apart: training uses seeds below TRAIN_SEED_LIMIT, best-model
# selection SELECTION_SEED_BASE and up, the protocol PROTOCOL_SEED_BASE and up.

# Sizes past these only exhaust memory or time; they are typos, never settings.
MAX_WIDTH = 65_536  # features and hidden layer widths
MAX_LAYERS = 32
MAX_STEPS = 10**12


def _is_file(name: str) -> bool:
    try:
        return Path(name).is_file()
    except (OSError, ValueError):  # a name too long for the file system, a NUL byte
        return False


def check_env_settings(
    env_id: str, observation: str, camera: Mapping[str, Any], env_config: Mapping[str, Any], what: str
) -> None:
    """Check a run's (or a policy spec's) env settings before any env is built.

    Raises:
        DrivelabError: an unknown env id, a camera config ``drivelab.envs`` refuses (e.g. a side
            past 2048 px), or a highway-env key ``drivelab.envs`` refuses (unknown, ill-typed,
            or a size such as ``vehicles_count`` out of its bounds).
    """
    scenario = de.get_scenario(env_id)
    if observation == "camera":  # (camera settings of a native-observation run are unused)
        from_mapping(de.CameraConfig, camera, f"{what} camera")
    validate_env_config(scenario, env_config)


@dataclass(frozen=True)
class EncoderConfig:
    """The CNN that turns stacked camera frames into features (from ``drivelab.perception``)."""

    name: str = "nature"  # "nature" (NatureCNN-like), "fast" (sized for CPU) or a path to weights
    features_dim: int = bounded(256, low=1, high=MAX_WIDTH)  # feature vector fed to the policy/value heads
    freeze: bool = False  # keep encoder weights fixed (useful with pretrained weights)
    augment_shift_px: int = bounded(0, low=0, high=64)  # DrQ random-shift augmentation in training; 0 = off
    pretrained: bool = True  # with a checkpoint path: load its weights; False = same net, random init


def _net_arch(default: tuple[int, ...]) -> Any:
    return bounded(default, low=1, high=MAX_WIDTH)  # every hidden layer width


@dataclass(frozen=True)
class PPOConfig:
    """Stable-Baselines3 PPO hyperparameters (names as in SB3)."""

    n_envs: int = bounded(16, low=1, high=MAX_NUM_ENVS)
    n_steps: int = bounded(64, low=1, high=1_000_000)  # steps per env per rollout; rollout = n_envs * n_steps
    batch_size: int = bounded(256, low=1, high=MAX_STEPS)
    n_epochs: int = bounded(4, low=1, high=10_000)
    learning_rate: float = bounded(5e-4, low=0, low_open=True, high=1.0)
    gamma: float = bounded(0.8, low=0, high=1, low_open=True)  # short horizon: dense rewards, 30-40 step episodes
    gae_lambda: float = bounded(0.95, low=0, high=1)
    clip_range: float = bounded(0.2, low=0, low_open=True)
    ent_coef: float = bounded(0.01, low=0)
    vf_coef: float = bounded(0.5, low=0)
    max_grad_norm: float = bounded(0.5, low=0, low_open=True)
    net_arch: tuple[int, ...] = _net_arch((256,))  # hidden layers of the policy and value heads


@dataclass(frozen=True)
class DQNConfig:
    """Stable-Baselines3 DQN hyperparameters (names as in SB3)."""

    n_envs: int = bounded(8, low=1, high=MAX_NUM_ENVS)
    buffer_size: int = bounded(15_000, low=1, high=100_000_000)  # transitions; camera frames make each ~64 KiB
    learning_starts: int = bounded(200, low=0, high=MAX_STEPS)
    batch_size: int = bounded(32, low=1, high=1_000_000)
    learning_rate: float = bounded(5e-4, low=0, low_open=True, high=1.0)
    gamma: float = bounded(0.8, low=0, high=1, low_open=True)
    train_freq: int = bounded(1, low=1, high=MAX_STEPS)  # vector-env steps between updates
    gradient_steps: int = bounded(1, low=1, high=10_000)
    # n-step returns (SB3's NStepReplayBuffer): the target sums n rewards before bootstrapping, so a
    # crash or a faster speed reaches the Q-value of the decision n-1 steps earlier at once; 1 = plain DQN.
    n_steps: int = bounded(1, low=1, high=1_000)
    target_update_interval: int = bounded(50, low=1, high=MAX_STEPS)
    exploration_fraction: float = bounded(0.5, low=0, high=1)
    exploration_initial_eps: float = bounded(1.0, low=0, high=1)
    exploration_final_eps: float = bounded(0.05, low=0, high=1)
    max_grad_norm: float = bounded(10.0, low=0, low_open=True)
    net_arch: tuple[int, ...] = _net_arch((256,))


@dataclass(frozen=True)
class SACConfig:
    """Stable-Baselines3 SAC hyperparameters (names as in SB3), with hindsight experience replay.

    For continuous-action scenarios on their native observation. On a goal scenario (parking)
    ``her_goals > 0`` stores every transition with that many extra goals the ego reached later
    in its episode (SB3's ``HerReplayBuffer``, goal strategy ``her_strategy``), as rl-zoo3 and
    highway-env's own example train parking.
    """

    n_envs: int = bounded(4, low=1, high=MAX_NUM_ENVS)
    buffer_size: int = bounded(1_000_000, low=1, high=100_000_000)  # transitions
    learning_starts: int = bounded(1_000, low=0, high=MAX_STEPS)
    batch_size: int = bounded(1024, low=1, high=1_000_000)
    learning_rate: float = bounded(1e-3, low=0, low_open=True, high=1.0)
    gamma: float = bounded(0.95, low=0, high=1, low_open=True)
    tau: float = bounded(0.05, low=0, high=1, low_open=True)  # soft update of the target critics
    train_freq: int = bounded(1, low=1, high=MAX_STEPS)  # vector-env steps between updates
    gradient_steps: int = bounded(1, low=1, high=10_000)
    her_goals: int = bounded(4, low=0, high=64)  # relabelled goals per transition; 0 = plain replay
    her_strategy: Literal["future", "final", "episode"] = "future"
    net_arch: tuple[int, ...] = _net_arch((256, 256))  # hidden layers of the actor and of each critic


@dataclass(frozen=True)
class BCConfig:
    """Behaviour cloning: record an expert driving on the batched backend, then fit the policy network.

    The network is PPO's actor-critic (same encoder and heads), so a clone exports, loads and
    evaluates like a PPO policy and can start PPO (``init_from``). Steps of a bc run count
    training samples (one frame stack seen by one gradient step): ``total_steps`` and
    ``eval_every_steps`` are in those units.
    """

    expert: str = "baseline:idm"  # any load_policy label that acts in the run's env (rule-based drivers read its state)
    samples: int = bounded(50_000, low=1, high=100_000_000)  # expert (frame stack, action) pairs to record first
    n_envs: int = bounded(64, low=1, high=MAX_NUM_ENVS)  # batched envs that record them
    chunk_size: int = bounded(10_000, low=1, high=10_000_000)  # samples per stored chunk (the unit of resuming)
    dagger_rounds: int = bounded(0, low=0, high=100)  # rounds of DAgger after the first fit (0 = plain BC)
    dagger_samples: int = bounded(20_000, low=1, high=100_000_000)  # samples recorded per DAgger round
    dagger_beta: float = bounded(0.5, low=0, high=1)  # expert's share of the driven actions in round 1, then beta^r
    # DAgger rounds after the others recorded on the protocol's reference backend (highway-env), where
    # the protocol evaluates: a clone trained on EnvPool's traffic only meets states there it never saw
    reference_rounds: int = bounded(0, low=0, high=100)
    reference_samples: int = bounded(4_000, low=1, high=100_000_000)  # samples per reference round
    reference_envs: int = bounded(8, low=1, high=MAX_NUM_ENVS)  # envs (in worker processes) of a reference round
    epochs: int = bounded(8, low=1, high=100_000)  # passes over the data after the first recording and each round
    batch_size: int = bounded(256, low=1, high=1_000_000)
    learning_rate: float = bounded(3e-4, low=0, low_open=True, high=1.0)
    max_grad_norm: float = bounded(1.0, low=0, low_open=True)
    holdout_fraction: float = bounded(0.05, low=0, high=0.5)  # samples kept out of training to measure agreement
    # Discrete actions: each sample's loss weighted by (its action's share of the training rows)^-class_balance,
    # weights averaging 1 over the rows; 0 = plain cross-entropy, 1 = every action counts equally in total.
    # The expert's rare actions (braking, speeding up) are where a clone that mostly idles goes wrong.
    class_balance: float = bounded(0.0, low=0, high=1)
    # Discrete actions the balance leaves alone: their rows weigh as the most common action's. On
    # highway-fast [0, 2] (lane changes, 1-3 % of IDM/MOBIL's labels), which the balance at 0.5
    # otherwise weighs ~7x an idle row: one clone changed lane 60 % more often than the expert.
    class_balance_skip: tuple[int, ...] = bounded((), low=0, high=1_000)
    net_arch: tuple[int, ...] = _net_arch((256,))  # as PPO's, so the clone can start PPO


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines one training run; saved resolved in the run directory."""

    env_id: str
    algo: Algo
    total_steps: int = bounded(100_000, low=1, high=MAX_STEPS)  # env steps over all envs
    seed: int = bounded(0, low=0)  # training env i uses seeds from seed + i; must stay below TRAIN_SEED_LIMIT
    device: str = "auto"  # "auto" (CUDA when available), "cpu", "cuda", "cuda:N"
    backend: Backend = "auto"  # simulator backend, see drivelab.envs.make_vec
    observation: Observation = "camera"
    policy: PolicyNet = "cnn"  # "cnn" for camera frames, "mlp" for native (kinematics) observations
    camera: dict[str, Any] = field(default_factory=dict)  # drivelab.envs camera config
    env_config: dict[str, Any] = field(default_factory=dict)  # highway-env config overrides
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    ppo: PPOConfig | None = None  # set when algo == "ppo"
    dqn: DQNConfig | None = None  # set when algo == "dqn"
    bc: BCConfig | None = None  # set when algo == "bc"
    sac: SACConfig | None = None  # set when algo == "sac"
    # A policy (run folder or export, e.g. a bc run) whose weights start PPO or DQN; "" = random init.
    init_from: str = ""
    # PPO started from init_from: env steps of the clone driving, used only to fit the value head
    # (policy weights untouched) before the first PPO update, so early advantages are not noise.
    value_warmup_steps: int = bounded(8_192, low=0, high=MAX_STEPS)
    # PPO started from init_from: weight of a KL(clone || policy) penalty in the loss, falling
    # linearly to 0 over clone_kl_decay_steps env steps (drivelab.agents.clone_anchor); 0 = off.
    clone_kl_coef: float = bounded(0.0, low=0)
    clone_kl_decay_steps: int = bounded(200_000, low=1, high=MAX_STEPS)  # also clone_margin_coef's decay
    # DQN started from init_from: weight of a large-margin loss (DQfD) keeping the clone's greedy action's
    # Q-value clone_margin above the others on replayed frames, decaying as clone_kl_coef does; 0 = off.
    clone_margin_coef: float = bounded(0.0, low=0)
    clone_margin: float = bounded(0.8, low=0, low_open=True)
    checkpoint_every_steps: int = bounded(20_000, low=1, high=MAX_STEPS)
    eval_every_steps: int = bounded(20_000, low=0, high=MAX_STEPS)  # 0 disables periodic evaluation
    eval_episodes: int = bounded(20, low=1, high=100_000)
    eval_envs: int = bounded(10, low=1, high=MAX_NUM_ENVS)
    eval_seed: int = SELECTION_SEED_BASE  # held-out seeds for best-model selection
    # The backend best-model selection runs on: "train" (the training env's, fast) or another one,
    # e.g. "highway-env", the protocol's reference, where a policy's closed-loop behaviour on a
    # batched port differs from the reference (slower: worth it for few, long evaluations).
    eval_backend: Literal["train", "auto", "envpool", "highway-env"] = "train"
    # Wall-clock budget of the whole run (resumes and periodic evaluations included) [min];
    # training stops at the first step past it and checkpoints/exports as usual. 0: no budget.
    max_minutes: float = bounded(0.0, low=0)
    # Subtracted from the reward of the step on which the ego crashes, in training only:
    # evaluation, best-model selection and the logged episode returns use the env's own reward.
    crash_penalty: float = bounded(0.0, low=0)

    def __post_init__(self) -> None:
        if self.algo not in ALGOS:
            raise ConfigError(f"unknown algorithm {self.algo!r}. Valid algorithms: {', '.join(ALGOS)}")
        # Fill the chosen algorithm's section with defaults; drop the other one.
        sections = {"ppo": self.ppo or PPOConfig(), "dqn": self.dqn or DQNConfig(), "bc": self.bc or BCConfig(),
                    "sac": self.sac or SACConfig()}
        for algo in ALGOS:
            object.__setattr__(self, algo, sections[algo] if algo == self.algo else None)
        self._check()

    def _check(self) -> None:
        if self.observation not in OBSERVATIONS:
            raise ConfigError(f"unknown observation {self.observation!r}. Valid: {', '.join(OBSERVATIONS)}")
        if self.policy not in POLICY_NETS:
            raise ConfigError(f"unknown policy {self.policy!r}. Valid: {', '.join(POLICY_NETS)}")
        if self.observation == "camera" and self.policy != "cnn":
            raise ConfigError(
                "camera observations are image stacks and need policy: cnn "
                "(an MLP policy on raw pixels is not supported); use --obs native for mlp"
            )
        encoder = self.encoder.name
        if self.policy == "cnn" and encoder not in BUILTIN_ENCODERS and not _is_file(encoder):
            raise ConfigError(
                f"encoder {encoder!r} is neither one of {', '.join(BUILTIN_ENCODERS)} nor an "
                "existing perception checkpoint file"
            )
        if self.observation == "native" and self.policy != "mlp":
            raise ConfigError("native observations are feature vectors and need policy: mlp")
        if not (self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda")):
            raise ConfigError(f"unknown device {self.device!r}. Valid: auto, cpu, cuda, cuda:N")
        if self.total_steps <= 0:
            raise ConfigError(f"total_steps must be positive, got {self.total_steps}")
        n_envs = self.algo_config.n_envs
        if n_envs <= 0:
            raise ConfigError(f"n_envs must be positive, got {n_envs}")
        if not 0 <= self.seed or self.seed + n_envs > TRAIN_SEED_LIMIT:
            raise ConfigError(
                f"training seed must be in [0, {TRAIN_SEED_LIMIT - n_envs}] so that training "
                f"never uses the held-out evaluation seeds (>= {TRAIN_SEED_LIMIT}); got {self.seed}"
            )
        if not SELECTION_SEED_BASE <= self.eval_seed <= PROTOCOL_SEED_BASE - self.eval_episodes:
            raise ConfigError(
                f"eval_seed must be in [{SELECTION_SEED_BASE}, {PROTOCOL_SEED_BASE - self.eval_episodes}]"
                f" (held out from training and from the evaluation protocol); got {self.eval_seed}"
            )
        if self.eval_episodes <= 0 or self.eval_envs <= 0:
            raise ConfigError("eval_episodes and eval_envs must be positive")
        if self.max_minutes < 0:
            raise ConfigError(f"max_minutes must be >= 0 (0 means no budget), got {self.max_minutes}")
        if self.crash_penalty < 0:
            raise ConfigError(f"crash_penalty must be >= 0 (it is subtracted on a crash), got {self.crash_penalty}")
        if self.checkpoint_every_steps <= 0 or self.eval_every_steps < 0:
            raise ConfigError("checkpoint_every_steps must be positive and eval_every_steps >= 0")
        if self.algo == "sac" and self.policy != "mlp":
            raise ConfigError("sac trains on native observations with policy: mlp (use --obs native)")
        if self.init_from and self.algo == "bc":
            raise ConfigError("init_from starts PPO or DQN from a policy; a bc run learns from its expert instead")
        if self.init_from and self.algo == "sac":
            raise ConfigError("init_from starts PPO or DQN from a policy; sac starts from random weights")
        if self.clone_kl_coef > 0 and not (self.algo == "ppo" and self.init_from):
            raise ConfigError("clone_kl_coef keeps PPO near the clone it starts from: needs --algo ppo and init_from")
        if self.clone_margin_coef > 0 and not (self.algo == "dqn" and self.init_from):
            raise ConfigError("clone_margin_coef keeps DQN near the clone it starts from: needs --algo dqn and "
                              "init_from")
        if self.clone_kl_coef > 0 and self.ppo is not None and self.ppo.ent_coef <= 0:
            raise ConfigError("clone_kl_coef adds its penalty through PPO's entropy term: set ppo.ent_coef > 0")
        if self.ppo is not None and self.ppo.batch_size > self.ppo.n_envs * self.ppo.n_steps:
            raise ConfigError(
                f"ppo.batch_size ({self.ppo.batch_size}) exceeds the rollout size "
                f"n_envs * n_steps = {self.ppo.n_envs * self.ppo.n_steps}"
            )
        check_env_settings(self.env_id, self.observation, self.camera, self.env_config, "train config")

    @property
    def algo_config(self) -> PPOConfig | DQNConfig | BCConfig | SACConfig:
        """The hyperparameters of the chosen algorithm."""
        return {"ppo": self.ppo, "dqn": self.dqn, "bc": self.bc, "sac": self.sac}[self.algo]  # type: ignore[return-value]

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (lists for tuples) that ``from_mapping`` turns back into this config."""
        plain = to_plain(self)
        return {k: v for k, v in plain.items() if v is not None or k not in ALGOS}

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (checked like a new config)."""
        return from_mapping(TrainConfig, {**self.to_dict(), **changes}, "train config")


def scenario_name(env_id: str) -> str:
    """``"drivelab/highway-fast-v0"`` -> ``"highway-fast"``."""
    name = env_id.split("/")[-1]
    return name[: -len("-v0")] if name.endswith("-v0") else name


def hyperparams_path(env_id: str) -> Path:
    """The shipped hyperparameter YAML for a scenario (``default.yaml`` when it has none)."""
    folder = resources.files("drivelab.agents") / "hyperparams"
    own = folder / f"{scenario_name(env_id)}.yaml"
    return Path(str(own if own.is_file() else folder / "default.yaml"))


def read_hyperparams(path: Path | str, algo: str) -> dict[str, Any]:
    """Read a hyperparameter YAML into a TrainConfig mapping for one algorithm.

    The file has a ``common`` section (TrainConfig keys) and one section per algorithm.

    Raises:
        ConfigError: missing file, invalid YAML or an unknown section.
    """
    path = Path(path)
    document = read_yaml_mapping(path, "hyperparameters")
    valid = ("common", *ALGOS)
    for section in document:
        if section not in valid:
            raise ConfigError(f"unknown section {section!r} in {path}. Valid sections: {', '.join(valid)}")
    for section, values in document.items():
        if values is not None and not isinstance(values, Mapping):
            raise ConfigError(f"section {section!r} of {path} must be a mapping, got {values!r}")
    merged = dict(document.get("common") or {})
    if algo in document:
        merged[algo] = dict(document[algo] or {})
    return merged


def load_train_config(
    env_id: str,
    algo: str,
    overrides: Mapping[str, Any] | None = None,
    hyperparams_file: Path | str | None = None,
) -> TrainConfig:
    """Resolve the config of a run: shipped YAML for the scenario, then the user's overrides.

    Args:
        env_id: drivelab scenario id.
        algo: ``"ppo"``, ``"dqn"``, ``"bc"`` or ``"sac"``.
        overrides: dotted keys over the YAML values, e.g. ``{"total_steps": 5000, "ppo.n_steps": 32}``.
        hyperparams_file: a YAML file to use instead of the shipped one.

    Raises:
        ConfigError: unknown algorithm, unknown key or wrong type anywhere.
    """
    if algo not in ALGOS:
        raise ConfigError(f"unknown algorithm {algo!r}. Valid algorithms: {', '.join(ALGOS)}")
    path = Path(hyperparams_file) if hyperparams_file is not None else hyperparams_path(env_id)
    values = read_hyperparams(path, algo)
    values = apply_overrides(values, {"env_id": env_id, "algo": algo, **(overrides or {})})
    return from_mapping(TrainConfig, values, "train config")
