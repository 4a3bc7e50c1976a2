"""The goal-conditioned reward of goal scenarios (parking), computed for any pair of goals.

Hindsight experience replay (SB3's ``HerReplayBuffer``, as rl-zoo3 trains parking) relabels
stored transitions with goals the ego actually reached and asks the env for the reward those
goals would have given: ``VecEnv.env_method("compute_reward", achieved, desired, infos)``.
``goal_reward`` is highway-env's ``ParkingEnv.compute_reward``, vectorised over a batch and
reading the weights from the scenario's config (its defaults plus the run's overrides), so it
answers for both backends without an env instance. Given which steps crashed, it adds
highway-env's ``collision_reward`` on them, as the step reward does: without that term a
relabelled crash (which ends the episode) would look like a way out of the negative rewards.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from drivelab.envs.config import highway_env_defaults
from drivelab.envs.errors import ConfigError
from drivelab.envs.scenarios import Scenario

GOAL_FAMILIES = ("parking",)  # scenarios whose observation is a dict with achieved and desired goals
GOAL_POWER = 0.5  # highway-env's p: the reward is -(weighted L1 distance) ** p


def has_goal(scenario: Scenario) -> bool:
    """Whether a scenario's native observation is goal-conditioned (has ``compute_reward``)."""
    return scenario.family in GOAL_FAMILIES


def goal_reward(
    scenario: Scenario,
    overrides: Mapping[str, Any],
    achieved_goal: np.ndarray,
    desired_goal: np.ndarray,
    crashed: np.ndarray | None = None,
) -> np.ndarray:
    """``-(|achieved - desired| . reward_weights) ** 0.5`` per row, as highway-env's parking.

    Args:
        scenario: a goal scenario (parking).
        overrides: the env's highway-env config overrides (``reward_weights`` may be one).
        achieved_goal, desired_goal: (..., G) goals in the observation's (scaled) units.
        crashed: (...) whether each step crashed (adds ``collision_reward``); None: no crash term.

    Returns:
        (...) rewards, float64.

    Raises:
        ConfigError: a scenario without goals, or goals whose last axis is not the weights'.
    """
    if not has_goal(scenario):
        raise ConfigError(
            f"{scenario.env_id} has no goal-conditioned reward (goal scenarios: {', '.join(GOAL_FAMILIES)})"
        )
    default = highway_env_defaults(scenario.highway_env_id)["reward_weights"]
    weights = np.asarray(overrides.get("reward_weights") or default, dtype=np.float64)
    achieved, desired = np.asarray(achieved_goal, np.float64), np.asarray(desired_goal, np.float64)
    if achieved.shape != desired.shape or achieved.shape[-1:] != weights.shape:
        raise ConfigError(
            f"goals of shape {achieved.shape} and {desired.shape} do not fit {scenario.env_id}'s "
            f"{weights.size} reward weights"
        )
    reward = -np.power(np.abs(achieved - desired) @ weights, GOAL_POWER)
    if crashed is not None:
        collision = overrides.get("collision_reward", highway_env_defaults(scenario.highway_env_id)["collision_reward"])
        reward = reward + collision * np.asarray(crashed, bool).reshape(reward.shape)
    return reward


def crashed_steps(info: Any, n: int) -> np.ndarray | None:
    """Which of ``n`` steps crashed, from their infos: a gymnasium vector env's dict of arrays, or
    SB3's per-env dicts (what hindsight replay stores); None when the infos do not say."""
    if info is None:
        return None
    if isinstance(info, Mapping):
        driving = info.get("driving")
        return None if driving is None else np.asarray(driving["crashed"], bool) & info.get("_driving", True)
    steps = list(info)
    if len(steps) != n or not all(isinstance(step, Mapping) for step in steps):
        return None
    return np.array([bool(step.get("driving", {}).get("crashed", False)) for step in steps])
