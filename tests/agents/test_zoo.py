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
