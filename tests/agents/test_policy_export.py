"""Weights-only export: same actions as the checkpoint, no unpickling, clear errors."""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

import drivelab.envs as de
from drivelab.agents import (
    CheckpointError,
    PolicyLoadError,
    PolicySpecError,
    TrainedPolicy,
    TrainResult,
    UnsafePolicyFileError,
    evaluate,
    load_policy,
    train,
)
from drivelab.agents.checkpoints import find_last_checkpoint

ENV_ID = "drivelab/highway-fast-v0"


@contextlib.contextmanager
def camera_batch(spec: dict, num_envs: int = 6, steps: int = 5) -> Iterator[tuple[np.ndarray, object]]:
    """Frames (num_envs * (steps + 1), C, H, W) from the policy's camera, and the (open) env."""
    vec = de.make_vec(ENV_ID, num_envs=num_envs, observation="camera", camera=spec["camera"], seed=123)
    try:
        observation, _ = vec.reset()
        frames = [observation]
        for _ in range(steps):
            observation, *_ = vec.step(np.full(num_envs, 3))
            frames.append(observation)
        yield np.concatenate(frames), vec
    finally:
        vec.close()


@pytest.mark.parametrize("run_name", ["ppo_run", "dqn_run"])
def test_export_acts_like_the_checkpoint(run_name: str, request: pytest.FixtureRequest) -> None:
    result: TrainResult = request.getfixturevalue(run_name)
    exported = load_policy(result.final_export)
    checkpoint = find_last_checkpoint(result.run_dir / "checkpoints")
    assert checkpoint.step == result.num_timesteps == exported.spec["num_timesteps"]
    pickled = load_policy(checkpoint.folder / "model.zip", trust_pickle=True)
    with camera_batch(exported.spec) as (observations, vec):
        np.testing.assert_array_equal(exported.act(observations), pickled.act(observations))
        for name in exported.sb3_policy.state_dict():  # every tensor, not just the greedy actions
            np.testing.assert_array_equal(
                exported.sb3_policy.state_dict()[name].numpy(), pickled.sb3_policy.state_dict()[name].numpy()
            )
        assert isinstance(exported, TrainedPolicy) and exported.act(observations[:6], vec).shape == (6,)


def test_export_files_and_spec(ppo_run: TrainResult) -> None:
    folder = ppo_run.run_dir / "final"
    assert sorted(p.name for p in folder.iterdir()) == ["policy.json", "policy.safetensors"]
    spec = json.loads((folder / "policy.json").read_text())
    assert spec["format"] == "drivelab-policy" and spec["algo"] == "ppo" and spec["env_id"] == ENV_ID
    assert spec["seed"] == 0 and spec["num_timesteps"] == ppo_run.num_timesteps and spec["training_wall_s"] > 0
    assert spec["observation_space"] == {"type": "box", "shape": [2, 32, 64], "dtype": "uint8", "low": 0, "high": 255}
    assert spec["action_space"]["n"] == 5 and spec["encoder"]["name"] == "fast"
    # Loading a run directory gives its best export; a .safetensors path finds its spec.
    assert load_policy(ppo_run.run_dir).spec == json.loads((ppo_run.run_dir / "best" / "policy.json").read_text())
    assert load_policy(folder / "policy.safetensors").spec == spec


def test_pickled_checkpoint_needs_trust(ppo_run: TrainResult) -> None:
    checkpoint = find_last_checkpoint(ppo_run.run_dir / "checkpoints")
    with pytest.raises(UnsafePolicyFileError, match="trust_pickle=True"):
        load_policy(checkpoint.folder / "model.zip")


def test_spec_mismatch_with_env_is_a_clear_error(ppo_run: TrainResult) -> None:
    policy = load_policy(ppo_run.final_export)
    other_camera = {"observation": "camera", "camera": {"width": 128, "height": 64, "stack": 4}}
    with pytest.raises(PolicySpecError, match=r"does not fit this env: observations \(4, 64, 128\)"):
        evaluate(policy, ENV_ID, episodes=2, num_envs=2, env_kwargs=other_camera)
    with pytest.raises(PolicySpecError, match="expects observations"):
        policy.act(np.zeros((2, 4, 64, 128), np.uint8))


def test_damaged_exports_are_refused(ppo_run: TrainResult, tmp_path: Path) -> None:
    folder = tmp_path / "export"
    shutil.copytree(ppo_run.run_dir / "final", folder)
    weights = folder / "policy.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="do not match the SHA-256"):
        load_policy(folder)
    weights.write_bytes(data)
    (folder / "policy.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_policy(folder)
    with pytest.raises(PolicyLoadError, match="does not exist"):
        load_policy(tmp_path / "missing")


def test_pretrained_encoder_travels_with_the_export(tmp_path: Path, tiny_config) -> None:
    from drivelab.perception.encoders import build_encoder
    from drivelab.perception.extractor import save_encoder

    encoder_file = save_encoder(tmp_path / "encoder.safetensors",
                                build_encoder("fast", in_channels=2, height=32, width=64, features_dim=32))
    config = tiny_config("ppo", total_steps=64, eval_every_steps=0, **{"encoder.name": str(encoder_file)})
    result = train(config, tmp_path / "run", progress_bar=False)
    checkpoint = find_last_checkpoint(result.run_dir / "checkpoints")
    pickled = load_policy(checkpoint.folder / "model.zip", trust_pickle=True)  # reads the encoder file
    encoder_file.unlink()  # the export must not need the original file
    exported = load_policy(result.final_export)
    assert exported.spec["encoder_file"] == "policy.encoder.safetensors"
    with camera_batch(exported.spec, num_envs=4, steps=2) as (observations, _):
        np.testing.assert_array_equal(exported.act(observations), pickled.act(observations))


def test_augmentation_trains_but_never_acts(tmp_path: Path, tiny_config) -> None:
    config = tiny_config("ppo", total_steps=64, eval_every_steps=0, **{"encoder.augment_shift_px": 2})
    result = train(config, tmp_path / "run", progress_bar=False)
    exported = load_policy(result.final_export)
    assert exported.spec["encoder"]["augment_shift_px"] == 0
    checkpoint = find_last_checkpoint(result.run_dir / "checkpoints")
    pickled = load_policy(checkpoint.folder / "model.zip", trust_pickle=True)
    assert pickled.sb3_policy.features_extractor.augment_shift_px == 2  # trained with random shifts
    with camera_batch(exported.spec, num_envs=4, steps=2) as (observations, _):
        pass
    extractor = pickled.sb3_policy.features_extractor
    frames = torch.as_tensor(observations).float() / 255.0
    with torch.no_grad():
        extractor.train()
        assert not torch.equal(extractor(frames), extractor(frames))  # random shifts while training
        extractor.eval()
        assert torch.equal(extractor(frames), extractor(frames))
    np.testing.assert_array_equal(exported.act(observations), pickled.act(observations))


def test_dict_observation_policy_trains_exports_and_acts(tmp_path: Path) -> None:
    """Parking's goal-conditioned observation (a dict of vectors) trains an mlp PPO whose export
    describes the dict space, loads without pickles and acts like the checkpoint."""
    from drivelab.agents import load_train_config
    from drivelab.agents.spec import space_from_dict, space_to_dict

    config = load_train_config("drivelab/parking-v0", "ppo", {
        "observation": "native", "policy": "mlp", "total_steps": 128, "checkpoint_every_steps": 64,
        "eval_every_steps": 128, "eval_episodes": 2, "eval_envs": 2, **TINY_PPO})
    result = train(config, tmp_path / "parking", progress_bar=False)
    exported = load_policy(result.final_export)
    space = exported.observation_space
    assert sorted(exported.spec["observation_space"]["spaces"]) == ["achieved_goal", "desired_goal", "observation"]
    assert space_from_dict(space_to_dict(space)) == space
    pickled = load_policy(find_last_checkpoint(result.run_dir / "checkpoints").folder / "model.zip", trust_pickle=True)
    vec = de.make_vec("drivelab/parking-v0", num_envs=3, observation="native", seed=5)
    try:
        observation, _ = vec.reset()
        actions = exported.act(observation, vec)
        assert actions.shape == (3, 2) and np.all(np.abs(actions) <= 1)
        np.testing.assert_array_equal(actions, pickled.act(observation, vec))
        with pytest.raises(PolicySpecError, match="expects observations"):
            exported.act({key: value[:, :4] for key, value in observation.items()})
    finally:
        vec.close()
    report = evaluate(exported, "drivelab/parking-v0", episodes=2, num_envs=2, env_kwargs={"observation": "native"})
    assert len(report.episodes) == 2
    with pytest.raises(PolicySpecError, match="a dict space needs 'spaces'"):
        space_from_dict({"type": "dict", "spaces": {"bad key": {"type": "discrete", "n": 2}}})
    with pytest.raises(PolicySpecError, match="every part of a dict space must be a box"):
        space_from_dict({"type": "dict", "spaces": {"a": {"type": "discrete", "n": 2}}})


TINY_PPO = {"ppo.n_envs": 4, "ppo.n_steps": 16, "ppo.batch_size": 32, "ppo.n_epochs": 2, "ppo.net_arch": [32]}
