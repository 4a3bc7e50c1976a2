"""PPO learns from camera frames on a task whose answer is clear: on an empty road, drive fast."""

from __future__ import annotations

from pathlib import Path

import drivelab.envs as de
from drivelab.agents import RandomPolicy, evaluate, load_policy, load_train_config, train

ENV_ID = "drivelab/highway-fast-v0"
# No traffic and a reward for speed only: FASTER (then IDLE at 30 m/s) is optimal, from any frame.
EMPTY_ROAD = {"vehicles_count": 0, "duration": 10, "high_speed_reward": 1.0, "right_lane_reward": 0.0}
CAMERA = {"width": 64, "height": 32, "metres_per_pixel": 1.0, "stack": 2}


def test_ppo_beats_random_on_an_empty_road(tmp_path: Path) -> None:
    config = load_train_config(ENV_ID, "ppo", {
        "total_steps": 1536, "env_config": EMPTY_ROAD, "camera": CAMERA, "eval_every_steps": 0,
        "checkpoint_every_steps": 1536, "encoder.name": "fast", "encoder.features_dim": 32,
        "ppo.net_arch": [32], "ppo.n_envs": 16, "ppo.n_steps": 16, "ppo.batch_size": 64,
        "ppo.n_epochs": 4, "ppo.learning_rate": 0.001, "ppo.ent_coef": 0.0,
    })
    result = train(config, tmp_path / "run", progress_bar=False)
    def run(policy):
        return evaluate(policy, ENV_ID, seeds=range(1_000_000, 1_000_016), num_envs=8, make_env=lambda num_envs: (
            de.make_vec(ENV_ID, num_envs=num_envs, observation="camera", config=EMPTY_ROAD, camera=CAMERA)))

    trained, random = run(load_policy(result.final_export)), run(RandomPolicy(seed=0))
    # Return = sum over 10 steps of (speed - 20) / 10 clipped to [0, 1]: the best policy gets about
    # 9.96 (the first step starts below 30 m/s); random actions (speed random walk) about 7.75.
    assert trained.mean_return > random.mean_return + 1.5, (trained.summary(), random.summary())
    assert trained.mean_return > 9.5
    assert trained.crash_rate == random.crash_rate == 0.0  # nothing to crash into
