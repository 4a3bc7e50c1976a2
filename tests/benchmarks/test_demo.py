"""The main job runs end to end: env demo, training, evaluation, leaderboard, videos."""

import imageio.v2 as imageio

from drivelab.benchmarks import cli


def test_env_demo_writes_video_and_frames(tmp_path, capsys):
    assert cli.main(["demo", "--env-only", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "env-steps/s" in out and "episodes:" in out
    frames = imageio.mimread(tmp_path / "camera.mp4", memtest=False)
    assert len(frames) == 300
    assert (tmp_path / "frames.png").stat().st_size > 1000


def test_full_demo_pipeline_on_a_tiny_budget(tmp_path, capsys):
    status = cli.main(["demo", "--out", str(tmp_path), "--train-steps", "2048", "--episodes", "3"])
    assert status == 0
    out = capsys.readouterr().out
    for name in ("demo-ppo", "idm", "idle"):
        assert name in out  # every entry is on the printed leaderboard
    assert (tmp_path / "ppo" / "best").exists() or (tmp_path / "ppo" / "final").exists()
    assert len(imageio.mimread(tmp_path / "agent.mp4", memtest=False)) > 10
    assert (tmp_path / "leaderboard" / "index.html").exists()
    assert (tmp_path / "failures" / "failures.json").exists()
