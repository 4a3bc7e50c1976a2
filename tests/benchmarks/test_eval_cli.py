"""`drivelab eval`: submit and re-submit through the CLI, clear errors, a trained export end to end.

Moved from the old tests/benchmarks/test_protocol.py (the eval CLI half); the protocol and the
runner are tested in tests/agents.
"""

from __future__ import annotations

import hashlib

import pytest
import torch
from fakes import FakeDrivingVecEnv

import drivelab.agents as agents
import drivelab.envs as de
from drivelab.agents import IdlePolicy, PolicyLoadError, evaluate
from drivelab.benchmarks import cli
from drivelab.benchmarks.leaderboard.store import CorruptDatabaseError, Leaderboard
from drivelab.core.errors import ConfigError, DrivelabError
from drivelab.core.files import sha256_file

ENV_ID = "drivelab/highway-fast-v0"


def _run_cli(argv: list[str]) -> int:
    args = cli.build_parser(argv).parse_args(argv)
    return args.func(args)


@pytest.fixture
def fake_envs(monkeypatch):
    monkeypatch.setattr(de, "make_vec", lambda env_id, num_envs, **kwargs: FakeDrivingVecEnv(num_envs))


def test_eval_cli_submits_and_resubmits_one_entry(tmp_path, fake_envs, capsys):
    db = tmp_path / "board.db"
    argv = ["eval", "--policy", "baseline:idle", "--env", ENV_ID, "--episodes", "12",
            "--submit", "--name", "idle", "--db", str(db), "--record-failures", str(tmp_path / "f"),
            "--max-failure-videos", "0"]  # fmt: skip
    assert _run_cli(argv) == 0
    assert "submitted new entry 1" in capsys.readouterr().out
    assert _run_cli(argv) == 0
    out = capsys.readouterr().out
    assert "mean return" in out and "updated entry 1" in out and "partial entry" in out
    with Leaderboard(db) as board:
        assert board.row_counts() == {"entries": 1, "runs": 1, "episodes": 12}
        (entry,) = board.entries()
    assert entry.metadata.backend == "highway-env" and entry.metadata.agent_name == "idle"
    assert entry.metadata.policy_sha256 == hashlib.sha256(b"baseline:idle").hexdigest()
    assert "numpy" in entry.metadata.package_versions
    expected = evaluate(IdlePolicy(), ENV_ID, episodes=12, make_env=FakeDrivingVecEnv)
    assert entry.runs[0].episodes == expected.episodes


def test_eval_cli_bad_input_is_one_clear_error(tmp_path, fake_envs):
    db = tmp_path / "board.db"
    with pytest.raises(PolicyLoadError, match="unknown baseline"):
        _run_cli(["eval", "--policy", "baseline:nope", "--env", ENV_ID, "--submit", "--name", "x",
                  "--db", str(db)])  # fmt: skip
    with pytest.raises(ConfigError, match="--name"):
        _run_cli(["eval", "--policy", "baseline:idle", "--env", ENV_ID, "--submit", "--db", str(db)])
    with pytest.raises(DrivelabError, match="does not exist"):
        _run_cli(["eval", "--policy", str(tmp_path / "nope.pt"), "--env", ENV_ID])
    assert not db.exists()  # nothing half-written: not even an empty board
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(CorruptDatabaseError, match="untouched"):
        _run_cli(["eval", "--policy", "baseline:idle", "--env", ENV_ID, "--submit", "--name", "x",
                  "--db", str(corrupt)])  # fmt: skip
    assert corrupt.read_bytes() == b"\x00garbage" * 100


# --- A trained export end to end ------------------------------------------------------------

TINY_PPO = {
    "total_steps": 64, "camera": {"width": 64, "height": 32, "metres_per_pixel": 1.0, "stack": 2},
    "encoder.name": "fast", "encoder.features_dim": 32, "checkpoint_every_steps": 64,
    "eval_every_steps": 0, "ppo.n_envs": 4, "ppo.n_steps": 16, "ppo.batch_size": 32,
    "ppo.n_epochs": 1, "ppo.net_arch": [32],
}  # fmt: skip


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        config = agents.load_train_config(ENV_ID, "ppo", TINY_PPO)
        yield agents.train(config, tmp_path_factory.mktemp("runs") / "ppo", progress_bar=False).run_dir
    finally:
        torch.set_num_threads(threads)


def test_trained_export_evaluates_identically_and_resubmits(tiny_run, tmp_path):
    db = tmp_path / "board.db"
    argv = ["eval", "--policy", str(tiny_run / "final"), "--env", ENV_ID, "--episodes", "4",
            "--backend", "envpool", "--submit", "--name", "tiny", "--db", str(db)]  # fmt: skip
    assert cli.main([*argv, "--num-envs", "2"]) == 0
    with Leaderboard(db) as board:
        (first,) = board.entries()
    assert cli.main([*argv, "--num-envs", "4"]) == 0
    with Leaderboard(db) as board:
        assert board.row_counts() == {"entries": 1, "runs": 1, "episodes": 4}
        (second,) = board.entries()
    assert second.runs[0].episodes == first.runs[0].episodes
    weights = tiny_run / "final" / "policy.safetensors"
    assert first.metadata.policy_sha256 == sha256_file(weights)
    assert (first.metadata.algorithm, first.metadata.training_steps) == ("ppo", 64)
    assert first.metadata.backend == "envpool"
    assert first.runs[0].training_seed == 0  # from the run's config.json
    assert first.metadata.config["training"][0]["total_steps"] == 64


def test_a_trained_policy_and_a_baseline_are_not_runs_of_one_agent(tiny_run, tmp_path, capsys):
    argv = ["eval", "--policy", str(tiny_run / "final"), "baseline:idle", "--env", ENV_ID, "--episodes", "2",
            "--submit", "--name", "mixed", "--db", str(tmp_path / "board.db")]  # fmt: skip
    assert cli.main(argv) == 2
    assert "runs of one entry must share algorithm" in capsys.readouterr().err
    assert not (tmp_path / "board.db").exists()


def test_sb3_checkpoint_needs_trust_pickle(tiny_run, capsys):
    (checkpoint,) = (tiny_run / "checkpoints").glob("*/model.zip")
    argv = ["eval", "--policy", str(checkpoint), "--env", ENV_ID, "--episodes", "2", "--backend",
            "envpool"]  # fmt: skip
    assert cli.main(argv) == 2
    assert "needs unpickling" in capsys.readouterr().err
    assert cli.main([*argv, "--trust-pickle"]) == 0
