"""One ``Policy`` interface for trained agents and baselines; evaluation and watching use only it.

A policy maps a batch of observations (B, ...) from a vector environment to a batch of actions
(B,) and is told, through ``reset(mask)``, which environments start a new episode so it can
forget per-episode state. Every policy takes ``deterministic`` (greedy vs sampled actions);
policies without a distribution to sample from ignore it. ``source`` says where a loaded policy
came from (set by ``drivelab.agents.load_policy``).

The baselines (random, idle, the rule-based drivers, ``BASELINES``, ``make_baseline``) live in
``drivelab.agents.baselines``; this module still answers for their names.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.policies import BasePolicy

from drivelab.agents.errors import PolicySpecError


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

    def drove(self, actions: np.ndarray) -> None:
        """The actions the envs were stepped with after this policy's last ``act``, when another
        policy drove them (DAgger): a policy that remembers its own choices (a rule-based driver's
        target speed) remembers these instead, so its next labels fit the vehicle's real state."""

    def check_env(self, env: Any) -> None:
        """Raise ``PolicySpecError`` when the policy cannot act in ``env`` (a vector env)."""


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
        if observation_space is not None and _layout(observation_space) != _layout(self.observation_space):
            problems.append(
                f"observations {_describe(observation_space)} vs the policy's {_describe(self.observation_space)}"
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
        if isinstance(observation, Mapping):  # a dict observation (parking's goal-conditioned one)
            observation = {key: np.asarray(value) for key, value in observation.items()}
            given = {key: (value.shape[1:], value.dtype) for key, value in observation.items()}
            fits = {key: shape for key, (shape, _) in given.items()} == {
                key: shape for key, (shape, _) in _layout(self.observation_space).items()}
            got = ", ".join(f"{key} {shape}" for key, (shape, _) in given.items())
        else:
            observation = np.asarray(observation)
            fits = observation.shape[1:] == self.observation_space.shape
            got = str(observation.shape)
        if not fits:
            raise PolicySpecError(
                f"policy {self.name!r} expects observations (B, ...) of {_describe(self.observation_space)}, got {got}"
            )
        with torch.no_grad():
            actions, _ = self.sb3_policy.predict(observation, deterministic=deterministic)
        return np.asarray(actions)


def _layout(space: gym.Space) -> dict[str, tuple[tuple[int, ...], Any]]:
    """Shape and dtype of each part of an observation space (one part, ``""``, unless a ``Dict``)."""
    if isinstance(space, gym.spaces.Dict):
        return {key: (tuple(sub.shape), sub.dtype) for key, sub in space.spaces.items()}
    return {"": (tuple(space.shape or ()), space.dtype)}


def _describe(space: gym.Space) -> str:
    """``(64, 64, 4) uint8``, or ``{observation: (6,) float64, ...}`` for a dict space."""
    parts = [f"{key + ': ' if key else ''}{shape} {dtype}" for key, (shape, dtype) in _layout(space).items()]
    return parts[0] if len(parts) == 1 and not isinstance(space, gym.spaces.Dict) else "{" + ", ".join(parts) + "}"


_MOVED_TO_BASELINES = ("BASELINES", "IDMMobilPolicy", "IdlePolicy", "RandomPolicy", "make_baseline")


def __getattr__(name: str) -> Any:
    """The baselines moved to ``drivelab.agents.baselines``; importing them from here still works
    (looked up lazily: that module builds on ``Policy`` from this one)."""
    if name in _MOVED_TO_BASELINES:
        from drivelab.agents import baselines

        return getattr(baselines, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
