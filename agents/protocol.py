"""The versioned evaluation protocol: held-out seeds per scenario, and the seed ranges of a run.

A protocol (``agents/protocols/<version>.json``) publishes, per scenario, the held-out
evaluation seeds, the default episode count, the reference backend and the seed ranges that
keep training, model selection and evaluation apart:

- training uses seeds ``< training_seed_limit`` (``TRAIN_SEED_LIMIT``);
- best-model selection during training uses seeds from ``selection_seed_base``
  (``SELECTION_SEED_BASE``) up to the evaluation floor;
- every evaluation seed is ``>= evaluation_seed_floor`` (``PROTOCOL_SEED_BASE``).

The JSON is the one source of these numbers; the constants below are read from the default
protocol.

Example:
    >>> protocol = load_protocol("drivelab-eval-v1")
    >>> protocol.seeds_for("drivelab/highway-fast-v0", 3)
    (10000000, 10000001, 10000002)
    >>> protocol.is_training_seed_allowed(42)
    True
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from drivelab.core.config import bounded, check_value, from_mapping
from drivelab.core.errors import ConfigError, DrivelabError

DEFAULT_PROTOCOL = "drivelab-eval-v1"
_PACKAGE = "drivelab.agents"
_FOLDER = "protocols"


class ProtocolError(DrivelabError, ValueError):
    """An unknown protocol version, or seeds or settings that break the protocol."""


@dataclass(frozen=True)
class EvalProtocol:
    """A published evaluation protocol; see ``agents/protocols/*.json``."""

    version: str
    description: str
    training_seed_limit: int = bounded(low=1)  # training seeds lie in [0, training_seed_limit)
    selection_seed_base: int = bounded(low=0)  # best-model selection seeds start here
    evaluation_seed_floor: int = bounded(low=0)  # every evaluation seed is >= this
    episodes: int = bounded(low=1)  # default number of evaluation episodes per scenario
    deterministic_actions: bool = True
    reference_backend: str = "highway-env"
    backends: tuple[str, ...] = ("highway-env",)
    primary_metric: str = "mean_return"
    confidence: float = bounded(0.95, low=0, high=1, low_open=True, high_open=True)
    bootstrap_reps: int = bounded(10_000, low=1)
    seeds: dict[str, tuple[int, ...]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not self.training_seed_limit <= self.selection_seed_base < self.evaluation_seed_floor:
            raise ProtocolError(
                f"{self.version}: seed ranges must satisfy training_seed_limit <= selection_seed_base "
                f"< evaluation_seed_floor (training, selection and evaluation seeds stay disjoint)"
            )
        if self.reference_backend not in self.backends:
            raise ProtocolError(f"{self.version}: reference_backend must be one of backends {self.backends}")
        seeds = {}
        for env_id, values in self.seeds.items():
            values = check_value(tuple[int, ...], values, f"seeds.{env_id}", f"protocol {self.version}")
            if not values or len(set(values)) != len(values) or min(values) < self.evaluation_seed_floor:
                raise ProtocolError(
                    f"{self.version}: seeds of {env_id} must be distinct and >= {self.evaluation_seed_floor}"
                )
            seeds[env_id] = values
        object.__setattr__(self, "seeds", seeds)

    @property
    def env_ids(self) -> tuple[str, ...]:
        """Scenarios the protocol publishes seeds for."""
        return tuple(self.seeds)

    def seeds_for(self, env_id: str, episodes: int | None = None) -> tuple[int, ...]:
        """The first ``episodes`` (default: the protocol's count) evaluation seeds of a scenario."""
        if env_id not in self.seeds:
            raise ProtocolError(
                f"protocol {self.version} has no seeds for {env_id!r}; valid: {', '.join(self.env_ids)}"
            )
        available = self.seeds[env_id]
        count = self.episodes if episodes is None else episodes
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= len(available):
            raise ProtocolError(f"--episodes must be in [1, {len(available)}] under {self.version}, got {count}")
        return available[:count]

    def is_training_seed_allowed(self, seed: int) -> bool:
        """Whether training may use ``seed`` (it can never collide with an evaluation seed)."""
        return 0 <= int(seed) < self.training_seed_limit

    def assert_disjoint(self, training_seeds: Iterable[int]) -> None:
        """Raise ``ProtocolError`` if any training seed is outside the training range."""
        bad = sorted({int(s) for s in training_seeds if not self.is_training_seed_allowed(s)})
        if bad:
            raise ProtocolError(
                f"training seeds {bad[:5]} are outside [0, {self.training_seed_limit}) required "
                f"by {self.version}; they could overlap its held-out evaluation seeds"
            )

    def check_backend(self, backend: str) -> str:
        """Return ``backend`` if the protocol allows it, else raise ``ConfigError``."""
        if backend not in self.backends:
            raise ConfigError(f"backend {backend!r} is not allowed by {self.version}; valid: {self.backends}")
        return backend


def available_protocols() -> tuple[str, ...]:
    """Versions of the protocols shipped in ``drivelab.agents/protocols``."""
    folder = resources.files(_PACKAGE) / _FOLDER
    names = (p.name for p in folder.iterdir() if p.name.endswith(".json"))
    return tuple(sorted(name[: -len(".json")] for name in names))


@functools.lru_cache(maxsize=None)
def _load(version: str) -> EvalProtocol:
    text = (resources.files(_PACKAGE) / _FOLDER / f"{version}.json").read_text()
    try:
        raw: Any = json.loads(text)
    except json.JSONDecodeError as error:
        raise ProtocolError(f"protocol {version} is not valid JSON: {error}") from error
    return from_mapping(EvalProtocol, raw, f"protocol {version}")


def load_protocol(version: str = DEFAULT_PROTOCOL) -> EvalProtocol:
    """Load a shipped protocol by version, e.g. ``"drivelab-eval-v1"``.

    Raises:
        ProtocolError: an unknown version (naming the valid ones).
    """
    if not isinstance(version, str) or version not in available_protocols():
        raise ProtocolError(f"unknown protocol {version!r}; valid: {', '.join(available_protocols())}")
    return _load(version)


def is_training_seed_allowed(seed: int, protocol: str = DEFAULT_PROTOCOL) -> bool:
    """Whether training may use ``seed`` under the given protocol version."""
    return load_protocol(protocol).is_training_seed_allowed(seed)


def assert_disjoint(training_seeds: Iterable[int], protocol: str = DEFAULT_PROTOCOL) -> None:
    """Raise ``ProtocolError`` if a training seed could collide with an evaluation seed."""
    load_protocol(protocol).assert_disjoint(training_seeds)


# The seed ranges of training runs, read from the default protocol (the one source).
TRAIN_SEED_LIMIT: int = load_protocol().training_seed_limit  # training seeds: [0, TRAIN_SEED_LIMIT)
SELECTION_SEED_BASE: int = load_protocol().selection_seed_base  # best-model selection seeds start here
PROTOCOL_SEED_BASE: int = load_protocol().evaluation_seed_floor  # protocol evaluation seeds start here
