"""`drivelab bench pretrained`: RL on camera frames with a pretrained encoder vs the same encoder
from random weights: same steps, same seeds, evaluated on the protocol's held-out seeds.

The encoder checkpoint comes from ``drivelab perception`` (a classifier's or detector's
backbone, trained on single frames); both arms train on the camera it was trained on
(``--camera``), and the extractor runs it on each stacked frame. ``encoder.pretrained=false`` builds the
identical network with random weights.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from drivelab.agents import env_kwargs_from_spec, load_policy
from drivelab.agents.evaluation import evaluate
from drivelab.agents.protocol import TRAIN_SEED_LIMIT, load_protocol
from drivelab.core.errors import ConfigError
from drivelab.core.files import check_writable, write_json_atomic, write_text_atomic
from drivelab.core.provenance import machine_info

RESULTS = Path("benchmarks/results")


def configure(parser: argparse.ArgumentParser, command: str) -> None:
    """Arguments of ``drivelab bench pretrained``."""
    parser.description = __doc__
    parser.add_argument("--encoder", type=Path, required=True,
                        help="perception checkpoint (.safetensors) whose backbone initialises the encoder")
    parser.add_argument("--env", default="drivelab/highway-fast-v0", help="scenario id (default %(default)s)")
    parser.add_argument("--steps", type=int, default=100_000, help="PPO env steps per run (default %(default)s)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1],
                        help="training seeds; each trains both arms (default 0 1)")
    parser.add_argument("--episodes", type=int, default=100,
                        help="protocol episodes per trained agent (default %(default)s)")
    parser.add_argument("--backend", default="envpool",
                        help="evaluation backend, recorded with the results (default %(default)s)")
    parser.add_argument("--freeze", action="store_true", help="keep the encoder frozen in both arms")
    parser.add_argument("--camera", default="width=128,height=64,metres_per_pixel=0.5",
                        help="the camera the encoder was trained on, KEY=VALUE,... (default %(default)s)")
    parser.add_argument("--runs", type=Path, default=Path("runs/pretrained"),
                        help="folder of the run folders (default %(default)s)")
    parser.add_argument("--out", type=Path, default=RESULTS / "pretrained_vs_random.json",
                        help="result JSON; the Markdown table goes beside it as .md (default %(default)s)")
    parser.set_defaults(func=run)


def _check_args(args: argparse.Namespace) -> None:
    """Refuse bad arguments before the first (long) training run."""
    if not args.encoder.is_file():
        raise ConfigError(f"--encoder {args.encoder} is not a file; give a `drivelab perception` checkpoint")
    if args.steps < 1 or args.episodes < 1:
        raise ConfigError(f"--steps and --episodes must be at least 1, got {args.steps} and {args.episodes}")
    bad = [seed for seed in args.seeds if not 0 <= seed < TRAIN_SEED_LIMIT]
    if bad:
        raise ConfigError(f"--seeds must lie in 0..{TRAIN_SEED_LIMIT - 1} (training seeds), got {bad[0]}")
    load_protocol().check_backend(args.backend)
    check_writable(args.runs, folder=True)
    check_writable(args.out)
    check_writable(args.out.with_suffix(".md"))


def run(args: argparse.Namespace) -> int:
    """Train both arms for every seed (through ``drivelab train``), evaluate, write JSON + Markdown."""
    _check_args(args)
    dispatch = args.dispatch
    arms = {"pretrained": "true", "random_init": "false"}
    rows: list[dict[str, Any]] = []
    for seed in args.seeds:
        for arm, pretrained in arms.items():
            run_dir = args.runs / f"{arm}-s{seed}"
            argv = ["train", "--env", args.env, "--algo", "ppo", "--steps", str(args.steps), "--seed", str(seed),
                    "--encoder", str(args.encoder), "--run-dir", str(run_dir), "--force", "--threads", "1",
                    "--no-progress", "--set", f"encoder.pretrained={pretrained}",
                    "--set", f"encoder.freeze={'true' if args.freeze else 'false'}",
                    "--set", f"eval_every_steps={max(args.steps // 4, 1)}"]
            for pair in args.camera.split(","):
                argv += ["--set", f"camera.{pair.strip()}"]
            print("$ drivelab " + " ".join(argv), flush=True)
            if dispatch(argv) != 0:
                return 2
            policy = load_policy(str(run_dir), args.env)
            result = evaluate(policy, args.env, episodes=args.episodes, backend=args.backend,
                              num_envs=args.episodes, env_kwargs=env_kwargs_from_spec(policy.source.spec))
            returns = result.metric("episode_return")
            rows.append({"arm": arm, "seed": seed, "mean_return": float(returns.mean()),
                         "crash_rate": float(result.metric("crashed").mean()), "episodes": len(returns)})
            print(rows[-1], flush=True)
    summary = {}
    for arm in arms:
        mine = [r for r in rows if r["arm"] == arm]
        summary[arm] = {"mean_return": float(np.mean([r["mean_return"] for r in mine])),
                        "crash_rate": float(np.mean([r["crash_rate"] for r in mine]))}
    winner = max(summary, key=lambda a: summary[a]["mean_return"])
    record = {"benchmark": "pretrained-vs-random-encoder", "env_id": args.env, "encoder": str(args.encoder),
              "steps": args.steps, "seeds": args.seeds, "freeze": args.freeze, "eval_backend": args.backend,
              "runs": rows, "summary": summary, "higher_mean_return": winner, "machine": machine_info()}
    write_json_atomic(args.out, record)
    lines = [f"PPO, {args.env}, {args.steps} steps per run, seeds {args.seeds}, camera {args.camera}, "
             f"encoder {'frozen' if args.freeze else 'fine-tuned'}; {args.episodes} protocol episodes per run "
             f"({args.backend} backend).", "", "| encoder | seed | mean return | crash rate |", "|---|---:|---:|---:|"]
    lines += [f"| {r['arm']} | {r['seed']} | {r['mean_return']:.2f} | {r['crash_rate']:.2f} |" for r in rows]
    lines += [f"| **{arm}** (mean) | | **{s['mean_return']:.2f}** | **{s['crash_rate']:.2f}** |"
              for arm, s in summary.items()]
    write_text_atomic(args.out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0
