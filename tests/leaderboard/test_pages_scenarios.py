"""The leaderboard's HTML page per scenario, on a tiny real board (highway-env, 2 scenarios x
random/idle, 1 episode each): one section per scenario, every <video> an H.264 MP4 that opens
and is the replay of the episode it claims; in headless Chromium (when installed) the page
runs its script and every video loads."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest

from drivelab.agents.evaluation import EpisodeRecord
from drivelab.benchmarks.bench import leaderboard as bench_leaderboard
from drivelab.benchmarks.leaderboard.replays import pick_examples
from drivelab.benchmarks.leaderboard.store import Leaderboard
from drivelab.benchmarks.viewer.video import shrink_clip

SCENARIOS = ("drivelab/highway-fast-v0", "drivelab/merge-v0")


class PageParts(HTMLParser):
    """Section ids, tab targets and video sources of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.sections, self.tabs, self.videos = [], [], []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "section" and "scenario" in attributes.get("class", ""):
            self.sections.append(attributes["id"])
        elif tag == "button" and "data-target" in attributes:
            self.tabs.append(attributes["data-target"])
        elif tag == "video":
            self.videos.append(attributes["src"])


def parse(page: str) -> PageParts:
    parts = PageParts()
    parts.feed(page)
    return parts


@pytest.fixture(scope="module")
def tiny_board(tmp_path_factory):
    """Random and idle on highway-fast and merge, one protocol episode each, clips recorded."""
    root = tmp_path_factory.mktemp("tiny-board")
    plans = {
        env_id: bench_leaderboard.plan_entries(["random", "idle"], [], env_id, root / "failures",
                                               root / "videos" / env_id.rpartition("/")[2])
        for env_id in SCENARIOS
    }  # fmt: skip
    bench_leaderboard.build_boards(plans, root / "lb.db", episodes=1, html=root / "html",
                                   results=root / "results", num_envs=1)  # fmt: skip
    return root


def test_pick_examples_takes_the_shortest_success_and_failure_earliest_first():
    def episode(index, length, crashed):
        return EpisodeRecord(index=index, seed=100 + index, episode_return=1.0, length=length, crashed=crashed,
                             success=not crashed, mean_speed=20.0, distance_m=10.0, lane_changes=0,
                             right_lane_share=0.0, on_road_share=1.0, max_abs_jerk=float("nan"))  # fmt: skip

    runs = [[episode(0, 9, True), episode(1, 30, False), episode(2, 5, True)],
            [episode(0, 5, True), episode(1, 12, False), episode(2, 30, False)]]  # fmt: skip
    examples = pick_examples(runs)
    assert (examples["failure"][0], examples["failure"][1].index) == (0, 2)  # length 5, the earlier run
    assert (examples["success"][0], examples["success"][1].index) == (1, 1)
    only_crashes = pick_examples([[episode(0, 3, True)]])
    assert only_crashes["success"] is None and only_crashes["failure"][1].length == 3


def test_shrink_clip_keeps_ends_and_bounds_frames_and_width():
    frames = [np.full((150, 600, 3), i, np.uint8) for i in range(250)]
    clip = shrink_clip(frames, max_width=300, max_frames=50)
    assert len(clip) == 50 and clip[0].shape == (75, 300, 3)
    assert clip[0][0, 0, 0] == 0 and clip[-1][0, 0, 0] == 249
    assert len(shrink_clip(frames[:10], 1000, 50)) == 10 and shrink_clip(frames[:10], 1000, 50)[0] is frames[0]


def test_page_has_a_section_per_scenario_and_every_video_is_a_playable_mp4(tiny_board):
    page_path = tiny_board / "html" / "index.html"
    page = page_path.read_text()
    parts = parse(page)
    assert parts.sections == ["highway-fast-v0", "merge-v0"] == parts.tabs
    with Leaderboard(tiny_board / "lb.db", readonly=True) as board:
        entries = board.entries()
    assert len(entries) == 4
    expected_clips = 0
    for entry in entries:
        examples = pick_examples(run.episodes for run in entry.runs)
        for kind, found in examples.items():
            if found is None:
                assert f"no {'successful' if kind == 'success' else 'failed'} episode" in page
                continue
            expected_clips += 1
            assert found[1].video_path and Path(found[1].video_path).name.startswith(f"{kind}-seed{found[1].seed}")
    assert len(parts.videos) == expected_clips >= 4  # one episode each: a success or a failure per entry
    for src in parts.videos:
        assert not src.startswith(("/", "http")), "paths are relative to the page"
        video = (page_path.parent / src).resolve()
        assert video.is_file() and video.stat().st_size < 300_000
        reader = imageio.get_reader(video)
        try:
            assert reader.get_meta_data()["codec"] == "h264"
            frame = reader.get_data(0)
        finally:
            reader.close()
        assert frame.ndim == 3 and frame.shape[1] <= 320 and frame.std() > 0  # a drawn scene, not a blank frame


def test_clips_replay_the_evaluated_episodes_or_the_page_says_they_differ(tiny_board):
    manifests = sorted((tiny_board / "videos").glob("*/*/examples.json"))
    assert len(manifests) == 4
    page = (tiny_board / "html" / "index.html").read_text()
    differing = 0
    for manifest in manifests:
        rows = [row for row in json.loads(manifest.read_text()) if row["video"]]
        assert rows
        if manifest.parent.name == "idle":  # a deterministic policy: same seed, same episode
            assert all(row["replay_matches"] for row in rows)
        differing += sum(not row["replay_matches"] for row in rows)
    # random's actions come from one generator across the batch, not from the episode's seed
    assert page.count("the replay differs from the evaluated episode") == differing


def test_markdown_has_a_section_and_a_table_row_per_scenario(tiny_board):
    board_md = (tiny_board / "results" / "LEADERBOARD.md").read_text()
    assert board_md.index("## highway-fast (drivelab/highway-fast-v0)") < board_md.index("## merge (drivelab/merge-v0)")
    table = (tiny_board / "results" / "leaderboard_scenarios.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [row.split(" | ")[0] for row in rows] == ["| highway-fast", "| merge"]
    with Leaderboard(tiny_board / "lb.db", readonly=True) as board:
        (random_merge,) = [e for e in board.entries(env_id="drivelab/merge-v0") if e.metadata.agent_name == "random"]
    episode = random_merge.runs[0].episodes[0]
    assert rows[1].split(" | ")[2].startswith(f"{episode.episode_return:.1f} / {episode.crashed:.0%} / ")


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (apt-get install chromium); CI does not install it")
def test_page_runs_in_headless_chromium_and_its_videos_load(tiny_board):
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--virtual-time-budget=5000", "--dump-dom",
             (tiny_board / "html" / "index.html").resolve().as_uri()],
            capture_output=True, text=True, timeout=120, check=True,
        ).stdout  # fmt: skip
    parts = parse(dom)
    assert parts.sections == ["highway-fast-v0", "merge-v0"]
    assert 'class="on"' in dom and 'id="merge-v0" hidden' in dom  # the tab script ran: first tab shown
    shown = dom.split("<script>")[0]  # the page as drawn, without the script's own text
    assert shown.count('data-state="loaded"') == len(parts.videos) > 0 and "cannot be played" not in shown
