"""Every id registers, passes gymnasium's env checker, and bad input fails clearly."""

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import drivelab.envs as de


def test_every_highway_env_scenario_is_registered():
    names = {i.split("/")[1] for i in de.ENV_IDS}
    assert names == {
        "highway-v0", "highway-fast-v0", "merge-v0", "roundabout-v0", "intersection-v0", "parking-v0",
        "racetrack-v0", "exit-v0", "two-way-v0", "u-turn-v0", "lane-keeping-v0",
        # the variants EnvPool registers too
        "intersection-v1", "parking-parked-v0", "racetrack-large-v0", "racetrack-oval-v0",
    }
    for env_id in de.ENV_IDS:
        assert env_id in gymnasium.registry


@pytest.mark.parametrize("env_id", de.ENV_IDS)
def test_check_env_reference_backend(env_id):
    env = gymnasium.make(env_id, backend="highway-env")
    check_env(env.unwrapped, skip_render_check=True)
    obs, _ = env.reset(seed=3)
    assert env.observation_space.contains(obs)
    for _ in range(3):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs)
        assert np.isfinite(reward)
        if terminated or truncated:
            break
    env.close()


def test_check_env_camera_observation():
    env = gymnasium.make("drivelab/highway-fast-v0", observation="camera", backend="envpool")
    check_env(env.unwrapped, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4, 64, 128) and obs.dtype == np.uint8


def test_make_vec_uses_the_batched_vector_env():
    env = gymnasium.make_vec("drivelab/highway-fast-v0", num_envs=3, observation="camera")
    assert isinstance(env, de.DrivingVectorEnv)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (3, 4, 64, 128)
    assert env.metadata["autoreset_mode"] == gymnasium.vector.AutoresetMode.SAME_STEP


def test_auto_backend_choice_is_reported(caplog):
    with caplog.at_level("INFO", logger="drivelab.envs"):
        env = de.make_vec("drivelab/highway-fast-v0", num_envs=2)
    assert env.backend == "envpool"
    assert "using envpool" in caplog.text
    with caplog.at_level("INFO", logger="drivelab.envs"):
        env = de.make_vec("drivelab/exit-v0", num_envs=1)
    assert env.backend == "highway-env"
    assert "using highway-env" in caplog.text


def test_auto_falls_back_when_envpool_lacks_a_config_key(caplog):
    with caplog.at_level("INFO", logger="drivelab.envs"):
        aggressive = "highway_env.vehicle.behavior.AggressiveVehicle"
        env = de.make_vec("drivelab/highway-fast-v0", config={"other_vehicles_type": aggressive})
    assert env.backend == "highway-env"
    assert "other_vehicles_type" in caplog.text


def test_unknown_env_id_lists_valid_ids_and_closest_match():
    with pytest.raises(de.UnknownEnvError) as error:
        de.make_vec("drivelab/highway-fats-v0")
    message = str(error.value)
    assert "Did you mean 'drivelab/highway-fast-v0'" in message
    assert "drivelab/roundabout-v0" in message


def test_unknown_config_key_names_it_and_valid_keys():
    with pytest.raises(de.ConfigError) as error:
        de.make_vec("drivelab/highway-fast-v0", config={"lanes_cnt": 3})
    assert "'lanes_cnt'" in str(error.value) and "lanes_count" in str(error.value)


def test_ill_typed_config_value():
    with pytest.raises(de.ConfigError, match="lanes_count"):
        de.make_vec("drivelab/highway-fast-v0", config={"lanes_count": "three"})


def test_bad_camera_config():
    with pytest.raises(de.ConfigError, match="Valid keys"):
        de.make_vec("drivelab/highway-fast-v0", observation="camera", camera={"widht": 64})
    with pytest.raises(de.ConfigError, match="color"):
        de.make_vec("drivelab/highway-fast-v0", observation="camera", camera={"color": "hsv"})
    with pytest.raises(de.ConfigError, match="observation"):
        de.make_vec("drivelab/highway-fast-v0", observation="lidar")


def test_backend_that_cannot_run_the_scenario():
    with pytest.raises(de.BackendUnavailableError, match="highway-env"):
        de.make_vec("drivelab/u-turn-v0", backend="envpool")
    with pytest.raises(de.BackendUnavailableError, match="other_vehicles_type"):
        de.make_vec("drivelab/highway-fast-v0", backend="envpool", config={"other_vehicles_type": "x"})
    with pytest.raises(de.ConfigError, match="backend"):
        de.make_vec("drivelab/highway-fast-v0", backend="gpu")


@pytest.mark.parametrize("backend", ["envpool", "highway-env"])
def test_bad_actions_raise_action_error(backend):
    env = de.make_vec("drivelab/highway-fast-v0", num_envs=2, backend=backend, seed=0)
    env.reset()
    with pytest.raises(de.ActionError, match="shape"):
        env.step(np.array([1, 1, 1]))
    with pytest.raises(de.ActionError, match="integer"):
        env.step(np.array([1.0, 1.0]))
    with pytest.raises(de.ActionError, match="0..4"):
        env.step(np.array([1, 7]))
    env.step(np.array([1, 1]))  # still usable afterwards


def test_continuous_action_shape_checked():
    env = de.make_vec("drivelab/racetrack-v0", num_envs=1, seed=0)
    env.reset()
    with pytest.raises(de.ActionError, match="shape"):
        env.step(np.zeros((1, 3), np.float32))


@pytest.mark.parametrize("backend", ["envpool", "highway-env"])
def test_values_the_simulator_rejects_become_config_errors(backend):
    with pytest.raises(de.ConfigError, match="lanes_count"):
        env = de.make_vec("drivelab/highway-fast-v0", backend=backend, config={"lanes_count": 0})
        env.reset(seed=0)


def test_make_returns_one_gymnasium_env_that_passes_check_env():
    env = de.make("drivelab/highway-fast-v0", observation="camera", backend="envpool")
    assert isinstance(env, gymnasium.Env) and not isinstance(env, gymnasium.vector.VectorEnv)
    check_env(env, skip_render_check=True)
    obs, info = env.reset(seed=0)
    assert obs.shape == (4, 64, 128)
    assert info["speed"] > 0 and info["crashed"] is False
    _, _, _, _, info = env.step(1)
    assert set(info) >= {"speed", "crashed"}
    env.close()
    with pytest.raises(gymnasium.error.ClosedEnvironmentError):
        env.step(1)


def test_make_refuses_a_batch_size():
    with pytest.raises(de.ConfigError, match="make_vec"):
        de.make("drivelab/highway-fast-v0", num_envs=4)


def test_make_prints_no_deprecation_warning_for_v0_scenarios(recwarn):
    env = de.make("drivelab/merge-v0", backend="highway-env")
    env.reset(seed=0)
    env.close()
    assert not [w for w in recwarn if "out of date" in str(w.message)]


def test_single_env_reports_a_crash_on_the_crash_step():
    env = de.make("drivelab/highway-fast-v0", backend="envpool")
    env.reset(seed=0)
    for _ in range(200):  # always faster, always left: crashes soon
        _, _, terminated, truncated, info = env.step(3 if _ % 2 else 0)
        if terminated or truncated:
            break
    assert terminated and info["crashed"] is True and info["driving"]["crashed"] is True
    env.close()


def test_gymnasium_make_with_the_module_prefix_needs_no_prior_import():
    import subprocess
    import sys

    code = (
        "import sys, gymnasium; assert 'drivelab.envs' not in sys.modules; "
        "env = gymnasium.make('drivelab.envs:drivelab/highway-fast-v0'); "
        "print(env.reset(seed=0)[0].shape)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "(5, 5)"


@pytest.mark.parametrize("config, message", [
    ({"vehicles_count": 1e9}, r"'vehicles_count' .* must be in \[0, 500\]"),
    ({"lanes_count": 2.5}, "whole number"),
    ({"duration": -1}, r"must be in \[0, 3600\]"),
    ({"collision_reward": float("nan")}, "expects int"),
])
def test_size_like_config_values_are_bounded_before_anything_is_built(config, message):
    with pytest.raises(de.ConfigError, match=message):
        de.make_vec("drivelab/highway-fast-v0", config=config)


def test_whole_float_sizes_are_taken_as_ints_and_rewards_may_be_fractions():
    env = de.make_vec("drivelab/highway-fast-v0", config={"lanes_count": 3.0, "collision_reward": -0.5})
    assert env.sim_config == {"lanes_count": 3, "collision_reward": -0.5}
    env.close()
