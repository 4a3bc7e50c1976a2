"""EnvPool split over worker processes (``num_workers`` on the envpool backend): the same results
as one process, exactly, and it fails loudly."""

import os
import signal

import numpy as np
import pytest

import drivelab.envs as de
from drivelab.envs.errors import WorkerError
from drivelab.envs.sharded import ShardedVectorEnv, merge_infos
from tests.envs.test_workers import assert_same

pytest.importorskip("envpool")


def rollout(env_id: str, num_workers: int, observation: str, steps: int, **kwargs) -> tuple[list, type]:
    """Reset, random steps, and the state readers once midway, as one list of results."""
    env = de.make_vec(env_id, num_envs=5, backend="envpool", observation=observation, seed=3,
                      num_workers=num_workers, **kwargs)
    try:
        rng = np.random.default_rng(0)
        space = env.single_action_space
        record = [env.reset()]
        for t in range(steps):
            if hasattr(space, "n"):
                actions = rng.integers(0, space.n, 5)
            else:
                actions = rng.uniform(-1, 1, (5, *space.shape)).astype(np.float32)
            record.append(env.step(actions))
            if t == steps // 2:
                record += [env.vehicle_states(), env.road_objects(), env.ego_step_info()]
        record.append(env.reset(seed=[9, 8, 7, 6, 5]))
        record.append(env.step(np.zeros((5, *space.shape), space.dtype)))
        return record, type(env)
    finally:
        env.close()


@pytest.mark.parametrize("env_id, observation, kwargs", [
    # 30-step episodes and crashes: autoresets, final_obs and ground truth merged over workers.
    ("drivelab/highway-fast-v0", "camera", {"camera": {"ground_truth": True, "width": 64, "height": 32}}),
    # Dict observations, continuous actions, road objects (walls, the goal).
    ("drivelab/parking-v0", "native", {}),
])
def test_workers_match_one_process(env_id, observation, kwargs):
    steps = 35
    reference, kind = rollout(env_id, 0, observation, steps, **kwargs)
    assert kind is de.DrivingVectorEnv
    candidate, kind = rollout(env_id, 2, observation, steps, **kwargs)
    assert kind is ShardedVectorEnv
    assert_same(reference, candidate)
    if env_id == "drivelab/highway-fast-v0":  # the run did cover autoresets
        assert any("final_obs" in r[-1] for r in candidate[1:] if isinstance(r, tuple) and len(r) == 5)


def test_merge_infos_fills_what_only_some_blocks_report():
    first = {"final_obs": np.array([None, np.ones(2)], object), "_final_obs": np.array([False, True]),
             "driving": {"speed": np.array([0.0, 3.0]), "_speed": np.array([False, True])},
             "ground_truth": [{"boxes": 1}, {"boxes": 2}]}
    second = {"ground_truth": [{"boxes": 3}]}
    merged = merge_infos([first, second], [2, 1])
    assert merged["final_obs"].dtype == object and merged["final_obs"][2] is None
    np.testing.assert_array_equal(merged["final_obs"][1], np.ones(2))
    np.testing.assert_array_equal(merged["_final_obs"], [False, True, False])
    np.testing.assert_array_equal(merged["driving"]["speed"], [0.0, 3.0, 0.0])
    assert [g["boxes"] for g in merged["ground_truth"]] == [1, 2, 3]


def test_one_process_unless_asked_and_a_dead_worker_is_named():
    one = de.make_vec("drivelab/highway-fast-v0", num_envs=4, backend="envpool")  # num_workers None
    assert type(one) is de.DrivingVectorEnv
    one.close()
    env = de.make_vec("drivelab/highway-fast-v0", num_envs=4, backend="envpool", observation="camera",
                      num_workers=2)
    frames = f"/dev/shm/{env._shm.name}"  # noqa: SLF001 - the frame buffer must not outlive the env
    assert os.path.exists(frames) and env.num_workers == 2 and env.threads_per_worker >= 1
    env.reset(seed=0)
    processes = env.processes
    os.kill(processes[1].pid, signal.SIGKILL)
    with pytest.raises(WorkerError, match=r"worker 1 \(pid \d+\) of drivelab/highway-fast-v0 was killed by signal 9"):
        env.step(np.zeros(4, np.int64))
    with pytest.raises(WorkerError, match="worker 1"):  # broken for good, not hanging
        env.step(np.zeros(4, np.int64))
    with pytest.raises(de.ActionError, match="expects a batch of 4 discrete actions"):
        env.step(np.zeros(3, np.int64))  # bad input is refused before any worker is asked
    env.close()
    env.close()
    assert not os.path.exists(frames)
    assert all(p.returncode is not None for p in processes)
