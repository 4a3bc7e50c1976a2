"""Parking's goal-conditioned reward, as hindsight relabelling asks for it: highway-env's own
``compute_reward`` on any goals, and the reward both backends pay on every step."""

import gymnasium
import highway_env  # noqa: F401  (registers parking-v0)
import numpy as np
import pytest

import drivelab.envs as de
from drivelab.envs.errors import ConfigError
from drivelab.envs.goals import goal_reward
from drivelab.envs.scenarios import get_scenario

PARKING = get_scenario("drivelab/parking-v0")


def test_goal_reward_is_highway_envs_compute_reward() -> None:
    reference = gymnasium.make("parking-v0").unwrapped
    rng = np.random.default_rng(0)
    achieved, desired = rng.normal(size=(50, 6)), rng.normal(size=(50, 6))
    expected = [reference.compute_reward(a, d, {}) for a, d in zip(achieved, desired, strict=True)]
    np.testing.assert_allclose(goal_reward(PARKING, {}, achieved, desired), expected, rtol=1e-12)
    # Overridden weights are the ones used: only x counts here.
    weights = [1, 0, 0, 0, 0, 0]
    np.testing.assert_allclose(goal_reward(PARKING, {"reward_weights": weights}, achieved, desired),
                               -np.sqrt(np.abs(achieved[:, 0] - desired[:, 0])))
    with pytest.raises(ConfigError, match="do not fit"):
        goal_reward(PARKING, {}, achieved[:, :4], desired[:, :4])
    with pytest.raises(ConfigError, match="no goal-conditioned reward"):
        goal_reward(get_scenario("drivelab/merge-v0"), {}, achieved, desired)


@pytest.mark.parametrize("backend", ["envpool", "highway-env"])
def test_step_reward_is_the_goal_reward_plus_the_crash_term(backend: str) -> None:
    if backend == "envpool":
        pytest.importorskip("envpool")
    vec = de.make_vec("drivelab/parking-v0", num_envs=4, backend=backend, observation="native", seed=11)
    try:
        vec.reset()
        rng = np.random.default_rng(1)
        crashes = 0
        for _ in range(60):  # full throttle, random steering: most episodes end against a wall or a car
            actions = np.stack([np.ones(4), rng.uniform(-1, 1, 4)], axis=1).astype(np.float32)
            observation, reward, terminated, truncated, infos = vec.step(actions)
            ended = terminated | truncated
            achieved, desired = observation["achieved_goal"].copy(), observation["desired_goal"].copy()
            crashed = np.zeros(4, bool)
            for i in np.flatnonzero(ended):  # the reward belongs to the episode's last observation
                achieved[i], desired[i] = infos["final_obs"][i]["achieved_goal"], infos["final_obs"][i]["desired_goal"]
                crashed[i] = infos["driving"]["crashed"][i]
            expected = vec.compute_reward(achieved, desired) - 5.0 * crashed
            np.testing.assert_allclose(reward, expected, rtol=1e-5, atol=1e-6)
            # Given the step's infos (the env's, or SB3's per-env dicts), the crash term is included.
            np.testing.assert_allclose(vec.compute_reward(achieved, desired, infos), expected, rtol=1e-12)
            per_env = [{"driving": {"crashed": bool(c)}} if e else {} for c, e in zip(crashed, ended, strict=True)]
            np.testing.assert_allclose(vec.compute_reward(achieved, desired, per_env), expected, rtol=1e-12)
            crashes += int(crashed.sum())
        assert crashes >= 2  # the crash term was checked too
    finally:
        vec.close()
