"""Evaluation protocol, evaluation runner (on a fake vector env), and refusal of pickles."""

from __future__ import annotations

import argparse
import hashlib
import json
import pickle
import zipfile

import gymnasium as gym
import numpy as np
import pytest
import torch

import drivelab.agents as agents
import drivelab.envs as de
from drivelab.benchmarks import cli, cli_eval, protocol
from drivelab.benchmarks.leaderboard import CorruptDatabaseError, Leaderboard
from drivelab.benchmarks.protocol import (
    EvaluationResult,
    PolicyLoadError,
    ProtocolError,
    UnsafePolicyFileError,
    evaluate,
    load_protocol,
)
from drivelab.envs.errors import ConfigError, DrivelabError

ENV_ID = "drivelab/highway-fast-v0"
DRIVING_KEYS = ("return", "length", "crashed", "success", "mean_speed", "distance_m",
                "lane_changes", "right_lane_share", "on_road_share", "max_abs_jerk", "seed")  # fmt: skip


class FakeDrivingVecEnv:
    """A tiny in-memory vector env following the drivelab API (same-step autoreset).

    Each episode is driven by an RNG seeded with its reset seed; auto-reset episodes continue
    that RNG and report seed -1. Rewards depend on the actions, so a policy whose state is
    reset at the wrong time gets different numbers.
    """

    metadata = {"autoreset_mode": "same-step"}
    single_action_space = gym.spaces.Discrete(5)  # DiscreteMetaAction
    single_observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)

    def __init__(self, num_envs: int) -> None:
        self.num_envs = num_envs
        self.backend = "highway-env"
        self.closed = False
        self._rngs = [np.random.default_rng(0)] * num_envs
        self._seed = np.full(num_envs, -1)
        self._steps = np.zeros(num_envs, dtype=int)
        self._length = np.zeros(num_envs, dtype=int)
        self._return = np.zeros(num_envs)
        self._lane_changes = np.zeros(num_envs, dtype=int)

    def _start(self, env: int) -> None:
        self._steps[env] = 0
        self._return[env] = 0.0
        self._lane_changes[env] = 0
        self._length[env] = 3 + self._rngs[env].integers(0, 8)

    def _observation(self) -> np.ndarray:
        return np.stack([self._steps, self._seed]).T.astype(np.float32)  # (B, 2)

    def reset(self, seed=None, options=None):
        assert isinstance(seed, list) and len(seed) == self.num_envs
        for env, env_seed in enumerate(seed):
            self._rngs[env] = np.random.default_rng(env_seed)
            self._seed[env] = env_seed
            self._start(env)
        return self._observation(), {}

    def step(self, actions):
        actions = np.asarray(actions)
        assert actions.shape == (self.num_envs,)
        reward = np.array([r.random() for r in self._rngs]) + 0.25 * actions  # (B,)
        self._return += reward
        self._lane_changes += (actions == 0) | (actions == 2)
        self._steps += 1
        done = self._steps >= self._length
        driving = {key: np.zeros(self.num_envs) for key in DRIVING_KEYS}
        for env in np.flatnonzero(done):
            crashed = bool(self._rngs[env].random() < 0.3)
            values = {"return": self._return[env], "length": self._steps[env], "crashed": crashed,
                      "success": not crashed, "mean_speed": 20.0 + self._seed[env] % 2,
                      "distance_m": 20.0 * self._steps[env], "lane_changes": self._lane_changes[env],
                      "right_lane_share": 0.5, "on_road_share": 1.0, "max_abs_jerk": 3.0,
                      "seed": self._seed[env]}  # fmt: skip
            for key, value in values.items():
                driving[key][env] = value
            self._seed[env] = -1
            self._start(env)
        infos = {"driving": driving, "_driving": done.copy()} if done.any() else {}
        return self._observation(), reward, done, np.zeros_like(done), infos

    def close(self) -> None:
        self.closed = True


class CyclingPolicy:
    """A stateful policy: action 2 (FASTER) every third step since its reset, else 1 (IDLE)."""

    def __init__(self) -> None:
        self.steps = None
        self.resets = 0

    def act(self, observation: np.ndarray, env=None) -> np.ndarray:
        assert env is not None and observation.shape[0] == env.num_envs
        actions = np.where(self.steps % 3 == 0, 2, 1)
        self.steps += 1
        return actions

    def reset(self, mask: np.ndarray) -> None:
        if self.steps is None:
            self.steps = np.zeros(mask.shape[0], dtype=int)
        self.steps[mask] = 0
        self.resets += 1


class IdlePolicy:
    """Always IDLE (action 1)."""

    def act(self, observation: np.ndarray, env=None) -> np.ndarray:
        return np.ones(observation.shape[0], dtype=np.int64)

    def reset(self, mask: np.ndarray) -> None:
        pass


def _fake_evaluate(num_envs: int, episodes: int = 11, policy=None) -> EvaluationResult:
    return evaluate(policy or CyclingPolicy(), ENV_ID, episodes=episodes, num_envs=num_envs,
                    make_env=FakeDrivingVecEnv)  # fmt: skip


def test_protocol_v1_is_published_and_disjoint_from_training():
    spec = load_protocol("drivelab-eval-v1")
    assert spec.version == "drivelab-eval-v1"
    assert spec.episodes == 100 and spec.deterministic_actions
    assert spec.reference_backend == "highway-env" and "envpool" in spec.backends
    assert len(spec.env_ids) == 11 and ENV_ID in spec.env_ids
    assert spec.seeds_for(ENV_ID) == tuple(range(10_000_000, 10_000_100))
    every_seed = {s for env_id in spec.env_ids for s in spec.seeds_for(env_id)}
    assert min(every_seed) >= spec.training_seed_limit == 1_000_000
    assert protocol.is_training_seed_allowed(0) and protocol.is_training_seed_allowed(999_999)
    assert not protocol.is_training_seed_allowed(1_000_000)
    assert not protocol.is_training_seed_allowed(-1)
    protocol.assert_disjoint(range(0, 1_000_000, 997))
    with pytest.raises(ProtocolError, match="10000003"):
        protocol.assert_disjoint([5, 10_000_003])


def test_protocol_rejects_unknown_version_env_and_counts():
    with pytest.raises(ProtocolError, match="drivelab-eval-v1"):
        load_protocol("drivelab-eval-v0")
    spec = load_protocol()
    with pytest.raises(ProtocolError, match="valid"):
        spec.seeds_for("drivelab/nowhere-v0")
    with pytest.raises(ProtocolError, match=r"\[1, 100\]"):
        spec.seeds_for(ENV_ID, 101)
    with pytest.raises(ConfigError, match="backend"):
        evaluate(IdlePolicy(), ENV_ID, episodes=2, backend="mujoco", make_env=FakeDrivingVecEnv)


def test_evaluate_records_one_episode_per_protocol_seed():
    result = _fake_evaluate(num_envs=4, episodes=11)
    assert result.seeds == tuple(range(10_000_000, 10_000_011))
    assert [e.seed for e in result.episodes] == list(result.seeds)
    assert [e.index for e in result.episodes] == list(range(11))
    assert result.backend == "highway-env" and result.protocol_version == "drivelab-eval-v1"
    assert all(3 <= e.length <= 10 for e in result.episodes)
    assert all(e.failed == e.crashed for e in result.episodes)
    np.testing.assert_array_equal(result.metric("distance_m"), 20.0 * result.metric("length"))


def test_same_seeds_give_identical_numbers_for_any_batch_size():
    first = _fake_evaluate(num_envs=4)
    assert _fake_evaluate(num_envs=4) == first
    # Each episode depends only on its seed, so 1, 3 or 11 envs at a time agree exactly.
    for num_envs in (1, 3, 11, 50):
        assert _fake_evaluate(num_envs=num_envs).episodes == first.episodes


def test_policy_state_is_reset_when_episodes_end():
    # Replay each seed by hand: CyclingPolicy's step counter must restart at every episode.
    result = _fake_evaluate(num_envs=3, episodes=3)
    for record in result.episodes:
        rng = np.random.default_rng(record.seed)
        length = 3 + rng.integers(0, 8)
        actions = np.where(np.arange(length) % 3 == 0, 2, 1)
        expected = sum(rng.random() for _ in range(length)) + 0.25 * actions.sum()
        assert record.length == length
        assert record.episode_return == pytest.approx(expected, abs=1e-12)
        assert record.crashed == (rng.random() < 0.3)


def test_evaluate_refuses_env_that_ignores_reset_seeds():
    class WrongSeeds(FakeDrivingVecEnv):
        def reset(self, seed=None, options=None):
            return super().reset(seed=[s + 1 for s in seed], options=options)

    with pytest.raises(RuntimeError, match="per-env reset seeds"):
        evaluate(IdlePolicy(), ENV_ID, episodes=2, num_envs=2, make_env=WrongSeeds)


# --- Loading policies without executing code ------------------------------------------------


class TinyNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(3, 2)


def test_full_torch_module_file_is_refused_unless_trusted(tmp_path):
    path = tmp_path / "policy.pt"
    torch.save(TinyNet(), path)
    with pytest.raises(UnsafePolicyFileError, match="unpickling") as refusal:
        protocol.policy_file_format(path)
    assert "TinyNet" in str(refusal.value) and "--trust-pickle" in str(refusal.value)
    assert protocol.policy_file_format(path, trust_pickle=True) == "pickle"


def test_plain_pickle_numpy_objects_and_sb3_zip_are_refused(tmp_path):
    plain = tmp_path / "policy.pkl"
    plain.write_bytes(pickle.dumps({"weights": np.zeros(3)}, protocol=4))
    objects = tmp_path / "policy.npy"
    np.save(objects, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    sb3 = tmp_path / "ppo.zip"  # the layout Stable-Baselines3's save() writes
    with zipfile.ZipFile(sb3, "w") as archive:
        archive.writestr("data", json.dumps({"policy_class": {":type:": "<class 'type'>",
                                                              ":serialized:": "gAWVOwAAAAAAAACMHg=="}}))  # fmt: skip
        archive.writestr("policy.pth", b"")
    for path, reason in ((plain, "pickle"), (objects, "object arrays"), (sb3, "Stable-Baselines3")):
        with pytest.raises(UnsafePolicyFileError, match=reason):
            protocol.policy_file_format(path)


def test_weights_only_files_are_accepted(tmp_path):
    from safetensors.torch import save_file

    state = TinyNet().state_dict()
    torch.save(state, tmp_path / "state.pt")
    save_file(state, tmp_path / "state.safetensors")
    np.savez(tmp_path / "state.npz", weight=np.zeros((2, 3)))
    assert protocol.policy_file_format(tmp_path / "state.pt") == "torch-weights"
    assert protocol.policy_file_format(tmp_path / "state.safetensors") == "safetensors"
    assert protocol.policy_file_format(tmp_path / "state.npz") == "numpy"
    (tmp_path / "junk.bin").write_bytes(b"not a policy at all")
    with pytest.raises(PolicyLoadError, match="not a policy file"):
        protocol.policy_file_format(tmp_path / "junk.bin")


def test_load_policy_refuses_before_any_loader_runs(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(protocol.agents, "load_policy", lambda *a, **k: calls.append(a), raising=False)
    path = tmp_path / "policy.pt"
    torch.save(TinyNet(), path)
    with pytest.raises(UnsafePolicyFileError):
        protocol.load_policy(str(path), ENV_ID)
    assert calls == []
    with pytest.raises(PolicyLoadError, match="does not exist"):
        protocol.load_policy(str(tmp_path / "missing.safetensors"), ENV_ID)


def test_baselines_come_from_drivelab_agents():
    policy, source = protocol.load_policy("baseline:idle", ENV_ID)
    assert isinstance(policy, agents.IdlePolicy)
    assert source.sha256 == hashlib.sha256(b"baseline:idle").hexdigest()
    with pytest.raises(PolicyLoadError, match="baseline:idm"):
        protocol.load_policy("baseline:teleport", ENV_ID)


# --- drivelab eval ----------------------------------------------------------------------------


def _run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="drivelab")
    cli_eval.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture
def fake_envs(monkeypatch):
    monkeypatch.setattr(de, "make", lambda env_id, num_envs, **kwargs: FakeDrivingVecEnv(num_envs))


def test_eval_cli_submits_and_resubmits_one_entry(tmp_path, fake_envs, capsys):
    db = tmp_path / "board.db"
    argv = ["eval", "--policy", "baseline:idle", "--env", ENV_ID, "--episodes", "12",
            "--submit", "--name", "idle", "--db", str(db), "--record-failures", str(tmp_path / "f"),
            "--max-failure-videos", "0"]  # fmt: skip
    assert _run_cli(argv) == 0
    assert _run_cli(argv) == 0
    assert "mean return" in capsys.readouterr().out
    with Leaderboard(db) as board:
        assert board.row_counts() == {"entries": 1, "runs": 1, "episodes": 12}
        (entry,) = board.entries()
    assert entry.metadata.backend == "highway-env" and entry.metadata.agent_name == "idle"
    assert entry.metadata.policy_sha256 == hashlib.sha256(b"baseline:idle").hexdigest()
    assert "numpy" in entry.metadata.package_versions
    expected = evaluate(IdlePolicy(), ENV_ID, episodes=12, make_env=FakeDrivingVecEnv)
    assert entry.runs[0].episodes == expected.episodes
    failures = json.loads((tmp_path / "f" / "failures.json").read_text())
    assert [f["seed"] for f in failures] == [e.seed for e in expected.episodes if e.failed]


def test_eval_cli_bad_input_is_one_clear_error(tmp_path, fake_envs):
    db = tmp_path / "board.db"
    with pytest.raises(PolicyLoadError, match="unknown baseline"):
        _run_cli(["eval", "--policy", "baseline:nope", "--env", ENV_ID, "--submit", "--name", "x",
                  "--db", str(db)])  # fmt: skip
    with pytest.raises(ConfigError, match="--name"):
        _run_cli(["eval", "--policy", "baseline:idle", "--env", ENV_ID, "--submit", "--db", str(db)])
    with pytest.raises(DrivelabError, match="does not exist"):
        _run_cli(["eval", "--policy", str(tmp_path / "nope.pt"), "--env", ENV_ID])
    with Leaderboard(db) as board:  # nothing half-written
        assert board.row_counts() == {"entries": 0, "runs": 0, "episodes": 0}
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(CorruptDatabaseError, match="untouched"):
        _run_cli(["eval", "--policy", "baseline:idle", "--env", ENV_ID, "--submit", "--name", "x",
                  "--db", str(corrupt)])  # fmt: skip
    assert corrupt.read_bytes() == b"\x00garbage" * 100


def test_real_env_same_seeds_identical_numbers():
    kwargs = {"observation": "native"}
    first = evaluate(agents.IdlePolicy(), ENV_ID, episodes=3, num_envs=2, env_kwargs=kwargs)
    second = evaluate(agents.IdlePolicy(), ENV_ID, episodes=3, num_envs=3, env_kwargs=kwargs)
    assert first.backend == "highway-env"
    assert first.episodes == second.episodes
    assert [e.seed for e in first.episodes] == [10_000_000, 10_000_001, 10_000_002]


# --- A trained export end to end ------------------------------------------------------------

TINY_PPO = {
    "total_steps": 64, "camera": {"width": 64, "height": 32, "metres_per_pixel": 1.0, "stack": 2},
    "encoder.name": "fast", "encoder.features_dim": 32, "checkpoint_every_steps": 64,
    "eval_every_steps": 0, "ppo.n_envs": 4, "ppo.n_steps": 16, "ppo.batch_size": 32,
    "ppo.n_epochs": 1, "ppo.net_arch": [32],
}  # fmt: skip


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    torch.set_num_threads(1)
    config = agents.load_train_config(ENV_ID, "ppo", TINY_PPO)
    return agents.train(config, tmp_path_factory.mktemp("runs") / "ppo", progress_bar=False).run_dir


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
    assert first.metadata.policy_sha256 == protocol.sha256_file(weights)
    assert (first.metadata.algorithm, first.metadata.training_steps) == ("ppo", 64)
    assert first.metadata.backend == "envpool"
    assert first.runs[0].training_seed == 0  # from the run's config.json
    assert first.metadata.config["training"][0]["total_steps"] == 64


def test_sb3_checkpoint_needs_trust_pickle(tiny_run, capsys):
    (checkpoint,) = (tiny_run / "checkpoints").glob("*/model.zip")
    argv = ["eval", "--policy", str(checkpoint), "--env", ENV_ID, "--episodes", "2", "--backend",
            "envpool"]  # fmt: skip
    assert cli.main(argv) == 2
    assert "needs unpickling" in capsys.readouterr().err
    assert cli.main([*argv, "--trust-pickle"]) == 0
