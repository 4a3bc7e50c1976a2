"""One ``Policy`` interface for trained agents and baselines; evaluation and watching use only it.

A policy maps a batch of observations (B, ...) from a vector environment to a batch of actions
(B,) and is told, through ``reset(mask)``, which environments start a new episode so it can
forget per-episode state. Every policy takes ``deterministic`` (greedy vs sampled actions);
policies without a distribution to sample from ignore it. ``source`` says where a loaded policy
came from (set by ``drivelab.agents.load_policy``).

Example:
    >>> import numpy as np
    >>> policy = BASELINES["idle"]()
    >>> policy.act(np.zeros((3, 4, 64, 128), np.uint8)).tolist()
    [1, 1, 1]
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.policies import BasePolicy

from drivelab.agents.errors import ConfigError, PolicySpecError
from drivelab.envs.actions import IDLE, META_ACTION_NAMES
from drivelab.envs.drivers import IDMMobilDriver


@dataclass(frozen=True)
class PolicySource:
    """Where a policy came from: what a leaderboard entry records about it."""

    label: str  # the path as given, or "baseline:NAME"
    sha256: str  # of the identifying file's bytes (weights); of the label for baselines
    file_format: str  # "baseline", "safetensors", "torch-weights", "numpy", "json", "pickle"
    spec: Mapping[str, Any]  # the policy's JSON spec ({"algo": NAME} for baselines)
    run_config: Mapping[str, Any] = field(default_factory=dict)  # its training run's config.json


class Policy(abc.ABC):
    """Maps a batch of observations to a batch of actions."""

    name: str = "policy"
    source: PolicySource | None = None  # where it was loaded from (label, sha256, spec)

    @abc.abstractmethod
    def act(self, observation: np.ndarray, env: Any = None, deterministic: bool = True) -> np.ndarray:
        """Choose actions.

        Args:
            observation: (B, ...) batch from a vector environment.
            env: the vector environment (policies that read simulator state use it).
            deterministic: greedy actions (True) or samples from the policy's distribution;
                rule-based and seeded random policies act the same either way.

        Returns:
            (B,) actions for discrete action spaces, (B, A) for continuous ones.
        """

    def reset(self, mask: np.ndarray | None = None) -> None:
        """Forget per-episode state of the environments where ``mask`` (B,) is True (None = all)."""

    def check_env(self, env: Any) -> None:
        """Raise ``PolicySpecError`` when the policy cannot act in ``env`` (a vector env)."""


class RandomPolicy(Policy):
    """Uniformly random actions from a seeded generator (same seed -> same actions)."""

    name = "random"

    def __init__(self, seed: int = 0, action_space: gym.Space | None = None) -> None:
        self.seed = seed
        self.action_space = action_space
        self._rng = np.random.default_rng(seed)

    def act(self, observation: np.ndarray, env: Any = None, deterministic: bool = True) -> np.ndarray:
        space = self.action_space or getattr(env, "single_action_space", None) or gym.spaces.Discrete(5)
        batch = len(observation)
        if isinstance(space, gym.spaces.Discrete):
            return space.start + self._rng.integers(space.n, size=batch)  # (B,)
        if isinstance(space, gym.spaces.Box):
            low, high = np.broadcast_to(space.low, space.shape), np.broadcast_to(space.high, space.shape)
            return self._rng.uniform(low, high, size=(batch, *space.shape)).astype(space.dtype)
        raise PolicySpecError(f"random policy supports Discrete and Box action spaces, not {space}")


class IdlePolicy(Policy):
    """Always the DiscreteMetaAction IDLE: keep lane and target speed."""

    name = "idle"

    def act(self, observation: np.ndarray, env: Any = None, deterministic: bool = True) -> np.ndarray:
        return np.full(len(observation), IDLE, dtype=np.int64)

    def check_env(self, env: Any) -> None:
        _require_meta_actions(self.name, env)


def _require_meta_actions(name: str, env: Any) -> None:
    space = getattr(env, "single_action_space", None)
    if not (isinstance(space, gym.spaces.Discrete) and space.n == len(META_ACTION_NAMES)):
        raise PolicySpecError(
            f"the {name} policy chooses DiscreteMetaActions (5 actions); this env's action space is {space}"
        )


class IDMMobilPolicy(Policy):
    """The rule-based driver (``drivelab.envs.drivers.IDMMobilDriver``) as a ``Policy``.

    Reads ``env.vehicle_states()`` instead of the observation; keyword arguments go to the driver.
    """

    name = "idm"

    def __init__(self, **driver_options: Any) -> None:
        self.driver = IDMMobilDriver(**driver_options)

    def reset(self, mask: np.ndarray | None = None) -> None:
        self.driver.reset(mask)

    def check_env(self, env: Any) -> None:
        if env is None or not hasattr(env, "vehicle_states"):
            raise PolicySpecError("the idm policy reads vehicle states: pass a drivelab vector env")
        _require_meta_actions(self.name, env)

    def act(self, observation: np.ndarray, env: Any = None, deterministic: bool = True) -> np.ndarray:
        self.check_env(env)
        return self.driver.act(env.vehicle_states())


class TrainedPolicy(Policy):
    """A Stable-Baselines3 policy network acting deterministically (greedy / distribution mode).

    Args:
        sb3_policy: an SB3 ``BasePolicy`` (``model.policy`` of PPO or DQN, or one rebuilt from
            an export).
        spec: the export spec (env id, observation config), when known.
        name: how reports call this policy.
    """

    def __init__(self, sb3_policy: BasePolicy, spec: dict[str, Any] | None = None, name: str = "trained") -> None:
        self.sb3_policy = sb3_policy
        self.spec = spec or {}
        self.name = name
        self.observation_space: gym.spaces.Space = sb3_policy.observation_space
        self.action_space: gym.spaces.Space = sb3_policy.action_space
        self._checked_env_id: int | None = None

    def check_env(self, env: Any) -> None:
        observation_space = getattr(env, "single_observation_space", None) or getattr(
            env, "observation_space", None
        )
        action_space = getattr(env, "single_action_space", None) or getattr(env, "action_space", None)
        problems = []
        if observation_space is not None and (
            observation_space.shape != self.observation_space.shape
            or observation_space.dtype != self.observation_space.dtype
        ):
            problems.append(
                f"observations {observation_space.shape} {observation_space.dtype} vs the policy's "
                f"{self.observation_space.shape} {self.observation_space.dtype}"
            )
        if action_space is not None and action_space != self.action_space:
            problems.append(f"actions {action_space} vs the policy's {self.action_space}")
        if problems:
            made_for = self.spec.get("env_id", "another env")
            raise PolicySpecError(
                f"policy {self.name!r} (made for {made_for}, observation "
                f"{self.spec.get('observation', '?')}, camera {self.spec.get('camera', {})}) does not fit "
                f"this env: {'; '.join(problems)}. Build the env with the policy's spec."
            )

    def act(self, observation: np.ndarray, env: Any = None, deterministic: bool = True) -> np.ndarray:
        """Actions for a batch; ``deterministic=False`` samples from the policy's distribution."""
        if env is not None and id(env) != self._checked_env_id:
            self.check_env(env)
            self._checked_env_id = id(env)
        observation = np.asarray(observation)
        if observation.shape[1:] != self.observation_space.shape:
            raise PolicySpecError(
                f"policy {self.name!r} expects observations (B, {', '.join(map(str, self.observation_space.shape))})"
                f", got {observation.shape}"
            )
        with torch.no_grad():
            actions, _ = self.sb3_policy.predict(observation, deterministic=deterministic)
        return np.asarray(actions)


BASELINES: dict[str, Callable[..., Policy]] = {
    "random": RandomPolicy,
    "idle": IdlePolicy,
    "idm": IDMMobilPolicy,
}


def make_baseline(name: str, env_id: str | None = None, seed: int = 0) -> Policy:
    """Build a baseline policy by name.

    Args:
        name: ``random``, ``idle`` or ``idm``.
        env_id: the scenario it will drive (the baselines here suit every DiscreteMetaAction
            scenario; ``random`` reads the action space from the env it acts in).
        seed: seed of ``random``.

    Raises:
        ConfigError: unknown name, naming the valid ones.
    """
    if name not in BASELINES:
        raise ConfigError(f"unknown baseline policy {name!r}. Valid baselines: {', '.join(BASELINES)}")
    return RandomPolicy(seed=seed) if name == "random" else BASELINES[name]()
