"""Typed configs: shipped YAML resolves, unknown keys and bad values are clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

import drivelab.envs as de
from drivelab.agents import ConfigError, TrainConfig, load_train_config
from drivelab.agents.configs import TRAIN_SEED_LIMIT, from_mapping, hyperparams_path


@pytest.mark.parametrize("env_id", de.ENV_IDS)
@pytest.mark.parametrize("algo", ["ppo", "dqn"])
def test_every_scenario_resolves_for_both_algorithms(env_id: str, algo: str) -> None:
    config = load_train_config(env_id, algo)
    assert config.env_id == env_id and config.algo == algo
    assert config.algo_config is (config.ppo if algo == "ppo" else config.dqn)
    assert (config.ppo is None) == (algo == "dqn")


def test_highway_fast_has_its_own_file_with_the_yaml_values() -> None:
    assert hyperparams_path("drivelab/highway-fast-v0").name == "highway-fast.yaml"
    assert hyperparams_path("drivelab/merge-v0").name == "default.yaml"
    config = load_train_config("drivelab/highway-fast-v0", "ppo")
    assert (config.ppo.n_envs, config.ppo.n_steps, config.encoder.name) == (64, 32, "fast")
    assert config.camera == {"width": 64, "height": 32, "metres_per_pixel": 1.0, "color": "grayscale", "stack": 4}


def test_round_trip_through_plain_dict() -> None:
    config = load_train_config("drivelab/highway-fast-v0", "dqn", {"camera.width": 64, "seed": 7})
    again = from_mapping(TrainConfig, config.to_dict(), "config")
    assert again == config
    assert config.camera["width"] == 64 and config.dqn.net_arch == (256,)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"learning_rate": 1e-3}, "Valid keys: env_id, algo"),
        ({"ppo.lr": 1e-3}, "Valid keys of ppo: n_envs, n_steps"),
        ({"encoder.kind": "fast"}, "Valid keys of encoder: name, features_dim"),
        ({"ppo.n_envs": "eight"}, "'ppo.n_envs' expects int"),
        ({"policy": "mlp"}, "need policy: cnn"),
        ({"seed": TRAIN_SEED_LIMIT}, "held-out evaluation seeds"),
        ({"eval_seed": 5}, "eval_seed must be in"),
        ({"device": "tpu"}, "unknown device"),
        ({"encoder.name": "resnet"}, "neither one of nature, fast"),
        ({"ppo.batch_size": 4096, "ppo.n_envs": 2, "ppo.n_steps": 8}, "exceeds the rollout size"),
        ({"crash_penalty": -1.0}, "crash_penalty must be >= 0"),
    ],
)
def test_bad_values_name_what_is_valid(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_train_config("drivelab/highway-fast-v0", "ppo", overrides)


def test_unknown_algorithm_and_section(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="Valid algorithms: ppo, dqn"):
        load_train_config("drivelab/highway-fast-v0", "a2c")
    bad = tmp_path / "bad.yaml"
    bad.write_text("common: {}\nsac: {}\n")
    with pytest.raises(ConfigError, match="Valid sections: common, ppo, dqn"):
        load_train_config("drivelab/highway-fast-v0", "ppo", hyperparams_file=bad)
