"""random and idle fit every scenario's action space and batch size; drivers refuse scenarios they do not drive."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import drivelab.envs as de
from drivelab.agents import BASELINES, ConfigError, load_policy, make_baseline
from drivelab.agents.baselines import DRIVERS, fitting_drivers, scenario_driver
from drivelab.agents.policies import make_baseline as make_baseline_from_policies
from drivelab.core.errors import DrivelabError
from drivelab.envs.scenarios import ENV_IDS

ACTION_SPACES = {
    "meta": gym.spaces.Discrete(5),
    "longitudinal": gym.spaces.Discrete(3),  # intersection-v0: SLOWER, IDLE, FASTER
    "steering": gym.spaces.Box(-1.0, 1.0, (1,), np.float32),  # racetrack, lane-keeping
    "accel-steering": gym.spaces.Box(-1.0, 1.0, (2,), np.float32),  # parking, intersection-v1
}


class SpacesOnly:
    """An env as far as random and idle look at it: its action space and batch size."""

    def __init__(self, space: gym.Space, num_envs: int) -> None:
        self.single_action_space, self.num_envs = space, num_envs


@pytest.mark.parametrize("space_name", sorted(ACTION_SPACES))
@pytest.mark.parametrize("batch", [1, 3, 8])
def test_random_and_idle_fit_every_action_space(space_name: str, batch: int) -> None:
    space = ACTION_SPACES[space_name]
    env = SpacesOnly(space, batch)
    # A dict observation (parking's native goal observation) has 3 keys but B rows.
    observation = {"observation": np.zeros((batch, 6)), "achieved_goal": np.zeros((batch, 6)),
                   "desired_goal": np.zeros((batch, 6))}
    for name in ("random", "idle"):
        policy = make_baseline(name)
        policy.check_env(env)
        actions = policy.act(observation, env)
        assert actions.shape == (batch, *space.shape)
        assert all(space.contains(a if space.shape else int(a)) for a in np.asarray(actions, dtype=space.dtype))
    idle = make_baseline("idle").act(observation, env)
    if isinstance(space, gym.spaces.Box):
        np.testing.assert_array_equal(idle, 0.0)  # no acceleration, straight wheels
    else:
        np.testing.assert_array_equal(idle, 1)  # IDLE in Discrete(5) and in Discrete(3)


def test_random_on_parking_steps_with_any_batch_size() -> None:
    # The bug: a dict observation's length (3 keys) was taken as the batch size.
    vec = de.make_vec("drivelab/parking-v0", num_envs=3, observation="native")
    try:
        observation, _ = vec.reset(seed=0)
        policy = load_policy("baseline:random", "drivelab/parking-v0")
        vec.step(policy.act(observation, vec))
        vec.step(make_baseline("idle").act(observation, vec))
    finally:
        vec.close()


def test_every_scenario_has_a_rules_driver_but_continuous_intersection() -> None:
    for env_id in ENV_IDS:
        if env_id == "drivelab/intersection-v1":
            with pytest.raises(ConfigError, match="no rule-based driver"):
                make_baseline("rules", env_id)
            continue
        name = scenario_driver(env_id)
        assert name in BASELINES and name in fitting_drivers(env_id)
    assert scenario_driver("drivelab/roundabout-v0") == "idm"
    assert scenario_driver("drivelab/intersection-v0") == "gap"
    assert scenario_driver("drivelab/racetrack-large-v0") == "pursuit"
    assert scenario_driver("drivelab/parking-parked-v0") == "parker"
    assert set(name for names in DRIVERS.values() for name in names) <= set(BASELINES)


def test_unknown_and_unfit_drivers_are_refused_in_one_line() -> None:
    with pytest.raises(ConfigError, match="Valid baselines: random, idle, idm, gap, pursuit, parker, rules"):
        make_baseline("mpc")
    with pytest.raises(ConfigError, match=r"baseline:idm does not drive drivelab/parking-v0; .*baseline:parker"):
        make_baseline("idm", "drivelab/parking-v0")
    with pytest.raises(ConfigError, match=r"baseline:pursuit does not drive drivelab/intersection-v0; .*baseline:gap"):
        load_policy("baseline:pursuit", "drivelab/intersection-v0")
    with pytest.raises(DrivelabError, match="unknown environment id"):
        make_baseline("gap", "drivelab/intersektion-v0")
    # The old home of the baselines still answers.
    assert type(make_baseline_from_policies("idle")) is type(make_baseline("idle"))
