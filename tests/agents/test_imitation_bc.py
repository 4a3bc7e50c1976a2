"""Behaviour cloning as a training run, and PPO / DQN started from its clone (``init_from``)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from stable_baselines3 import DQN
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.policies import ActorCriticPolicy

from drivelab.agents import (
    CheckpointError,
    ConfigError,
    PolicyLoadError,
    TrainedPolicy,
    TrainResult,
    load_policy,
    load_train_config,
    train,
)
from drivelab.agents.clone_anchor import clone_actions, clone_kl, margin_loss
from drivelab.agents.expert_data import RecordingSpec, load, record
from drivelab.agents.imitation import agreement

ENV_ID = "drivelab/highway-fast-v0"
CAMERA = {"width": 64, "height": 32, "metres_per_pixel": 1.0, "stack": 2}
NETWORK = {"camera": CAMERA, "encoder.name": "fast", "encoder.features_dim": 32}
BC = {"bc.samples": 1024, "bc.n_envs": 32, "bc.chunk_size": 512, "bc.epochs": 3, "bc.net_arch": [32],
      "bc.batch_size": 64, "bc.learning_rate": 1e-3, "bc.holdout_fraction": 0.2}


def bc_config(**overrides: Any):
    values = {**NETWORK, **BC, "total_steps": 10**6, "eval_every_steps": 1024, "eval_episodes": 2, "eval_envs": 2,
              **overrides}
    return load_train_config(ENV_ID, "bc", values)


@pytest.fixture(scope="module")
def bc_run(tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    """A bc run stopped part-way (total_steps) and resumed to the end of its epochs."""
    run_dir = tmp_path_factory.mktemp("bc") / "run"
    first = train(bc_config(total_steps=1024), run_dir, progress_bar=False)
    assert 1024 <= first.num_timesteps < 1024 + 64
    return train(bc_config(), run_dir, resume=True, progress_bar=False)


@pytest.fixture(scope="module")
def held_out_data(tmp_path_factory: pytest.TempPathFactory):
    """Expert frames from other training seeds than the run's."""
    spec = RecordingSpec(ENV_ID, "baseline:idm", seed=500, samples=512, num_envs=32, chunk_size=512, camera=CAMERA)
    folder = tmp_path_factory.mktemp("held_out")
    record(folder, spec, load_policy("baseline:idm", ENV_ID))
    return load(folder)


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_bc_run_records_logs_evaluates_and_exports_like_every_algorithm(bc_run: TrainResult) -> None:
    run_dir = bc_run.run_dir
    assert json.loads((run_dir / "config.json").read_text())["algo"] == "bc"
    invocations = json.loads((run_dir / "run.json").read_text())["invocations"]
    assert [i["resumed_from_step"] for i in invocations][0] is None and invocations[1]["resumed_from_step"] >= 1024
    rows = _rows(run_dir / "metrics.jsonl")
    keys = set().union(*rows)
    assert {"losses/bc_loss", "losses/holdout_agreement", "losses/holdout_nll", "eval/mean_return"} <= keys
    steps = [row["step"] for row in rows]
    assert steps == sorted(steps) and steps[-1] == bc_run.num_timesteps
    manifest = json.loads((run_dir / "expert_data" / "round_0" / "manifest.json").read_text())
    assert manifest["complete"] and manifest["samples"] == 1024 and manifest["spec"]["expert"] == "baseline:idm"
    # 3 epochs over the 820 training rows (12 batches of 64 each), across the resume
    assert bc_run.num_timesteps == 3 * 12 * 64
    evaluations = _rows(run_dir / "evaluations.jsonl")
    assert evaluations and all(e["first_seed"] == 1_000_000 for e in evaluations)
    for export in ("best", "final"):
        spec = json.loads((run_dir / export / "policy.json").read_text())
        assert spec["algo"] == "bc" and spec["net_arch"] == [32] and spec["camera"] == CAMERA
    policy = load_policy(run_dir / "final")
    assert isinstance(policy, TrainedPolicy) and policy.source.spec["algo"] == "bc"
    assert (run_dir / "checkpoints" / "bc_state.pt").is_file()


def _fit_and_prior(policy: TrainedPolicy, data) -> tuple[dict[str, float], float, float]:
    fit = agreement(policy.sb3_policy, data, np.arange(len(data)))
    shares = np.bincount(data.actions, minlength=5) / len(data)
    prior_nll = -float(np.sum(shares[shares > 0] * np.log(shares[shares > 0])))  # the best constant prediction
    return fit, prior_nll, float(shares.max())


def test_bc_learns_the_experts_action_distribution(bc_run: TrainResult, held_out_data) -> None:
    """Fast bar: from uniform logits (NLL ln 5 = 1.61) to near the label prior on frames of unseen seeds."""
    fit, prior_nll, majority = _fit_and_prior(load_policy(bc_run.run_dir / "final"), held_out_data)
    assert fit["nll"] < min(np.log(5) - 0.4, prior_nll + 0.15)
    assert fit["agreement"] >= majority - 0.02


@pytest.mark.slow
def test_bc_agreement_beats_the_label_prior_on_held_out_frames(tmp_path: Path, held_out_data) -> None:
    """8k samples: better than any constant answer on frames of unseen seeds.

    The ceiling is the camera's: IDM/MOBIL's choice between IDLE, FASTER and SLOWER depends on
    the ego's speed and the driver's internal target-speed index, which 64x32 frames at 1 m/px
    show only weakly (measured: ~72 % agreement where the majority action is ~68 %).
    """
    config = bc_config(**{"bc.samples": 8192, "bc.n_envs": 64, "bc.chunk_size": 4096, "bc.epochs": 8,
                          "encoder.features_dim": 64, "bc.net_arch": [64], "eval_every_steps": 0})
    result = train(config, tmp_path / "bc", progress_bar=False)
    fit, prior_nll, majority = _fit_and_prior(load_policy(result.run_dir / "final"), held_out_data)
    assert fit["nll"] < prior_nll - 0.04
    assert fit["agreement"] >= majority + 0.01


class ActionsAtStart(BaseCallback):
    """Records the model's greedy actions on fixed frames before its first update."""

    def __init__(self, observations: np.ndarray) -> None:
        super().__init__()
        self.observations = observations
        self.actions: np.ndarray | None = None
        self.replay_size = 0

    def _on_training_start(self) -> None:
        self.actions, _ = self.model.policy.predict(self.observations, deterministic=True)
        buffer = getattr(self.model, "replay_buffer", None)
        self.replay_size = 0 if buffer is None else buffer.size() * buffer.n_envs

    def _on_step(self) -> bool:
        return True


def test_ppo_from_a_clone_starts_with_the_clones_actions(bc_run: TrainResult, held_out_data, tmp_path: Path,
                                                         tiny_config) -> None:
    frames = held_out_data.observations[:256]
    probe = ActionsAtStart(frames)
    config = tiny_config("ppo", init_from=str(bc_run.run_dir), total_steps=64, eval_every_steps=0,
                         value_warmup_steps=128, camera=CAMERA, **{"ppo.net_arch": [32]})
    train(config, tmp_path / "ppo", progress_bar=False, extra_callbacks=[probe])
    clone = load_policy(bc_run.run_dir)
    np.testing.assert_array_equal(probe.actions, clone.act(frames))
    keys = set().union(*_rows(tmp_path / "ppo" / "metrics.jsonl"))
    assert {"warm_start/value_loss", "warm_start/value_steps"} <= keys


def test_dqn_from_a_clone_starts_near_its_actions_with_expert_replay(bc_run: TrainResult, held_out_data,
                                                                    tmp_path: Path, tiny_config) -> None:
    frames = held_out_data.observations
    probe = ActionsAtStart(frames)
    config = tiny_config("dqn", init_from=str(bc_run.run_dir / "final"), total_steps=16, eval_every_steps=0,
                         camera=CAMERA, **{"dqn.net_arch": [32], "dqn.buffer_size": 64})
    train(config, tmp_path / "dqn", progress_bar=False, extra_callbacks=[probe])
    clone_actions = load_policy(bc_run.run_dir / "final").act(frames)
    assert np.mean(probe.actions == clone_actions) >= 0.8
    assert probe.replay_size == 64  # the whole buffer (dqn.buffer_size transitions) holds the bc run's expert data


def test_bad_inputs_get_one_line_before_anything_is_written(bc_run: TrainResult, tmp_path: Path,
                                                            tiny_config) -> None:
    with pytest.raises(PolicyLoadError, match="unknown baseline"):
        train(bc_config(**{"bc.expert": "baseline:nope"}), tmp_path / "a", progress_bar=False)
    with pytest.raises(PolicyLoadError, match="does not exist"):
        train(bc_config(**{"bc.expert": str(tmp_path / "missing")}), tmp_path / "b", progress_bar=False)
    with pytest.raises(ConfigError, match="does not exist"):
        train(tiny_config("ppo", init_from=str(tmp_path / "missing")), tmp_path / "c", progress_bar=False)
    with pytest.raises(ConfigError, match="trained network"):
        train(tiny_config("ppo", init_from="baseline:idm"), tmp_path / "d", progress_bar=False)
    with pytest.raises(ConfigError, match="camera"):  # conftest's tiny camera stacks 2 frames too, but 4 here
        train(tiny_config("ppo", init_from=str(bc_run.run_dir), camera={**CAMERA, "stack": 4},
                          **{"ppo.net_arch": [32]}), tmp_path / "e", progress_bar=False)
    with pytest.raises(ConfigError, match="net_arch"):
        train(tiny_config("dqn", init_from=str(bc_run.run_dir), camera=CAMERA, **{"dqn.net_arch": [16]}),
              tmp_path / "f", progress_bar=False)
    with pytest.raises(ConfigError, match="init_from"):
        bc_config(init_from=str(bc_run.run_dir))
    with pytest.raises(ConfigError, match="class_balance_skip"):  # highway's 5 meta-actions: 0..4
        train(bc_config(**{"bc.class_balance": 0.5, "bc.class_balance_skip": [0, 7]}), tmp_path / "g",
              progress_bar=False)
    assert not any((tmp_path / name).exists() for name in "abcdefg")


@pytest.mark.slow
def test_dagger_round_records_with_the_learner_and_trains_on_all_rounds(tmp_path: Path) -> None:
    config = bc_config(**{"bc.samples": 512, "bc.chunk_size": 256, "bc.epochs": 1, "bc.dagger_rounds": 1,
                          "bc.dagger_samples": 256, "eval_every_steps": 0})
    result = train(config, tmp_path / "dagger", progress_bar=False)
    manifest = json.loads((result.run_dir / "expert_data" / "round_1" / "manifest.json").read_text())
    assert manifest["complete"] and manifest["spec"]["round"] == 1 and manifest["spec"]["beta"] == 0.5
    rows = _rows(result.run_dir / "metrics.jsonl")
    assert [row["charts/expert_samples"] for row in rows if "charts/expert_samples" in row] == [512, 768]
    # one epoch over round 0's training rows (410 -> 6 batches), then one over both rounds (666 -> 10)
    assert result.num_timesteps == (6 + 10) * 64


def test_reference_rounds_record_the_learner_on_the_protocol_backend(tmp_path: Path) -> None:
    """A reference round is a DAgger round recorded on highway-env (where the protocol evaluates),
    with its own sample count and envs, and the clone is fitted on it with the EnvPool rounds."""
    config = bc_config(**{"bc.samples": 256, "bc.chunk_size": 256, "bc.epochs": 1, "bc.reference_rounds": 1,
                          "bc.reference_samples": 16, "bc.reference_envs": 2, "eval_every_steps": 0})
    result = train(config, tmp_path / "ref", progress_bar=False)
    first = json.loads((result.run_dir / "expert_data" / "round_0" / "manifest.json").read_text())
    manifest = json.loads((result.run_dir / "expert_data" / "round_1" / "manifest.json").read_text())
    assert first["spec"]["backend"] == "auto" and manifest["complete"] and manifest["samples"] == 16
    assert manifest["spec"] | {"backend": "highway-env", "num_envs": 2, "round": 1, "beta": 0.5} == manifest["spec"]
    rows = _rows(result.run_dir / "metrics.jsonl")
    assert [row["charts/expert_samples"] for row in rows if "charts/expert_samples" in row] == [256, 272]
    rounds = [result.run_dir / "expert_data" / f"round_{r}" for r in (0, 1)]
    assert len(load(rounds)) == 272  # BC's rows; transitions (time-major rows of B envs) need one env count
    with pytest.raises(CheckpointError, match="different env counts"):
        load(rounds, transitions=True)


class PenaltyProbe(BaseCallback):
    """At the end of training: the anchored evaluate_actions against SB3's own and the KL by hand."""

    def __init__(self, observations: np.ndarray) -> None:
        super().__init__()
        self.observations = observations
        self.check: dict[str, Any] = {}

    def _on_training_end(self) -> None:
        policy = self.model.policy
        obs = torch.as_tensor(self.observations, device=policy.device)
        with torch.no_grad():
            actions = policy.get_distribution(obs).get_actions(deterministic=True)
            anchored = policy.evaluate_actions(obs, actions)
            plain = ActorCriticPolicy.evaluate_actions(policy, obs, actions)
            clone = load_policy(self.model_init_from).sb3_policy.to(policy.device)
            p_clone = clone.get_distribution(obs).distribution.probs
            log_p = policy.get_distribution(obs).distribution.logits.log_softmax(-1)
            kl = (p_clone * (p_clone.log() - log_p)).sum(-1)  # KL(clone || policy), by hand
        self.check = {"anchored": anchored, "plain": plain, "kl": kl, "ent_coef": self.model.ent_coef}

    def _on_step(self) -> bool:
        return True


def test_clone_kl_penalty_keeps_ppo_near_its_clone_and_decays(bc_run: TrainResult, held_out_data, tmp_path: Path,
                                                               tiny_config, read_jsonl) -> None:
    frames = held_out_data.observations[:256]
    clone = load_policy(bc_run.run_dir / "final")
    drift = {}
    for coef in (0.0, 3.0):
        probe = PenaltyProbe(frames)
        probe.model_init_from = bc_run.run_dir / "final"
        config = tiny_config("ppo", init_from=str(bc_run.run_dir / "final"), total_steps=512, eval_every_steps=0,
                             value_warmup_steps=0, camera=CAMERA, clone_kl_coef=coef, clone_kl_decay_steps=1024,
                             **{"ppo.net_arch": [32], "ppo.learning_rate": 3e-3, "ppo.ent_coef": 0.01})
        train(config, tmp_path / f"kl{coef}", progress_bar=False, extra_callbacks=[probe])
        drift[coef] = float(clone_kl(clone.sb3_policy, load_policy(tmp_path / f"kl{coef}" / "final").sb3_policy,
                                     torch.as_tensor(frames)).mean().detach())
        values, log_prob, entropy = probe.check["anchored"]
        plain_values, plain_log_prob, plain_entropy = probe.check["plain"]
        torch.testing.assert_close(values, plain_values)
        torch.testing.assert_close(log_prob, plain_log_prob)
        if coef:  # the penalty carried by the entropy term equals the weight of the last update x KL
            weight = 3.0 * (1 - 512 / 1024)
            carried = (plain_entropy - entropy) * probe.check["ent_coef"] / weight
            torch.testing.assert_close(carried, probe.check["kl"], rtol=1e-3, atol=1e-5)
        else:
            torch.testing.assert_close(entropy, plain_entropy)
    assert drift[0.0] > 0.01  # plain PPO at this learning rate moves away from the clone...
    assert drift[3.0] < 0.5 * drift[0.0]  # ...the penalty holds it near
    logged = [row["losses/clone_kl_coef"] for row in read_jsonl(tmp_path / "kl3.0" / "metrics.jsonl")
              if "losses/clone_kl_coef" in row]
    assert logged and logged == sorted(logged, reverse=True) and logged[-1] < 3.0
    resumed = tiny_config("ppo", init_from=str(bc_run.run_dir / "final"), total_steps=640, eval_every_steps=0,
                          value_warmup_steps=0, camera=CAMERA, clone_kl_coef=3.0, clone_kl_decay_steps=1024,
                          **{"ppo.net_arch": [32], "ppo.learning_rate": 3e-3, "ppo.ent_coef": 0.01})
    train(resumed, tmp_path / "kl3.0", resume=True, progress_bar=False)  # the clone is loaded again
    logged = [row["losses/clone_kl_coef"] for row in read_jsonl(tmp_path / "kl3.0" / "metrics.jsonl")
              if "losses/clone_kl_coef" in row]
    assert logged[-1] == pytest.approx(3.0 * (1 - 640 / 1024))  # the decay goes on from the checkpoint's step
    with pytest.raises(ConfigError, match="clone_kl_coef"):
        tiny_config("ppo", clone_kl_coef=1.0)  # no init_from
    with pytest.raises(ConfigError, match="ent_coef"):
        tiny_config("ppo", init_from=str(bc_run.run_dir), clone_kl_coef=1.0, **{"ppo.ent_coef": 0.0})


def test_margin_loss_is_zero_once_the_label_leads_by_the_margin() -> None:
    q_values = torch.tensor([[1.0, 2.0, 0.5], [3.0, 0.0, 2.5], [0.0, 0.0, 0.0]])
    labels = torch.tensor([1, 0, 2])
    # row 0: label leads by 1.0 >= 0.8 -> 0; row 1: leads by 0.5 -> 0.8 - 0.5; row 2: ties -> 0.8
    torch.testing.assert_close(margin_loss(q_values, labels, 0.8), torch.tensor([0.0, 0.3, 0.8]))


class MarginUpdateProbe(BaseCallback):
    """At the end of training: one CloneMargin step at a negligible weight against SB3's DQN.train."""

    def __init__(self) -> None:
        super().__init__()
        self.parameters: dict[str, list[torch.Tensor]] = {}

    def _on_training_end(self) -> None:
        model, anchor = self.model, self.model.train.__self__
        weights = copy.deepcopy(model.policy.state_dict())
        optimizer = copy.deepcopy(model.policy.optimizer.state_dict())
        anchor.initial_coef = 1e-9
        for name, step in (("sb3", lambda: DQN.train(model, 2, 16)), ("anchored", lambda: model.train(2, 16))):
            model.policy.load_state_dict(weights)
            model.policy.optimizer.load_state_dict(copy.deepcopy(optimizer))  # Adam steps its state in place
            np.random.seed(0)  # SB3's replay buffer samples with numpy's global generator
            torch.manual_seed(0)
            step()
            self.parameters[name] = [p.detach().clone() for p in model.q_net.parameters()]

    def _on_step(self) -> bool:
        return True


def test_clone_margin_keeps_dqn_near_its_clone_and_decays(bc_run: TrainResult, held_out_data, tmp_path: Path,
                                                           tiny_config, read_jsonl) -> None:
    frames = held_out_data.observations
    clone = load_policy(bc_run.run_dir / "final")
    agreement_with_clone = {}
    for coef in (0.0, 5.0):
        probe = MarginUpdateProbe()
        config = tiny_config("dqn", init_from=str(bc_run.run_dir / "final"), total_steps=768, eval_every_steps=0,
                             camera=CAMERA, clone_margin_coef=coef, clone_kl_decay_steps=1536,
                             **{"dqn.net_arch": [32], "dqn.learning_rate": 3e-3, "dqn.learning_starts": 0,
                                "dqn.exploration_initial_eps": 1.0, "dqn.exploration_final_eps": 1.0})
        train(config, tmp_path / f"m{coef}", progress_bar=False, extra_callbacks=[probe] if coef else [])
        trained = load_policy(tmp_path / f"m{coef}" / "final")
        agreement_with_clone[coef] = float(np.mean(trained.act(frames) == clone.act(frames)))
        if coef:  # the update is SB3's own plus the (here negligible) margin term
            for ours, sb3 in zip(probe.parameters["anchored"], probe.parameters["sb3"], strict=True):
                torch.testing.assert_close(ours, sb3, rtol=1e-4, atol=1e-6)
    # random driving and a high learning rate pull plain DQN off the clone; the margin holds it there
    assert agreement_with_clone[5.0] >= 0.9 and agreement_with_clone[5.0] > agreement_with_clone[0.0] + 0.05
    rows = read_jsonl(tmp_path / "m5.0" / "metrics.jsonl")
    weights = [row["losses/clone_margin_coef"] for row in rows if "losses/clone_margin_coef" in row]
    assert weights and weights == sorted(weights, reverse=True) and weights[-1] < 5.0
    assert any("losses/clone_margin" in row for row in rows)
    with torch.no_grad():  # the clone's labels are its greedy actions
        observations = torch.as_tensor(frames[:64])
        np.testing.assert_array_equal(clone_actions(clone.sb3_policy, observations).numpy(), clone.act(frames[:64]))
    resumed = tiny_config("dqn", init_from=str(bc_run.run_dir / "final"), total_steps=1024, eval_every_steps=0,
                          camera=CAMERA, clone_margin_coef=5.0, clone_kl_decay_steps=1536,
                          **{"dqn.net_arch": [32], "dqn.learning_rate": 3e-3, "dqn.learning_starts": 0,
                             "dqn.exploration_initial_eps": 1.0, "dqn.exploration_final_eps": 1.0})
    train(resumed, tmp_path / "m5.0", resume=True, progress_bar=False)  # the clone is loaded again
    weights = [row["losses/clone_margin_coef"] for row in read_jsonl(tmp_path / "m5.0" / "metrics.jsonl")
               if "losses/clone_margin_coef" in row]
    assert weights[-1] < 5.0 * (1 - 768 / 1536)  # the decay goes on from the checkpoint's step
    with pytest.raises(ConfigError, match="clone_margin_coef"):
        tiny_config("dqn", clone_margin_coef=1.0)  # no init_from
    with pytest.raises(ConfigError, match="clone_margin_coef"):
        tiny_config("ppo", init_from=str(bc_run.run_dir), clone_margin_coef=1.0)


def test_class_balance_weights_each_action_by_its_inverse_share() -> None:
    """balance 1: weights share^-1 / (actions seen), so the loss is the mean over actions of their mean NLL."""
    import gymnasium as gym

    from drivelab.agents.imitation import bc_loss, class_weights

    space = gym.spaces.Discrete(5)
    labels = np.array([1, 1, 1, 1, 1, 1, 0, 0, 4, 1])  # shares 0.2, 0.7, 0, 0, 0.1
    assert class_weights(space, labels, 0.0) is None
    assert class_weights(gym.spaces.Box(-1, 1, (2,)), labels, 1.0) is None
    full = class_weights(space, labels, 1.0)
    np.testing.assert_allclose(full, [1 / 0.6, 1 / 2.1, 0, 0, 1 / 0.3], rtol=1e-6)
    half = class_weights(space, labels, 0.5)
    assert float(half[labels].mean()) == pytest.approx(1.0)  # the weights average 1 over the rows
    assert half[4] / half[1] == pytest.approx(np.sqrt(7.0))
    # actions left out of the balance weigh as the most common one (here 1, share 0.7)
    skipped = class_weights(space, labels, 1.0, skip=(0, 3))
    raw = np.array([1 / 0.7, 1 / 0.7, 0, 0, 1 / 0.1])  # action 3 never seen: still 0
    np.testing.assert_allclose(skipped, raw / (np.array([0.2, 0.7, 0, 0, 0.1]) * raw).sum(), rtol=1e-6)
    assert skipped[0] == skipped[1] and float(skipped[labels].mean()) == pytest.approx(1.0)

    class Logits(torch.nn.Module):  # get_distribution as ActorCriticPolicy's, on fixed logits
        def get_distribution(self, observations: torch.Tensor):
            return torch.distributions.Categorical(logits=observations)

    logits = torch.randn(len(labels), 5, generator=torch.Generator().manual_seed(0))
    actions = torch.as_tensor(labels)
    nll = -torch.distributions.Categorical(logits=logits).log_prob(actions)
    balanced = torch.stack([nll[actions == a].mean() for a in (0, 1, 4)]).mean()
    loss = bc_loss(Logits(), logits, actions, torch.as_tensor(full))  # type: ignore[arg-type]
    assert float(loss) == pytest.approx(float(balanced), rel=1e-5)
    assert float(bc_loss(Logits(), logits, actions)) == pytest.approx(float(nll.mean()), rel=1e-6)  # type: ignore[arg-type]


def test_bc_clones_from_the_native_vector_and_starts_dqn_there(tmp_path: Path) -> None:
    """observation: native records float32 kinematics rows (the env's own), clones them into an MLP
    whose likelihood beats the label prior's on rows of unseen seeds, and DQN on the same vector
    starts from the clone."""
    native = {"observation": "native", "policy": "mlp", "bc.net_arch": [64], "eval_every_steps": 0}
    config = load_train_config(ENV_ID, "bc", {**BC, **native, "bc.samples": 8192, "bc.n_envs": 64,
                                              "bc.chunk_size": 4096, "bc.epochs": 12, "total_steps": 10**6})
    result = train(config, tmp_path / "bc", progress_bar=False)
    data = load(result.run_dir / "expert_data" / "round_0", transitions=True)
    env_shape = load_policy(result.run_dir / "final").observation_space.shape
    assert data.observations.dtype == np.float32 and data.observations.shape == (8192, *env_shape)
    assert len(env_shape) == 2 and np.all(data.observations[:, 0, 0] == 1.0)  # row 0: the ego, present
    spec = json.loads((result.run_dir / "final" / "policy.json").read_text())
    assert spec["observation"] == "native" and spec["policy_net"] == "mlp"

    unseen = RecordingSpec(ENV_ID, "baseline:idm", seed=500, samples=1024, num_envs=32, chunk_size=1024,
                           observation="native")
    record(tmp_path / "unseen", unseen, load_policy("baseline:idm", ENV_ID))
    held_out = load(tmp_path / "unseen")
    fit, prior_nll, majority = _fit_and_prior(load_policy(result.run_dir / "final"), held_out)
    assert fit["nll"] < prior_nll - 0.05 and fit["agreement"] >= majority - 0.02  # measured: 0.83 vs 0.92

    probe = ActionsAtStart(held_out.observations)
    dqn = load_train_config(ENV_ID, "dqn", {"observation": "native", "policy": "mlp", "init_from": str(result.run_dir),
                                            "total_steps": 16, "eval_every_steps": 0, "dqn.net_arch": [64],
                                            "dqn.buffer_size": 64, "dqn.n_envs": 2})
    train(dqn, tmp_path / "dqn", progress_bar=False, extra_callbacks=[probe])
    assert np.mean(probe.actions == load_policy(result.run_dir / "final").act(held_out.observations)) >= 0.8
    assert probe.replay_size == 64
