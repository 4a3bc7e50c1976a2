"""Leaderboard pages: a terminal table, Markdown, CSV and a static HTML folder with plots.

Entries are ranked per scenario and protocol version by the primary metric, mean episode
return (higher is better; crash rate breaks exact ties and is shown beside it). An entry whose
95 % CI of mean return overlaps the CI of the entry ranked directly above it is a *tie*: it
shares that entry's rank, shown as ``=N``. A *partial* entry (fewer episodes per run than its
protocol asks for) is ranked below every complete entry of its group, and ties only with
other partial entries.

Every file is written atomically (``drivelab.core.files``), so a failed export leaves the
previous one intact.

Example:
    >>> with Leaderboard("runs/leaderboard.db", readonly=True) as board:   # doctest: +SKIP
    ...     ranked = rank_entries(board.entries())
    >>> print(render_table(ranked))                                         # doctest: +SKIP
"""

from __future__ import annotations

import csv
import difflib
import html
import io
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from drivelab.agents.protocol import DEFAULT_PROTOCOL, available_protocols, load_protocol
from drivelab.benchmarks.leaderboard.stats import DEFAULT_BOOTSTRAP_REPS, EntryStats, entry_stats
from drivelab.benchmarks.leaderboard.store import Leaderboard, StoredEntry
from drivelab.core.errors import ConfigError, DrivelabError, OutputPathError
from drivelab.core.files import atomic_dir, write_text_atomic

FORMATS = ("table", "md", "csv", "html")
TIE_NOTE = "=N: tied, its 95% CI of mean return overlaps the CI of the entry ranked above."
PARTIAL_NOTE = (
    "partial: fewer episodes per run than the protocol asks for; ranked below every complete entry."
)
MAX_FAILURES_LISTED = 20  # failure seeds shown per entry in HTML
MAX_BOOTSTRAP_REPS = 100_000  # about 1 s per entry of 100 episodes; more adds nothing visible


class ExportError(DrivelabError):
    """An export that cannot be written (bad format, unwritable path)."""


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


def _group_key(item: RankedEntry) -> tuple[str, str]:
    return item.entry.metadata.env_id, item.entry.metadata.protocol_version


def _groups(ranked: Sequence[RankedEntry]) -> list[tuple[tuple[str, str], list[RankedEntry]]]:
    groups: dict[tuple[str, str], list[RankedEntry]] = {}
    for item in ranked:
        groups.setdefault(_group_key(item), []).append(item)
    return list(groups.items())


COLUMNS = (
    "rank", "agent", "submitter", "algorithm", "backend", "runs", "episodes", "mean return",
    "95% CI", "IQM", "IQM 95% CI", "crash rate", "success rate", "collisions/km", "steps",
    "policy sha256",
)  # fmt: skip


def _episodes_cell(item: RankedEntry) -> str:
    episodes = str(item.stats.num_episodes)
    return f"{episodes} (partial)" if item.entry.partial else episodes


def _notes(ranked: Sequence[RankedEntry]) -> str:
    return TIE_NOTE + ("\n" + PARTIAL_NOTE if any(item.entry.partial for item in ranked) else "")


def _display_row(item: RankedEntry) -> list[str]:
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
        f"{stats.collisions_per_km:.3f}",
        "-" if meta.training_steps is None else str(meta.training_steps),
        meta.policy_sha256[:12],
    ]


def render_table(ranked: Sequence[RankedEntry]) -> str:
    """Plain-text table per scenario, columns aligned for a terminal."""
    if not ranked:
        return "no leaderboard entries\n"
    blocks = []
    for (env_id, version), items in _groups(ranked):
        rows = [list(COLUMNS), *(_display_row(item) for item in items)]
        widths = [max(len(row[c]) for row in rows) for c in range(len(COLUMNS))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        blocks.append(f"{env_id}  ({version})\n" + "\n".join(lines))
    return "\n\n".join(blocks) + f"\n\n{_notes(ranked)}\n"


def _md_cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def render_markdown(ranked: Sequence[RankedEntry]) -> str:
    """Markdown: one table per scenario and protocol, every entry one row."""
    if not ranked:
        return "No leaderboard entries.\n"
    blocks = []
    for (env_id, version), items in _groups(ranked):
        lines = [f"### {env_id} ({version})", ""]
        lines.append("| " + " | ".join(COLUMNS) + " |")
        lines.append("|" + "|".join("---" for _ in COLUMNS) + "|")
        for item in items:
            lines.append("| " + " | ".join(_md_cell(c) for c in _display_row(item)) + " |")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + f"\n\n{_notes(ranked)}\n"


CSV_COLUMNS = (
    "env_id", "protocol_version", "rank", "tied_with_above", "entry_id", "agent_name",
    "submitter", "algorithm", "backend", "num_runs", "num_episodes", "mean_return",
    "mean_return_ci_low", "mean_return_ci_high", "iqm_return", "iqm_return_ci_low",
    "iqm_return_ci_high", "crash_rate", "crash_rate_ci_low", "crash_rate_ci_high",
    "success_rate", "collisions_per_km", "training_steps", "training_wall_s", "policy_sha256",
    "config_hash", "git_commit", "hardware", "updated_at", "partial",
)  # fmt: skip


def render_csv(ranked: Sequence[RankedEntry]) -> str:
    """CSV with full-precision numbers, one row per entry."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for item in ranked:
        meta, stats = item.entry.metadata, item.stats
        writer.writerow([
            meta.env_id, meta.protocol_version, item.rank, int(item.tied_with_above),
            item.entry.id, meta.agent_name, meta.submitter, meta.algorithm, meta.backend,
            stats.num_runs, stats.num_episodes, stats.mean_return, stats.mean_return_ci.low,
            stats.mean_return_ci.high, stats.iqm_return, stats.iqm_return_ci.low,
            stats.iqm_return_ci.high, stats.crash_rate, stats.crash_rate_ci.low,
            stats.crash_rate_ci.high, stats.success_rate, stats.collisions_per_km,
            meta.training_steps, meta.training_wall_s, meta.policy_sha256, meta.config_hash,
            meta.git_commit, meta.hardware, item.entry.updated_at, int(item.entry.partial),
        ])  # fmt: skip
    return buffer.getvalue()


def _cannot_write(out: Path, error: OSError) -> ExportError:
    return ExportError(f"cannot write {out}: {error.strerror or error}; choose another --out")


def _write_text(text: str, out: Path) -> None:
    try:
        write_text_atomic(out, text)
    except OutputPathError as error:
        raise ExportError(f"cannot write {out}: {error}; choose another --out") from error
    except OSError as error:
        raise _cannot_write(out, error) from error


# --- HTML -----------------------------------------------------------------------------------


def _plot_entry(item: RankedEntry, path: Path) -> None:
    from matplotlib.figure import Figure  # heavy; the Figure API needs no pyplot backend

    episodes = [e for run in item.entry.runs for e in run.episodes]
    returns = np.array([e.episode_return for e in episodes])  # (N,)
    crashed = np.array([e.crashed for e in episodes], dtype=bool)  # (N,)
    seeds = np.array([e.seed for e in episodes])  # (N,)
    figure = Figure(figsize=(8.0, 3.0), dpi=80)
    histogram, scatter = figure.subplots(1, 2)
    bins = np.histogram_bin_edges(returns, bins=min(20, max(returns.size, 1)))
    histogram.hist([returns[~crashed], returns[crashed]], bins=bins, stacked=True,
                   label=["no crash", "crash"], color=["tab:blue", "tab:red"])  # fmt: skip
    histogram.axvline(item.stats.mean_return, color="black", linestyle="--", label="mean")
    histogram.set_xlabel("episode return")
    histogram.set_ylabel("episodes")
    histogram.legend(fontsize="small")
    scatter.scatter(seeds - seeds.min(), returns, c=np.where(crashed, "tab:red", "tab:blue"), s=8)
    scatter.set_xlabel("evaluation seed offset")
    scatter.set_ylabel("episode return")
    figure.suptitle(f"{item.entry.metadata.agent_name} ({item.entry.metadata.env_id})")
    figure.tight_layout()
    figure.savefig(path)


def _plot_overview(items: Sequence[RankedEntry], path: Path) -> None:
    from matplotlib.figure import Figure

    means = np.array([i.stats.mean_return for i in items])  # (E,)
    lows = means - np.array([i.stats.mean_return_ci.low for i in items])
    highs = np.array([i.stats.mean_return_ci.high for i in items]) - means
    figure = Figure(figsize=(8.0, 0.4 * len(items) + 1.2), dpi=80)
    axes = figure.subplots()
    positions = np.arange(len(items))[::-1]
    axes.errorbar(means, positions, xerr=[lows, highs], fmt="o", capsize=3)
    axes.set_yticks(positions, [f"{i.rank_label} {i.entry.metadata.agent_name}" for i in items])
    axes.set_xlabel("mean return, 95% stratified-bootstrap CI")
    figure.tight_layout()
    figure.savefig(path)


def _failure_links(item: RankedEntry, out_dir: Path) -> str:
    failures = [e for run in item.entry.runs for e in run.episodes if e.failed]
    if not failures:
        return "no failed episodes"
    parts = []
    for episode in failures[:MAX_FAILURES_LISTED]:
        label = f"seed {episode.seed}" + (" (crash)" if episode.crashed else "")
        if episode.video_path:
            target = Path(episode.video_path)
            href = os.path.relpath(target.resolve(), out_dir.resolve())
            parts.append(f'<a href="{html.escape(href)}">{html.escape(label)}</a>')
        else:
            parts.append(html.escape(label))
    more = len(failures) - MAX_FAILURES_LISTED
    return ", ".join(parts) + (f", and {more} more" if more > 0 else "")


def _html_page(ranked: Sequence[RankedEntry], final_dir: Path) -> str:
    body = ["<h1>drivelab leaderboard</h1>", f"<p>{html.escape(_notes(ranked))}</p>"]
    for group_index, ((env_id, version), items) in enumerate(_groups(ranked)):
        body.append(f"<h2>{html.escape(env_id)} ({html.escape(version)})</h2>")
        body.append(f'<img src="plots/overview-{group_index}.png" alt="mean return per entry">')
        head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
        rows = [
            "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in _display_row(item)) + "</tr>"
            for item in items
        ]
        body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")
        for item in items:
            entry = item.entry
            body.append(
                f'<h3 id="entry-{entry.id}">{html.escape(item.rank_label)} '
                f"{html.escape(entry.metadata.agent_name)}</h3>"
                f'<img src="plots/entry-{entry.id}.png" alt="returns of entry {entry.id}">'
                f"<p>Failures (replay with the seed): {_failure_links(item, final_dir)}</p>"
            )
    if not ranked:
        body.append("<p>No leaderboard entries.</p>")
    style = "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}"
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>drivelab leaderboard</title>'
        f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def write_html(ranked: Sequence[RankedEntry], out_dir: str | Path) -> Path:
    """Write ``out_dir/index.html`` and ``out_dir/plots/*.png``; replace the folder atomically."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"cannot write HTML to {out_dir}: it is a file; choose another --out")
    try:
        with atomic_dir(out_dir) as staging:
            (staging / "plots").mkdir()
            for group_index, (_, items) in enumerate(_groups(ranked)):
                _plot_overview(items, staging / "plots" / f"overview-{group_index}.png")
                for item in items:
                    _plot_entry(item, staging / "plots" / f"entry-{item.entry.id}.png")
            (staging / "index.html").write_text(_html_page(ranked, out_dir), encoding="utf-8")
    except OutputPathError as error:
        raise ExportError(f"cannot write {out_dir}: {error}; choose another --out") from error
    except OSError as error:
        raise _cannot_write(out_dir, error) from error
    return out_dir / "index.html"


RENDERERS: dict[str, Callable[[Sequence[RankedEntry]], str]] = {
    "table": render_table,
    "md": render_markdown,
    "csv": render_csv,
}


def export(ranked: Sequence[RankedEntry], fmt: str, out: str | Path | None) -> str | None:
    """Render ``ranked`` as ``fmt``; write it to ``out`` (a folder for HTML) or return the text.

    Returns:
        The rendered text when ``out`` is None (not allowed for HTML), else None.
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; valid: {', '.join(FORMATS)}")
    if fmt == "html":
        if out is None:
            raise ExportError("--format html writes a folder; pass --out FOLDER")
        write_html(ranked, out)
        return None
    text = RENDERERS[fmt](ranked)
    if out is None:
        return text
    _write_text(text, Path(out))
    return None
