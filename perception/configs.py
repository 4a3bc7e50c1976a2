"""Frozen-dataclass configs built from plain mappings, rejecting unknown keys by name."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

from drivelab.perception.errors import ConfigError

ConfigT = TypeVar("ConfigT")


def config_from_dict(cls: type[ConfigT], values: Mapping[str, Any] | None) -> ConfigT:
    """Build the frozen dataclass ``cls`` from ``values``.

    Args:
        cls: A dataclass type.
        values: Field overrides; missing fields keep their defaults.

    Returns:
        The config instance.

    Raises:
        ConfigError: A key is not a field of ``cls`` (the message lists the valid keys).
    """
    values = dict(values or {})
    names = [field.name for field in dataclasses.fields(cls)]  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ConfigError(
            f"unknown {cls.__name__} key(s) {unknown}; valid keys: {', '.join(names)}"
        )
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        # JSON turns tuples into lists; frozen configs keep tuples so they stay hashable.
        if isinstance(values.get(field.name), list):
            values[field.name] = tuple(values[field.name])
    try:
        return cls(**values)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"invalid {cls.__name__}: {error}") from error


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain JSON-ready dict of a dataclass config (tuples become lists)."""
    out = dataclasses.asdict(config)
    return {key: list(value) if isinstance(value, tuple) else value for key, value in out.items()}
