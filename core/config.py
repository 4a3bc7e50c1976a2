"""The one typed config parser: frozen dataclasses from mappings, YAML files and ``--set`` pairs.

Types come from the dataclass annotations (``int``, ``float``, ``bool``, ``str``,
``Literal[...]``, ``tuple[T, ...]``, ``dict[str, Any]``, ``X | None`` and nested config
dataclasses). Bounds come from field metadata (``bounded(low=..., high=...)``). Every error
is a ``ConfigError`` with the dotted path of the key (``ppo.learning_rate``); an unknown key
names the valid keys.

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Opt:
    ...     lr: float = bounded(1e-3, low=0, low_open=True)
    ...     layers: tuple[int, ...] = (64,)
    >>> from_mapping(Opt, {"lr": 0.01, "layers": [32, 32]}, "optimizer config")
    Opt(lr=0.01, layers=(32, 32))
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

from drivelab.core.errors import ConfigError

T = TypeVar("T")

MAX_INT = 2**62  # any int past this is a typo or an attack, never a setting


def bounded(
    default: Any = dataclasses.MISSING,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    default_factory: Any = dataclasses.MISSING,
) -> Any:
    """A dataclass field whose numeric value (or every item of a tuple) must lie in a range.

    ``low_open``/``high_open`` exclude the bound itself (``low=0, low_open=True``: positive).
    """
    metadata = {"low": low, "high": high, "low_open": low_open, "high_open": high_open}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _check_bounds(value: Any, meta: Mapping[str, Any], key: str, what: str) -> None:
    if meta.get("low") is None and meta.get("high") is None:
        return
    items = value if isinstance(value, tuple) else (value,)
    for item in items:
        if not isinstance(item, (int, float)) or isinstance(item, bool):
            continue
        low, high = meta.get("low"), meta.get("high")
        too_low = low is not None and (item <= low if meta.get("low_open") else item < low)
        too_high = high is not None and (item >= high if meta.get("high_open") else item > high)
        if too_low or too_high or (isinstance(item, float) and math.isnan(item)):
            left = "(" if meta.get("low_open") else "["
            right = ")" if meta.get("high_open") else "]"
            interval = f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"
            raise ConfigError(f"{what} key {key!r} must be in {interval}, got {value!r}")


def _type_name(annotation: Any) -> str:
    if typing.get_origin(annotation) is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(annotation))
    return getattr(annotation, "__name__", str(annotation))


def check_value(annotation: Any, value: Any, key: str, what: str) -> Any:
    """Check one value against a type annotation; returns it converted (lists -> tuples, int -> float)."""
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None:
            return None
        return check_value(options[0], value, key, what)
    if dataclasses.is_dataclass(annotation):
        if isinstance(value, annotation):
            return value
        return from_mapping(annotation, value, what, prefix=f"{key}.")
    if annotation is Any:
        return value
    if origin is Literal:
        ok = isinstance(value, str | int) and not isinstance(value, bool) and value in typing.get_args(annotation)
    elif annotation is bool:
        ok = isinstance(value, bool)
    elif annotation is int:
        ok = isinstance(value, int) and not isinstance(value, bool) and abs(value) <= MAX_INT
    elif annotation is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        value = float(value) if ok else value
    elif annotation is str:
        ok = isinstance(value, str)
    elif origin is tuple:
        args = typing.get_args(annotation)
        ok = isinstance(value, (list, tuple))
        if ok and len(args) == 2 and args[1] is Ellipsis:
            value = tuple(check_value(args[0], v, key, what) for v in value)
        elif ok:
            if len(value) != len(args):
                raise ConfigError(f"{what} key {key!r} expects {len(args)} values, got {value!r}")
            value = tuple(check_value(a, v, key, what) for a, v in zip(args, value))
    elif origin is dict:
        ok = isinstance(value, Mapping) and all(isinstance(k, str) for k in value)
        value = dict(value) if ok else value
    else:  # pragma: no cover - a config dataclass with an unsupported field type is a bug
        raise TypeError(f"unsupported config annotation {annotation!r}")
    if not ok:
        raise ConfigError(f"{what} key {key!r} expects {_type_name(annotation)}, got {value!r}")
    return value


def from_mapping(cls: type[T], values: Mapping[str, Any] | T | None, what: str, prefix: str = "") -> T:
    """Build a config dataclass from a mapping, rejecting unknown keys and ill-typed values.

    Args:
        cls: a (frozen) dataclass type.
        values: field values (nested dataclasses as nested mappings); an instance of ``cls``
            is returned as it is; ``None`` gives the defaults.
        what: how errors name this config, e.g. ``"train config"``.
        prefix: dotted path of a nested section in error messages, e.g. ``"ppo."``.

    Raises:
        ConfigError: an unknown key (naming the valid keys), a missing required key, a value of
            the wrong type or out of its bounds, or what the dataclass's own checks refuse.
    """
    if isinstance(values, cls):
        return values
    values = {} if values is None else values
    if not isinstance(values, Mapping):
        raise ConfigError(f"{what} {prefix.rstrip('.') or 'value'} must be a mapping, got {values!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    for key in values:
        if key not in fields:
            where = f" of {prefix.rstrip('.')}" if prefix else ""
            raise ConfigError(f"unknown {what} key {prefix + str(key)!r}. Valid keys{where}: {', '.join(fields)}")
    converted = {}
    for key, value in values.items():
        converted[key] = check_value(hints[key], value, prefix + key, what)
        _check_bounds(converted[key], fields[key].metadata, prefix + key, what)
    missing = [
        name for name, f in fields.items()
        if name not in converted and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{what} is missing required keys: {', '.join(prefix + m for m in missing)}")
    try:
        return cls(**converted)
    except ConfigError:
        raise
    except (TypeError, ValueError) as error:
        raise ConfigError(f"invalid {what}: {error}") from error


def to_plain(value: Any) -> Any:
    """A config (dataclass, nested mappings, tuples) as plain JSON/YAML data (lists for tuples)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, Mapping):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    return value


def apply_overrides(values: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Merge dotted overrides (``{"ppo.n_envs": 8, "camera.width": 64}``) into a nested mapping."""
    merged: dict[str, Any] = {k: dict(v) if isinstance(v, Mapping) else v for k, v in values.items()}
    for dotted, value in overrides.items():
        head, _, tail = dotted.partition(".")
        if tail:
            section = merged.get(head)
            section = dict(section) if isinstance(section, Mapping) else {}
            merged[head] = apply_overrides(section, {tail: value})
        else:
            merged[head] = value
    return merged


def parse_overrides(pairs: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``["ppo.n_envs=8", "camera.color=rgb"]`` -> ``{"ppo.n_envs": 8, "camera.color": "rgb"}``.

    Values are read as YAML scalars or lists (never evaluated as code).
    """
    overrides: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects KEY=VALUE, got {pair!r}")
        try:
            overrides[key.strip()] = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ConfigError(f"--set {key}: cannot read value {text!r}: {error}") from error
    return overrides


def read_yaml_mapping(path: str | Path, what: str) -> dict[str, Any]:
    """Read a YAML file that must hold a mapping (an empty file is an empty mapping).

    Raises:
        ConfigError: the file is missing, unreadable, not YAML (or uses tags that would build
            Python objects), or not a mapping.
    """
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read {what} {path}: {getattr(error, 'strerror', None) or error}") from error
    except yaml.YAMLError as error:
        raise ConfigError(f"invalid YAML in {what} {path}: {error}") from error
    if document is None:
        return {}
    if not isinstance(document, Mapping):
        raise ConfigError(f"{what} {path} must hold a mapping, got {type(document).__name__}")
    return dict(document)
