"""`drivelab demo`: the main job end to end, through the same commands a user runs.

1. the batched environments: throughput, episode metrics, camera MP4 and PNG;
2. `drivelab train`: a small PPO agent on camera frames;
3. `drivelab eval --submit`: the agent and two baselines on held-out protocol seeds, into a
   leaderboard, with the agent's failed episodes replayed as MP4;
4. `drivelab watch --record`: a video of the agent driving;
5. `drivelab leaderboard`: the ranked table (and a static HTML page).

Everything goes under ``--out`` (default runs/demo); the demo replaces its own earlier output.
"""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from drivelab.benchmarks.cli_env import run_env_demo

Dispatch = Callable[[Sequence[str]], int]


def register(subparsers: argparse._SubParsersAction) -> None:
    demo = subparsers.add_parser("demo", help="the main job: env demo, train, evaluate, leaderboard, video")
    demo.add_argument("--env", default="drivelab/highway-fast-v0", help="scenario id (default %(default)s)")
    demo.add_argument("--train-steps", type=int, default=30_000, help="PPO env steps (default %(default)s)")
    demo.add_argument("--episodes", type=int, default=20, help="evaluation episodes per entry (default %(default)s)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder (default %(default)s)")
    demo.add_argument("--env-only", action="store_true", help="stop after the environment demo")
    demo.set_defaults(func=run_demo)


def _step(title: str) -> None:
    print(f"\n=== {title} ===", flush=True)


def run_demo(args: argparse.Namespace) -> int:
    dispatch: Dispatch = args.dispatch
    out: Path = args.out
    _step("1. environments: 64 batched highway-fast envs, camera frames")
    run_env_demo(args.env, 64, 300, args.seed, out)
    if args.env_only:
        return 0
    run_dir, db = out / "ppo", out / "leaderboard.db"
    for stale in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        stale.unlink(missing_ok=True)  # the demo's own leaderboard starts afresh
    shutil.rmtree(out / "failures", ignore_errors=True)
    eval_every = max(args.train_steps // 3, 1)
    commands = [
        ("2. train a small PPO agent on camera frames",
         ["train", "--env", args.env, "--algo", "ppo", "--steps", str(args.train_steps), "--seed", str(args.seed),
          "--run-dir", str(run_dir), "--force", "--threads", "1", "--no-progress",
          "--set", f"eval_every_steps={eval_every}", "--set", f"checkpoint_every_steps={eval_every}",
          "--set", "eval_episodes=20"]),
        ("3. evaluate it and two baselines under drivelab-eval-v1, submit to the leaderboard",
         ["eval", "--policy", str(run_dir), "--env", args.env, "--episodes", str(args.episodes), "--submit",
          "--name", "demo-ppo", "--db", str(db), "--record-failures", str(out / "failures"),
          "--max-failure-videos", "1"]),
        (None, ["eval", "--policy", "baseline:idm", "--env", args.env, "--episodes", str(args.episodes),
                "--submit", "--name", "idm", "--db", str(db)]),
        (None, ["eval", "--policy", "baseline:idle", "--env", args.env, "--episodes", str(args.episodes),
                "--submit", "--name", "idle", "--db", str(db)]),
        ("4. watch the agent drive (MP4)",
         ["watch", "--policy", str(run_dir), "--env", args.env, "--seed", "10000000",
          "--record", str(out / "agent.mp4")]),
        ("5. the leaderboard",
         ["leaderboard", "--db", str(db), "--format", "html", "--out", str(out / "leaderboard")]),
        (None, ["leaderboard", "--db", str(db), "--format", "table"]),
    ]
    for title, argv in commands:
        if title:
            _step(title)
        print("$ drivelab " + " ".join(argv), flush=True)
        status = dispatch(argv)
        if status != 0:
            return status
    return 0
