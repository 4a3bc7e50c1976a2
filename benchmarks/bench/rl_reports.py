"""Per-seed reports of a scenario's trained agents (``rl_<scenario>.{json,md}``), read from a board.

``drivelab bench leaderboard`` writes one per scenario with trained runs on the board: each
agent's runs (one per training seed) with their protocol results and training budget (from the
run folder's exports, where it still exists), and the mean and spread across seeds. Runs of the
report written before that the board no longer holds (a lost board's) are kept, marked.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from drivelab.benchmarks.leaderboard.store import Leaderboard
from drivelab.core.errors import ConfigError
from drivelab.core.provenance import machine_info

RL_REPORT_ENV = "drivelab/highway-fast-v0"  # rl_highway_camera.{json,md}: the highway-camera suite's agents
ALGOS = ("ppo", "dqn", "sac")  # sac: parking's goal-conditioned vector (native observation)


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


def report_stem(env_id: str, short_name: str) -> str:
    """File stem of a scenario's report under benchmarks/results (highway-fast's keeps its suite's name)."""
    return "rl_highway_camera" if env_id == RL_REPORT_ENV else f"rl_{short_name}"


def previous_report(path: Path) -> dict[str, Any] | None:
    """The report written before at ``path`` (None when there is none).

    Raises:
        ConfigError: the file is there but not a readable report (its seeds would be lost silently).
    """
    if not path.is_file():
        return None
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ConfigError(f"{path} is not a readable report ({error}); restore it from git or delete it") from error
    if not isinstance(report, dict):
        raise ConfigError(f"{path} is not a per-seed report; restore it from git or delete it")
    return report


def _earlier_runs(previous: Mapping[str, Any] | None, agent: str, labels: set[str]) -> list[dict[str, Any]]:
    """Runs of ``agent`` in the report written before (``previous``) whose policy the board lacks.

    Boards before ``leaderboard_board.json`` were lost with their machines; the seeds they held
    stay in the report (marked ``from_earlier_board``) until a run of the same policy path is
    evaluated again.
    """
    earlier = next((a for a in (previous or {}).get("agents", []) if a.get("agent") == agent), None)
    return [{**run, "from_earlier_board": True} for run in (earlier or {}).get("runs", [])
            if run.get("policy") not in labels]


def _agent(name: str, algorithm: str | None, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One agent's runs in seed order, with the mean and spread across them."""
    runs = sorted(runs, key=lambda run: (run["seed"] is None, run["seed"] or 0))
    means = np.array([r["mean_return"] for r in runs])
    crashes = np.array([r["crash_rate"] for r in runs])
    return {"agent": name, "algorithm": algorithm, "runs": runs,
            "mean_return": float(means.mean()), "return_std_across_seeds": _spread(means),
            "crash_rate": float(crashes.mean()), "crash_rate_std_across_seeds": _spread(crashes)}  # fmt: skip


def rl_report(db: Path, env_id: str, previous: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Per training seed and across seeds: mean return and crash rate of the suite's trained agents
    (the zoo's shipped agents have their own model cards and are left out). Runs of ``previous``
    (the report written before) that the board does not hold are kept (``_earlier_runs``), those of
    an agent the board holds no entry of too."""
    with Leaderboard(db, readonly=True) as board:
        entries = [e for e in board.entries(env_id=env_id)
                   if e.metadata.algorithm in ALGOS and not e.metadata.agent_name.startswith("zoo-")]
    agents = []
    for entry in entries:
        runs = []
        for run in entry.runs:
            returns = np.array([e.episode_return for e in run.episodes])
            crashed = np.array([e.crashed for e in run.episodes], float)
            runs.append({"policy": run.policy_label, "seed": run.training_seed, "episodes": len(returns),
                         "mean_return": float(returns.mean()), "crash_rate": float(crashed.mean()),
                         **_training_record(run.policy_label)})
        earlier = _earlier_runs(previous, entry.metadata.agent_name, {run["policy"] for run in runs})
        agents.append(_agent(entry.metadata.agent_name, entry.metadata.algorithm, [*earlier, *runs]))
    on_board = {agent["agent"] for agent in agents}
    for earlier_agent in (previous or {}).get("agents", []):
        name = earlier_agent.get("agent")
        if name not in on_board and earlier_agent.get("runs"):
            agents.append(_agent(name, earlier_agent.get("algorithm"), _earlier_runs(previous, name, set())))
    target = ("mean return >= 24, crash rate <= 10%" if env_id == RL_REPORT_ENV else
              "mean return above the best rule-based driver's, crash rate at most 5 points above its")
    return {"benchmark": "rl-driving-quality", "env_id": env_id, "protocol": "drivelab-eval-v1",
            "backend": "highway-env", "target": target, "agents": agents, "machine": machine_info()}  # fmt: skip


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
                f"| {agent['agent']} | {run['seed']}{' (a)' * bool(run.get('from_earlier_board'))} "
                f"| {_maybe(run['trained_steps'], ',')} "
                f"| {_maybe(run['training_min'], '.1f')} | {_maybe(run['best_step'], ',')} | {run['episodes']} "
                f"| {run['mean_return']:.2f} | {run['crash_rate']:.2f} |"
            )
        lines.append(f"| **{agent['agent']}** (mean ± sd over {len(agent['runs'])} seeds) | | | | | "
                     f"| **{agent['mean_return']:.2f} ± {agent['return_std_across_seeds']:.2f}** "
                     f"| **{agent['crash_rate']:.2f} ± {agent['crash_rate_std_across_seeds']:.2f}** |")
    if any(run.get("from_earlier_board") for agent in report["agents"] for run in agent["runs"]):
        lines.append("\n(a) evaluated on an earlier board (same protocol and backend), kept from the report "
                     "written then; the board this report was written from does not hold that run.")
    return "\n".join(lines)
