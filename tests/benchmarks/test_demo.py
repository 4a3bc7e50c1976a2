"""The main job runs end to end: env demo, training, evaluation, leaderboard, videos."""

import json
import math

import imageio.v2 as imageio
import numpy as np

import drivelab.envs as de
from drivelab.agents import env_kwargs_from_spec, load_policy, zoo
from drivelab.benchmarks import cli
from drivelab.benchmarks.leaderboard import Leaderboard


def test_env_demo_writes_video_and_frames(tmp_path, capsys):
    assert cli.main(["demo", "--env-only", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "env-steps/s" in out and "episodes:" in out
    frames = imageio.mimread(tmp_path / "camera.mp4", memtest=False)
    assert len(frames) == 300
    assert (tmp_path / "frames.png").stat().st_size > 1000
    # the rule-based driver (IDM + MOBIL) drives: most episodes survive the time limit
    episodes = json.loads((tmp_path / "episodes.json").read_text())
    assert len(episodes) > 64
    assert np.mean([e["crashed"] for e in episodes]) < 0.2


def test_full_demo_pipeline_on_a_tiny_budget(tmp_path, capsys):
    status = cli.main(["demo", "--out", str(tmp_path), "--train-steps", "2048", "--episodes", "3"])
    assert status == 0
    out = capsys.readouterr().out
    shipped = sorted(agent.scenario for agent in zoo.agents() if agent.algo == "ppo")
    expected = {"demo-ppo", "idm", "idle"} | ({"zoo-ppo-highway-fast"} if "highway-fast" in shipped else set())
    for name in expected:
        assert name in out  # every entry is on the printed leaderboard
    # every entry is on the board with 3 evaluated episodes and finite returns
    with Leaderboard(tmp_path / "leaderboard.db") as board:
        entries = {entry.metadata.agent_name: entry for entry in board.entries()}
    assert set(entries) == expected
    for entry in entries.values():
        (run,) = entry.runs
        assert len(run.episodes) == 3 and all(math.isfinite(e.episode_return) for e in run.episodes)
    # periodic evaluation ran (every 682 steps), so the best model was exported, and it loads and acts
    assert (tmp_path / "ppo" / "best" / "policy.json").exists()
    policy = load_policy(str(tmp_path / "ppo" / "best"))
    env = de.make_vec(policy.source.spec["env_id"], num_envs=2, seed=0, **env_kwargs_from_spec(policy.source.spec))
    try:
        observation, _ = env.reset()
        actions = policy.act(observation, env=env)
        assert actions.shape == (2,) and all(env.single_action_space.contains(int(a)) for a in actions)
    finally:
        env.close()
    assert len(imageio.mimread(tmp_path / "agent.mp4", memtest=False)) > 10
    assert (tmp_path / "leaderboard" / "index.html").exists()
    watched = [s for s in shipped if s == "highway-fast"] + [s for s in shipped if s != "highway-fast"][:1]
    for scenario in watched:  # the zoo's highway-fast agent and one other scenario's
        assert len(imageio.mimread(tmp_path / f"zoo-{scenario}.mp4", memtest=False)) > 10
    assert (tmp_path / "failures" / "failures.json").exists()
