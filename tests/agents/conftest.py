"""Tiny training runs shared by the agents tests (trained once per session, a few seconds each)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from drivelab.agents import TrainConfig, TrainResult, load_train_config, train

torch.set_num_threads(1)  # test setup: the shared 2-core machine runs one thread per test process

ENV_ID = "drivelab/highway-fast-v0"
# Small frames keep the CNN cheap on a shared 2-core machine.
SMALL_CAMERA = {"width": 64, "height": 32, "metres_per_pixel": 1.0, "stack": 2}
TINY: dict[str, dict[str, Any]] = {
    "ppo": {"ppo.n_envs": 4, "ppo.n_steps": 16, "ppo.batch_size": 32, "ppo.n_epochs": 2,
            "ppo.net_arch": [32]},
    "dqn": {"dqn.n_envs": 4, "dqn.buffer_size": 400, "dqn.learning_starts": 32, "dqn.batch_size": 16,
            "dqn.net_arch": [32]},
}


def make_tiny_config(algo: str, **overrides: Any) -> TrainConfig:
    """A camera-frame config that trains a few hundred steps in seconds."""
    values = {
        "total_steps": 192, "camera": SMALL_CAMERA, "encoder.name": "fast", "encoder.features_dim": 32,
        "checkpoint_every_steps": 64, "eval_every_steps": 128, "eval_episodes": 2, "eval_envs": 2,
        **TINY[algo], **overrides,
    }
    return load_train_config(ENV_ID, algo, values)


@pytest.fixture(scope="session")
def tiny_config() -> Callable[..., TrainConfig]:
    """``tiny_config(algo, **dotted_overrides)``."""
    return make_tiny_config


@pytest.fixture(scope="session")
def read_jsonl() -> Callable[[Path], list[dict[str, Any]]]:
    """Rows of a JSON-lines file."""
    return lambda path: [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="session")
def ppo_run(tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    return train(make_tiny_config("ppo"), tmp_path_factory.mktemp("runs") / "ppo", progress_bar=False)


@pytest.fixture(scope="session")
def dqn_run(tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    return train(make_tiny_config("dqn"), tmp_path_factory.mktemp("runs") / "dqn", progress_bar=False)
