"""``drivelab bench leaderboard``: the benchmark's leaderboard, generated, never typed.

Evaluates random, idle and the IDM/MOBIL driver, and the trained camera agents found under
``--runs`` (every run directory below it whose ``config.json`` names ``--env`` and camera
frames: one entry per algorithm, one run per training seed, as `drivelab bench rl` lays them out) on
the protocol's held-out seeds with the reference backend; submits them to ``--db`` through
``leaderboard.submit.evaluate_and_submit`` (an agent evaluated again, e.g. with new weights,
updates its own entry: same submitter, name, scenario, protocol and backend); writes
``benchmarks/results/LEADERBOARD.md`` (shown in README), a static HTML page, failure videos
of the trained agents, and ``benchmarks/results/rl_highway_camera.{json,md}``: each agent's
per-seed results with mean and spread across training seeds.
"""

from __future__ import annotations

import argparse
import json
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from drivelab.benchmarks.leaderboard import pages, submit
from drivelab.benchmarks.leaderboard.store import Leaderboard
from drivelab.core.errors import ConfigError
from drivelab.core.files import check_writable, write_json_atomic, write_text_atomic
from drivelab.core.provenance import machine_info

RESULTS = Path("benchmarks/results")
BASELINES = ("random", "idle", "idm")
ALGOS = ("ppo", "dqn")
FAILURE_VIDEOS_PER_AGENT = 3
DESCRIPTION = (
    "Evaluate the baselines (random, idle, IDM/MOBIL) and the trained PPO/DQN camera agents "
    "found under --runs on the protocol's held-out seeds, submit them to --db (an agent "
    "evaluated again updates its own entry), and write LEADERBOARD.md, an HTML page, failure "
    "videos and the RL report (rl_highway_camera.json/.md) under benchmarks/results."
)


def configure(parser: argparse.ArgumentParser, command: str) -> None:
    """Add ``bench leaderboard``'s arguments to ``parser``."""
    parser.description = textwrap.fill(DESCRIPTION, 88)  # the table's formatter keeps line breaks
    parser.add_argument("--env", default="drivelab/highway-fast-v0", help="scenario id (default %(default)s)")
    parser.add_argument("--runs", type=Path, default=Path("runs/highway-camera"),
                        help="searched for PPO/DQN run directories (default %(default)s)")
    parser.add_argument("--episodes", type=int, default=100, help="episodes per run (default %(default)s)")
    parser.add_argument("--db", type=Path, default=Path("runs/leaderboard.db"),
                        help="leaderboard SQLite file (default %(default)s)")
    parser.add_argument("--videos", type=Path, default=Path("runs/failures"),
                        help="failure videos of trained agents go to VIDEOS/ALGO (default %(default)s)")
    parser.add_argument("--html", type=Path, default=Path("runs/leaderboard_html"),
                        help="static HTML page folder (default %(default)s)")
    parser.add_argument("--agents", nargs="+", choices=[*BASELINES, *ALGOS], default=[*BASELINES, *ALGOS],
                        help="evaluate only these (the others keep their entries in --db); default all")
    parser.set_defaults(func=run)


@dataclass(frozen=True)
class PlannedEntry:
    """One leaderboard entry to evaluate: its name, policies (one per training run) and options."""

    name: str
    policies: tuple[str, ...]
    algorithm: str | None = None
    record_failures: Path | None = None


def plan_entries(agents: list[str], runs_root: Path, env_id: str, videos: Path) -> list[PlannedEntry]:
    """The entries to evaluate: the baselines asked for, then each algorithm with trained runs."""
    planned = [PlannedEntry(name, (f"baseline:{name}",)) for name in BASELINES if name in agents]
    for algo in (a for a in ALGOS if a in agents):
        runs = _run_dirs(runs_root, algo, env_id)
        if runs:
            planned.append(PlannedEntry(f"{algo}-camera", tuple(map(str, runs)), algo, videos / algo))
    return planned


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


def _spread(values: np.ndarray) -> float:
    """Sample standard deviation across training seeds (0 for a single seed)."""
    return float(values.std(ddof=1)) if len(values) > 1 else 0.0


def rl_report(db: Path, env_id: str) -> dict[str, Any]:
    """Per training seed and across seeds: mean return and crash rate of the trained agents."""
    with Leaderboard(db, readonly=True) as board:
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
            "mean_return": float(means.mean()), "return_std_across_seeds": _spread(means),
            "crash_rate": float(crashes.mean()), "crash_rate_std_across_seeds": _spread(crashes),
        })  # fmt: skip
    return {"benchmark": "rl-driving-quality", "env_id": env_id, "protocol": "drivelab-eval-v1",
            "backend": "highway-env", "target": "mean return >= 24, crash rate <= 10%", "agents": agents,
            "machine": machine_info()}  # fmt: skip


def _maybe(value: Any, form: str) -> str:
    return "?" if value is None else format(value, form)


def rl_report_md(report: dict[str, Any]) -> str:
    """The RL report as Markdown: one row per training run, one bold row per agent."""
    lines = [
        f"{report['env_id']}, protocol {report['protocol']}, {report['backend']} backend; "
        f"target {report['target']}.",
        "",
        "| agent | training seed | trained steps | training time [min] | best checkpoint step | episodes "
        "| mean return | crash rate |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for agent in report["agents"]:
        for run in agent["runs"]:
            lines.append(
                f"| {agent['agent']} | {run['seed']} | {_maybe(run['trained_steps'], ',')} "
                f"| {_maybe(run['training_min'], '.1f')} | {_maybe(run['best_step'], ',')} | {run['episodes']} "
                f"| {run['mean_return']:.2f} | {run['crash_rate']:.2f} |"
            )
        lines.append(f"| **{agent['agent']}** (mean ± sd over {len(agent['runs'])} seeds) | | | | | "
                     f"| **{agent['mean_return']:.2f} ± {agent['return_std_across_seeds']:.2f}** "
                     f"| **{agent['crash_rate']:.2f} ± {agent['crash_rate_std_across_seeds']:.2f}** |")
    return "\n".join(lines)


def build_leaderboard(
    env_id: str,
    planned: list[PlannedEntry],
    db: Path,
    *,
    episodes: int,
    html: Path,
    results: Path = RESULTS,
    make_env: submit.MakeEnv | None = None,
) -> dict[str, Any]:
    """Evaluate and submit every planned entry, render the board and write the RL report.

    Returns the RL report (its ``agents`` list is empty when no trained agent is on the board).
    """
    for entry in planned:
        print(f"evaluating {entry.name}: {' '.join(entry.policies)}", flush=True)
        outcome = submit.evaluate_and_submit(
            list(entry.policies), env_id, db=db, name=entry.name, algorithm=entry.algorithm,
            episodes=episodes, record_failures=entry.record_failures,
            max_failure_videos=FAILURE_VIDEOS_PER_AGENT, progress=True, make_env=make_env,
        )  # fmt: skip
        print("\n".join(submit.summary_lines(outcome.results, outcome.protocol)))
        print("\n".join(submit.submission_lines(outcome)))
    ranked = pages.read_ranked(db, env_id=env_id)
    for fmt, out in (("md", results / "LEADERBOARD.md"), ("html", html)):
        pages.export(ranked, fmt, out)
        print(f"wrote {out}")
    report = rl_report(db, env_id)
    if report["agents"]:
        write_json_atomic(results / "rl_highway_camera.json", report)
        write_text_atomic(results / "rl_highway_camera.md", rl_report_md(report) + "\n")
        print(rl_report_md(report))
    return report


def run(args: argparse.Namespace) -> int:
    """Handler of ``drivelab bench leaderboard``."""
    if args.episodes < 1:
        raise ConfigError(f"--episodes must be >= 1, got {args.episodes}")
    for path in (RESULTS / "LEADERBOARD.md", RESULTS / "rl_highway_camera.json"):
        check_writable(path)
    check_writable(args.html, folder=True)
    planned = plan_entries(args.agents, args.runs, args.env, args.videos)
    build_leaderboard(args.env, planned, args.db, episodes=args.episodes, html=args.html)
    return 0
