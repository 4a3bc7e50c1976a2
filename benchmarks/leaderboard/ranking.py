"""Ranking leaderboard entries per scenario, and the rows every page shows.

Entries are ranked per scenario and protocol version by the primary metric, mean episode
return (higher is better; crash rate breaks exact ties and is shown beside it). An entry whose
95 % CI of mean return overlaps the CI of the entry ranked directly above it is a *tie*: it
shares that entry's rank, shown as ``=N``. A *partial* entry (fewer episodes per run than its
protocol asks for) is ranked below every complete entry of its group, and ties only with
other partial entries.

The text pages (``pages``) and the HTML page (``html_page``) both render from here.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from drivelab.agents.protocol import DEFAULT_PROTOCOL, available_protocols, load_protocol
from drivelab.benchmarks.leaderboard.stats import DEFAULT_BOOTSTRAP_REPS, EntryStats, entry_stats
from drivelab.benchmarks.leaderboard.store import Leaderboard, StoredEntry
from drivelab.core.errors import ConfigError, DrivelabError

TIE_NOTE = "=N: tied, its 95% CI of mean return overlaps the CI of the entry ranked above."
PARTIAL_NOTE = (
    "partial: fewer episodes per run than the protocol asks for; ranked below every complete entry."
)
MAX_BOOTSTRAP_REPS = 100_000  # about 1 s per entry of 100 episodes; more adds nothing visible
COLUMNS = (
    "rank", "agent", "submitter", "algorithm", "backend", "runs", "episodes", "mean return",
    "95% CI", "IQM", "IQM 95% CI", "crash rate", "success rate", "collisions/km", "steps",
    "policy sha256",
)  # fmt: skip


class ExportError(DrivelabError):
    """An export that cannot be written (bad format, unwritable path)."""


def cannot_write(out: Path, error: OSError) -> ExportError:
    """The one-line error for an export that the file system refused."""
    return ExportError(f"cannot write {out}: {error.strerror or error}; choose another --out")


@dataclass(frozen=True)
class RankedEntry:
    """An entry with its aggregates and its place in its scenario's ranking."""

    rank: int
    tied_with_above: bool
    entry: StoredEntry
    stats: EntryStats

    @property
    def rank_label(self) -> str:
        """``"3"``, or ``"=2"`` for an entry tied with the one above (ranked 2)."""
        return f"={self.rank}" if self.tied_with_above else str(self.rank)


def _run_arrays(entry: StoredEntry) -> list[dict[str, np.ndarray]]:
    return [
        {
            "return": np.array([e.episode_return for e in run.episodes]),
            "crashed": np.array([e.crashed for e in run.episodes]),
            "success": np.array([e.success for e in run.episodes]),
            "distance_m": np.array([e.distance_m for e in run.episodes]),
        }
        for run in entry.runs
    ]


def rank_entries(
    entries: Sequence[StoredEntry], *, reps: int = DEFAULT_BOOTSTRAP_REPS, seed: int = 0
) -> list[RankedEntry]:
    """Rank entries within each (scenario, protocol) group; groups come in sorted order."""
    groups: dict[tuple[str, str], list[tuple[StoredEntry, EntryStats]]] = {}
    for entry in entries:
        key = (entry.metadata.env_id, entry.metadata.protocol_version)
        stats = entry_stats(_run_arrays(entry), reps=reps, seed=seed)
        groups.setdefault(key, []).append((entry, stats))
    ranked: list[RankedEntry] = []
    for key in sorted(groups):
        members = sorted(
            groups[key], key=lambda m: (m[0].partial, -m[1].mean_return, m[1].crash_rate, m[0].id)
        )
        above: RankedEntry | None = None
        for position, (entry, stats) in enumerate(members, start=1):
            tied = (
                above is not None
                and above.entry.partial == entry.partial  # a partial entry never shares a complete one's rank
                and stats.mean_return_ci.overlaps(above.stats.mean_return_ci)
            )
            rank = above.rank if tied and above is not None else position
            above = RankedEntry(rank, tied, entry, stats)
            ranked.append(above)
    return ranked


def read_ranked(
    db: str | Path,
    *,
    env_id: str | None = None,
    protocol: str | None = None,
    reps: int | None = None,
) -> list[RankedEntry]:
    """Open a board read-only (nothing written) and rank its entries.

    Args:
        db: the leaderboard file; it must exist and be a board.
        env_id: only this scenario (one some shipped protocol has seeds for).
        protocol: only this protocol version (a shipped one).
        reps: bootstrap replicates, 1..``MAX_BOOTSTRAP_REPS`` (default: the protocol's).

    Raises:
        ConfigError, ProtocolError: an unknown scenario or protocol, or reps out of range.
        LeaderboardError: the file is missing or not a board.
    """
    versions = (load_protocol(protocol).version,) if protocol is not None else available_protocols()
    if env_id is not None:
        known = sorted({e for version in versions for e in load_protocol(version).env_ids})
        if env_id not in known:
            names = {e.rpartition("/")[2]: e for e in known}  # compare names, not the shared prefix
            close = difflib.get_close_matches(env_id.rpartition("/")[2], list(names), n=1)
            hint = f"did you mean {names[close[0]]!r}? " if close else ""
            raise ConfigError(f"unknown scenario {env_id!r} for --env; {hint}valid: {', '.join(known)}")
    if reps is None:
        reps = load_protocol(protocol or DEFAULT_PROTOCOL).bootstrap_reps
    if isinstance(reps, bool) or not isinstance(reps, int) or not 1 <= reps <= MAX_BOOTSTRAP_REPS:
        raise ConfigError(f"--reps must be an integer in [1, {MAX_BOOTSTRAP_REPS}], got {reps!r}")
    with Leaderboard(db, readonly=True) as board:
        entries = board.entries(env_id=env_id, protocol_version=protocol)
    return rank_entries(entries, reps=reps)


def groups(ranked: Sequence[RankedEntry]) -> list[tuple[tuple[str, str], list[RankedEntry]]]:
    """Ranked entries per (scenario, protocol), in the order they come."""
    found: dict[tuple[str, str], list[RankedEntry]] = {}
    for item in ranked:
        found.setdefault((item.entry.metadata.env_id, item.entry.metadata.protocol_version), []).append(item)
    return list(found.items())


def _episodes_cell(item: RankedEntry) -> str:
    episodes = str(item.stats.num_episodes)
    return f"{episodes} (partial)" if item.entry.partial else episodes


def notes(ranked: Sequence[RankedEntry]) -> str:
    """The notes under a page: what ``=N`` and, when present, ``partial`` mean."""
    return TIE_NOTE + ("\n" + PARTIAL_NOTE if any(item.entry.partial for item in ranked) else "")


def display_row(item: RankedEntry) -> list[str]:
    """One entry as the text cells of ``COLUMNS``."""
    meta, stats = item.entry.metadata, item.stats
    return [
        item.rank_label,
        meta.agent_name,
        meta.submitter,
        meta.algorithm,
        meta.backend,
        str(stats.num_runs),
        _episodes_cell(item),
        f"{stats.mean_return:.2f}",
        f"[{stats.mean_return_ci.low:.2f}, {stats.mean_return_ci.high:.2f}]",
        f"{stats.iqm_return:.2f}",
        f"[{stats.iqm_return_ci.low:.2f}, {stats.iqm_return_ci.high:.2f}]",
        f"{stats.crash_rate:.2f}",
        f"{stats.success_rate:.2f}",
        "n/a" if math.isnan(stats.collisions_per_km) else f"{stats.collisions_per_km:.3f}",  # nothing driven
        "-" if meta.training_steps is None else str(meta.training_steps),
        meta.policy_sha256[:12],
    ]
