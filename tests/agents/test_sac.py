"""SAC with hindsight experience replay on parking's goal-conditioned vector: trains, checkpoints
its relabelling replay buffer, resumes, exports weights only, and refuses what it cannot train."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from stable_baselines3 import HerReplayBuffer

import drivelab.envs as de
from drivelab.agents import ConfigError, load_policy, load_train_config, train
from drivelab.agents.checkpoints import find_last_checkpoint, load_checkpoint

PARKING = "drivelab/parking-v0"
TINY_SAC = {"observation": "native", "policy": "mlp", "total_steps": 128, "checkpoint_every_steps": 64,
            "eval_every_steps": 128, "eval_episodes": 2, "eval_envs": 2, "sac.n_envs": 2,
            "sac.learning_starts": 64, "env_config": {"duration": 5}, "sac.batch_size": 16,
            "sac.buffer_size": 1000, "sac.net_arch": [32, 32]}


def test_sac_her_trains_resumes_and_exports(tmp_path: Path) -> None:
    run_dir = tmp_path / "sac"
    first = train(load_train_config(PARKING, "sac", TINY_SAC), run_dir, progress_bar=False)
    checkpoint = find_last_checkpoint(run_dir / "checkpoints")
    assert first.num_timesteps == checkpoint.step == 128 and "replay_buffer.pkl" in checkpoint.files
    model = load_checkpoint(checkpoint, env=de.make_sb3(PARKING, num_envs=2, observation="native"), device="cpu")
    try:
        assert isinstance(model.replay_buffer, HerReplayBuffer) and model.replay_buffer.n_sampled_goal == 4
        assert model.replay_buffer.pos * model.replay_buffer.n_envs == 128  # every transition was kept
        # Relabelled samples carry the goal reward of the goal they were given (no crash in them here).
        sample = model.replay_buffer.sample(64, env=None)
        expected = model.get_env().env_method("compute_reward", sample.next_observations["achieved_goal"].numpy(),
                                              sample.observations["desired_goal"].numpy(), None, indices=[0])[0]
        crashed = np.isclose(sample.rewards.numpy().ravel() - expected, -5.0, atol=1e-4)
        np.testing.assert_allclose(sample.rewards.numpy().ravel()[~crashed], expected[~crashed], rtol=1e-4, atol=1e-5)
    finally:
        model.get_env().close()
    resumed = train(load_train_config(PARKING, "sac", {**TINY_SAC, "total_steps": 192}), run_dir, resume=True,
                    progress_bar=False)
    assert resumed.num_timesteps == 192
    policy = load_policy(resumed.final_export)
    assert policy.spec["algo"] == "sac" and policy.spec["observation_space"]["type"] == "dict"
    pickled = load_policy(find_last_checkpoint(run_dir / "checkpoints").folder / "model.zip", trust_pickle=True)
    vec = de.make_vec(PARKING, num_envs=3, observation="native", seed=9)
    try:
        observation, _ = vec.reset()
        actions = policy.act(observation, vec)
        assert actions.shape == (3, 2) and np.all(np.abs(actions) <= 1)
        np.testing.assert_array_equal(actions, pickled.act(observation, vec))
    finally:
        vec.close()
    # Watching (zoo model cards, `drivelab watch`) plays a dict-observation policy too.
    from drivelab.benchmarks.viewer.episode import watch_episode

    episode = watch_episode(policy, PARKING, seed=3, observation="native", config={"duration": 2})
    assert len(episode.frames) > 1 and episode.driving["length"] <= 11


@pytest.mark.parametrize(("env_id", "overrides", "message"), [
    (PARKING, {"observation": "camera", "policy": "cnn"}, "sac trains on native observations"),
    ("drivelab/highway-fast-v0", {"sac.her_goals": 4}, "has none"),
    ("drivelab/highway-fast-v0", {"sac.her_goals": 0}, "SAC needs continuous actions"),
    (PARKING, {"init_from": "runs/x"}, "sac starts from random weights"),
    (PARKING, {"sac.learning_starts": 40}, r"at least 26 steps x 2 envs = 52"),
])
def test_sac_refusals(env_id: str, overrides: dict, message: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=message):
        config = load_train_config(env_id, "sac", {**TINY_SAC, **overrides})
        train(config, tmp_path / "run", progress_bar=False)
    assert not (tmp_path / "run").exists()


def test_shipped_parking_sac_config() -> None:
    config = load_train_config(PARKING, "sac", {"observation": "native", "policy": "mlp"})
    assert config.sac.her_goals == 4 and config.sac.her_strategy == "future"
    # Every env ends an episode before hindsight replay samples (the check train makes).
    assert config.sac.learning_starts >= 501 * config.sac.n_envs
