"""The vector API contract on both backends, same-step autoreset, determinism, SB3 adapter."""

import numpy as np
import pytest

import drivelab.envs as de

BACKENDS = ["envpool", "highway-env"]


def run_until_some_episode_ends(env, actions, max_steps=60):
    for _ in range(max_steps):
        out = env.step(actions)
        if out[2].any() or out[3].any():
            return out
    raise AssertionError("no episode ended")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("observation", ["native", "camera"])
def test_shapes_dtypes_and_spaces(backend, observation):
    env = de.make_vec("drivelab/highway-fast-v0", num_envs=3, backend=backend, observation=observation, seed=0)
    assert env.backend == backend
    obs, infos = env.reset()
    assert obs.shape == env.observation_space.shape and obs.shape[0] == 3
    assert env.observation_space.contains(obs)
    obs, rewards, terminated, truncated, infos = env.step(np.ones(3, np.int64))
    assert env.observation_space.contains(obs)
    assert rewards.shape == (3,) and terminated.dtype == bool and truncated.dtype == bool
    if observation == "camera":
        assert obs.dtype == np.uint8 and obs.shape == (3, 4, 64, 128)


@pytest.mark.parametrize("backend", BACKENDS)
def test_same_step_autoreset_keeps_final_observation_and_metrics(backend):
    env = de.make_vec("drivelab/highway-fast-v0", num_envs=4, backend=backend, observation="camera", seed=1)
    env.reset()
    obs, rewards, terminated, truncated, infos = run_until_some_episode_ends(env, np.full(4, 3, np.int64))
    done = terminated | truncated
    assert np.array_equal(infos["_final_obs"], done)
    assert np.array_equal(infos["_driving"], done)
    for i in np.flatnonzero(done):
        final = infos["final_obs"][i]
        assert final.shape == (4, 64, 128)
        # the returned observation is the new episode's first one: older frames cleared
        assert not obs[i, :3].any() and obs[i, 3].any()
        assert final[3].any()
        assert infos["driving"]["length"][i] >= 1
        assert set(de.METRIC_NAMES) <= set(infos["driving"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_same_seed_same_trajectory(backend):
    def rollout():
        env = de.make_vec("drivelab/highway-fast-v0", num_envs=2, backend=backend, observation="camera", seed=7)
        rng = np.random.default_rng(0)
        frames, rewards = [env.reset()[0]], []
        for _ in range(12):
            obs, reward, *_ = env.step(rng.integers(0, 5, 2))
            frames.append(obs)
            rewards.append(reward)
        states = env.vehicle_states()
        return np.stack(frames), np.stack(rewards), states.x.copy()

    first, second = rollout(), rollout()
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("backend", BACKENDS)
def test_different_seeds_differ(backend):
    def initial_positions(seed):
        env = de.make_vec("drivelab/highway-fast-v0", num_envs=1, backend=backend, seed=seed)
        env.reset()
        return env.vehicle_states().x.copy()

    assert not np.array_equal(initial_positions(1), initial_positions(2))


def test_reset_with_a_list_of_seeds_is_per_env():
    env = de.make_vec("drivelab/highway-fast-v0", num_envs=3, backend="envpool")
    env.reset(seed=[5, 6, 5])
    x = env.vehicle_states().x
    np.testing.assert_array_equal(x[0], x[2])
    assert not np.array_equal(x[0], x[1])


@pytest.mark.parametrize("backend", BACKENDS)
def test_sb3_adapter_contract(backend):
    from stable_baselines3.common.vec_env import VecEnv

    env = de.make_sb3("drivelab/highway-fast-v0", num_envs=3, backend=backend, observation="camera", seed=0)
    assert isinstance(env, VecEnv)
    obs = env.reset()
    assert obs.shape == (3, 4, 64, 128)
    for _ in range(60):
        obs, rewards, dones, infos = env.step(np.full(3, 3, np.int64))
        assert len(infos) == 3 and rewards.dtype == np.float32
        if dones.any():
            break
    assert dones.any()
    for i in np.flatnonzero(dones):
        info = infos[i]
        assert info["terminal_observation"].shape == (4, 64, 128)
        assert isinstance(info["TimeLimit.truncated"], bool)
        assert info["episode"]["l"] == info["driving"]["length"]
        assert info["is_success"] == bool(info["driving"]["success"])
    for i in np.flatnonzero(~dones):
        assert "terminal_observation" not in infos[i]


def test_sb3_seed_makes_reset_deterministic():
    def first_obs():
        env = de.make_sb3("drivelab/highway-fast-v0", num_envs=2, observation="camera")
        env.seed(11)
        return env.reset()

    np.testing.assert_array_equal(first_obs(), first_obs())


def test_sb3_get_images_are_the_camera_frames():
    env = de.make_sb3("drivelab/highway-fast-v0", num_envs=2, observation="camera", seed=0)
    obs = env.reset()
    images = env.get_images()
    assert len(images) == 2 and images[0].shape == (64, 128, 3)
    np.testing.assert_array_equal(images[1][..., 0], obs[1, -1])
    native = de.make_sb3("drivelab/highway-fast-v0", num_envs=1)
    native.reset()
    with pytest.raises(de.BackendUnavailableError, match="camera"):
        native.get_images()


@pytest.mark.parametrize("backend", ["envpool", "highway-env"])
@pytest.mark.parametrize("seed", [-1, 2**31, [0, -5]])
def test_out_of_range_reset_seeds_are_refused_alike(backend, seed):
    env = de.make_vec("drivelab/highway-fast-v0", num_envs=2, backend=backend)
    with pytest.raises(de.ConfigError, match=r"seeds must be integers in \[0, 2147483647\]"):
        env.reset(seed=seed)
    env.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_step_after_close_raises(backend):
    import gymnasium

    env = de.make_vec("drivelab/highway-fast-v0", num_envs=2, backend=backend, seed=0)
    env.reset()
    env.close()
    with pytest.raises(gymnasium.error.ClosedEnvironmentError):
        env.step(np.ones(2, np.int64))
