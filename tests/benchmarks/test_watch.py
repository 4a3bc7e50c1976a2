"""Watching: smooth videos with every simulation frame, a HUD and the agent's camera, as MP4."""

import imageio.v2 as imageio
import numpy as np
import pytest

import drivelab.envs as de
from drivelab.agents.policies import make_baseline
from drivelab.benchmarks import cli
from drivelab.benchmarks.watch import record_episode, watch_episode


def test_recorded_mp4_has_every_simulation_frame(tmp_path):
    episode = watch_episode(make_baseline("idle"), "drivelab/highway-fast-v0", seed=5, config={"duration": 6})
    length = int(episode.driving["length"])
    # highway-fast simulates 5 steps per action: every one is a frame, plus the first frame
    assert len(episode.frames) == 1 + 5 * length
    path = record_episode(tmp_path / "episode.mp4", episode)
    frames = imageio.mimread(path, memtest=False)
    assert len(frames) == len(episode.frames)
    height, width = episode.frames[0].shape[:2]
    assert frames[0].shape[:2] == (height + height % 2, width + width % 2)
    # scene (highway-env's 600 px wide render) plus the camera panel beside it
    assert width > 600 and np.asarray(frames[-1]).mean() > 10


def test_watched_episode_replays_the_same_metrics_as_the_vector_env():
    episode = watch_episode(make_baseline("idle"), "drivelab/highway-fast-v0", seed=9, config={"duration": 8})
    env = de.make_vec("drivelab/highway-fast-v0", backend="highway-env", config={"duration": 8})
    env.reset(seed=[9])
    while True:
        _, _, terminated, truncated, infos = env.step(np.ones(1, np.int64))
        if terminated[0] or truncated[0]:
            break
    for key in ("return", "length", "crashed", "distance_m"):
        assert episode.driving[key] == pytest.approx(infos["driving"][key][0])


def test_watch_cli_records_headless(tmp_path, capsys):
    out = tmp_path / "watch.mp4"
    status = cli.main(["watch", "--policy", "baseline:idm", "--env", "drivelab/highway-fast-v0", "--seed", "2",
                       "--episodes", "2", "--record", str(out)])
    assert status == 0
    assert out.exists() and (tmp_path / "watch-1.mp4").exists()
    assert "seed 3:" in capsys.readouterr().out


def test_watch_cli_rejects_unknown_overlay_and_policy(tmp_path, capsys):
    assert cli.main(["watch", "--policy", "baseline:idle", "--overlay", "xray", "--record", str(tmp_path / "a.mp4")]) == 2
    assert "unknown overlay" in capsys.readouterr().err
    assert cli.main(["watch", "--policy", "baseline:nobody", "--record", str(tmp_path / "a.mp4")]) == 2
    assert "baseline" in capsys.readouterr().err


def test_eval_records_failure_videos_that_replay_the_evaluated_episodes(tmp_path):
    import json

    from drivelab.benchmarks.leaderboard import Leaderboard

    db, folder = tmp_path / "board.db", tmp_path / "failures"
    status = cli.main(["eval", "--policy", "baseline:idle", "--env", "drivelab/highway-fast-v0", "--episodes", "3",
                       "--record-failures", str(folder), "--max-failure-videos", "2",
                       "--submit", "--name", "idle", "--db", str(db)])
    assert status == 0
    rows = json.loads((folder / "failures.json").read_text())
    videos = [r for r in rows if "video" in r]
    assert len(videos) == min(2, len(rows)) and len(rows) >= 1  # idle crashes on most seeds
    for row in videos:
        assert row["replay_matches"] and imageio.mimread(row["video"], memtest=False)
    with Leaderboard(db) as board:
        (entry,) = board.entries()
    recorded = [e.video_path for e in entry.runs[0].episodes if e.video_path]
    assert sorted(recorded) == sorted(r["video"] for r in videos)
