"""`drivelab train` (one PPO/DQN run) and `drivelab bench rl` (a training suite from YAML)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

from drivelab.agents import ALGOS, ConfigError, load_train_config, train
from drivelab.agents.configs import parse_overrides, scenario_name
from drivelab.agents.suite import only, read_suite, run_suite
from drivelab.agents.train import load_run_config
from drivelab.benchmarks import bench_train_speed

RESULTS = Path("benchmarks/results")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``train``."""
    parser = subparsers.add_parser(
        "train", help="train PPO or DQN on a scenario (camera frames by default)",
        description="Train PPO or DQN with hyperparameters from agents/hyperparams/<scenario>.yaml.",
    )
    parser.add_argument("--env", default=None, help="scenario id (default drivelab/highway-fast-v0)")
    parser.add_argument("--algo", default=None, help=f"one of {', '.join(ALGOS)} (default ppo)")
    parser.add_argument("--obs", default=None, help="camera (default) or native observations")
    parser.add_argument("--policy", default=None, help="cnn (camera) or mlp (native); default from --obs")
    parser.add_argument("--steps", type=int, default=None, help="total env steps (default from YAML)")
    parser.add_argument("--seed", type=int, default=None, help="training seed, < 1,000,000 (default 0)")
    parser.add_argument("--device", default=None, help="auto (CUDA if available), cpu, cuda, cuda:N")
    parser.add_argument("--encoder", default=None, help="nature, fast, or a perception checkpoint path")
    parser.add_argument("--hyperparams", type=Path, default=None, help="YAML to use instead of the shipped one")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. ppo.n_envs=8 or camera.width=64 (repeatable)")
    parser.add_argument("--run-dir", type=Path, default=None,
                        help="run directory (default runs/<scenario>_<algo>_s<seed>)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --run-dir")
    parser.add_argument("--force", action="store_true", help="delete an existing run in --run-dir first")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run_train)


def register_bench(bench: argparse._SubParsersAction) -> None:
    """Add ``bench rl``."""
    parser = bench.add_parser("rl", help="train a suite (scenario x algo x seeds) from YAML, one run after another")
    parser.add_argument("--suite", type=Path, required=True, help="e.g. benchmarks/suites/highway-camera.yaml")
    parser.add_argument("--out", type=Path, default=None,
                        help="results JSON (default benchmarks/results/rl_<suite>_<time>.json)")
    parser.add_argument("--algos", nargs="+", default=None,
                        help="train only these of the suite's algorithms (e.g. PPO and DQN in two processes)")
    parser.add_argument("--seeds", nargs="+", type=int, default=None,
                        help="train only these of the suite's seeds (e.g. two seeds in two processes)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=run_bench_rl)
    speed = bench.add_parser("train-speed", help="end-to-end PPO env-steps/s on camera frames vs SB3 + highway-env")
    bench_train_speed.add_arguments(speed)
    speed.set_defaults(func=lambda args: bench_train_speed.run_from_args(args) and 0)


TRAIN_FLAGS = ("env", "algo", "obs", "policy", "steps", "seed", "device", "encoder", "hyperparams",
               "run_dir", "threads")


def command_line(args: argparse.Namespace) -> list[str]:
    """The ``drivelab train`` command equivalent to parsed arguments (what run.json records)."""
    command = ["drivelab", "train"]
    for name in TRAIN_FLAGS:
        value = getattr(args, name)
        if value is not None:
            command += [f"--{name.replace('_', '-')}", str(value)]
    for pair in args.set:
        command += ["--set", pair]
    command += [flag for flag, on in (("--resume", args.resume), ("--force", args.force)) if on]
    return command


def _overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    overrides = parse_overrides(args.set)
    for flag, key in (("obs", "observation"), ("policy", "policy"), ("steps", "total_steps"),
                      ("seed", "seed"), ("device", "device"), ("encoder", "encoder.name")):
        value = getattr(args, flag)
        if value is not None:
            overrides[key] = value
    if args.obs == "native" and args.policy is None:
        overrides["policy"] = "mlp"
    return overrides


def run_train(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.resume and args.run_dir is None:
        raise ConfigError("--resume needs --run-dir (the run to continue)")
    overrides = _overrides_from_args(args)
    if args.resume and args.env is None and args.algo is None:
        # Resume with the saved config; only --steps and --device may change it.
        saved = load_run_config(args.run_dir)
        config = load_train_config(saved.env_id, saved.algo, {**_flat(saved.to_dict()), **overrides})
    else:
        config = load_train_config(args.env or "drivelab/highway-fast-v0", args.algo or "ppo", overrides,
                                   args.hyperparams)
    run_dir = args.run_dir or Path("runs") / f"{scenario_name(config.env_id)}_{config.algo}_s{config.seed}"
    result = train(config, run_dir, resume=args.resume, force=args.force, command=command_line(args),
                   progress_bar=not args.no_progress)
    best = result.best_eval
    print(f"run {result.run_dir}: {result.num_timesteps} steps, {result.steps_per_s:.0f} env-steps/s")
    if best:
        print(f"best held-out evaluation (step {best['step']}, {best['episodes']} episodes): "
              f"return {best['mean_return']:.2f}, crash rate {best['crash_rate']:.2f} -> {result.run_dir / 'best'}")
    print(f"final policy: {result.final_export}")
    return 0


def _flat(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config sections -> dotted keys (dict-valued fields camera/env_config stay whole)."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict) and key in ("encoder", *ALGOS):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def run_bench_rl(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    suite = only(read_suite(args.suite), args.algos, args.seeds)
    record = run_suite(suite, progress_bar=not args.no_progress)
    out = args.out or RESULTS / f"rl_{suite.name}_{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({**record, "command": sys.argv}, indent=2))
    os.replace(tmp, out)
    for row in record["summary"]:
        if row["mean_return"] is None:
            print(f"{row['scenario']} {row['algo']}: no evaluation")
            continue
        print(f"{row['scenario']} {row['algo']}: return {row['mean_return']:.2f} +- {row['std_return']:.2f} "
              f"crash rate {row['crash_rate']:.2f} over {row['seeds']} seeds ({row['eval_episodes']} episodes each)")
    print(f"results: {out}")
    return 0
