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

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar, Union

import yaml

from drivelab.agents.errors import ConfigError
from drivelab.perception.encoders import TRUNK_NAMES

ALGOS: tuple[str, ...] = ("ppo", "dqn")
OBSERVATIONS: tuple[str, ...] = ("camera", "native")
POLICY_NETS: tuple[str, ...] = ("cnn", "mlp")
BUILTIN_ENCODERS: tuple[str, ...] = TRUNK_NAMES  # fresh encoders; anything else is a checkpoint path

# Seed ranges keep training, model selection and the evaluation protocol apart:
# training uses seeds below TRAIN_SEED_LIMIT, best-model selection EVAL_SEED_BASE and up,
# the leaderboard protocol PROTOCOL_SEED_BASE and up. Training never sees an evaluation seed.
TRAIN_SEED_LIMIT = 1_000_000
EVAL_SEED_BASE = 1_000_000
PROTOCOL_SEED_BASE = 10_000_000

T = TypeVar("T")


@dataclass(frozen=True)
class EncoderConfig:
    """The CNN that turns stacked camera frames into features (from ``drivelab.perception``)."""

    name: str = "nature"  # "nature" (NatureCNN-like), "fast" (sized for CPU) or a path to weights
    features_dim: int = 256  # width of the feature vector fed to the policy/value heads
    freeze: bool = False  # keep encoder weights fixed (useful with pretrained weights)
    augment_shift_px: int = 0  # DrQ random-shift augmentation during training; 0 = off
    pretrained: bool = True  # with a checkpoint path: load its weights; False = same net, random init


@dataclass(frozen=True)
class PPOConfig:
    """Stable-Baselines3 PPO hyperparameters (names as in SB3)."""

    n_envs: int = 16
    n_steps: int = 64  # steps per env per rollout; rollout size = n_envs * n_steps
    batch_size: int = 256
    n_epochs: int = 4
    learning_rate: float = 5e-4
    gamma: float = 0.8  # short horizon: highway rewards are dense, episodes 30-40 steps
    gae_lambda: float = 0.95
    clip_range: float = 0.2
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    net_arch: tuple[int, ...] = (256,)  # hidden layers of the policy and value heads


@dataclass(frozen=True)
class DQNConfig:
    """Stable-Baselines3 DQN hyperparameters (names as in SB3)."""

    n_envs: int = 8
    buffer_size: int = 15_000  # transitions; camera frames make each one ~64 KiB
    learning_starts: int = 200
    batch_size: int = 32
    learning_rate: float = 5e-4
    gamma: float = 0.8
    train_freq: int = 1  # vector-env steps between updates
    gradient_steps: int = 1
    target_update_interval: int = 50
    exploration_fraction: float = 0.5
    exploration_initial_eps: float = 1.0
    exploration_final_eps: float = 0.05
    max_grad_norm: float = 10.0
    net_arch: tuple[int, ...] = (256,)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines one training run; saved resolved in the run directory."""

    env_id: str
    algo: str  # "ppo" or "dqn"
    total_steps: int = 100_000  # env steps over all envs
    seed: int = 0  # training env i uses seeds from seed + i; must stay below TRAIN_SEED_LIMIT
    device: str = "auto"  # "auto" (CUDA when available), "cpu", "cuda", "cuda:N"
    backend: str = "auto"  # simulator backend, see drivelab.envs.make
    observation: str = "camera"
    policy: str = "cnn"  # "cnn" for camera frames, "mlp" for native (kinematics) observations
    camera: dict[str, Any] = field(default_factory=dict)  # drivelab.envs camera config
    env_config: dict[str, Any] = field(default_factory=dict)  # highway-env config overrides
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    ppo: PPOConfig | None = None  # set when algo == "ppo"
    dqn: DQNConfig | None = None  # set when algo == "dqn"
    checkpoint_every_steps: int = 20_000
    eval_every_steps: int = 20_000  # 0 disables periodic evaluation
    eval_episodes: int = 20
    eval_envs: int = 10
    eval_seed: int = EVAL_SEED_BASE  # held-out seeds for best-model selection
    # Wall-clock budget of the whole run (resumes and periodic evaluations included) [min];
    # training stops at the first step past it and checkpoints/exports as usual. 0: no budget.
    max_minutes: float = 0.0
    # Subtracted from the reward of the step on which the ego crashes, in training only:
    # evaluation, best-model selection and the logged episode returns use the env's own reward.
    crash_penalty: float = 0.0

    def __post_init__(self) -> None:
        if self.algo not in ALGOS:
            raise ConfigError(f"unknown algorithm {self.algo!r}. Valid algorithms: {', '.join(ALGOS)}")
        # Fill the chosen algorithm's section with defaults; drop the other one.
        sections = {"ppo": self.ppo or PPOConfig(), "dqn": self.dqn or DQNConfig()}
        for algo in ALGOS:
            object.__setattr__(self, algo, sections[algo] if algo == self.algo else None)
        self._check()

    def _check(self) -> None:
        if self.observation not in OBSERVATIONS:
            raise ConfigError(
                f"unknown observation {self.observation!r}. Valid: {', '.join(OBSERVATIONS)}"
            )
        if self.policy not in POLICY_NETS:
            raise ConfigError(f"unknown policy {self.policy!r}. Valid: {', '.join(POLICY_NETS)}")
        if self.observation == "camera" and self.policy != "cnn":
            raise ConfigError(
                "camera observations are image stacks and need policy: cnn "
                "(an MLP policy on raw pixels is not supported); use --obs native for mlp"
            )
        encoder = self.encoder.name
        if self.policy == "cnn" and encoder not in BUILTIN_ENCODERS and not Path(encoder).is_file():
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
        if not TRAIN_SEED_LIMIT <= self.eval_seed <= PROTOCOL_SEED_BASE - self.eval_episodes:
            raise ConfigError(
                f"eval_seed must be in [{TRAIN_SEED_LIMIT}, {PROTOCOL_SEED_BASE - self.eval_episodes}]"
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
        if self.ppo is not None and self.ppo.batch_size > self.ppo.n_envs * self.ppo.n_steps:
            raise ConfigError(
                f"ppo.batch_size ({self.ppo.batch_size}) exceeds the rollout size "
                f"n_envs * n_steps = {self.ppo.n_envs * self.ppo.n_steps}"
            )

    @property
    def algo_config(self) -> PPOConfig | DQNConfig:
        """The hyperparameters of the chosen algorithm."""
        return self.ppo if self.algo == "ppo" else self.dqn  # type: ignore[return-value]

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (lists for tuples) that ``from_mapping`` turns back into this config."""
        plain = _to_plain(dataclasses.asdict(self))
        return {k: v for k, v in plain.items() if v is not None or k not in ALGOS}

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (checked like a new config)."""
        return from_mapping(TrainConfig, {**self.to_dict(), **changes}, "train config")


def _to_plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    return value


def _check_value(annotation: Any, value: Any, key: str, what: str) -> Any:
    """Check one value against a field annotation; returns it converted (lists -> tuples)."""
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None:
            return None
        return _check_value(options[0], value, key, what)
    if dataclasses.is_dataclass(annotation):
        return from_mapping(annotation, value, what, prefix=f"{key}.")
    if annotation is bool:
        ok = isinstance(value, bool)
    elif annotation is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif annotation is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif annotation is str:
        ok = isinstance(value, str)
    elif origin is tuple:
        item = typing.get_args(annotation)[0]
        ok = isinstance(value, (list, tuple)) and all(
            isinstance(v, item) and not isinstance(v, bool) for v in value
        )
        value = tuple(value) if ok else value
    elif origin is dict:
        ok = isinstance(value, Mapping)
        value = dict(value) if ok else value
    else:  # pragma: no cover - every field type is handled above
        raise TypeError(f"unsupported config annotation {annotation!r}")
    if not ok:
        name = getattr(annotation, "__name__", str(annotation))
        raise ConfigError(f"{what} key {key!r} expects {name}, got {value!r}")
    return value


def from_mapping(cls: type[T], values: Mapping[str, Any] | None, what: str, prefix: str = "") -> T:
    """Build a config dataclass from a mapping, rejecting unknown keys and ill-typed values.

    Args:
        cls: a config dataclass type of this module.
        values: field values; nested dataclasses are given as nested mappings.
        what: how errors name this config, e.g. ``"train config"``.
        prefix: dotted path of a nested section in error messages, e.g. ``"ppo."``.

    Raises:
        ConfigError: an unknown key (naming the valid keys), a missing required key or a
            value of the wrong type.
    """
    values = {} if values is None else values
    if not isinstance(values, Mapping):
        raise ConfigError(f"{what} {prefix.rstrip('.') or 'value'} must be a mapping, got {values!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    for key in values:
        if key not in fields:
            raise ConfigError(
                f"unknown {what} key {prefix + str(key)!r}. "
                f"Valid keys{' of ' + prefix.rstrip('.') if prefix else ''}: {', '.join(fields)}"
            )
    converted = {k: _check_value(hints[k], v, prefix + k, what) for k, v in values.items()}
    missing = [
        name for name, f in fields.items()
        if name not in converted
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{what} is missing required keys: {', '.join(prefix + m for m in missing)}")
    return cls(**converted)


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
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except OSError as error:
        raise ConfigError(f"cannot read hyperparameters {path}: {error}") from error
    except yaml.YAMLError as error:
        raise ConfigError(f"invalid YAML in {path}: {error}") from error
    if not isinstance(document, Mapping):
        raise ConfigError(f"{path} must hold a mapping with sections common, {', '.join(ALGOS)}")
    valid = ("common", *ALGOS)
    for section in document:
        if section not in valid:
            raise ConfigError(f"unknown section {section!r} in {path}. Valid sections: {', '.join(valid)}")
    merged = dict(document.get("common") or {})
    if algo in document:
        merged[algo] = dict(document[algo] or {})
    return merged


def apply_overrides(values: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Merge dotted overrides (``{"ppo.n_envs": 8, "camera.width": 64}``) into a config mapping."""
    merged: dict[str, Any] = {k: dict(v) if isinstance(v, Mapping) else v for k, v in values.items()}
    for dotted, value in overrides.items():
        head, _, tail = dotted.partition(".")
        if tail:
            section = merged.get(head)
            section = dict(section) if isinstance(section, Mapping) else {}
            section[tail] = value
            merged[head] = section
        else:
            merged[head] = value
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
        algo: ``"ppo"`` or ``"dqn"``.
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


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``["ppo.n_envs=8", "camera.color=rgb"]`` -> ``{"ppo.n_envs": 8, "camera.color": "rgb"}``.

    Values are read as YAML scalars or lists (never evaluated as code).
    """
    overrides: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects KEY=VALUE, got {pair!r}")
        try:
            overrides[key.strip()] = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ConfigError(f"--set {key}: cannot read value {text!r}: {error}") from error
    return overrides
