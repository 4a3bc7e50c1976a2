"""`drivelab bench gpu`: the GPU path checked end to end on a CUDA machine, in one run of a few minutes.

1. Training speed: PPO on camera frames (``--env``, its hyperparameters from
   ``agents/hyperparams``) with ``device cuda``, then the same run with ``device cpu``; env
   steps per second of ``learn`` after the first rollout (``bench train-speed``'s clock) and
   their ratio.
2. Batched evaluation: the CUDA-trained policy on the batched backend, episodes per second.
3. Parity: the CUDA run's weights-only export loads on the CPU and acts as on the GPU: the same
   deterministic actions on the same observations, and the same returns on protocol seeds.

Writes ``--out`` (JSON, with ``machine.cuda`` naming the GPU) and the same path with ``.md``
(README's ``gpu_check`` table). On a machine without CUDA it says so in one line and exits 2
before any work. ``benchmarks/gpu_check.sh`` installs drivelab and runs this, then times a suite
on Ray on the same machine.

    drivelab bench gpu --steps 100000 --minutes 2
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

import drivelab.envs as de
from drivelab.agents import env_kwargs_from_spec, evaluate, load_policy, load_train_config, train
from drivelab.agents.policies import Policy
from drivelab.agents.protocol import load_protocol
from drivelab.benchmarks.bench.train_speed import RolloutClock
from drivelab.core.config import parse_overrides
from drivelab.core.errors import ConfigError, DrivelabError
from drivelab.core.files import check_writable, write_json_atomic, write_text_atomic
from drivelab.core.provenance import machine_info

RESULTS = Path("benchmarks/results")
PARITY_SEED = 12_345  # where parity observations are collected (any seed; fixed for reproducibility)


class NoCudaError(DrivelabError, RuntimeError):
    """``bench gpu`` on a machine where torch sees no CUDA device."""


def require_cuda() -> str:
    """The GPU's name; raises ``NoCudaError`` (one line) where torch sees no CUDA device."""
    if not torch.cuda.is_available():
        built = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        raise NoCudaError(f"no CUDA device: bench gpu needs a GPU machine (torch {torch.__version__}, {built}, "
                          "sees none); run benchmarks/gpu_check.sh there")
    return torch.cuda.get_device_name(0)


def measure_training(env_id: str, device: str, steps: int, minutes: float, overrides: dict[str, Any],
                     run_dir: Path) -> dict[str, Any]:
    """PPO for ``steps`` env steps (or ``minutes``) on ``device``; env-steps/s after the first rollout."""
    config = load_train_config(env_id, "ppo", {"eval_every_steps": 0, "checkpoint_every_steps": 10**9,
                                               **overrides, "device": device, "max_minutes": minutes})
    rollout = config.ppo.n_envs * config.ppo.n_steps
    config = config.replace(total_steps=steps + rollout)  # the first rollout is warm-up
    clock = RolloutClock()
    result = train(config, run_dir, progress_bar=False, extra_callbacks=[clock])
    steps_per_s, measured, seconds = clock.steps_per_s()
    return {"device": device, "steps_per_s": steps_per_s, "steps": measured, "seconds": seconds,
            "num_timesteps": result.num_timesteps, "export": str(result.final_export), "config": config.to_dict()}


def collect_observations(policy: Policy, env_id: str, env_kwargs: dict[str, Any], num_envs: int,
                         steps: int, seed: int) -> list[np.ndarray]:
    """``steps`` observation batches ``(num_envs, C, H, W)`` met by ``policy`` driving from ``seed``."""
    vec = de.make_vec(env_id, num_envs=num_envs, seed=seed, backend="envpool", **env_kwargs)
    try:
        observation, _ = vec.reset(seed=seed)
        policy.reset(None)
        batches = []
        for _ in range(steps):
            batches.append(np.array(observation))
            observation, *_ = vec.step(policy.act(observation, vec, deterministic=True))
        return batches
    finally:
        vec.close()


def compare_actions(reference: Policy, candidate: Policy, observations: Sequence[np.ndarray]) -> dict[str, Any]:
    """Deterministic actions of two policies on the same observation batches.

    Returns:
        ``observations`` (count), ``identical`` (how many got the same action; for continuous
        actions: equal within 1e-5), ``max_abs_diff`` and ``all_identical``.
    """
    identical, total, max_diff = 0, 0, 0.0
    for batch in observations:
        expected = np.asarray(reference.act(batch, deterministic=True), dtype=np.float64).reshape(len(batch), -1)
        actual = np.asarray(candidate.act(batch, deterministic=True), dtype=np.float64).reshape(len(batch), -1)
        difference = np.abs(expected - actual).max(axis=1)
        identical += int((difference <= 1e-5).sum())
        total += len(batch)
        max_diff = max(max_diff, float(difference.max()))
    return {"observations": total, "identical": identical, "max_abs_diff": max_diff,
            "all_identical": identical == total}


def check_parity(export: Path, env_id: str, episodes: int, batches: int) -> dict[str, Any]:
    """The CUDA-trained export loaded on CUDA and on the CPU: actions, then protocol returns."""
    on_gpu, on_cpu = load_policy(export, env_id, device="cuda"), load_policy(export, env_id, device="cpu")
    env_kwargs = env_kwargs_from_spec(on_cpu.source.spec)
    observations = collect_observations(on_cpu, env_id, env_kwargs, num_envs=16, steps=batches, seed=PARITY_SEED)
    actions = compare_actions(on_gpu, on_cpu, observations)
    returns, seeds = {}, []
    for name, policy in (("cuda", on_gpu), ("cpu", on_cpu)):
        result = evaluate(policy, env_id, episodes=episodes, backend="envpool", num_envs=episodes,
                          env_kwargs=env_kwargs)
        returns[name], seeds = result.metric("episode_return").tolist(), [int(s) for s in result.seeds]
    return {"actions": actions, "protocol_seeds": seeds, "returns": returns,
            "same_returns": returns["cuda"] == returns["cpu"]}


def measure_evaluation(export: Path, env_id: str, episodes: int) -> dict[str, Any]:
    """Batched evaluation of the CUDA policy: episodes/s on the protocol seeds (after a warm-up)."""
    policy = load_policy(export, env_id, device="cuda")
    env_kwargs = env_kwargs_from_spec(policy.source.spec)
    evaluate(policy, env_id, episodes=4, backend="envpool", num_envs=4, env_kwargs=env_kwargs)
    policy.reset(None)
    start = time.perf_counter()
    result = evaluate(policy, env_id, episodes=episodes, backend="envpool", num_envs=min(episodes, 128),
                      env_kwargs=env_kwargs)
    seconds = time.perf_counter() - start
    return {"episodes": episodes, "seconds": seconds, "episodes_per_s": episodes / seconds,
            "mean_return": result.summary()["mean_return"]}


def run(env_id: str, steps: int, minutes: float, eval_episodes: int, parity_episodes: int,
        overrides: dict[str, Any]) -> dict[str, Any]:
    """All three checks; the JSON record."""
    gpu = require_cuda()
    with tempfile.TemporaryDirectory(prefix="drivelab-gpu-") as scratch:
        cuda = measure_training(env_id, "cuda", steps, minutes, overrides, Path(scratch) / "cuda")
        cpu = measure_training(env_id, "cpu", steps, minutes, overrides, Path(scratch) / "cpu")
        export = Path(cuda["export"])
        evaluation = measure_evaluation(export, env_id, eval_episodes)
        parity = check_parity(export, env_id, parity_episodes, batches=32)
    return {
        "benchmark": "gpu_check",
        "what": "PPO on camera frames: env-steps/s on CUDA vs CPU; batched evaluation; CUDA-trained export on CPU",
        "gpu": gpu,
        "env_id": env_id,
        "training": {"cuda": cuda, "cpu": cpu, "speedup": cuda["steps_per_s"] / cpu["steps_per_s"]},
        "evaluation": evaluation,
        "parity": parity,
        "torch_threads": torch.get_num_threads(),
        "machine": machine_info(),
    }


def format_table(record: dict[str, Any]) -> str:
    """README's ``gpu_check`` table."""
    training, evaluation, parity = record["training"], record["evaluation"], record["parity"]
    actions = parity["actions"]
    lines = [
        f"{record['gpu']}, {record['machine']['cpu']} ({record['machine']['cpu_affinity']} cores, "
        f"{record['torch_threads']} torch threads); PPO on camera frames, {record['env_id']}.",
        "",
        "| check | CUDA | CPU | ratio |",
        "|---|---:|---:|---:|",
        f"| PPO training [env-steps/s] | {training['cuda']['steps_per_s']:.0f} | {training['cpu']['steps_per_s']:.0f} "
        f"| {training['speedup']:.2f}x |",
        f"| batched evaluation [episodes/s] | {evaluation['episodes_per_s']:.1f} | | |",
        f"| CUDA export on CPU: same actions | {actions['identical']}/{actions['observations']} "
        f"(max diff {actions['max_abs_diff']:.1e}) | | |",
        f"| same protocol returns ({len(parity['returns']['cpu'])} seeds) | "
        f"{'yes' if parity['same_returns'] else 'NO'} | | |",
    ]
    return "\n".join(lines)


def configure(parser: argparse.ArgumentParser, command: str) -> None:
    """Arguments of ``drivelab bench gpu``."""
    parser.description = __doc__.split("\n\n", 1)[1]
    parser.add_argument("--env", default="drivelab/highway-fast-v0", help="scenario id (default %(default)s)")
    parser.add_argument("--steps", type=int, default=100_000,
                        help="measured PPO env steps per device, after one warm-up rollout (default %(default)s)")
    parser.add_argument("--minutes", type=float, default=2.0,
                        help="time cap per training run [min] (default %(default)s)")
    parser.add_argument("--eval-episodes", type=int, default=100,
                        help="timed evaluation episodes, on the protocol's seeds (default %(default)s, all of them)")
    parser.add_argument("--parity-episodes", type=int, default=8,
                        help="protocol seeds on which CUDA and CPU returns must agree (default %(default)s)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="training config override for both runs, e.g. ppo.n_envs=64 (repeatable)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=RESULTS / "gpu_check.json",
                        help="result JSON; the Markdown table goes beside it with .md (default %(default)s)")
    parser.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    """Refuse without CUDA, check the arguments, run the checks, write JSON and Markdown."""
    require_cuda()  # first: nothing else is worth doing on a machine without a GPU
    for flag, value in (("--steps", args.steps), ("--eval-episodes", args.eval_episodes),
                        ("--parity-episodes", args.parity_episodes), ("--threads", args.threads or 1)):
        if value < 1:
            raise ConfigError(f"{flag} must be at least 1, got {value}")
    if not args.minutes > 0:
        raise ConfigError(f"--minutes must be positive, got {args.minutes}")
    overrides = parse_overrides(args.set)
    load_train_config(args.env, "ppo", overrides)  # an unknown or ill-typed key fails here, not after training
    for episodes in (args.eval_episodes, args.parity_episodes):  # the protocol has that many seeds
        load_protocol().seeds_for(args.env, episodes)
    check_writable(args.out)
    check_writable(args.out.with_suffix(".md"))
    if args.threads:
        torch.set_num_threads(args.threads)
    record = run(args.env, args.steps, args.minutes, args.eval_episodes, args.parity_episodes, overrides)
    write_json_atomic(args.out, record)
    table = format_table(record)
    write_text_atomic(args.out.with_suffix(".md"), f"`{record['machine']['command']}`, "
                      f"{record['machine']['timestamp_utc']}.\n\n{table}\n")
    print(table)
    print(f"-> {args.out}")
    parity = record["parity"]
    return 0 if parity["actions"]["all_identical"] and parity["same_returns"] else 1
