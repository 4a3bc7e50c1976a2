"""`drivelab bench leaderboard`: the baseline leaderboard, generated, never typed.

Evaluates random, idle and the IDM/MOBIL driver, and the trained camera agents found under
``--runs`` (every run directory below it whose ``config.json`` names ``--env`` and camera
frames: one entry per algorithm, one run per training seed, as `drivelab bench rl` lays them out) on
the protocol's held-out seeds with the reference backend; submits them to ``--db``; writes
``benchmarks/results/LEADERBOARD.md`` (shown in README), a static HTML page, failure videos
of the trained agents, and ``benchmarks/results/rl_highway_camera.{json,md}``: each agent's
per-seed results with mean and spread across training seeds.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from drivelab.benchmarks.leaderboard import Leaderboard
from drivelab.envs.errors import ConfigError
from drivelab.core.files import write_json_atomic
from drivelab.core.provenance import machine_info

RESULTS = Path("benchmarks/results")
BASELINES = ("random", "idle", "idm")
ALGOS = ("ppo", "dqn")


def register(subparsers: argparse._SubParsersAction) -> None:
    """No top-level command; see ``register_bench``."""


def register_bench(bench: argparse._SubParsersAction) -> None:
    parser = bench.add_parser("leaderboard", help="evaluate baselines + trained agents; write LEADERBOARD.md")
    parser.add_argument("--env", default="drivelab/highway-fast-v0")
    parser.add_argument("--runs", type=Path, default=Path("runs/highway-camera"), help="searched for PPO/DQN run directories")
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--db", type=Path, default=Path("runs/leaderboard.db"))
    parser.add_argument("--videos", type=Path, default=Path("runs/failures"), help="failure videos of trained agents")
    parser.add_argument("--html", type=Path, default=Path("runs/leaderboard_html"))
    parser.add_argument("--agents", nargs="+", choices=[*BASELINES, *ALGOS], default=[*BASELINES, *ALGOS],
                        help="evaluate only these (the others keep their entries in --db); default all")
    parser.set_defaults(func=run)


def _run_dirs(root: Path, algo: str, env_id: str) -> list[Path]:
    """Trained camera runs of ``algo`` on ``env_id`` below ``root`` that have an exported policy."""
    found = []
    for config_path in sorted(root.glob("*/config.json")):
        try:
            config = json.loads(config_path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise ConfigError(
                f"run config {config_path} is unreadable or corrupt ({error}); fix or move that run "
                f"out of {root}, or pass --runs"
            ) from error
        run = config_path.parent
        if (config.get("algo"), config.get("env_id"), config.get("observation")) == (algo, env_id, "camera") and (
            (run / "best").exists() or (run / "final").exists()
        ):
            found.append(run)
    return found


def _training_record(policy_label: str) -> dict[str, Any]:
    """Steps and minutes a run trained for (its final export) and its best checkpoint's step."""
    run = Path(policy_label)
    record: dict[str, Any] = {"trained_steps": None, "training_min": None, "best_step": None}
    final, best = run / "final" / "policy.json", run / "best" / "policy.json"
    if final.is_file():
        spec = json.loads(final.read_text())
        record["trained_steps"] = spec.get("num_timesteps")
        record["training_min"] = spec["training_wall_s"] / 60 if spec.get("training_wall_s") else None
    if best.is_file():
        record["best_step"] = json.loads(best.read_text()).get("eval", {}).get("step")
    return record


def rl_report(db: Path, env_id: str) -> dict[str, Any]:
    """Per training seed and across seeds: mean return and crash rate of the trained agents."""
    with Leaderboard(db, create=False) as board:
        entries = [e for e in board.entries(env_id=env_id) if e.metadata.algorithm in ALGOS]
    agents = []
    for entry in entries:
        runs = []
        for run in entry.runs:
            returns = np.array([e.episode_return for e in run.episodes])
            crashed = np.array([e.crashed for e in run.episodes], float)
            runs.append({"policy": run.policy_label, "seed": run.training_seed, "episodes": len(returns),
                         "mean_return": float(returns.mean()), "crash_rate": float(crashed.mean()),
                         **_training_record(run.policy_label)})
        means = np.array([r["mean_return"] for r in runs])
        crashes = np.array([r["crash_rate"] for r in runs])
        agents.append({
            "agent": entry.metadata.agent_name, "algorithm": entry.metadata.algorithm, "runs": runs,
            "mean_return": float(means.mean()), "return_std_across_seeds": float(means.std(ddof=1)) if len(means) > 1 else 0.0,
            "crash_rate": float(crashes.mean()), "crash_rate_std_across_seeds": float(crashes.std(ddof=1)) if len(crashes) > 1 else 0.0,
        })  # fmt: skip
    return {"benchmark": "rl-driving-quality", "env_id": env_id, "protocol": "drivelab-eval-v1",
            "backend": "highway-env", "target": "mean return >= 24, crash rate <= 10%", "agents": agents,
            "machine": machine_info()}  # fmt: skip


def _maybe(value: Any, form: str) -> str:
    return "?" if value is None else format(value, form)


def rl_report_md(report: dict[str, Any]) -> str:
    lines = [
        f"{report['env_id']}, protocol {report['protocol']}, {report['backend']} backend; target {report['target']}.",
        "",
        "| agent | training seed | trained steps | training time [min] | best checkpoint step | episodes | mean return | crash rate |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for agent in report["agents"]:
        for run in agent["runs"]:
            lines.append(
                f"| {agent['agent']} | {run['seed']} | {_maybe(run['trained_steps'], ',')} | {_maybe(run['training_min'], '.1f')} "
                f"| {_maybe(run['best_step'], ',')} | {run['episodes']} | {run['mean_return']:.2f} | {run['crash_rate']:.2f} |"
            )
        lines.append(f"| **{agent['agent']}** (mean ± sd over {len(agent['runs'])} seeds) | | | | | "
                     f"| **{agent['mean_return']:.2f} ± {agent['return_std_across_seeds']:.2f}** "
                     f"| **{agent['crash_rate']:.2f} ± {agent['crash_rate_std_across_seeds']:.2f}** |")
    return "\n".join(lines)


def _dispatch_all(dispatch: Any, commands: list[list[str]]) -> int:
    """Run drivelab commands in turn, echoing each; the first non-zero status stops them."""
    for argv in commands:
        print("$ drivelab " + " ".join(argv), flush=True)
        status = dispatch(argv)
        if status != 0:
            return status
    return 0


def run(args: argparse.Namespace) -> int:
    dispatch = args.dispatch
    common = ["--env", args.env, "--episodes", str(args.episodes), "--submit", "--db", str(args.db)]
    commands = [["eval", "--policy", f"baseline:{name}", "--name", name, *common] for name in BASELINES
                if name in args.agents]
    for algo in (a for a in ALGOS if a in args.agents):
        runs = _run_dirs(args.runs, algo, args.env)
        if runs:
            commands.append(["eval", "--policy", *map(str, runs), "--name", f"{algo}-camera", "--algorithm", algo,
                             "--record-failures", str(args.videos / algo), "--max-failure-videos", "3", *common])
    renders = [
        ["leaderboard", "--db", str(args.db), "--env", args.env, "--format", "md", "--out", str(RESULTS / "LEADERBOARD.md")],
        ["leaderboard", "--db", str(args.db), "--env", args.env, "--format", "html", "--out", str(args.html)],
    ]
    status = _dispatch_all(dispatch, commands)
    if status != 0:
        return status
    # An agent re-evaluated with new weights is a new entry: the one it replaces leaves this
    # benchmark's board only now that the new one is in.
    with Leaderboard(args.db) as board:
        removed = board.remove_superseded(args.env, [argv[argv.index("--name") + 1] for argv in commands])
    if removed:
        print(f"removed {removed} superseded entr{'y' if removed == 1 else 'ies'} from {args.db}")
    status = _dispatch_all(dispatch, renders)
    if status != 0:
        return status
    report = rl_report(args.db, args.env)
    if report["agents"]:
        write_json_atomic(RESULTS / "rl_highway_camera.json", report)
        md = RESULTS / "rl_highway_camera.md"
        tmp = md.with_name(f".{md.name}.tmp")
        tmp.write_text(rl_report_md(report) + "\n")
        tmp.replace(md)
        print(rl_report_md(report))
    return 0
