"""`drivelab bench rl`: train a suite (scenario x algorithm x seed) from YAML and record the results."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from drivelab.agents.suite import FAILED, only, read_suite, run_suite
from drivelab.agents.suite_ray import SHARED_FS_CHOICES
from drivelab.benchmarks.cli.train import check_threads, exit_status
from drivelab.core.errors import ConfigError
from drivelab.core.files import check_writable, write_json_atomic

RESULTS = Path("benchmarks/results")


def configure(parser: argparse.ArgumentParser, command: str) -> None:
    """Add the arguments of ``drivelab bench rl``."""
    parser.description = (
        "Train every run of a suite (benchmarks/suites/*.yaml) one after another, or as Ray tasks with "
        "--ray; finished runs are skipped and unfinished ones resumed. Writes a results JSON with each "
        "run's best held-out evaluation and the mean and std over seeds."
    )
    parser.add_argument("--suite", type=Path, required=True,
                        help="suite YAML, e.g. benchmarks/suites/highway-camera.yaml")
    parser.add_argument("--out", type=Path, default=None,
                        help="results JSON (default benchmarks/results/rl_<suite>_<time>.json)")
    parser.add_argument("--algos", nargs="+", default=None,
                        help="train only these of the suite's algorithms (e.g. PPO and DQN in two processes)")
    parser.add_argument("--seeds", nargs="+", type=int, default=None,
                        help="train only these of the suite's seeds (e.g. two seeds in two processes)")
    parser.add_argument("--scenarios", nargs="+", default=None, metavar="ENV_ID",
                        help="train only these of the suite's scenarios, e.g. drivelab/merge-v0")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    ray = parser.add_argument_group("Ray", "train each run as a Ray task (CPUs/GPUs per run: the suite's resources)")
    ray.add_argument("--ray", nargs="?", const="auto", default=None, metavar="ADDRESS",
                     help="run on Ray: 'auto' (the cluster of this machine, the default), HOST:PORT, or 'local' "
                          "(start Ray here for this command)")
    ray.add_argument("--ray-shared-fs", choices=SHARED_FS_CHOICES, default="auto",
                     help="whether every node sees runs_dir (auto: probe with a file); without, tasks send "
                          "their run folders back to this machine")
    ray.add_argument("--ray-retries", type=int, default=2,
                     help="times a failed or lost run is started again from its last checkpoint (default 2)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Check the suite and the output path, then train the suite and write its results."""
    check_threads(args.threads)
    if args.ray is not None and args.threads is not None:
        raise ConfigError("--threads sets local training threads; on Ray each run gets resources.cpus_per_run "
                          "threads (set it in the suite file)")
    suite = only(read_suite(args.suite), args.algos, args.seeds, args.scenarios)
    out = args.out or RESULTS / f"rl_{suite.name}_{time.strftime('%Y%m%d-%H%M%S')}.json"
    check_writable(out)
    if args.ray is not None:
        from drivelab.agents.suite_ray import run_suite_ray

        record = run_suite_ray(suite, address=args.ray, shared_fs=args.ray_shared_fs, max_retries=args.ray_retries)
    else:
        if args.threads:
            torch.set_num_threads(args.threads)
        record = run_suite(suite, progress_bar=not args.no_progress)
    write_json_atomic(out, {**record, "command": sys.argv})
    for row in record["summary"]:
        if row["mean_return"] is None:
            print(f"{row['scenario']} {row['algo']}: no evaluation")
            continue
        print(f"{row['scenario']} {row['algo']}: return {row['mean_return']:.2f} +- {row['std_return']:.2f} "
              f"crash rate {row['crash_rate']:.2f} over {row['seeds']} seeds ({row['eval_episodes']} episodes each)")
    failed = [r for r in record["runs"] if r["status"] == FAILED]
    for run in failed:
        print(f"failed: {run['run_dir']} after {run['attempts']} attempt(s): {run['errors'][-1]}", file=sys.stderr)
    print(f"results: {out}")
    if record.get("interrupted_by"):
        print(f"drivelab: {record['interrupted_by']}: the suite stopped; run the same command to continue it",
              file=sys.stderr)
        return exit_status(record["interrupted_by"])
    return 1 if failed else 0
