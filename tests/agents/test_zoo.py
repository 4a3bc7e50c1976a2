"""The zoo: `drivelab zoo add` builds an agent's folder and card, `zoo:` names load it, bad names are one line."""

from __future__ import annotations

import json

import imageio.v3 as iio
import numpy as np
import pytest

from drivelab.agents import load_policy, zoo
from drivelab.agents.errors import PolicyLoadError
from drivelab.benchmarks.cli import main


@pytest.fixture(scope="module")
def zoo_dir(ppo_run, tmp_path_factory):
    folder = tmp_path_factory.mktemp("zoo")
    status = main(["zoo", "add", str(ppo_run.run_dir / "best"), "--episodes", "2", "--num-envs", "2",
                   "--zoo-dir", str(folder)])
    assert status == 0
    return folder


def test_add_writes_export_card_and_video(zoo_dir, ppo_run):
    agent = zoo_dir / "ppo" / "highway-fast"
    assert {p.name for p in agent.iterdir()} == {"policy.json", "policy.safetensors", "card.json", "README.md",
                                                  "episode.mp4"}
    card = json.loads((agent / "card.json").read_text())
    assert card["label"] == "zoo:ppo/highway-fast" and card["metrics"]["episodes"] == 2
    low, high = card["metrics"]["mean_return_ci"]
    assert low <= card["metrics"]["mean_return"] <= high
    spec = json.loads((agent / "policy.json").read_text())
    assert card["num_timesteps"] == spec["num_timesteps"] <= ppo_run.num_timesteps  # the best checkpoint's step
    assert card["weights_sha256"] == spec["weights_sha256"]
    assert "zoo:ppo/highway-fast" in (agent / "README.md").read_text()
    frame = next(iter(iio.imiter(agent / "episode.mp4")))
    assert frame.ndim == 3 and frame.shape[1] <= 480


def test_zoo_name_loads_the_same_weights(zoo_dir, ppo_run, monkeypatch):
    monkeypatch.setattr(zoo, "ZOO_DIR", zoo_dir)
    from_zoo = load_policy("zoo:ppo/highway-fast")
    original = load_policy(ppo_run.run_dir / "best")
    assert from_zoo.source.sha256 == original.source.sha256
    observation = np.random.default_rng(0).integers(0, 255, (3, *from_zoo.spec["observation_space"]["shape"]),
                                                    dtype=np.uint8)
    assert np.array_equal(from_zoo.act(observation), original.act(observation))


def test_list_shows_the_card(zoo_dir, capsys):
    assert main(["zoo", "list", "--format", "json", "--zoo-dir", str(zoo_dir)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["name"] for row in rows] == ["zoo:ppo/highway-fast"]


@pytest.mark.parametrize("label", ["zoo:ppo/merge", "zoo:ppo", "zoo:../x"])
def test_unknown_or_malformed_names_list_what_exists(zoo_dir, monkeypatch, label):
    monkeypatch.setattr(zoo, "ZOO_DIR", zoo_dir)
    with pytest.raises(PolicyLoadError, match="zoo:ppo/highway-fast"):
        load_policy(label)


def test_add_refuses_existing_agent_and_large_weights(zoo_dir, ppo_run, capsys, monkeypatch):
    best = str(ppo_run.run_dir / "best")
    assert main(["zoo", "add", best, "--zoo-dir", str(zoo_dir)]) == 2
    assert "--force" in capsys.readouterr().err
    from drivelab.benchmarks.cli import zoo as zoo_cli
    monkeypatch.setattr(zoo_cli, "MAX_WEIGHTS_BYTES", 1000)
    assert main(["zoo", "add", best, "--zoo-dir", str(zoo_dir / "other")]) == 2
    err = capsys.readouterr().err
    assert "MiB" in err and "Traceback" not in err and not (zoo_dir / "other").exists()


def test_a_long_episode_makes_a_short_clip(ppo_run, monkeypatch, tmp_path):
    """The card's clip keeps at most VIDEO_MAX_FRAMES frames, evenly spaced, however long the episode."""
    from drivelab.benchmarks.cli import zoo as zoo_cli

    monkeypatch.setattr(zoo_cli, "VIDEO_MAX_FRAMES", 5)
    assert main(["zoo", "add", str(ppo_run.run_dir / "best"), "--episodes", "1", "--num-envs", "1",
                 "--zoo-dir", str(tmp_path)]) == 0
    frames = list(iio.imiter(tmp_path / "ppo" / "highway-fast" / "episode.mp4"))
    assert len(frames) == 5


def test_the_card_names_the_policy_a_run_started_from(tmp_path):
    from drivelab.benchmarks.cli.zoo import _training_record, model_card

    def run(folder, command, walls, **config):
        folder.mkdir(parents=True)
        (folder / "run.json").write_text(json.dumps({"invocations": [
            {"command": command, "git": "abc", "device": "cpu", "finished": {"wall_s": wall}} for wall in walls]}))
        (folder / "config.json").write_text(json.dumps(config))
        return folder

    clone = run(tmp_path / "bc", ["drivelab", "train", "--algo", "bc"], [100.0, 140.0], init_from="")
    ppo = run(tmp_path / "ppo", ["drivelab", "train", "--algo", "ppo"], [1500.0], init_from=str(clone / "final"))
    record = _training_record(ppo / "best")
    assert record["command"] == "drivelab train --algo ppo"
    # an export folder of the clone names its run; its wall time is every invocation's (a resumed run)
    assert record["started_from"] == {"policy": str(clone / "final"), "command": "drivelab train --algo bc",
                                      "wall_s": 240.0}
    assert "started_from" not in _training_record(clone / "best")
    card = {"label": "zoo:ppo/highway-fast", "env_id": "drivelab/highway-fast-v0", "algo": "ppo",
            "observation": "native", "protocol": "p", "backend": "highway-env", "num_timesteps": 1,
            "training_wall_s": 1500.0, "training": record, "weights_sha256": "0" * 64, "video_seed": 0,
            "added_by": "x", "added_at": "y",
            "metrics": {"episodes": 2, "mean_return": 1.0, "mean_return_ci": [0.5, 1.5], "iqm_return": 1.0,
                        "iqm_return_ci": [0.5, 1.5], "crash_rate": 0.0, "crash_rate_ci": [0.0, 0.0],
                        "success_rate": 1.0}}
    assert f"| started from | `{clone / 'final'}`, trained in 4.0 min by `drivelab train --algo bc` |" \
        in model_card(card)
