"""`drivelab bench rl`: train a suite (scenario x algorithm x seed) from YAML and record the results."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from drivelab.agents.suite import only, read_suite, run_suite
from drivelab.benchmarks.cli.train import check_threads, exit_status
from drivelab.core.files import check_writable, write_json_atomic

RESULTS = Path("benchmarks/results")


def configure(parser: argparse.ArgumentParser, command: str) -> None:
    """Add the arguments of ``drivelab bench rl``."""
    parser.description = (
        "Train every run of a suite (benchmarks/suites/*.yaml) one after another; finished runs are "
        "skipped and unfinished ones resumed. Writes a results JSON with each run's best held-out "
        "evaluation and the mean and std over seeds."
    )
    parser.add_argument("--suite", type=Path, required=True,
                        help="suite YAML, e.g. benchmarks/suites/highway-camera.yaml")
    parser.add_argument("--out", type=Path, default=None,
                        help="results JSON (default benchmarks/results/rl_<suite>_<time>.json)")
    parser.add_argument("--algos", nargs="+", default=None,
                        help="train only these of the suite's algorithms (e.g. PPO and DQN in two processes)")
    parser.add_argument("--seeds", nargs="+", type=int, default=None,
                        help="train only these of the suite's seeds (e.g. two seeds in two processes)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Check the suite and the output path, then train the suite and write its results."""
    check_threads(args.threads)
    suite = only(read_suite(args.suite), args.algos, args.seeds)
    out = args.out or RESULTS / f"rl_{suite.name}_{time.strftime('%Y%m%d-%H%M%S')}.json"
    check_writable(out)
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
    print(f"results: {out}")
    if record.get("interrupted_by"):
        print(f"drivelab: {record['interrupted_by']}: the suite stopped; run the same command to continue it",
              file=sys.stderr)
        return exit_status(record["interrupted_by"])
    return 0
