"""`drivelab train`: one PPO, DQN or behaviour-cloning run into a resumable run folder."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Any

import torch

from drivelab.agents import ALGOS, TRAIN_SEED_LIMIT, ConfigError, load_train_config, train
from drivelab.agents.configs import OBSERVATIONS, POLICY_NETS, scenario_name
from drivelab.agents.train import load_run_config
from drivelab.core.config import parse_overrides

DEFAULT_ENV = "drivelab/highway-fast-v0"
DEFAULT_ALGO = "ppo"
MAX_THREADS = 1024
# Flags recorded in run.json's command, in this order.
TRAIN_FLAGS = ("env", "algo", "obs", "policy", "steps", "seed", "device", "encoder", "expert", "init_from",
               "hyperparams", "run_dir", "threads")


def configure(parser: argparse.ArgumentParser, command: str) -> None:
    """Add the arguments of ``drivelab train``."""
    parser.description = (
        "Train PPO, DQN or BC (behaviour cloning of an expert such as baseline:idm) with "
        "hyperparameters from agents/hyperparams/<scenario>.yaml "
        "(override any key with --set). The run folder holds the resolved config, checkpoints, "
        "TensorBoard logs and weights-only exports (best/ and final/)."
    )
    parser.add_argument("--env", default=None, help=f"scenario id (default {DEFAULT_ENV})")
    parser.add_argument("--algo", default=None, help=f"one of {', '.join(ALGOS)} (default {DEFAULT_ALGO})")
    parser.add_argument("--obs", default=None, help=f"observation: {' or '.join(OBSERVATIONS)} (default camera)")
    parser.add_argument("--policy", default=None,
                        help=f"network: {' or '.join(POLICY_NETS)} (default: cnn for camera, mlp for native)")
    parser.add_argument("--steps", type=int, default=None, help="total env steps (default from the YAML)")
    parser.add_argument("--seed", type=int, default=None,
                        help=f"training seed, in [0, {TRAIN_SEED_LIMIT:,}) minus the env count (default 0)")
    parser.add_argument("--device", default=None, help="auto (CUDA if available), cpu, cuda or cuda:N")
    parser.add_argument("--encoder", default=None, help="camera encoder: nature, fast, or a perception checkpoint")
    parser.add_argument("--expert", default=None,
                        help="bc: the policy to imitate (default baseline:idm; any policy label or export)")
    parser.add_argument("--init-from", default=None, metavar="RUN_OR_EXPORT",
                        help="ppo/dqn: start from this bc (or ppo) run's weights instead of random ones")
    parser.add_argument("--hyperparams", type=Path, default=None, help="YAML to use instead of the shipped one")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. ppo.n_envs=8 or camera.width=64 (repeatable)")
    parser.add_argument("--run-dir", type=Path, default=None,
                        help="run directory (default runs/<scenario>_<algo>_s<seed>)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its last checkpoint")
    parser.add_argument("--force", action="store_true", help="delete an existing run in --run-dir first")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def exit_status(signal_name: str) -> int:
    """The shell's status for a process a signal stopped: 128 + its number (130 SIGINT, 143 SIGTERM)."""
    return 128 + int(signal.Signals[signal_name])


def check_threads(threads: int | None) -> None:
    """Refuse a thread count torch cannot use."""
    if threads is not None and not 1 <= threads <= MAX_THREADS:
        raise ConfigError(f"--threads must be in [1, {MAX_THREADS}], got {threads}")


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
                      ("seed", "seed"), ("device", "device"), ("encoder", "encoder.name"),
                      ("expert", "bc.expert"), ("init_from", "init_from")):
        value = getattr(args, flag)
        if value is not None:
            overrides[key] = value
    if args.obs == "native" and args.policy is None:
        overrides["policy"] = "mlp"
    return overrides


def _flat(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config sections -> dotted keys (dict-valued fields camera/env_config stay whole)."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict) and key in ("encoder", *ALGOS):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def run(args: argparse.Namespace) -> int:
    """Resolve and check the config, then train; every check runs before anything is built."""
    check_threads(args.threads)
    if args.resume and args.run_dir is None:
        raise ConfigError("--resume needs --run-dir (the run to continue)")
    overrides = _overrides_from_args(args)
    if args.resume and args.env is None and args.algo is None:
        # Resume with the saved config; only --steps and --device may change it.
        saved = load_run_config(args.run_dir)
        config = load_train_config(saved.env_id, saved.algo, {**_flat(saved.to_dict()), **overrides})
    else:
        config = load_train_config(args.env or DEFAULT_ENV, args.algo or DEFAULT_ALGO, overrides, args.hyperparams)
    if args.expert is not None and config.algo != "bc":
        raise ConfigError(f"--expert is the policy bc imitates; with --algo {config.algo} use --init-from a bc run")
    run_dir = args.run_dir or Path("runs") / f"{scenario_name(config.env_id)}_{config.algo}_s{config.seed}"
    if args.threads:
        torch.set_num_threads(args.threads)
    result = train(config, run_dir, resume=args.resume, force=args.force, command=command_line(args),
                   progress_bar=not args.no_progress)
    best = result.best_eval
    if config.algo == "bc":  # a bc run counts training samples, not env steps
        print(f"run {result.run_dir}: {result.num_timesteps} training samples, {result.steps_per_s:.0f} samples/s")
    else:
        print(f"run {result.run_dir}: {result.num_timesteps} steps, {result.steps_per_s:.0f} env-steps/s")
    if result.interrupted_by:
        print(f"drivelab: {result.interrupted_by}: stopped at step {result.num_timesteps}, checkpoint saved; "
              f"continue with: drivelab train --run-dir {result.run_dir} --resume", file=sys.stderr)
        return exit_status(result.interrupted_by)
    if best:
        print(f"best held-out evaluation (step {best['step']}, {best['episodes']} episodes): "
              f"return {best['mean_return']:.2f}, crash rate {best['crash_rate']:.2f} -> {result.run_dir / 'best'}")
    print(f"final policy: {result.final_export}")
    return 0
