"""`drivelab bench train-speed`: end-to-end PPO training speed on camera frames, drivelab vs SB3 on highway-env pixels.

Both sides run Stable-Baselines3 PPO with the same update settings (epochs, minibatch size,
network heads) in one invocation, and the ratio is reported:

- drivelab: the batched backend, our camera (stacked grayscale frames) and the encoder and
  env count from ``agents/hyperparams/<scenario>.yaml`` (or ``--set`` overrides);
- baseline: highway-env's own ``GrayscaleObservation`` (128x64, 4 frames), one env in a
  ``DummyVecEnv``, SB3's NatureCNN ``CnnPolicy`` (highway-env's documented recipe).

Speed is env steps per second of ``learn`` (collection + forward passes + PPO updates),
measured between rollout boundaries after the first rollout (numba/JIT warm-up excluded).

    drivelab bench train-speed --steps 8192 --baseline-steps 256
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import gymnasium
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import DummyVecEnv

from drivelab.agents import load_train_config, train
from drivelab.benchmarks.bench.env import HIGHWAY_ENV_GRAYSCALE
from drivelab.core.config import parse_overrides
from drivelab.core.errors import ConfigError
from drivelab.core.files import check_writable, write_json_atomic
from drivelab.core.provenance import machine_info

RESULTS = Path("benchmarks/results")


class RolloutClock(BaseCallback):
    """Records (wall time, env steps) at every rollout start and at the end of training."""

    def __init__(self) -> None:
        super().__init__()
        self.marks: list[tuple[float, int]] = []

    def _on_rollout_start(self) -> None:
        self.marks.append((time.perf_counter(), self.num_timesteps))

    def _on_step(self) -> bool:
        return True

    def _on_training_end(self) -> None:
        self.marks.append((time.perf_counter(), self.num_timesteps))

    def steps_per_s(self) -> tuple[float, int, float]:
        """(env steps/s, steps, seconds) from the second rollout start to the end."""
        (start, first), (end, last) = self.marks[1], self.marks[-1]
        return (last - first) / (end - start), last - first, end - start


def measure_drivelab(env_id: str, steps: int, overrides: dict[str, Any]) -> dict[str, Any]:
    """PPO through ``drivelab.agents.train`` (checkpoints and evaluation off) for ``steps`` steps."""
    config = load_train_config(env_id, "ppo", {
        "eval_every_steps": 0, "checkpoint_every_steps": 10**9, "device": "cpu", **overrides,
    })
    rollout = config.ppo.n_envs * config.ppo.n_steps
    config = config.replace(total_steps=steps + rollout)  # the first rollout is warm-up
    clock = RolloutClock()
    with tempfile.TemporaryDirectory() as run_dir:
        train(config, Path(run_dir) / "run", progress_bar=False, extra_callbacks=[clock])
    sps, measured, seconds = clock.steps_per_s()
    return {"steps_per_s": sps, "steps": measured, "seconds": seconds, "config": config.to_dict()}


def measure_highway_env(env_id: str, steps: int, n_steps: int, n_epochs: int, batch_size: int) -> dict[str, Any]:
    """SB3 PPO ``CnnPolicy`` on one highway-env env with ``GrayscaleObservation``."""
    import highway_env  # noqa: F401  (registers the ids)

    highway_id = env_id.split("/")[-1]
    env = DummyVecEnv([lambda: gymnasium.make(highway_id, config={"observation": HIGHWAY_ENV_GRAYSCALE})])
    model = PPO("CnnPolicy", env, n_steps=n_steps, batch_size=batch_size, n_epochs=n_epochs,
                learning_rate=5e-4, gamma=0.8, seed=0, device="cpu", verbose=0)
    clock = RolloutClock()
    model.learn(steps + n_steps, callback=clock)
    env.close()
    sps, measured, seconds = clock.steps_per_s()
    return {
        "steps_per_s": sps, "steps": measured, "seconds": seconds,
        "config": {"env_id": highway_id, "observation": dict(HIGHWAY_ENV_GRAYSCALE), "n_envs": 1,
                   "n_steps": n_steps, "n_epochs": n_epochs, "batch_size": batch_size, "policy": "CnnPolicy"},
    }


def run(env_id: str, steps: int, baseline_steps: int, overrides: dict[str, Any]) -> dict[str, Any]:
    """Measure both and return the JSON record."""
    drivelab = measure_drivelab(env_id, steps, overrides)
    ppo = drivelab["config"]["ppo"]
    baseline = measure_highway_env(env_id, baseline_steps, n_steps=min(128, baseline_steps),
                                   n_epochs=ppo["n_epochs"], batch_size=min(ppo["batch_size"], 64))
    return {
        "benchmark": "train_speed",
        "what": "end-to-end SB3 PPO env-steps/s on camera frames",
        "machine": machine_info(),
        "torch_threads": torch.get_num_threads(),
        "drivelab": drivelab,
        "highway_env_baseline": baseline,
        "speedup": drivelab["steps_per_s"] / baseline["steps_per_s"],
    }


def configure(parser: argparse.ArgumentParser, command: str) -> None:
    """Arguments of ``drivelab bench train-speed``."""
    parser.description = __doc__.split("\n\n", 1)[1]
    parser.add_argument("--env", default="drivelab/highway-fast-v0", help="scenario id (default %(default)s)")
    parser.add_argument("--steps", type=int, default=8192,
                        help="measured drivelab env steps, after one warm-up rollout (default %(default)s)")
    parser.add_argument("--baseline-steps", type=int, default=256,
                        help="measured highway-env env steps, after one warm-up rollout (default %(default)s)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="drivelab config override, e.g. ppo.n_envs=64 or camera.width=64 (repeatable)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=RESULTS / "train_speed.json",
                        help="result JSON (default %(default)s)")
    parser.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    """Check the arguments, measure both sides, write the JSON record and print the ratio."""
    for flag, value in (("--steps", args.steps), ("--baseline-steps", args.baseline_steps)):
        if value < 1:
            raise ConfigError(f"{flag} must be at least 1, got {value}")
    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"--threads must be at least 1, got {args.threads}")
    overrides = parse_overrides(args.set)
    load_train_config(args.env, "ppo", overrides)  # an unknown or ill-typed key fails here, not after training
    check_writable(args.out)
    if args.threads:
        torch.set_num_threads(args.threads)
    record = run(args.env, args.steps, args.baseline_steps, overrides)
    write_json_atomic(args.out, record)
    drivelab, baseline = record["drivelab"], record["highway_env_baseline"]
    print(f"drivelab PPO camera: {drivelab['steps_per_s']:.0f} env-steps/s "
          f"({drivelab['steps']} steps in {drivelab['seconds']:.1f} s)")
    print(f"SB3 + highway-env GrayscaleObservation: {baseline['steps_per_s']:.1f} env-steps/s "
          f"({baseline['steps']} steps in {baseline['seconds']:.1f} s)")
    print(f"speedup x{record['speedup']:.1f} -> {args.out}")
    return 0
