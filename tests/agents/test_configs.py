"""Typed configs: shipped YAML resolves, unknown keys and bad values are clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

import drivelab.envs as de
from drivelab.agents import ConfigError, TrainConfig, load_train_config, train
from drivelab.agents.configs import TRAIN_SEED_LIMIT, hyperparams_path
from drivelab.core.config import from_mapping

HYPERPARAMS = sorted(hyperparams_path("drivelab/highway-fast-v0").parent.glob("*.yaml"))
# A scenario each shipped file is meant for (default.yaml: scenarios without their own file).
SCENARIO_OF = {"default.yaml": "drivelab/exit-v0", "highway.yaml": "drivelab/highway-v0",
               "highway-fast.yaml": "drivelab/highway-fast-v0", "merge.yaml": "drivelab/merge-v0",
               "roundabout.yaml": "drivelab/roundabout-v0", "intersection.yaml": "drivelab/intersection-v0",
               "parking.yaml": "drivelab/parking-v0", "racetrack.yaml": "drivelab/racetrack-v0"}
CONTINUOUS = {"parking.yaml", "racetrack.yaml"}  # DQN needs discrete actions: PPO only
# Scenarios that train on highway-env (worker processes: seconds to start): their runs are slow checks.
ON_HIGHWAY_ENV = {"default.yaml", "roundabout.yaml", "intersection.yaml", "racetrack.yaml"}
TRAINED_FILES = [pytest.param(path, marks=pytest.mark.slow) if path.name in ON_HIGHWAY_ENV else path
                 for path in HYPERPARAMS]
# Sizes shrunk so a few steps run in seconds; every other value is the file's own.
SHRINK = {
    "ppo": {"ppo.n_envs": 2, "ppo.n_steps": 8, "ppo.batch_size": 8, "ppo.n_epochs": 1},
    "dqn": {"dqn.n_envs": 2, "dqn.buffer_size": 64, "dqn.learning_starts": 4, "dqn.batch_size": 4},
}


@pytest.mark.parametrize("env_id", de.ENV_IDS)
@pytest.mark.parametrize("algo", ["ppo", "dqn"])
def test_every_scenario_resolves_for_both_algorithms(env_id: str, algo: str) -> None:
    config = load_train_config(env_id, algo)
    assert config.env_id == env_id and config.algo == algo
    assert config.algo_config is (config.ppo if algo == "ppo" else config.dqn)
    assert (config.ppo is None) == (algo == "dqn")


def test_scenarios_find_their_hyperparameter_file() -> None:
    assert hyperparams_path("drivelab/highway-fast-v0").name == "highway-fast.yaml"
    assert hyperparams_path("drivelab/merge-v0").name == "merge.yaml"
    assert hyperparams_path("drivelab/exit-v0").name == "default.yaml"
    assert sorted(SCENARIO_OF) == [path.name for path in HYPERPARAMS]


@pytest.mark.parametrize("path", HYPERPARAMS, ids=lambda path: path.name)
@pytest.mark.parametrize("algo", ["ppo", "dqn"])
def test_every_shipped_yaml_resolves(path: Path, algo: str) -> None:
    """Every shipped file resolves for every algorithm that fits its scenario, from its own file."""
    env_id = SCENARIO_OF[path.name]
    assert hyperparams_path(env_id) == path
    config = load_train_config(env_id, algo)
    assert config.env_id == env_id and config.algo == algo and config.total_steps > 0


@pytest.mark.parametrize("path", TRAINED_FILES, ids=lambda path: path.name)
@pytest.mark.parametrize("algo", ["ppo", "dqn"])
def test_every_shipped_yaml_parses_and_trains(path: Path, algo: str, tmp_path: Path) -> None:
    """Every shipped file resolves for every algorithm and trains (sizes shrunk, values its own)."""
    if algo == "dqn" and path.name in CONTINUOUS:
        pytest.skip("continuous actions: the scenario trains PPO only")
    env_id = SCENARIO_OF[path.name]
    shipped = load_train_config(env_id, algo)
    assert hyperparams_path(env_id) == path
    config = load_train_config(env_id, algo, {
        **SHRINK[algo], "total_steps": 16, "eval_every_steps": 0, "checkpoint_every_steps": 16,
        "encoder.features_dim": 16,
    })
    assert (config.encoder.name, config.observation) == (shipped.encoder.name, shipped.observation)
    result = train(config, tmp_path / "run", progress_bar=False)
    assert result.num_timesteps >= 16 and result.final_export.is_file()


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
        ({"encoder.name": "a" * 5000}, "neither one of nature, fast"),
        ({"encoder.name": "x\x00y"}, "neither one of nature, fast"),
        ({"ppo.batch_size": 4096, "ppo.n_envs": 2, "ppo.n_steps": 8}, "exceeds the rollout size"),
        ({"crash_penalty": -1.0}, "crash_penalty"),
        ({"ppo.learning_rate": -1}, "'ppo.learning_rate' must be in \\(0"),
        ({"ppo.batch_size": 0}, "'ppo.batch_size' must be in \\[1"),
        ({"ppo.gamma": 1.5}, "'ppo.gamma' must be in \\(0, 1\\]"),
        ({"ppo.gae_lambda": -0.1}, "'ppo.gae_lambda' must be in \\[0, 1\\]"),
        ({"ppo.clip_range": 0}, "'ppo.clip_range' must be in \\(0"),
        ({"ppo.n_envs": 0}, "'ppo.n_envs' must be in \\[1"),
        ({"encoder.augment_shift_px": -4}, "'encoder.augment_shift_px' must be in \\[0"),
        ({"ppo.net_arch": [0]}, "'ppo.net_arch' must be in \\[1"),
        ({"ppo.net_arch": [10_000_000_000]}, "'ppo.net_arch' must be in"),
        ({"camera.width": 100000}, "2048"),
        ({"camera": "abc"}, "'camera' expects dict"),
        ({"env_config.vehicles_count": 1e9}, "vehicles_count' for drivelab/highway-fast-v0 must be in"),
        ({"observation": "pixels"}, "'observation' expects one of 'camera', 'native'"),
        ({"backend": "mujoco"}, "'backend' expects one of"),
        ({"ppo.learning_rate": float("nan")}, "'ppo.learning_rate' expects float"),
    ],
)
def test_bad_values_name_what_is_valid(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_train_config("drivelab/highway-fast-v0", "ppo", overrides)


def test_unknown_algorithm_and_section(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="Valid algorithms: ppo, dqn"):
        load_train_config("drivelab/highway-fast-v0", "a2c")
    bad = tmp_path / "bad.yaml"
    bad.write_text("common: {}\ntd3: {}\n")
    with pytest.raises(ConfigError, match="Valid sections: common, ppo, dqn"):
        load_train_config("drivelab/highway-fast-v0", "ppo", hyperparams_file=bad)
