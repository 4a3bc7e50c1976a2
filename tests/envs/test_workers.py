"""The worker-process highway-env backend: identical to one process, and it fails loudly."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import gymnasium
import numpy as np
import pytest

import drivelab.envs as de
from drivelab.envs import workers
from drivelab.envs.backends import HighwayEnvSimulator
from drivelab.envs.errors import WorkerError
from drivelab.envs.workers import WorkerSimulator, resolve_num_workers

NUM_ENVS = 4
# Short episodes, so every run sees time-limit autoresets (two-way ends in crashes soon enough).
CONFIGS = {"drivelab/exit-v0": {"duration": 3, "vehicles_count": 10}, "drivelab/two-way-v0": {}}
STEPS = 7


def assert_same(reference, candidate, where="") -> None:
    """Exact equality of nested results: arrays, dicts, tuples, VehicleBatch, scalars."""
    if isinstance(reference, de.VehicleBatch):
        assert isinstance(candidate, de.VehicleBatch), where
        assert_same(vars(reference), vars(candidate), where)
    elif isinstance(reference, dict):
        assert set(reference) == set(candidate), where
        for key in reference:
            assert_same(reference[key], candidate[key], f"{where}/{key}")
    elif isinstance(reference, (tuple, list)):
        assert len(reference) == len(candidate), where
        for k, (a, b) in enumerate(zip(reference, candidate)):
            assert_same(a, b, f"{where}[{k}]")
    elif isinstance(reference, np.ndarray) and reference.dtype == object:
        assert candidate.shape == reference.shape, where
        for k, (a, b) in enumerate(zip(reference, candidate)):
            assert_same(a, b, f"{where}[{k}]")
    elif isinstance(reference, np.ndarray):
        assert candidate.dtype == reference.dtype and candidate.shape == reference.shape, where
        np.testing.assert_array_equal(candidate, reference, err_msg=where)
    else:
        assert candidate == reference, where


@pytest.fixture
def pristine_idm(monkeypatch):
    """highway-env's IDM parameters as imported, for the in-process reference run.

    highway-env's intersection-v0 rewrites ``IDMVehicle``'s class parameters for the whole
    process (intersection_env.py: DISTANCE_WANTED = 7, COMFORT_ACC_MAX = 6, COMFORT_ACC_MIN = -3),
    so an intersection episode run earlier in this process changes every later scenario's traffic.
    Each worker is a fresh process; the reference must start from the same parameters.
    """
    from highway_env.vehicle.behavior import IDMVehicle
    from highway_env.vehicle.controller import ControlledVehicle

    monkeypatch.setattr(IDMVehicle, "DISTANCE_WANTED", 5.0 + ControlledVehicle.LENGTH)
    monkeypatch.setattr(IDMVehicle, "COMFORT_ACC_MAX", 3.0)
    monkeypatch.setattr(IDMVehicle, "COMFORT_ACC_MIN", -5.0)


def run_episodes(env_id: str, observation: str, num_workers: int) -> tuple[list, str]:
    """Everything a fixed action sequence yields: resets, steps, autoresets, a seeded reset."""
    env = de.make_vec(env_id, num_envs=NUM_ENVS, backend="highway-env", observation=observation,
                      config=CONFIGS[env_id], seed=5, num_workers=num_workers)
    try:
        kind = type(env.sim).__name__
        record = [env.reset(), env.vehicle_states()]
        for t in range(STEPS):
            actions = (np.arange(NUM_ENVS) + t) % env.single_action_space.n  # each env its own sequence
            record.append(env.step(actions))
            record.append((env.ego_step_info(), env.tracker.ret.copy()))
            if t % 2:  # every vehicle, read after the step's autoresets (not prefetched)
                record.append(env.vehicle_states())
        record.append(env.reset(seed=11))  # seeded reset after autoresets
        record.append(env.step(np.full(NUM_ENVS, 1)))
        return record, kind
    finally:
        env.close()


@pytest.mark.usefixtures("pristine_idm")
@pytest.mark.parametrize("observation", ["native", "camera"])
@pytest.mark.parametrize("env_id", sorted(CONFIGS))
def test_workers_match_one_process(env_id, observation):
    reference, kind = run_episodes(env_id, observation, num_workers=0)
    assert kind == "HighwayEnvSimulator"
    candidate, kind = run_episodes(env_id, observation, num_workers=2)
    assert kind == "WorkerSimulator"
    steps = [r for r in reference if isinstance(r, tuple) and len(r) == 5]
    autoresets = sum(int(r[4].get("_driving", np.zeros(1, bool)).sum()) for r in steps)
    assert autoresets >= 2, "the run should cover autoresets"
    assert_same(reference, candidate)


@pytest.mark.usefixtures("pristine_idm")
def test_dict_observations_continuous_actions_and_a_clean_close():
    # lane-keeping: Dict observations, Box actions, and num_workers through gymnasium's entry point.
    def run(num_workers):
        env = gymnasium.make_vec("drivelab/lane-keeping-v0", num_envs=3, backend="highway-env", num_workers=num_workers)
        try:
            assert type(env.sim) is (WorkerSimulator if num_workers else HighwayEnvSimulator)
            processes = list(getattr(env.sim, "processes", []))
            record = [env.reset(seed=[3, 1, 2])]
            for t in range(4):
                record.append(env.step(np.full((3, 1), 0.3 * (t - 1), np.float32)))
            return record, env.sim, processes
        finally:
            env.close()

    reference, _, _ = run(0)
    candidate, sim, processes = run(2)
    assert_same(reference, candidate)
    assert sim.num_workers == 2 and [p.returncode for p in processes] == [0, 0]  # exited on close
    sim.close()  # again: nothing left to do
    with pytest.raises(WorkerError, match="closed"):
        sim.step(np.zeros((3, 1), np.float32))


def test_a_highway_env_error_in_a_worker_reads_as_in_one_process():
    def message(num_workers):
        with pytest.raises(de.ConfigError) as error:
            env = de.make_vec("drivelab/exit-v0", num_envs=2, backend="highway-env", config={"lanes_count": 0},
                              num_workers=num_workers)
            try:
                env.reset(seed=0)
            finally:
                env.close()
        return str(error.value)

    assert message(2) == message(0)


def test_num_workers_default_and_validation(monkeypatch):
    monkeypatch.setattr(workers, "usable_cpus", lambda: 8)
    exit_, fast = de.get_scenario("drivelab/exit-v0"), de.get_scenario("drivelab/highway-fast-v0")
    assert resolve_num_workers(None, exit_, 16, "auto") == 8  # one per core
    assert resolve_num_workers(None, exit_, 3, "highway-env") == 3  # at most one per env
    assert resolve_num_workers(None, exit_, 1, "auto") == 0  # one env: this process
    assert resolve_num_workers(None, exit_, 16, "auto", render_mode="rgb_array") == 0
    assert resolve_num_workers(None, fast, 16, "highway-env") == 0  # the reference runs stay here
    assert resolve_num_workers(None, fast, 16, "auto") == 8  # auto falling back to highway-env
    assert resolve_num_workers(12, exit_, 4, "auto") == 4  # clamped to num_envs
    assert resolve_num_workers(1, exit_, 4, "auto") == 0
    assert resolve_num_workers(np.int64(2), exit_, 4, "auto") == 2
    monkeypatch.setattr(workers, "usable_cpus", lambda: 128)
    assert resolve_num_workers(None, exit_, 256, "auto") == 16  # memory: ~200 MB per worker
    assert resolve_num_workers(64, exit_, 256, "auto") == 64  # unless asked for
    monkeypatch.setattr(workers, "usable_cpus", lambda: 1)
    assert resolve_num_workers(None, exit_, 16, "auto") == 0  # one core: no gain
    for bad in (-1, 65, 1.5, True, "2"):
        with pytest.raises(de.ConfigError, match="num_workers must be an integer in \\[0, 64\\]"):
            de.make_vec("drivelab/exit-v0", num_envs=2, num_workers=bad)
    with pytest.raises(de.ConfigError, match="render_mode .* num_workers=0"):
        de.make_vec("drivelab/exit-v0", num_envs=2, num_workers=2, render_mode="rgb_array")


def small_simulator() -> WorkerSimulator:
    sim = WorkerSimulator(de.get_scenario("drivelab/lane-keeping-v0"), 2, {}, num_workers=2)
    sim.reset(np.arange(2), [0, 1])
    return sim


def test_a_dead_worker_is_named_and_close_is_idempotent():
    sim = small_simulator()
    processes = list(sim.processes)
    os.kill(processes[1].pid, signal.SIGKILL)
    actions = np.zeros((2, 1), np.float32)
    with pytest.raises(WorkerError, match=r"worker 1 \(pid \d+\) of drivelab/lane-keeping-v0 was killed by signal 9"):
        sim.step(actions)
    with pytest.raises(WorkerError, match="worker 1"):  # broken for good, not hanging
        sim.step(actions)
    sim.close()
    sim.close()
    assert all(p.returncode is not None for p in processes)


def test_a_stuck_worker_times_out():
    sim = small_simulator()
    sim.timeout_s = 2.0
    process = sim.processes[0]
    os.kill(process.pid, signal.SIGSTOP)
    try:
        with pytest.raises(WorkerError, match=r"worker 0 \(pid \d+\) .* did not answer step within 2 s"):
            sim.step(np.zeros((2, 1), np.float32))
        assert process.returncode is not None  # killed, not left stopped
    finally:
        if process.returncode is None:
            os.kill(process.pid, signal.SIGKILL)
        sim.close()


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")  # exited, not yet reaped
    except FileNotFoundError:
        return True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_exit_when_their_parent_dies():
    script = textwrap.dedent("""
        import os, signal, numpy as np
        import drivelab.envs as de
        from drivelab.envs.workers import WorkerSimulator
        sim = WorkerSimulator(de.get_scenario("drivelab/lane-keeping-v0"), 2, {}, num_workers=2)
        print(*[p.pid for p in sim.processes], flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == -signal.SIGKILL, done.stderr
    pids = [int(p) for p in done.stdout.split()]
    assert len(pids) == 2
    deadline = time.monotonic() + 30
    while not all(_gone(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert all(_gone(p) for p in pids)
