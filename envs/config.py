"""Checking highway-env config overrides against the scenario's own defaults.

highway-env takes an untyped dict, so a typo there passes silently. Here every key is checked
against the scenario's own ``default_config()`` and every value against the default's type.
(drivelab's own typed configs go through ``drivelab.core.config``.)
"""

from __future__ import annotations

import functools
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


def _type_matches(default: Any, value: Any) -> bool:
    if default is None or value is None:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, (int, float)):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
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
    return dict(config)
