"""Checking highway-env config overrides against the scenario's own defaults.

highway-env takes an untyped dict, so a typo there passes silently. Here every key is checked
against the scenario's own ``default_config()`` and every value against the default's type.
(drivelab's own typed configs go through ``drivelab.core.config``.)
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import Any

import gymnasium

from drivelab.envs.errors import ConfigError
from drivelab.envs.scenarios import Scenario


@functools.lru_cache(maxsize=None)
def highway_env_defaults(highway_env_id: str) -> dict[str, Any]:
    """The default config of a highway-env scenario, read from its class (no env is built)."""
    import highway_env  # noqa: F401  (registers the highway-env ids)

    spec = gymnasium.spec(highway_env_id)
    env_cls = gymnasium.envs.registration.load_env_creator(spec.entry_point)
    return dict(env_cls.default_config())


def longest_episode_steps(scenario: Scenario, overrides: Mapping[str, Any] | None = None) -> int | None:
    """Policy steps of a scenario's longest episode (its time limit, plus one step of slack for
    highway-env's float clock); None for scenarios without a ``duration`` (merge)."""
    config = {**highway_env_defaults(scenario.highway_env_id), **(overrides or {})}
    if "duration" not in config:
        return None
    return int(math.ceil(config["duration"] * config["policy_frequency"])) + 1


# Upper bounds of the size-like keys: past these a scenario only exhausts memory or never ends.
SIZE_LIMITS: dict[str, float] = {
    "vehicles_count": 500, "lanes_count": 16, "controlled_vehicles": 16, "initial_lane_id": 15,
    "duration": 3600, "policy_frequency": 100, "simulation_frequency": 1000, "screen_width": 4096,
    "screen_height": 4096,
}
MAX_NUMBER = 1e9  # any other number past this is a typo


def _type_matches(default: Any, value: Any) -> bool:
    if default is None or value is None:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, (int, float)):  # highway-env mixes them (collision_reward: -1)
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple))
    return isinstance(value, type(default))


def validate_env_config(scenario: Scenario, config: Mapping[str, Any] | None) -> dict[str, Any]:
    """Check a user's highway-env config overrides for a scenario.

    Returns:
        The overrides as a plain dict (only the keys the user gave).

    Raises:
        ConfigError: an unknown key (naming the valid keys) or a value of the wrong type.
    """
    if config is None:
        return {}
    if not isinstance(config, Mapping):
        raise ConfigError(f"config must be a mapping of highway-env keys, got {type(config).__name__}")
    defaults = highway_env_defaults(scenario.highway_env_id)
    for key, value in config.items():
        if key not in defaults:
            raise ConfigError(
                f"unknown config key {key!r} for {scenario.env_id}. "
                f"Valid keys: {', '.join(sorted(defaults))}"
            )
        if not _type_matches(defaults[key], value):
            raise ConfigError(
                f"config key {key!r} for {scenario.env_id} expects "
                f"{type(defaults[key]).__name__} (default {defaults[key]!r}), got {value!r}"
            )
        _check_size(scenario, key, value)
    return {k: int(v) if k in SIZE_LIMITS and isinstance(v, float) else v for k, v in config.items()}


def _check_size(scenario: Scenario, key: str, value: Any) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return
    high = SIZE_LIMITS.get(key, MAX_NUMBER)
    low = 0 if key in SIZE_LIMITS else -MAX_NUMBER
    if not low <= value <= high:
        raise ConfigError(f"config key {key!r} for {scenario.env_id} must be in [{low:g}, {high:g}], got {value!r}")
    if key in SIZE_LIMITS and key != "duration" and not float(value).is_integer():
        raise ConfigError(f"config key {key!r} for {scenario.env_id} must be a whole number, got {value!r}")
