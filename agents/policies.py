"""One ``Policy`` interface for trained agents and baselines; evaluation and watching use only it.

A policy maps a batch of observations (B, ...) from a vector environment to a batch of actions
(B,) and is told, through ``reset(mask)``, which environments start a new episode so it can
forget per-episode state.

Example:
    >>> import numpy as np
    >>> policy = BASELINES["idle"]()
    >>> policy.act(np.zeros((3, 4, 64, 128), np.uint8)).tolist()
    [1, 1, 1]
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.policies import BasePolicy

from drivelab.agents.driver_models import (
    COMFORT_ACC_MAX,
    COMFORT_ACC_MIN,
    DISTANCE_WANTED_M,
    TIME_WANTED_S,
    LaneNeighbours,
    idm_acceleration,
    lane_neighbours,
)
from drivelab.agents.errors import ConfigError, PolicySpecError

# DiscreteMetaAction indices (highway-env ACTIONS_ALL).
LANE_LEFT, IDLE, LANE_RIGHT, FASTER, SLOWER = 0, 1, 2, 3, 4
META_ACTION_NAMES: tuple[str, ...] = ("LANE_LEFT", "IDLE", "LANE_RIGHT", "FASTER", "SLOWER")


class Policy(abc.ABC):
    """Maps a batch of observations to a batch of actions."""

    name: str = "policy"

    @abc.abstractmethod
    def act(self, observation: np.ndarray, env: Any = None) -> np.ndarray:
        """Choose actions.

        Args:
            observation: (B, ...) batch from a vector environment.
            env: the vector environment (policies that read simulator state use it).

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

    def act(self, observation: np.ndarray, env: Any = None) -> np.ndarray:
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

    def act(self, observation: np.ndarray, env: Any = None) -> np.ndarray:
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
    """Rule-based driver: IDM picks the target speed, MOBIL picks lane changes.

    Reads ``env.vehicle_states()`` (slot 0 = ego) instead of the observation. The target speed
    is the fastest of ``target_speeds`` whose IDM desired gap to the leader is available; a lane
    change is taken when it is safe for the new follower (its braking stays above
    ``safe_braking``) and improves the ego's IDM acceleration by ``lane_change_gain`` (the right
    lane by ``lane_change_gain - keep_right_bias``, as in highway-env's reward for the right lane).

    Args:
        target_speeds: the DiscreteMetaAction target speeds [m/s] (highway-env MDPVehicle).
        lane_change_gain: MOBIL threshold [m/s^2].
        keep_right_bias: MOBIL asymmetry towards the right lane [m/s^2].
        safe_braking: largest deceleration imposed on the new follower [m/s^2].
        gap_margin: factor on the IDM desired gap before speeding up (> 1 = cautious).
    """

    name = "idm"

    def __init__(
        self,
        target_speeds: tuple[float, ...] = (20.0, 25.0, 30.0),
        lane_change_gain: float = 0.3,
        keep_right_bias: float = 0.4,
        safe_braking: float = 1.0,
        gap_margin: float = 1.0,
    ) -> None:
        self.target_speeds = np.asarray(target_speeds, dtype=float)  # (S,)
        self.lane_change_gain = lane_change_gain
        self.keep_right_bias = keep_right_bias
        self.safe_braking = safe_braking
        self.gap_margin = gap_margin
        self._target_index = np.zeros(0, dtype=np.int64)  # (B,); -1 = unknown, read from speed

    def reset(self, mask: np.ndarray | None = None) -> None:
        if mask is not None and len(mask) != len(self._target_index):
            self._target_index = np.full(len(mask), -1, dtype=np.int64)
        elif mask is None:
            self._target_index[:] = -1
        else:
            self._target_index[np.asarray(mask, bool)] = -1

    def check_env(self, env: Any) -> None:
        if env is None or not hasattr(env, "vehicle_states"):
            raise PolicySpecError("the idm policy reads vehicle states: pass a drivelab vector env")
        _require_meta_actions(self.name, env)

    def act(self, observation: np.ndarray, env: Any = None) -> np.ndarray:
        self.check_env(env)
        s = env.vehicle_states()
        batch = s.x.shape[0]
        if self._target_index.shape != (batch,):
            self._target_index = np.full(batch, -1, dtype=np.int64)
        speed, lane = s.speed[:, 0], s.lane_index[:, 0]  # (B,)
        unknown = self._target_index < 0
        nearest = np.abs(speed[:, None] - self.target_speeds[None, :]).argmin(axis=1)
        self._target_index[unknown] = nearest[unknown]

        def neighbours(target_lane: np.ndarray) -> LaneNeighbours:
            return lane_neighbours(s.x, s.y, s.speed, s.length, s.present, s.lane_index, target_lane)

        top_speed = self.target_speeds[-1]
        current = neighbours(lane)
        accel_here = idm_acceleration(speed, current.lead_speed, current.lead_gap_m, top_speed)  # (B,)
        actions = self._speed_actions(speed, current)

        settled = np.abs(s.heading[:, 0]) < 0.02  # not in the middle of a lane change
        best_gain = np.full(batch, -np.inf)
        for action, step, bias in ((LANE_LEFT, -1, 0.0), (LANE_RIGHT, 1, self.keep_right_bias)):
            target = lane + step
            exists = (target >= 0) & (target < s.lanes_count) & (lane >= 0)
            other = neighbours(np.clip(target, 0, None))
            accel_there = idm_acceleration(speed, other.lead_speed, other.lead_gap_m, top_speed)
            follower_accel = idm_acceleration(other.rear_speed, speed, other.rear_gap_m, top_speed)
            safe = (
                (follower_accel >= -self.safe_braking)
                & (other.rear_gap_m > DISTANCE_WANTED_M)
                & (other.lead_gap_m > DISTANCE_WANTED_M + speed * 0.5)
            )
            gain = accel_there - accel_here + bias
            take = exists & settled & safe & (gain > self.lane_change_gain) & (gain > best_gain)
            actions = np.where(take, action, actions)
            best_gain = np.where(take, gain, best_gain)

        emergency = accel_here < COMFORT_ACC_MIN  # harder than comfortable braking: brake first
        actions = np.where(emergency, SLOWER, actions)
        step = np.where(actions == FASTER, 1, np.where(actions == SLOWER, -1, 0))
        self._target_index = np.clip(self._target_index + step, 0, len(self.target_speeds) - 1)
        return actions.astype(np.int64)

    def _speed_actions(self, speed: np.ndarray, current: LaneNeighbours) -> np.ndarray:
        """FASTER/IDLE/SLOWER towards the fastest target speed whose desired gap is free."""
        # Desired gap at each candidate target speed (IDM s*): (B, S)
        candidate = self.target_speeds[None, :]
        closing = candidate - current.lead_speed[:, None]
        wanted_gap = DISTANCE_WANTED_M + np.maximum(
            0.0, candidate * TIME_WANTED_S + candidate * closing / (2.0 * np.sqrt(COMFORT_ACC_MAX * -COMFORT_ACC_MIN))
        )
        fits = current.lead_gap_m[:, None] >= self.gap_margin * wanted_gap  # (B, S)
        fits[:, 0] = True  # the slowest target speed is the floor
        desired = np.where(fits, np.arange(len(self.target_speeds))[None, :], 0).max(axis=1)  # (B,)
        return np.where(
            desired > self._target_index, FASTER, np.where(desired < self._target_index, SLOWER, IDLE)
        )


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
