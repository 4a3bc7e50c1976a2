"""Lane geometry and control laws of the rule-based drivers: against highway-env and closed forms."""

from __future__ import annotations

import numpy as np
import pytest

from drivelab.envs.backends import reference_network
from drivelab.envs.driver_lanes import lane_table
from drivelab.envs.drivers_continuous import steering_for_curvature
from drivelab.envs.drivers_scenarios import yield_config
from drivelab.envs.drivers_yield import SAMPLE_S, YieldingDriver, box_distances, speed_index


@pytest.mark.parametrize("highway_env_id", ["roundabout-v0", "merge-v0", "intersection-v0", "racetrack-v0"])
def test_projection_equals_highway_env_lane_frames(highway_env_id: str) -> None:
    table, network = lane_table(highway_env_id), reference_network(highway_env_id)
    rng = np.random.default_rng(0)
    for k, key in enumerate(table.keys):
        lane = network.get_lane(key)
        s = rng.uniform(0, lane.length, 4)
        r = rng.uniform(-1.5, 1.5, 4)
        points = np.array([lane.position(a, b) for a, b in zip(s, r)])
        ss, rr = table.local(points[:, 0], points[:, 1], np.full(4, k))
        np.testing.assert_allclose(ss, s, atol=1e-6)
        np.testing.assert_allclose(rr, r, atol=1e-6)
        heading, _ = table.heading_curvature(np.full(4, k), s)
        expected = [lane.heading_at(a) for a in s]
        np.testing.assert_allclose(np.cos(heading - expected), 1.0, atol=1e-9)
        # The nearest lane of a point on a lane centre, facing along it, is a lane through that point.
        proj = table.project(points[:, 0] * 0 + [lane.position(a, 0)[0] for a in s],
                             [lane.position(a, 0)[1] for a in s], np.array(expected))
        assert np.all(np.abs(proj.r) < 1e-6)


def test_ring_curvature_and_successors_close_the_loop() -> None:
    table = lane_table("roundabout-v0")
    keys = enumerate(table.keys)
    ring = [k for k, (f, t, i) in keys if table.kind[k] == 1 and i == 0 and len(f) == 2 and len(t) == 2]
    assert ring
    _, curvature = table.heading_curvature(np.array(ring), np.zeros(len(ring)))
    np.testing.assert_allclose(np.abs(curvature), 1.0 / table.radius[ring])  # a circle of radius R: 1/R
    # Driving a whole lap along successors comes back to the same place.
    lane, s = table.ahead(np.array([ring[0]]), np.array([0.0]), 0.0)
    start = table.position(lane, s)
    lap = sum(table.length[k] for k in _loop(table, ring[0]))
    lane, s = table.ahead(lane, s, lap)
    np.testing.assert_allclose(table.position(lane, s), start, atol=1e-6)


def _loop(table, first: int) -> list[int]:
    lanes, k = [first], int(table.successor[first])
    while k != first and k >= 0 and len(lanes) < 50:
        lanes.append(k)
        k = int(table.successor[k])
    assert k == first, "the ring's successors do not close"
    return lanes


def test_bicycle_steering_closed_form() -> None:
    # highway-env's kinematic bicycle: heading rate v sin(beta) / (L/2), beta = atan(tan(delta)/2).
    curvature = np.array([0.0, 0.05, -0.1])
    delta = steering_for_curvature(curvature, 5.0)
    beta = np.arctan(np.tan(delta) / 2)
    np.testing.assert_allclose(np.sin(beta) / 2.5, curvature)


def test_box_distances_and_speed_index_closed_forms() -> None:
    enter, leave = box_distances(np.array([0.0, 5.0, 0.0]), np.array([20.0, 0.0, 20.0]),
                                 np.array([-np.pi / 2, 0.0, 0.0]), (-10.0, 10.0, -10.0, 10.0))
    np.testing.assert_allclose(enter[:2], [10.0, 0.0], atol=1e-9)  # 10 m to the edge; inside: 0
    np.testing.assert_allclose(leave[:2], [30.0, 5.0], atol=1e-9)
    assert np.isinf(enter[2])  # drives past the box
    # highway-env MDPVehicle.speed_to_index on (0, 8, 16): nearest target speed.
    np.testing.assert_array_equal(speed_index(np.array([0.0, 3.9, 4.1, 12.5, 30.0]), np.array([0.0, 8.0, 16.0])),
                                  [0, 0, 1, 2, 2])


def test_box_conflict_times_the_ego_out_of_the_zone_beyond_the_horizon() -> None:
    """A plan that has not left the intersection's zone by the horizon's end leaves it at its last
    speed: a crossing vehicle due long after that does not stop the ego, one due before it does."""
    config = yield_config("drivelab/intersection-v0")  # horizon 4 s
    driver = YieldingDriver(config, lane_table("intersection-v0"), period_s=1.0)
    distance = 5.0 * driver.times[None, :]  # (1, K): 5 m/s, 20 m by the horizon's end
    ego_box = (np.array([10.0]), np.array([50.0]))  # occupies the zone from 10 m to 50 m: 2 s to 10 s
    relevant = np.array([[True]])
    enter_step = round(2.0 / SAMPLE_S) - 1  # first sample at or past 10 m
    for t_in, conflict in ((30.0, False), (8.0, True), (0.5, False)):
        other_box = (np.array([[t_in]]), np.array([[t_in + 1.0]]))  # (B, V) occupancy [s]
        first = driver._box_conflict(distance, ego_box, other_box, relevant)
        assert first[0] == (enter_step if conflict else driver.steps), t_in
