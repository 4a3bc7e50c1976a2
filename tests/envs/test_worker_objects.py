"""Road objects through the worker-process backend: the same objects, and frames, as one process."""

import numpy as np
import pytest

import drivelab.envs as de
from drivelab.envs.states import GOAL, OBSTACLE

# parking: walls and a goal spot, a new goal every episode (short episodes: autoresets happen);
# merge: the obstacle at the end of the merging lane.
CASES = [("drivelab/parking-v0", {"duration": 1}, GOAL), ("drivelab/merge-v0", {}, OBSTACLE)]
STEPS = 8


def _rollout(env_id, config, num_workers):
    env = de.make_vec(env_id, num_envs=4, backend="highway-env", observation="camera", config=config,
                      camera={"stack": 1, "width": 64, "height": 64}, seed=11, num_workers=num_workers)
    try:
        assert (env.sim.num_workers == 2) if num_workers else not hasattr(env.sim, "num_workers")
        obs, _ = env.reset()
        frames, objects, resets = [obs], [env.sim.objects(np.arange(4))], 0
        rng = np.random.default_rng(0)
        space = env.single_action_space
        for _ in range(STEPS):
            actions = (rng.integers(0, space.n, 4) if hasattr(space, "n")
                       else rng.uniform(space.low, space.high, (4, *space.shape)).astype(space.dtype))
            obs, _, terminated, truncated, _ = env.step(actions)
            resets += int(np.sum(terminated | truncated))
            frames.append(obs)
            objects.append(env.sim.objects(np.arange(4)))
        return frames, objects, resets
    finally:
        env.close()


@pytest.mark.parametrize("env_id, config, kind", CASES)
def test_workers_read_and_draw_the_same_road_objects(env_id, config, kind):
    frames, objects, resets = _rollout(env_id, config, num_workers=2)
    reference_frames, reference_objects, _ = _rollout(env_id, config, num_workers=0)
    assert objects[0].present.any(axis=1).all(), "every env has road objects"
    assert (objects[0].class_id[objects[0].present] == kind).any()
    if env_id.startswith("drivelab/parking"):
        assert resets > 0, "episodes ended, so new goals were read from the reset replies"
        goals = [(o.x[o.class_id == GOAL], o.y[o.class_id == GOAL]) for o in objects]
        assert any(not np.array_equal(goals[0][0], g[0]) for g in goals[1:]), "a new episode moved the goal"
    for step, (got, want) in enumerate(zip(objects, reference_objects)):
        for name, array in vars(want).items():
            np.testing.assert_array_equal(getattr(got, name), array, err_msg=f"step {step}: {name}")
    for step, (got, want) in enumerate(zip(frames, reference_frames)):
        np.testing.assert_array_equal(got, want, err_msg=f"frame of step {step}")
