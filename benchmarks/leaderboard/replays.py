"""Replaying evaluated episodes into MP4 files: failures to study, and one success and one
failure per leaderboard entry for its page.

Every evaluation episode is fixed by its seed, so a replay (``drivelab watch``'s renderer on
the reference backend) is the evaluated episode again; each manifest row says whether the
replay reproduced it (same crash flag and return).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from drivelab.agents import Policy, env_kwargs_from_spec
from drivelab.agents.evaluation import EpisodeRecord, EvaluationResult
from drivelab.benchmarks.viewer.episode import WatchedEpisode, record_episode, watch_episode
from drivelab.benchmarks.viewer.video import shrink_clip, write_mp4
from drivelab.core.errors import OutputPathError
from drivelab.core.files import write_json_atomic

EXAMPLE_KINDS = ("success", "failure")
EXAMPLE_MAX_WIDTH_PX = 320  # a page cell; keeps a clip near 100 KB
EXAMPLE_MAX_FRAMES = 120  # a long episode plays faster rather than making a larger file
EXAMPLE_QUALITY = 5.0  # imageio-ffmpeg 0..10: small files, HUD text still legible


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", label.strip("/")).strip("_")[-60:] or "policy"


def _replay(policy: Policy, env_id: str, seed: int) -> WatchedEpisode:
    kwargs = env_kwargs_from_spec(policy.source.spec) if policy.source is not None else {}
    return watch_episode(policy, env_id, seed, kwargs.get("observation", "camera"), kwargs.get("camera"),
                         kwargs.get("config"), show_camera=False)  # fmt: skip


def _replay_row(replay: WatchedEpisode, episode: EpisodeRecord) -> dict[str, Any]:
    same_return = abs(replay.driving["return"] - episode.episode_return) < 1e-6
    return {"replay_return": replay.driving["return"],
            "replay_matches": bool(replay.driving["crashed"] == episode.crashed and same_return)}  # fmt: skip


def _episode_row(policy: Policy, result: EvaluationResult, episode: EpisodeRecord) -> dict[str, Any]:
    source = policy.source
    return {"policy": source.label, "policy_sha256": source.sha256, "env_id": result.env_id,
            "backend": result.backend, "protocol": result.protocol_version, "seed": episode.seed,
            "crashed": episode.crashed, "success": episode.success, "episode_return": episode.episode_return,
            "length": episode.length}  # fmt: skip


def _write_manifest(target: Path, rows: list[dict[str, Any]], option: str) -> Path:
    try:
        write_json_atomic(target, rows)
    except OSError as error:  # OutputPathError included
        raise OutputPathError(f"cannot write {target}: {error}; choose another {option}") from None
    return target


def record_failure_videos(
    folder: Path,
    policies: Sequence[Policy],
    results: Sequence[EvaluationResult],
    max_videos: int,
) -> tuple[list[EvaluationResult], Path]:
    """Replay failed episodes from their seeds, record them as MP4 and list them in ``failures.json``.

    Replays run on the reference backend (``drivelab watch``'s renderer), so only evaluations
    on highway-env replay exactly; each manifest row says whether the replay reproduced the
    evaluated episode. Returns the results with ``video_path`` set on the recorded episodes.
    """
    updated, rows, recorded = [], [], 0
    for policy, result in zip(policies, results):
        episodes = []
        for e in result.episodes:
            row = _episode_row(policy, result, e)
            if e.failed and recorded < max_videos:
                replay = _replay(policy, result.env_id, e.seed)
                path = record_episode(folder / f"{_slug(policy.source.label)}-seed{e.seed}.mp4", replay)
                row.update(video=str(path), **_replay_row(replay, e))
                e = dataclasses.replace(e, video_path=str(path))
                recorded += 1
            if e.failed:
                rows.append(row)
            episodes.append(e)
        updated.append(dataclasses.replace(result, episodes=tuple(episodes)))
    return updated, _write_manifest(folder / "failures.json", rows, "--record-failures")


def pick_examples(runs: Iterable[Sequence[EpisodeRecord]]) -> dict[str, tuple[int, EpisodeRecord] | None]:
    """The entry's example episodes: its shortest success and its shortest failure.

    Shortest, so the replay is cheap and the clip short; ties go to the earlier run, then the
    earlier episode. Returns ``{"success": (run index, episode) or None, "failure": ...}``; the
    HTML page finds its videos with this same rule.
    """
    best: dict[str, tuple[tuple[int, int, int], tuple[int, EpisodeRecord]] | None] = dict.fromkeys(EXAMPLE_KINDS)
    for run_index, episodes in enumerate(runs):
        for episode in episodes:
            kind = "failure" if episode.failed else "success"
            key = (episode.length, run_index, episode.index)
            current = best[kind]
            if current is None or key < current[0]:
                best[kind] = (key, (run_index, episode))
    return {kind: None if found is None else found[1] for kind, found in best.items()}


def record_example_videos(
    folder: Path,
    policies: Sequence[Policy],
    results: Sequence[EvaluationResult],
) -> tuple[list[EvaluationResult], Path]:
    """Record one success and one failure (``pick_examples``) as small MP4s for the entry's page.

    Writes ``folder/{success,failure}-seed<SEED>.mp4`` (at most ``EXAMPLE_MAX_WIDTH_PX`` wide and
    ``EXAMPLE_MAX_FRAMES`` frames) and ``folder/examples.json``; earlier example clips in
    ``folder`` are removed once the new ones are written. A kind the entry has no episode of is
    listed with ``"video": null``. Returns the results with ``video_path`` set on those episodes.
    """
    updated = [list(result.episodes) for result in results]
    rows, written = [], set()
    for kind, found in pick_examples(r.episodes for r in results).items():
        if found is None:
            rows.append({"kind": kind, "video": None})
            continue
        run_index, episode = found
        policy, result = policies[run_index], results[run_index]
        replay = _replay(policy, result.env_id, episode.seed)
        path = write_mp4(folder / f"{kind}-seed{episode.seed}.mp4",
                         shrink_clip(replay.frames, EXAMPLE_MAX_WIDTH_PX, EXAMPLE_MAX_FRAMES),
                         fps=replay.fps, quality=EXAMPLE_QUALITY)  # fmt: skip
        written.add(path.name)
        rows.append({"kind": kind, "video": str(path), **_episode_row(policy, result, episode),
                     **_replay_row(replay, episode)})  # fmt: skip
        position = next(i for i, e in enumerate(updated[run_index]) if e.index == episode.index)
        updated[run_index][position] = dataclasses.replace(episode, video_path=str(path))
    manifest = _write_manifest(folder / "examples.json", rows, "--record-examples")
    for stale in folder.glob("*-seed*.mp4"):
        if stale.name.partition("-")[0] in EXAMPLE_KINDS and stale.name not in written:
            stale.unlink()
    return [dataclasses.replace(r, episodes=tuple(e)) for r, e in zip(results, updated)], manifest
