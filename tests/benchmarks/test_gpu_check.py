"""`drivelab bench gpu`: the one-line refusal without CUDA, and the parity check (CPU against CPU here)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from drivelab.benchmarks.cli import main

ENV_ID = "drivelab/highway-fast-v0"
TINY = {"camera": {"width": 64, "height": 32, "metres_per_pixel": 1.0, "stack": 2}, "encoder.name": "fast",
        "encoder.features_dim": 32, "ppo.n_envs": 2, "ppo.n_steps": 16, "ppo.batch_size": 32,
        "ppo.net_arch": [32]}


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: bench gpu would run")
def test_without_cuda_one_line_and_exit_2_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "gpu.json"
    # Even bad arguments come second: without a GPU nothing else is worth checking.
    assert main(["bench", "gpu", "--out", str(out), "--steps", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("drivelab: error: no CUDA device: bench gpu needs a GPU machine")
    assert not out.exists() and not out.with_suffix(".md").exists()


def export_untrained(folder: Path, seed: int) -> Path:
    from drivelab.agents import export_policy, load_train_config
    from drivelab.agents.train import build_model, make_training_env

    config = load_train_config(ENV_ID, "ppo", {**TINY, "seed": seed, "device": "cpu"})
    env = make_training_env(config, seed)
    try:
        export_policy(build_model(config, env, "cpu"), config, folder)
    finally:
        env.close()
    return folder


def test_parity_check_compares_two_loaded_policies(tmp_path: Path) -> None:
    from drivelab.agents import env_kwargs_from_spec, load_policy
    from drivelab.benchmarks.bench.gpu import collect_observations, compare_actions

    export = export_untrained(tmp_path / "a", seed=0)
    first, again = load_policy(export, ENV_ID), load_policy(export, ENV_ID)
    observations = collect_observations(first, ENV_ID, env_kwargs_from_spec(first.source.spec), num_envs=4,
                                        steps=6, seed=7)
    assert len(observations) == 6 and observations[0].shape == (4, 2, 32, 64)
    assert not all((o == observations[0]).all() for o in observations[1:])  # the policy drove: frames change
    same = compare_actions(first, again, observations)
    assert same == {"observations": 24, "identical": 24, "max_abs_diff": 0.0, "all_identical": True}
    # Another network disagrees somewhere: the check can fail.
    other = load_policy(export_untrained(tmp_path / "b", seed=1), ENV_ID)
    actions = [first.act(o) for o in observations], [other.act(o) for o in observations]
    differing = sum(int((a != b).sum()) for a, b in zip(*actions))
    result = compare_actions(first, other, observations)
    assert result["identical"] == 24 - differing and result["all_identical"] is (differing == 0)
    assert differing > 0 and result["max_abs_diff"] >= 1.0  # discrete actions differ by whole steps
