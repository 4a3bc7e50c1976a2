"""Baselines: seeded random, idle, and the IDM/MOBIL rule driver (closed forms and a benchmark)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import drivelab.envs as de
from drivelab.agents import BASELINES, ConfigError, PolicySpecError, evaluate, make_baseline
from drivelab.agents.policies import IDMMobilPolicy, RandomPolicy
from drivelab.envs.actions import FASTER, IDLE, LANE_LEFT, LANE_RIGHT, META_ACTION_NAMES, SLOWER
from drivelab.envs.drivers import COMFORT_ACC_MAX, FREE_GAP_M, idm_acceleration

ENV_ID = "drivelab/highway-fast-v0"
FIXED_SEEDS = 2_000_000  # a fixed, held-out seed set for the baseline comparison


class FakeEnv:
    """Just enough of a drivelab vector env for a policy that reads vehicle states."""

    single_action_space = gym.spaces.Discrete(len(META_ACTION_NAMES))  # the scenario's DiscreteMetaAction

    def __init__(self, states: de.VehicleBatch) -> None:
        self.states = states

    def vehicle_states(self) -> de.VehicleBatch:
        return self.states


def road(vehicles: list[tuple[float, int, float]], ego_lane: int = 1, ego_speed: float = 25.0) -> FakeEnv:
    """One env on a 3-lane straight road: ego at x=0; others as (x [m], lane, speed [m/s])."""
    batch = de.VehicleBatch.empty(1, 1 + len(vehicles))
    for slot, (x, lane, speed) in enumerate([(0.0, ego_lane, ego_speed), *vehicles]):
        batch.x[0, slot], batch.y[0, slot], batch.speed[0, slot] = x, 4.0 * lane, speed
        batch.lane_index[0, slot], batch.present[0, slot] = lane, True
    batch.lanes_count[:] = 3
    return FakeEnv(batch)


def test_idm_acceleration_closed_forms() -> None:
    # Free road: a = a_max (1 - (v / v0)^4); at v0 / 2 that is 3 * 15 / 16.
    assert idm_acceleration(np.array(15.0), np.array(0.0), np.array(FREE_GAP_M), 30.0) == pytest.approx(2.8125)
    # Standing still behind a standing leader exactly at the jam distance s0 = 5 m: a = -a_max * (s0/s)^2 + a_max.
    assert idm_acceleration(np.array(0.0), np.array(0.0), np.array(5.0), 30.0) == pytest.approx(0.0)
    # s = 2 s*: a = a_max (1 - (v/v0)^4 - 1/4), v = 20, lead 20: s* = 5 + 30 = 35 m.
    expected = COMFORT_ACC_MAX * (1 - (20 / 30) ** 4 - 0.25)
    assert idm_acceleration(np.array(20.0), np.array(20.0), np.array(70.0), 30.0) == pytest.approx(expected)


def test_random_is_seeded() -> None:
    obs = np.zeros((64, 2), np.float32)
    first, again, other = RandomPolicy(3).act(obs), RandomPolicy(3).act(obs), RandomPolicy(4).act(obs)
    assert first.shape == (64,) and set(first.tolist()) <= set(range(5))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_idle_and_registry() -> None:
    assert set(BASELINES) == {"random", "idle", "idm", "gap", "pursuit", "parker", "rules"}
    np.testing.assert_array_equal(make_baseline("idle", ENV_ID).act(np.zeros((3, 1))), [IDLE] * 3)
    with pytest.raises(ConfigError, match="Valid baselines: random, idle, idm, gap, pursuit, parker, rules"):
        make_baseline("mpc")


@pytest.mark.parametrize(
    ("vehicles", "ego_lane", "expected"),
    [
        ([], 2, FASTER),  # empty road, right lane: speed up
        ([(50.0, 2, 20.0)], 2, LANE_LEFT),  # slow leader, free left lane: overtake
        ([(50.0, 2, 20.0), (-8.0, 1, 30.0)], 2, SLOWER),  # left lane blocked by a fast follower: brake
        ([], 1, LANE_RIGHT),  # free road: keep right
        ([(12.0, 1, 15.0), (0.0, 0, 25.0), (0.0, 2, 25.0)], 1, SLOWER),  # boxed in behind a close, slow car
    ],
)
def test_idm_mobil_decisions(vehicles: list, ego_lane: int, expected: int) -> None:
    policy = IDMMobilPolicy()
    assert policy.act(np.zeros((1, 1)), road(vehicles, ego_lane)).tolist() == [expected]


@pytest.mark.parametrize(
    ("vehicles", "escape", "expected"),
    [
        ([(10.0, 1, 17.0)], True, LANE_RIGHT),  # at 20 m/s, the floor, closing on a 17 m/s car: leave the lane
        ([(10.0, 1, 17.0)], False, SLOWER),  # the old rule: brake, which at the floor changes nothing
        ([(10.0, 1, 17.0), (0.0, 0, 20.0), (0.0, 2, 20.0)], True, SLOWER),  # boxed in: nothing safer than braking
    ],
)
def test_idm_at_its_slowest_target_speed_escapes_a_slower_leader(vehicles: list, escape: bool, expected: int) -> None:
    # Braking below the slowest target speed (20 m/s) is not an action of DiscreteMetaAction, so behind
    # a slower car a driver already there crashes unless it changes lane: a safe lane change wins.
    policy = IDMMobilPolicy(escape_at_floor=escape)
    assert policy.act(np.zeros((1, 1)), road(vehicles, 1, ego_speed=20.0)).tolist() == [expected]


def test_idm_told_what_another_policy_drove_keeps_that_target_speed() -> None:
    """Free road at 25 m/s in the right lane: IDM/MOBIL asks FASTER (target 30); when a learner drove SLOWER instead
    (DAgger), its remembered target is 20 m/s, so on the same road it asks FASTER again, not IDLE."""
    policy = IDMMobilPolicy()
    free = road([], 2, ego_speed=25.0)  # rightmost lane: nothing to keep right for
    assert policy.act(np.zeros((1, 1)), free).tolist() == [FASTER]
    assert policy.act(np.zeros((1, 1)), free).tolist() == [IDLE]  # it remembers its 30 m/s
    told = IDMMobilPolicy()
    assert told.act(np.zeros((1, 1)), free).tolist() == [FASTER]
    told.drove(np.array([SLOWER]))
    assert told.driver._target_index.tolist() == [0]
    assert told.act(np.zeros((1, 1)), free).tolist() == [FASTER]


def test_idm_needs_vehicle_states() -> None:
    with pytest.raises(PolicySpecError, match="reads vehicle states"):
        IDMMobilPolicy().act(np.zeros((1, 1)))


def test_deterministic_is_part_of_every_policy() -> None:
    observation = np.zeros((4, 2), np.float32)
    for name in ("random", "idle", "idm"):  # the ones that fit highway-fast
        policy = make_baseline(name, ENV_ID)
        if name == "idm":
            continue  # reads vehicle states: covered by the decisions above
        greedy = policy.act(observation, None, deterministic=True)
        sampled = make_baseline(name, ENV_ID).act(observation, None, deterministic=False)
        np.testing.assert_array_equal(greedy, sampled)  # seeded / rule-based: the same either way
    vehicles = road([(50.0, 2, 20.0)], 2)
    assert IDMMobilPolicy().act(np.zeros((1, 1)), vehicles, deterministic=False).tolist() == [LANE_LEFT]


def test_idm_beats_idle_on_highway_fast() -> None:
    seeds = range(FIXED_SEEDS, FIXED_SEEDS + 40)

    def run(name: str):  # native observations: the rules read states anyway
        return evaluate(make_baseline(name), ENV_ID, seeds=seeds, num_envs=20,
                        make_env=lambda num_envs: de.make_vec(ENV_ID, num_envs=num_envs))

    idle, idm = run("idle"), run("idm")
    assert idle.seeds == idm.seeds == tuple(seeds)
    assert idm.mean_return > idle.mean_return + 3.0
    assert idm.crash_rate < idle.crash_rate - 0.3
    again = run("idm")  # same seeds -> same episodes
    np.testing.assert_allclose(again.metric("episode_return"), idm.metric("episode_return"))
