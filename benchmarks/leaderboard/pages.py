"""Leaderboard pages: a terminal table, Markdown, CSV and a static HTML folder with plots and videos.

Ranking (ties, partial entries) is ``ranking``'s; the HTML page is ``html_page``'s. Every file
is written atomically (``drivelab.core.files``), so a failed export leaves the previous one
intact.

Example:
    >>> with Leaderboard("runs/leaderboard.db", readonly=True) as board:   # doctest: +SKIP
    ...     ranked = rank_entries(board.entries())
    >>> print(render_table(ranked))                                         # doctest: +SKIP
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from pathlib import Path

from drivelab.benchmarks.leaderboard.html_page import write_html
from drivelab.benchmarks.leaderboard.ranking import (
    COLUMNS,
    MAX_BOOTSTRAP_REPS,
    PARTIAL_NOTE,
    TIE_NOTE,
    ExportError,
    RankedEntry,
    cannot_write,
    display_row,
    groups,
    notes,
    rank_entries,
    read_ranked,
)
from drivelab.core.errors import OutputPathError
from drivelab.core.files import write_text_atomic

__all__ = [
    "COLUMNS", "CSV_COLUMNS", "FORMATS", "MAX_BOOTSTRAP_REPS", "PARTIAL_NOTE", "TIE_NOTE", "ExportError",
    "RankedEntry", "export", "rank_entries", "read_ranked", "render_csv", "render_markdown", "render_table",
    "write_html",
]  # fmt: skip

FORMATS = ("table", "md", "csv", "html")


def render_table(ranked: Sequence[RankedEntry]) -> str:
    """Plain-text table per scenario, columns aligned for a terminal."""
    if not ranked:
        return "no leaderboard entries\n"
    blocks = []
    for (env_id, version), items in groups(ranked):
        rows = [list(COLUMNS), *(display_row(item) for item in items)]
        widths = [max(len(row[c]) for row in rows) for c in range(len(COLUMNS))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        blocks.append(f"{env_id}  ({version})\n" + "\n".join(lines))
    return "\n\n".join(blocks) + f"\n\n{notes(ranked)}\n"


def md_cell(text: str) -> str:
    """Text safe inside a Markdown table cell (pipes and backslashes escaped, one line)."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def render_markdown(ranked: Sequence[RankedEntry]) -> str:
    """Markdown: one table per scenario and protocol, every entry one row."""
    if not ranked:
        return "No leaderboard entries.\n"
    blocks = []
    for (env_id, version), items in groups(ranked):
        lines = [f"### {env_id} ({version})", ""]
        lines.append("| " + " | ".join(COLUMNS) + " |")
        lines.append("|" + "|".join("---" for _ in COLUMNS) + "|")
        for item in items:
            lines.append("| " + " | ".join(md_cell(c) for c in display_row(item)) + " |")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + f"\n\n{notes(ranked)}\n"


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


def _write_text(text: str, out: Path) -> None:
    try:
        write_text_atomic(out, text)
    except OutputPathError as error:
        raise ExportError(f"cannot write {out}: {error}; choose another --out") from error
    except OSError as error:
        raise cannot_write(out, error) from error


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
