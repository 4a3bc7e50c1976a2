"""Watching: smooth videos with every simulation frame, a HUD and the agent's camera, as MP4,
or a pygame window when there is a display."""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest

import drivelab.envs as de
from drivelab.agents.policies import make_baseline
from drivelab.benchmarks import cli
from drivelab.benchmarks.viewer.episode import record_episode, watch_episode

DRIVELAB = [sys.executable, "-m", "drivelab.benchmarks.cli"]


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
    record = str(tmp_path / "a.mp4")
    assert cli.main(["watch", "--policy", "baseline:idle", "--overlay", "xray", "--record", record]) == 2
    assert "unknown overlay" in capsys.readouterr().err
    assert cli.main(["watch", "--policy", "baseline:nobody", "--record", str(tmp_path / "a.mp4")]) == 2
    assert "baseline" in capsys.readouterr().err


def test_watch_episode_is_the_evaluated_episode():
    from drivelab.agents.evaluation import evaluate

    policy = make_baseline("idm")
    episode = watch_episode(policy, "drivelab/highway-fast-v0", seed=4, config={"duration": 8})
    (record,) = evaluate(policy, "drivelab/highway-fast-v0", seeds=[4], backend="highway-env",
                         env_kwargs={"config": {"duration": 8}}).episodes
    assert episode.driving["return"] == pytest.approx(record.episode_return)
    assert episode.driving["length"] == record.length and episode.driving["crashed"] == record.crashed


def test_watch_without_a_display_records_an_mp4(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert cli.main(["watch", "--policy", "baseline:idle", "--seed", "3", "--set", "duration=8"]) == 0
    assert "wrote runs/watch/highway-fast-v0-seed3.mp4" in capsys.readouterr().out
    assert len(imageio.mimread(tmp_path / "runs/watch/highway-fast-v0-seed3.mp4", memtest=False)) > 5


@pytest.fixture
def virtual_display():
    """A virtual X display (Xvfb) on a free display number; skipped only when Xvfb is not installed."""
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        pytest.skip("Xvfb not installed (Debian: apt-get install xvfb; .ci/run installs it)")
    number = 100 + os.getpid() % 800
    while Path(f"/tmp/.X{number}-lock").exists() or Path(f"/tmp/.X11-unix/X{number}").exists():
        number += 1
    server = subprocess.Popen([xvfb, f":{number}", "-screen", "0", "1280x720x24", "-nolisten", "tcp"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while not Path(f"/tmp/.X11-unix/X{number}").exists():
        assert server.poll() is None and time.monotonic() < deadline, "Xvfb did not start"
        time.sleep(0.1)
    yield f":{number}"
    server.terminate()
    server.wait(timeout=10)


def test_watch_opens_a_window_when_a_display_exists(virtual_display, tmp_path):
    # As on a desktop: a display, and no SDL_VIDEODRIVER (the tests' own offscreen setting is removed).
    env = {k: v for k, v in os.environ.items() if not k.startswith("SDL_")}
    env["DISPLAY"] = virtual_display
    argv = ["watch", "--policy", "baseline:idm", "--episodes", "1", "--set", "duration=8"]  # an 8-step episode
    completed = subprocess.run([*DRIVELAB, *argv], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr[-2000:]
    # the window path: a real X11 window was opened (the log names SDL's driver), and no MP4 written
    assert "in a window" in completed.stderr and "SDL video driver x11" in completed.stderr, completed.stderr
    assert "seed 0: return" in completed.stdout
    assert not list(tmp_path.rglob("*.mp4"))


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
