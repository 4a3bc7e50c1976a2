"""Driving metrics against closed forms under simple fixed policies."""

import numpy as np
import pytest

import drivelab.envs as de
from drivelab.envs.metrics import EpisodeTracker
from drivelab.envs.states import VehicleBatch


def collect(backend, action, num_envs=16, seed=0, config=None):
    env = de.make_vec("drivelab/highway-fast-v0", num_envs=num_envs, backend=backend, seed=seed, config=config)
    env.reset()
    episodes = []
    for _ in range(40):
        _, _, _, _, infos = env.step(np.full(num_envs, action))
        if "_driving" in infos:
            for i in np.flatnonzero(infos["_driving"]):
                episodes.append({k: v[i] for k, v in infos["driving"].items()})
    return episodes, env.dt


@pytest.mark.parametrize("backend", ["envpool", "highway-env"])
def test_idle_on_an_empty_road_is_constant_speed(backend):
    # no other traffic: IDLE keeps 25 m/s, never changes lane, survives the 30 s limit
    episodes, dt = collect(backend, 1, num_envs=4, config={"vehicles_count": 0})
    assert episodes
    for e in episodes:
        assert not e["crashed"] and e["success"]
        assert e["length"] == 30
        assert e["mean_speed"] == pytest.approx(25.0, abs=1e-6)
        assert e["distance_m"] == pytest.approx(25.0 * dt * e["length"], rel=1e-6)
        assert e["lane_changes"] == 0
        assert e["max_abs_jerk"] == pytest.approx(0.0, abs=1e-6)
        assert e["right_lane_share"] in (0.0, 1.0)
        assert e["on_road_share"] == 1.0


def test_faster_accelerates_then_holds():
    episodes, _ = collect("envpool", 3, num_envs=4, config={"vehicles_count": 0})
    for e in episodes:
        assert 25.0 < e["mean_speed"] <= 30.0 + 1e-6
        assert e["max_abs_jerk"] > 0.0


def test_tracker_hand_computed_values():
    tracker = EpisodeTracker(num_envs=1, dt=0.5)

    def states(x, y, speed, lane, lanes=3):
        batch = VehicleBatch.empty(1, 1)
        batch.x[0, 0], batch.y[0, 0], batch.speed[0, 0], batch.lane_index[0, 0] = x, y, speed, lane
        batch.lanes_count[:] = lanes
        return batch

    tracker.start(np.array([0]), [42], states(0.0, 0.0, 10.0, 1))
    tracker.update(np.array([0.5]), states(3.0, 4.0, 12.0, 2))  # 5 m, lane change, a = 4
    tracker.update(np.array([0.25]), states(6.0, 8.0, 12.0, 2))  # 5 m, a = 0 -> jerk 8
    result = tracker.finish(np.array([0]), np.array([False]), np.array([True]))
    assert result["return"][0] == pytest.approx(0.75)
    assert result["length"][0] == 2
    assert result["distance_m"][0] == pytest.approx(10.0)
    assert result["mean_speed"][0] == pytest.approx(34.0 / 3)
    assert result["lane_changes"][0] == 1
    assert result["right_lane_share"][0] == pytest.approx(2 / 3)
    assert result["max_abs_jerk"][0] == pytest.approx(8.0)
    assert result["seed"][0] == 42


def _zigzag_until_done(backend, seed, duration):
    """Alternate FASTER and LANE_LEFT (crashes within a few steps); returns the last step's facts."""
    env = de.make_vec("drivelab/highway-fast-v0", num_envs=1, backend=backend, seed=seed, config={"duration": duration})
    env.reset()
    for step in range(1, 200):
        _, _, terminated, truncated, infos = env.step(np.array([3 if step % 2 else 0]))
        if terminated[0] or truncated[0]:
            env.close()
            driving = {k: v[0] for k, v in infos["driving"].items()}
            return step, bool(terminated[0]), bool(truncated[0]), driving
    raise AssertionError("the episode never ended")


@pytest.mark.parametrize("backend", ["envpool", "highway-env"])
def test_a_crash_on_the_time_limit_step_terminates_and_is_no_success(backend):
    # Find the step the ego crashes at, then set the time limit to exactly that step
    # (highway-fast: 1 policy step per second), so the crash and the time limit coincide.
    crash_step, terminated, _, driving = _zigzag_until_done(backend, seed=0, duration=30)
    assert terminated and driving["crashed"] and crash_step < 30
    step, terminated, truncated, driving = _zigzag_until_done(backend, seed=0, duration=crash_step)
    assert step == crash_step
    assert driving["crashed"]
    assert terminated and not truncated  # EnvPool itself reports truncated=True here
    assert not driving["success"]
