"""Training runs: run-directory records, namespaced logs, checkpoints, resume, refusals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from drivelab.agents import CheckpointError, ConfigError, RunDirError, TrainResult, train
from drivelab.agents.checkpoints import find_last_checkpoint, load_checkpoint


@pytest.mark.parametrize("run_name", ["ppo_run", "dqn_run"])
def test_run_directory_records_everything(run_name: str, request: pytest.FixtureRequest, read_jsonl) -> None:
    result: TrainResult = request.getfixturevalue(run_name)
    algo = run_name.split("_")[0]
    run_dir = result.run_dir
    assert result.num_timesteps >= 192
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved == json.loads((run_dir / "config.json").read_text())
    assert saved["algo"] == algo and saved["camera"]["width"] == 64 and saved["total_steps"] == 192
    invocation = json.loads((run_dir / "run.json").read_text())["invocations"][0]
    assert {"command", "git", "packages", "machine", "device", "finished"} <= set(invocation)
    assert invocation["packages"]["stable-baselines3"] and invocation["device"] == "cpu"
    assert list((run_dir / "tb").glob("events.out.tfevents.*"))
    keys = set().union(*(row.keys() for row in read_jsonl(run_dir / "metrics.jsonl")))
    assert {"charts/episodic_return", "perf/sps", "losses/loss", "eval/mean_return"} <= keys
    assert not any(k.startswith(("train/", "rollout/", "time/")) for k in keys)  # all renamed
    evaluations = read_jsonl(run_dir / "evaluations.jsonl")
    assert [e["step"] for e in evaluations][0] >= 128
    assert all(e["first_seed"] == 1_000_000 and e["episodes"] == 2 for e in evaluations)
    best = json.loads((run_dir / "best" / "policy.json").read_text())
    assert best["eval"]["mean_return"] == max(e["mean_return"] for e in evaluations)
    assert result.best_eval["mean_return"] == best["eval"]["mean_return"]
    checkpoint = find_last_checkpoint(run_dir / "checkpoints")
    assert checkpoint.step == result.num_timesteps
    assert ("replay_buffer.pkl" in checkpoint.files) == (algo == "dqn")


def test_checkpoint_restores_weights_optimizer_and_replay_buffer(dqn_run: TrainResult) -> None:
    info = find_last_checkpoint(dqn_run.run_dir / "checkpoints")
    model = load_checkpoint(info, env=None, device="cpu")
    assert model.num_timesteps == info.step
    assert model.policy.optimizer.state_dict()["state"], "Adam moments were saved"
    buffer = model.replay_buffer
    stored = buffer.buffer_size * buffer.n_envs if buffer.full else buffer.pos * buffer.n_envs
    assert stored == min(info.step, 400)
    assert buffer.observations.dtype == np.uint8


@pytest.mark.parametrize("algo", ["ppo", "dqn"])
def test_resume_continues_step_counter_and_logs(algo: str, tmp_path: Path, tiny_config, read_jsonl) -> None:
    run_dir = tmp_path / algo
    first = train(tiny_config(algo, total_steps=128, eval_every_steps=0), run_dir, progress_bar=False)
    assert first.num_timesteps == 128
    first_wall_s = json.loads(first.final_export.read_text())["training_wall_s"]
    resumed = train(tiny_config(algo, total_steps=256, eval_every_steps=0), run_dir, resume=True,
                    progress_bar=False)
    assert resumed.num_timesteps == 256
    steps = [row["step"] for row in read_jsonl(run_dir / "metrics.jsonl")]
    assert steps == sorted(steps) and steps[0] <= 128 < steps[-1] == 256
    invocations = json.loads((run_dir / "run.json").read_text())["invocations"]
    assert [i["resumed_from_step"] for i in invocations] == [None, 128]
    assert len(list((run_dir / "tb").glob("events.out.tfevents.*"))) == 2
    assert json.loads(resumed.final_export.read_text())["training_wall_s"] > first_wall_s  # times add up
    with pytest.raises(RunDirError, match="seed: 0 -> 5"):
        train(tiny_config(algo, total_steps=300, eval_every_steps=0, seed=5), run_dir, resume=True,
              progress_bar=False)


@pytest.mark.parametrize("algo", ["ppo", "dqn"])
def test_time_budget_stops_the_run_and_resume_can_lift_it(algo: str, tmp_path: Path, tiny_config) -> None:
    run_dir = tmp_path / algo
    config = tiny_config(algo, total_steps=256, eval_every_steps=0, max_minutes=1e-6)
    n_envs = config.algo_config.n_envs
    stopped = train(config, run_dir, progress_bar=False)
    assert stopped.num_timesteps == n_envs  # the budget is past after the first vector step
    assert find_last_checkpoint(run_dir / "checkpoints").step == n_envs
    assert stopped.final_export.is_file()
    finished = train(tiny_config(algo, total_steps=256, eval_every_steps=0, max_minutes=0), run_dir,
                     resume=True, progress_bar=False)
    assert finished.num_timesteps >= 256  # PPO resumes mid-rollout, so it may overshoot by a rollout
    with pytest.raises(ConfigError, match=r"'max_minutes' must be in \[0"):
        tiny_config(algo, max_minutes=-1)


def test_existing_run_dir_is_never_overwritten(ppo_run: TrainResult, tmp_path: Path, tiny_config) -> None:
    run_dir = tmp_path / "copy"
    shutil.copytree(ppo_run.run_dir, run_dir)
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    with pytest.raises(RunDirError, match="--resume to continue it or --force"):
        train(tiny_config("ppo"), run_dir, progress_bar=False)
    with pytest.raises(ConfigError, match="DQN needs discrete actions"):
        train(tiny_config("dqn", env_id="drivelab/parking-v0"), run_dir, force=True, progress_bar=False)
    with pytest.raises(RunDirError, match="contradict"):
        train(tiny_config("ppo"), run_dir, resume=True, force=True, progress_bar=False)
    assert before == {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    with pytest.raises(RunDirError, match="not a drivelab run"):
        train(tiny_config("ppo"), stranger, force=True, progress_bar=False)
    assert (stranger / "notes.txt").read_text() == "mine"


def test_resume_refuses_corrupt_checkpoints(ppo_run: TrainResult, tmp_path: Path, tiny_config) -> None:
    run_dir = tmp_path / "corrupt"
    shutil.copytree(ppo_run.run_dir, run_dir)
    for model_zip in (run_dir / "checkpoints").glob("step_*/model.zip"):
        model_zip.write_bytes(model_zip.read_bytes()[:1000])  # truncated
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        train(tiny_config("ppo", total_steps=400), run_dir, resume=True, progress_bar=False)
    with pytest.raises(RunDirError, match="holds no run"):
        train(tiny_config("ppo"), tmp_path / "empty", resume=True, progress_bar=False)


def test_crash_penalty_shapes_training_rewards_only_on_crash_steps(tiny_config) -> None:
    from drivelab.agents.train import CrashPenalty, make_training_env

    shaped = make_training_env(tiny_config("ppo", crash_penalty=5.0), seed=7)
    plain = make_training_env(tiny_config("ppo"), seed=7)
    assert isinstance(shaped, CrashPenalty) and not isinstance(plain, CrashPenalty)
    idle = np.full(shaped.num_envs, 1)  # IDLE: highway-fast traffic soon runs into a constant-speed ego
    crashes = 0
    try:
        shaped.reset(), plain.reset()
        for _ in range(40):
            shaped.step_async(idle), plain.step_async(idle)
            (_, r_shaped, dones, infos), (_, r_plain, dones_plain, infos_plain) = shaped.step_wait(), plain.step_wait()
            np.testing.assert_array_equal(dones, dones_plain)
            crashed = np.array([bool(info.get("driving", {}).get("crashed")) for info in infos])
            crashes += int(crashed.sum())
            np.testing.assert_allclose(r_shaped, r_plain - 5.0 * crashed, atol=1e-6)
            for i in np.flatnonzero(dones):  # logged episode returns stay the env's own
                assert infos[i]["episode"]["r"] == infos_plain[i]["episode"]["r"]
    finally:
        shaped.close(), plain.close()
    assert crashes > 0


def test_selection_can_run_on_the_reference_backend(tmp_path: Path, tiny_config) -> None:
    """eval_backend=highway-env: the best export's recorded evaluation is what the reference backend
    gives that policy on the selection seeds (training itself stays on EnvPool)."""
    from drivelab.agents import SELECTION_SEED_BASE, evaluate, load_policy

    config = tiny_config("ppo", total_steps=128, eval_every_steps=64, eval_episodes=2, eval_envs=2,
                         eval_backend="highway-env")
    result = train(config, tmp_path / "run", progress_bar=False)
    best = load_policy(tmp_path / "run" / "best")
    again = evaluate(best, config.env_id, seeds=[SELECTION_SEED_BASE, SELECTION_SEED_BASE + 1], backend="highway-env",
                     num_envs=2, env_kwargs={"observation": "camera", "camera": dict(config.camera)})
    assert result.best_eval["mean_return"] == pytest.approx(again.summary()["mean_return"], rel=1e-9)
    with pytest.raises(ConfigError, match="eval_backend"):
        tiny_config("ppo", eval_backend="carla")


def test_dqn_n_steps_bootstraps_after_n_discounted_rewards(tiny_config) -> None:
    """dqn.n_steps reaches SB3: a sampled target sums n discounted rewards and discounts the rest by gamma**n."""
    from drivelab.agents.train import build_model, make_training_env

    config = tiny_config("dqn", **{"dqn.n_steps": 3, "dqn.gamma": 0.5})
    env = make_training_env(config, seed=0)
    try:
        model = build_model(config, env, "cpu")
        buffer = model.replay_buffer
        obs = np.zeros((env.num_envs, *env.observation_space.shape), dtype=env.observation_space.dtype)
        for step in range(6):  # rewards 1, 2, ..., 6 in every env, no episode end
            buffer.add(obs, obs, np.zeros((env.num_envs, 1)), np.full(env.num_envs, step + 1.0),
                       np.zeros(env.num_envs), [{} for _ in range(env.num_envs)])
        batch = buffer._get_samples(np.array([0, 2]))  # the same rewards in every env
    finally:
        env.close()
    np.testing.assert_allclose(batch.rewards.numpy().ravel(), [1 + 0.5 * 2 + 0.25 * 3, 3 + 0.5 * 4 + 0.25 * 5])
    np.testing.assert_allclose(batch.discounts.numpy().ravel(), [0.125, 0.125])
