"""Search spaces of ``drivelab tune``: YAML files of dotted TrainConfig keys -> Optuna distributions.

A search-space file maps a dotted ``TrainConfig`` key to one distribution::

    dqn.learning_rate: {type: float, low: 1.0e-4, high: 2.0e-3, log: true}
    dqn.target_update_interval: {type: int, low: 50, high: 2000, log: true}
    dqn.net_arch: {type: categorical, choices: [[256], [256, 256]]}

Shipped spaces live in ``agents/hyperparams/search/<algo>.yaml``. Every entry is parsed by the one
config parser (``drivelab.core.config``) and every bound and choice is checked against
``TrainConfig`` up front, so a typo or an impossible value is one ``ConfigError`` before any
training, never a failed trial an hour later. Optuna is not imported here: ``suggest`` takes the
trial it is given.

Example:
    >>> space = parse_search_space({"dqn.gamma": {"type": "categorical", "choices": [0.8, 0.9]}}, "example")
    >>> space["dqn.gamma"].choices
    (0.8, 0.9)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from drivelab.agents.configs import ALGOS, TrainConfig
from drivelab.agents.errors import ConfigError
from drivelab.core.config import apply_overrides, from_mapping, read_yaml_mapping

# Set by the tuner's own options (the budget and identity of a trial), never searched.
NOT_SEARCHABLE = ("env_id", "algo", "seed", "total_steps", "max_minutes", "device", "eval_every_steps")
SCALARS = (type(None), bool, int, float, str)  # what Optuna stores as a categorical choice


@dataclass(frozen=True)
class ParamSpec:
    """One searched key: a float or int range (optionally log-scaled or stepped) or a set of choices."""

    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False  # sample uniformly in log space (learning rates, coefficients)
    step: float | None = None  # discretisation of a range; not with log
    choices: tuple[Any, ...] | None = None  # YAML values; lists are stored by Optuna as JSON text

    def __post_init__(self) -> None:
        if self.type == "categorical":
            if not self.choices:
                raise ConfigError("a categorical entry needs a non-empty 'choices' list")
            if self.low is not None or self.high is not None or self.log or self.step is not None:
                raise ConfigError("a categorical entry takes only 'choices' (no low, high, log, step)")
            encoded = [encode_choice(c) for c in self.choices]
            if len(set(map(json.dumps, encoded))) != len(encoded):
                raise ConfigError(f"choices {list(self.choices)!r} repeat a value")
            return
        if self.choices is not None:
            raise ConfigError(f"a {self.type} range takes low and high, not 'choices'")
        if self.low is None or self.high is None or not self.low <= self.high:
            raise ConfigError(f"a {self.type} range needs low <= high, got low={self.low!r}, high={self.high!r}")
        if self.log and (self.low <= 0 or self.step is not None):
            raise ConfigError("a log-scaled range needs low > 0 and no step")
        if self.step is not None and self.step <= 0:
            raise ConfigError(f"step must be positive, got {self.step!r}")
        if self.type == "int" and not all(float(v).is_integer() for v in (self.low, self.high, self.step or 1)):
            raise ConfigError(f"an int range needs whole low, high and step, got {self.low!r}, {self.high!r}")

    def candidates(self) -> tuple[Any, ...]:
        """The values checked against TrainConfig: both ends of a range, or every choice."""
        if self.type == "categorical":
            return tuple(self.choices or ())
        if self.type == "int":
            return int(self.low), int(self.high)  # type: ignore[arg-type]
        return self.low, self.high


def encode_choice(value: Any) -> Any:
    """A YAML choice as Optuna can store it: scalars as they are, lists and mappings as JSON text."""
    return value if isinstance(value, SCALARS) else json.dumps(value)


def search_space_path(algo: str) -> Path:
    """The shipped search space of an algorithm."""
    return Path(str(resources.files("drivelab.agents") / "hyperparams" / "search" / f"{algo}.yaml"))


def parse_search_space(document: Mapping[str, Any], what: str) -> dict[str, ParamSpec]:
    """Parse a search-space mapping (not yet checked against a TrainConfig, see ``check_search_space``).

    Raises:
        ConfigError: an entry that is not a mapping, an unknown entry key, a bad type or range.
    """
    if not document:
        raise ConfigError(f"{what} is empty; give at least one key to search")
    space: dict[str, ParamSpec] = {}
    for key, entry in document.items():
        if not isinstance(key, str):
            raise ConfigError(f"{what}: key {key!r} must be a dotted TrainConfig key such as dqn.gamma")
        try:
            space[key] = from_mapping(ParamSpec, entry, f"{what} entry {key!r}")
        except ConfigError as error:
            message = str(error)
            raise ConfigError(message if key in message else f"{what} entry {key!r}: {message}") from error
    return space


def check_search_space(space: Mapping[str, ParamSpec], base: TrainConfig, what: str) -> None:
    """Check every key, both ends of every range and every choice against ``base``'s TrainConfig.

    Raises:
        ConfigError: a key the tuner sets itself, a key of the other algorithm's section, an
            unknown key, or a value TrainConfig refuses (naming the key and the value).
    """
    plain = base.to_dict()
    for key, spec in space.items():
        head = key.split(".")[0]
        if key in NOT_SEARCHABLE:
            raise ConfigError(f"{what}: {key!r} is set by drivelab tune's options (budget, seed), not searched")
        if head in ALGOS and head != base.algo:
            raise ConfigError(f"{what}: {key!r} belongs to {head}, but this study tunes {base.algo}")
        for value in spec.candidates():
            try:
                from_mapping(TrainConfig, apply_overrides(plain, {key: value}), "train config")
            except ConfigError as error:
                raise ConfigError(f"{what}: {key} = {value!r} is refused: {error}") from error


def read_search_space(path: Path | str, base: TrainConfig) -> dict[str, ParamSpec]:
    """Read, parse and check a search-space YAML file for one base config."""
    what = f"search space {path}"
    space = parse_search_space(read_yaml_mapping(path, "search space"), what)
    check_search_space(space, base, what)
    return space


def space_to_plain(space: Mapping[str, ParamSpec]) -> dict[str, dict[str, Any]]:
    """The space as JSON-able data (stored with the study, to refuse a changed space on resume)."""
    plain: dict[str, dict[str, Any]] = {}
    for key, spec in space.items():
        entry = {"type": spec.type, "low": spec.low, "high": spec.high, "log": spec.log, "step": spec.step,
                 "choices": None if spec.choices is None else [encode_choice(c) for c in spec.choices]}
        plain[key] = {k: v for k, v in entry.items() if v is not None and v is not False}
    return plain


def suggest(trial: Any, space: Mapping[str, ParamSpec]) -> dict[str, Any]:
    """Ask an Optuna trial for one value per key; returns dotted overrides with YAML values."""
    values: dict[str, Any] = {}
    for key, spec in space.items():
        if spec.type == "float":
            values[key] = trial.suggest_float(key, spec.low, spec.high, log=spec.log, step=spec.step)
        elif spec.type == "int":
            step = int(spec.step) if spec.step is not None else 1
            values[key] = trial.suggest_int(key, int(spec.low), int(spec.high), log=spec.log, step=step)
        else:
            choices = tuple(spec.choices or ())
            encoded = [encode_choice(c) for c in choices]
            values[key] = choices[encoded.index(trial.suggest_categorical(key, encoded))]
    return values


def decode_params(params: Mapping[str, Any], space: Mapping[str, ParamSpec]) -> dict[str, Any]:
    """A stored trial's params (JSON text for list choices) back to YAML values."""
    decoded = {}
    for key, value in params.items():
        spec = space.get(key)
        if spec is not None and spec.type == "categorical" and isinstance(value, str) and spec.choices:
            encoded = [encode_choice(c) for c in spec.choices]
            value = spec.choices[encoded.index(value)] if value in encoded else value
        decoded[key] = value
    return decoded
