"""Config checking: highway-env config overrides and typed dataclass configs.

highway-env takes an untyped dict, so a typo there passes silently. Here every key is checked
against the scenario's own ``default_config()`` and every value against the default's type.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any, TypeVar

import gymnasium

from drivelab.envs.errors import ConfigError
from drivelab.envs.scenarios import Scenario

T = TypeVar("T")


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


def dataclass_from_mapping(cls: type[T], values: Mapping[str, Any] | T | None, what: str) -> T:
    """Build a frozen dataclass from a mapping, rejecting unknown keys and wrong types.

    Args:
        cls: the dataclass type.
        values: a mapping of field values, an instance of ``cls`` (returned as is) or None.
        what: how the error names this config, e.g. ``"camera config"``.

    Raises:
        ConfigError: an unknown key (naming the valid keys) or a value of the wrong type.
    """
    if values is None:
        return cls()
    if isinstance(values, cls):
        return values
    if not isinstance(values, Mapping):
        raise ConfigError(f"{what} must be a mapping, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    defaults = cls()
    for key, value in values.items():
        if key not in fields:
            raise ConfigError(f"unknown {what} key {key!r}. Valid keys: {', '.join(fields)}")
        if not _type_matches(getattr(defaults, key), value):
            raise ConfigError(
                f"{what} key {key!r} expects {type(getattr(defaults, key)).__name__}, got {value!r}"
            )
    converted = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return cls(**converted)
