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


# The tables of a schema-1 board (before entries were owned by their identity), for migration tests.
V1_TABLES = """
CREATE TABLE entries (
    id INTEGER PRIMARY KEY, env_id TEXT NOT NULL, protocol_version TEXT NOT NULL,
    policy_sha256 TEXT NOT NULL, submitter TEXT NOT NULL, agent_name TEXT NOT NULL,
    algorithm TEXT NOT NULL, backend TEXT NOT NULL, config_hash TEXT NOT NULL,
    config_json TEXT NOT NULL, package_versions_json TEXT NOT NULL, git_commit TEXT NOT NULL,
    training_steps INTEGER, training_wall_s REAL, hardware TEXT NOT NULL,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
    UNIQUE (policy_sha256, protocol_version, env_id)
);
CREATE TABLE runs (
    id INTEGER PRIMARY KEY, entry_id INTEGER NOT NULL REFERENCES entries(id) ON DELETE CASCADE,
    run_index INTEGER NOT NULL, policy_sha256 TEXT NOT NULL, policy_label TEXT NOT NULL,
    training_seed INTEGER, UNIQUE (entry_id, run_index)
);
CREATE TABLE episodes (
    id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    episode_index INTEGER NOT NULL, seed INTEGER NOT NULL, episode_return REAL,
    length INTEGER NOT NULL, crashed INTEGER NOT NULL, success INTEGER NOT NULL, mean_speed REAL,
    distance_m REAL, lane_changes INTEGER NOT NULL, right_lane_share REAL, on_road_share REAL,
    max_abs_jerk REAL, failed INTEGER NOT NULL, video_path TEXT, UNIQUE (run_id, episode_index)
)
"""
