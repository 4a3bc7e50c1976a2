"""What a leaderboard holds: an entry's metadata, its runs with their episodes, and what a
submission did. Plain frozen dataclasses, the same whichever database stores them.

An *entry* is one agent on one scenario under one protocol version and backend, owned by its
submitter; it holds one or more *runs* (training runs, e.g. training seeds), each with its
evaluation *episodes*.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from drivelab.agents.evaluation import EpisodeRecord
from drivelab.agents.protocol import ProtocolError, load_protocol
from drivelab.core.files import sha256_bytes


def hash_config(config: Mapping[str, Any]) -> str:
    """SHA-256 of a config's canonical JSON (sorted keys), the entry's config fingerprint."""
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return sha256_bytes(canonical.encode())


def protocol_episodes(version: str) -> int | None:
    """Episodes per run the protocol ``version`` asks for; None for a version not shipped here."""
    try:
        return load_protocol(version).episodes
    except ProtocolError:
        return None


@dataclass(frozen=True)
class EntryMetadata:
    """What an entry records about the agent, its provenance and its evaluation."""

    submitter: str
    agent_name: str
    algorithm: str
    env_id: str
    protocol_version: str
    policy_sha256: str  # of the policy file; of all run digests for multi-run entries
    backend: str
    config: Mapping[str, Any] = field(default_factory=dict)  # full training + eval config
    package_versions: Mapping[str, str] = field(default_factory=dict)
    git_commit: str = "unknown"
    training_steps: int | None = None
    training_wall_s: float | None = None
    hardware: str = "unknown"
    protocol_episodes: int | None = None  # episodes per run the protocol asks for; None: its default

    @property
    def config_hash(self) -> str:
        """``hash_config(self.config)``."""
        return hash_config(self.config)

    @property
    def identity(self) -> tuple[str, str, str, str, str]:
        """``(submitter, agent_name, env_id, protocol_version, backend)``: what names an entry."""
        return (self.submitter, self.agent_name, self.env_id, self.protocol_version, self.backend)


@dataclass(frozen=True)
class RunRecord:
    """One training run of an entry and its evaluation episodes."""

    policy_sha256: str
    policy_label: str  # path or baseline name as given
    episodes: Sequence[EpisodeRecord]
    training_seed: int | None = None


@dataclass(frozen=True)
class StoredEntry:
    """An entry read back from the database."""

    id: int
    metadata: EntryMetadata
    created_at: str
    updated_at: str
    runs: tuple[RunRecord, ...]

    @property
    def num_episodes(self) -> int:
        """Episodes over all runs."""
        return sum(len(run.episodes) for run in self.runs)

    @property
    def partial(self) -> bool:
        """Whether some run has fewer episodes than the entry's protocol asks for."""
        wanted = self.metadata.protocol_episodes
        return wanted is not None and any(len(run.episodes) < wanted for run in self.runs)


@dataclass(frozen=True)
class Submission:
    """What ``Leaderboard.submit`` did: the entry's id and, for an update, what it replaced."""

    entry_id: int
    previous: StoredEntry | None  # the entry before this submission replaced it; None if new

    @property
    def updated(self) -> bool:
        """Whether an existing entry (same identity) was replaced."""
        return self.previous is not None
