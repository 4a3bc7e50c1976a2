"""The leaderboard as one static HTML page: a tab per scenario, its ranking table, plots, and
per entry an inline video of one success and one failure.

Plain HTML with a little inline CSS and JavaScript and nothing fetched from the network: the
folder opens from disk. Without JavaScript every scenario's section is shown one below the
other; with it, the tabs show one at a time (``#merge-v0`` in the address opens that tab).
Each ``<video>`` reports whether it could be played in its ``data-state`` attribute
(``loaded`` or ``error``), and a clip that cannot be played says so in its cell.

Videos are the episodes ``replays.pick_examples`` chooses (the entry's shortest success and
shortest failure), recorded by ``submit`` with ``record_examples``; their paths are written
relative to the page.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from drivelab.agents.evaluation import EpisodeRecord
from drivelab.benchmarks.leaderboard.ranking import (
    COLUMNS,
    ExportError,
    RankedEntry,
    cannot_write,
    display_row,
    groups,
    notes,
)
from drivelab.benchmarks.leaderboard.replays import pick_examples
from drivelab.core.errors import OutputPathError
from drivelab.core.files import atomic_dir

MAX_FAILURES_LISTED = 12  # failure seeds shown per entry (all of them are on the board)
STYLE = (
    "body{font-family:sans-serif;margin:12px}table{border-collapse:collapse;font-size:13px}"
    "td,th{border:1px solid #ccc;padding:2px 6px}nav button{font-size:14px;margin:0 4px 4px 0;padding:4px 10px}"
    "nav button.on{background:#246;color:#fff}.entry{display:inline-block;vertical-align:top;margin:8px;"
    "padding:6px;border:1px solid #ddd;width:576px}.clips{display:flex;gap:8px}.clip{width:280px;font-size:13px}"
    "video{width:280px;background:#000}"
)
SCRIPT = """
for (const video of document.querySelectorAll('video')) {
  const mark = state => { video.dataset.state = state; };
  if (video.readyState >= 2) mark('loaded');
  video.addEventListener('loadeddata', () => mark('loaded'));
  video.addEventListener('error', () => {
    mark('error');
    video.insertAdjacentHTML('afterend', '<p>this video cannot be played here</p>');
  });
}
const tabs = document.querySelectorAll('nav button');
function show(id) {
  for (const section of document.querySelectorAll('section.scenario')) section.hidden = section.id !== id;
  for (const tab of tabs) tab.classList.toggle('on', tab.dataset.target === id);
}
for (const tab of tabs) tab.addEventListener('click', () => show(tab.dataset.target));
const wanted = location.hash.slice(1);
if (tabs.length) show(document.getElementById(wanted) ? wanted : tabs[0].dataset.target);
"""


def section_id(env_id: str) -> str:
    """The id of a scenario's section: ``drivelab/merge-v0`` -> ``merge-v0``."""
    return env_id.rpartition("/")[2]


def _href(path: str, out_dir: Path) -> str:
    return html.escape(os.path.relpath(Path(path).resolve(), out_dir.resolve()))


def _clip(kind: str, found: tuple[int, EpisodeRecord] | None, out_dir: Path) -> str:
    """One cell: the video of the entry's example success or failure, or why there is none."""
    if found is None:
        return f"<p>no {'successful' if kind == 'success' else 'failed'} episode</p>"
    episode = found[1]
    label = f"{kind}: seed {episode.seed}, {episode.length} steps, return {episode.episode_return:.2f}"
    label += " (crash)" if episode.crashed else ""
    if not episode.video_path:
        return f"<p>{html.escape(label)}; no video recorded</p>"
    if not Path(episode.video_path).is_file():
        return f"<p>{html.escape(label)}; video {html.escape(episode.video_path)} is missing</p>"
    replay = _manifest_row(Path(episode.video_path))
    if replay is not None and not replay.get("replay_matches", True):
        label += (f"; the replay differs from the evaluated episode (return {replay['replay_return']:.2f}): "
                  "this policy's actions are not fixed by the seed")
    return (f"<p>{html.escape(label)}</p><video src=\"{_href(episode.video_path, out_dir)}\" controls autoplay "
            f'muted loop playsinline preload="auto"></video>')


def _manifest_row(video: Path) -> dict[str, Any] | None:
    """The row of ``examples.json`` (written beside the clip by ``replays``) about ``video``, if any."""
    try:
        rows = json.loads((video.parent / "examples.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return next((row for row in rows if row.get("video") and Path(row["video"]).name == video.name), None)


def _failure_links(item: RankedEntry, out_dir: Path) -> str:
    failures = [e for run in item.entry.runs for e in run.episodes if e.failed]
    if not failures:
        return "no failed episodes"
    parts = []
    for episode in failures[:MAX_FAILURES_LISTED]:
        label = f"seed {episode.seed}" + (" (crash)" if episode.crashed else "")
        if episode.video_path:
            parts.append(f'<a href="{_href(episode.video_path, out_dir)}">{html.escape(label)}</a>')
        else:
            parts.append(html.escape(label))
    more = len(failures) - MAX_FAILURES_LISTED
    return ", ".join(parts) + (f", and {more} more" if more > 0 else "")


def _entry_block(item: RankedEntry, out_dir: Path) -> str:
    entry = item.entry
    examples = pick_examples(run.episodes for run in entry.runs)
    clips = "".join(f'<div class="clip">{_clip(kind, found, out_dir)}</div>' for kind, found in examples.items())
    return (
        f'<div class="entry" id="entry-{entry.id}"><h3>{html.escape(item.rank_label)} '
        f"{html.escape(entry.metadata.agent_name)} <small>({html.escape(entry.metadata.algorithm)})</small></h3>"
        f'<div class="clips">{clips}</div>'
        f'<img src="plots/entry-{entry.id}.png" alt="returns of entry {entry.id}" width="480">'
        f"<p>Failures (replay with the seed): {_failure_links(item, out_dir)}</p></div>"
    )


def _scenario_sections(ranked: Sequence[RankedEntry], out_dir: Path) -> list[tuple[str, str]]:
    """(env id, section HTML) per scenario; a scenario's protocol versions share its section."""
    sections: dict[str, list[str]] = {}
    for group_index, ((env_id, version), items) in enumerate(groups(ranked)):
        head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
        rows = "".join(
            "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in display_row(item)) + "</tr>" for item in items
        )
        sections.setdefault(env_id, []).append(
            f"<h2>{html.escape(env_id)} ({html.escape(version)})</h2>"
            f'<img src="plots/overview-{group_index}.png" alt="mean return per entry">'
            f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
            + "".join(_entry_block(item, out_dir) for item in items)
        )
    return [(env_id, "\n".join(parts)) for env_id, parts in sections.items()]


def html_page(ranked: Sequence[RankedEntry], out_dir: Path) -> str:
    """The page's HTML; links and video sources are relative to ``out_dir``, where it will live."""
    sections = _scenario_sections(ranked, out_dir)
    tabs = "".join(
        f'<button type="button" data-target="{section_id(env_id)}">{html.escape(section_id(env_id))}</button>'
        for env_id, _ in sections
    )
    body = ["<h1>drivelab leaderboard</h1>", f"<p>{html.escape(notes(ranked))}</p>", f"<nav>{tabs}</nav>"]
    body += [f'<section class="scenario" id="{section_id(env_id)}">{text}</section>' for env_id, text in sections]
    if not ranked:
        body.append("<p>No leaderboard entries.</p>")
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>drivelab leaderboard</title>'
        f"<style>{STYLE}</style></head><body>\n" + "\n".join(body) + f"\n<script>{SCRIPT}</script>\n</body></html>\n"
    )


def _plot_entry(item: RankedEntry, path: Path) -> None:
    from matplotlib.figure import Figure  # heavy; the Figure API needs no pyplot backend

    episodes = [e for run in item.entry.runs for e in run.episodes]
    returns = np.array([e.episode_return for e in episodes])  # (N,)
    crashed = np.array([e.crashed for e in episodes], dtype=bool)  # (N,)
    seeds = np.array([e.seed for e in episodes])  # (N,)
    figure = Figure(figsize=(8.0, 3.0), dpi=60)
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
    figure = Figure(figsize=(8.0, 0.4 * len(items) + 1.2), dpi=60)
    axes = figure.subplots()
    positions = np.arange(len(items))[::-1]
    axes.errorbar(means, positions, xerr=[lows, highs], fmt="o", capsize=3)
    axes.set_yticks(positions, [f"{i.rank_label} {i.entry.metadata.agent_name}" for i in items])
    axes.set_xlabel("mean return, 95% stratified-bootstrap CI")
    figure.tight_layout()
    figure.savefig(path)


def write_html(ranked: Sequence[RankedEntry], out_dir: str | Path) -> Path:
    """Write ``out_dir/index.html`` and ``out_dir/plots/*.png``; replace the folder atomically."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"cannot write HTML to {out_dir}: it is a file; choose another --out")
    try:
        with atomic_dir(out_dir) as staging:
            (staging / "plots").mkdir()
            for group_index, (_, items) in enumerate(groups(ranked)):
                _plot_overview(items, staging / "plots" / f"overview-{group_index}.png")
                for item in items:
                    _plot_entry(item, staging / "plots" / f"entry-{item.entry.id}.png")
            (staging / "index.html").write_text(html_page(ranked, out_dir), encoding="utf-8")
    except OutputPathError as error:
        raise ExportError(f"cannot write {out_dir}: {error}; choose another --out") from error
    except OSError as error:
        raise cannot_write(out_dir, error) from error
    return out_dir / "index.html"
