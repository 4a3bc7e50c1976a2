"""The vectorised closest-lane search answers as highway-env does, and the reference backend with it
(and with highway-env's observation skipped for camera frames) simulates the same episodes."""

import warnings

import gymnasium
import numpy as np
import pytest

import drivelab.envs as de
from drivelab.envs.backends import HighwayEnvSimulator, _make_highway_env, reference_network, traffic_rules
from drivelab.envs.lane_lookup import closest_lane_index, fast_lane_lookup

SCENARIOS = ["roundabout-v0", "intersection-v0", "racetrack-v0", "merge-v0", "highway-fast-v0"]


def _points_near_lanes(network, rng, per_lane=12):
    """Positions on, beside and past the ends of every lane, with headings along and across them."""
    points = []
    for to_dict in network.graph.values():
        for lanes in to_dict.values():
            for lane in lanes:
                for _ in range(per_lane):
                    s = rng.uniform(-10, lane.length + 10)
                    r = rng.choice([0.0, rng.uniform(-6, 6)])
                    heading = lane.heading_at(s) + rng.choice([0.0, rng.normal(0, 0.5), np.pi])
                    points.append((lane.position(s, r), float(heading)))
    return points


@pytest.mark.parametrize("env_id", SCENARIOS)
def test_closest_lane_matches_highway_env_everywhere_on_the_road(env_id):
    network = reference_network(env_id)
    rng = np.random.default_rng(0)
    points = _points_near_lanes(network, rng)
    for position, heading in points:
        for h in (heading, None):
            assert closest_lane_index(network, position, h) == network.get_closest_lane_index(position, h)


def test_fast_lookup_is_installed_only_inside_the_block():
    from highway_env.road.road import RoadNetwork

    original = RoadNetwork.get_closest_lane_index
    with fast_lane_lookup():
        assert RoadNetwork.get_closest_lane_index is closest_lane_index
    assert RoadNetwork.get_closest_lane_index is original


def _vehicles(env):
    return [(tuple(v.position), v.heading, v.speed, v.lane_index) for v in env.unwrapped.road.vehicles]


@pytest.mark.parametrize("name", ["roundabout", "intersection", "racetrack"])
def test_reference_backend_simulates_highway_envs_own_episodes(name):
    """Same seed, same actions: plain highway-env and drivelab's reference backend (fast lane search,
    highway-env's observation skipped) give bit-identical vehicles and rewards at every step."""
    scenario = de.get_scenario(f"drivelab/{name}-v0")
    sim = HighwayEnvSimulator(scenario, 1, {}, native_observations=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is out of date.*")
        with traffic_rules(scenario.family):
            plain = _make_highway_env(scenario.highway_env_id, {}, {})
    rng = np.random.default_rng(1)
    compared = 0
    for seed in (0, 1, 2):
        sim.reset(np.array([0]), [seed])
        with traffic_rules(scenario.family):
            plain.reset(seed=seed)
        for _ in range(25):
            space = sim.single_action_space
            if isinstance(space, gymnasium.spaces.Discrete):
                action = np.asarray(rng.integers(space.n))
            else:
                action = rng.uniform(-1, 1, space.shape).astype(space.dtype)
            _, rewards, terminated, truncated = sim.step(action[None])
            with traffic_rules(scenario.family):
                _, reward, plain_terminated, plain_truncated, _ = plain.step(action)
            assert _vehicles(sim.envs[0]) == _vehicles(plain)
            assert rewards[0] == reward and terminated[0] == plain_terminated and truncated[0] == plain_truncated
            compared += 1
            if plain_terminated or plain_truncated:
                break
    assert compared > 30
    sim.close()
    plain.close()


def test_native_observations_are_still_observed():
    scenario = de.get_scenario("drivelab/roundabout-v0")
    sim = HighwayEnvSimulator(scenario, 1, {}, native_observations=True)
    sim.reset(np.array([0]), [0])
    obs, *_ = sim.step(np.array([1]))
    assert np.abs(obs).sum() > 0
    camera_only = HighwayEnvSimulator(scenario, 1, {}, native_observations=False)
    camera_only.reset(np.array([0]), [0])
    obs, *_ = camera_only.step(np.array([1]))
    assert not obs.any() and obs.shape == (1, *sim.single_observation_space.shape)
    sim.close()
    camera_only.close()
