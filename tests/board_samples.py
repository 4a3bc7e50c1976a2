"""Entries and episodes for the leaderboard tests (the same numbers whichever database stores them)."""

from __future__ import annotations

import math

import numpy as np

from drivelab.agents.evaluation import EpisodeRecord
from drivelab.benchmarks.leaderboard.store import EntryMetadata, RunRecord

ENV_ID = "drivelab/highway-fast-v0"


def make_episodes(count: int, offset: float = 0.0, first_seed: int = 10_000_000) -> list[EpisodeRecord]:
    """``count`` episodes with numpy scalars and a NaN among them (stored as NULL)."""
    return [
        EpisodeRecord(index=i, seed=first_seed + i, episode_return=offset + 0.5 * i, length=10 + i,
                      crashed=i % 3 == 0, success=i % 3 != 0, mean_speed=np.float64(21.5),
                      distance_m=200.0 + i, lane_changes=np.int64(i % 2), right_lane_share=0.25,
                      on_road_share=1.0, max_abs_jerk=math.nan if i == 1 else 4.0)  # fmt: skip
        for i in range(count)
    ]


def make_metadata(sha: str = "a" * 64, env_id: str = ENV_ID, **changes) -> EntryMetadata:
    """alice's ppo-cnn entry, with ``changes``."""
    values = dict(submitter="alice", agent_name="ppo-cnn", algorithm="ppo", env_id=env_id,
                  protocol_version="drivelab-eval-v1", policy_sha256=sha, backend="highway-env",
                  config={"learning_rate": 3e-4, "n_steps": 128},
                  package_versions={"numpy": np.__version__}, git_commit="abc123",
                  training_steps=5_000_000_000, training_wall_s=321.5, hardware="x86_64 2 CPUs",
                  protocol_episodes=100)  # fmt: skip
    values.update(changes)
    return EntryMetadata(**values)


def run(count: int, sha: str = "a" * 64, offset: float = 0.0, seed: int | None = 7) -> RunRecord:
    """One run of ``count`` episodes."""
    return RunRecord(sha, "policy.safetensors", make_episodes(count, offset), seed)
