"""`drivelab bench baselines`: random, idle and each scenario's rule-based driver on the protocol.

For every scenario asked for, evaluates ``baseline:random``, ``baseline:idle`` and
``baseline:rules`` (the scenario's rule-based driver) on the protocol's held-out seeds on the
reference backend (highway-env), and writes ``baselines_scenarios.json`` and
``baselines_scenarios.md``: mean return with a 95 % bootstrap CI, crash rate and success rate,
with machine info and the command. Rows of scenarios not run this time are kept from the
previous file, so scenarios can be measured in separate invocations.

Example:
    drivelab bench baselines --scenarios merge roundabout --episodes 30 --num-envs 8
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from drivelab.agents import evaluate
from drivelab.agents.baselines import make_baseline, scenario_driver
from drivelab.benchmarks.leaderboard.stats import stratified_bootstrap_ci
from drivelab.core.errors import ConfigError
from drivelab.core.files import check_writable, write_json_atomic, write_text_atomic
from drivelab.core.provenance import machine_info
from drivelab.envs import ENV_IDS

RESULTS = Path("benchmarks/results")
NAME = "baselines_scenarios"
DEFAULT_SCENARIOS = ("merge", "roundabout", "intersection", "parking", "racetrack", "exit", "two-way", "u-turn",
                     "lane-keeping")
POLICIES = ("random", "idle", "rules")


def configure(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("--scenarios", nargs="+", default=list(DEFAULT_SCENARIOS),
                        help="scenario names (drivelab/<name>-v0) or full ids")
    parser.add_argument("--episodes", type=int, default=30, help="protocol episodes per policy and scenario")
    parser.add_argument("--num-envs", type=int, default=8, help="envs stepped together (results do not depend on it)")
    parser.add_argument("--num-workers", type=int, default=None,
                        help="highway-env worker processes (default: one per core; parking runs in this process)")
    parser.add_argument("--policies", nargs="+", choices=POLICIES, default=list(POLICIES),
                        help="baselines to measure (rows of the others are kept from the previous file)")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"folder for {NAME}.json/.md")
    parser.set_defaults(func=run)


def _env_id(name: str) -> str:
    env_id = name if name.startswith("drivelab/") else f"drivelab/{name}-v0"
    if env_id not in ENV_IDS:
        raise ConfigError(f"unknown scenario {name!r}; valid ids: {', '.join(ENV_IDS)}")
    scenario_driver(env_id)  # refuses a scenario without a rule-based driver, before any work
    return env_id


def measure(env_id: str, policy: str, episodes: int, num_envs: int, num_workers: int | None) -> dict[str, Any]:
    """One row: a baseline's protocol metrics on the reference backend."""
    workers = 0 if "parking" in env_id else (num_workers if num_workers is not None else 2)
    start = time.perf_counter()
    result = evaluate(make_baseline(policy, env_id, seed=0), env_id, episodes=episodes, backend="highway-env",
                      num_envs=num_envs, env_kwargs={"observation": "native", "num_workers": workers})
    returns = result.metric("episode_return")
    interval = stratified_bootstrap_ci([returns], "mean", seed=0)
    return {
        "env_id": env_id, "policy": policy,
        "driver": scenario_driver(env_id) if policy == "rules" else policy,
        "episodes": len(result.episodes), "backend": result.backend, "protocol": result.protocol_version,
        "mean_return": float(returns.mean()), "return_ci95": [interval.low, interval.high],
        "crash_rate": result.crash_rate, "success_rate": float(result.metric("success").mean()),
        "mean_length": float(result.metric("length").mean()),
        "seconds": round(time.perf_counter() - start, 1),
    }


def run(args: argparse.Namespace) -> int:
    if args.episodes < 1 or args.num_envs < 1:
        raise ConfigError("--episodes and --num-envs must be positive")
    env_ids = [_env_id(name) for name in args.scenarios]
    check_writable(args.out, folder=True)
    path = args.out / f"{NAME}.json"
    previous = json.loads(path.read_text()) if path.is_file() else {"rows": []}
    rows = [r for r in previous["rows"] if r["env_id"] not in env_ids or r["policy"] not in args.policies]
    machine = machine_info()
    if rows:  # rows kept from earlier runs: keep the commands that measured them
        machine["command"] = f"{previous['machine']['command']}; {machine['command']}"
    measured = {f"{env_id} {policy}" for env_id in env_ids for policy in args.policies}
    not_measured = [item for item in previous.get("not_measured", []) if item not in measured]
    for env_id in env_ids:
        for policy in args.policies:
            row = measure(env_id, policy, args.episodes, args.num_envs, args.num_workers)
            rows.append(row)
            rows.sort(key=lambda r: (ENV_IDS.index(r["env_id"]), POLICIES.index(r["policy"])))
            print(f"{env_id:<28} {row['driver']:<8} return {row['mean_return']:6.2f} "
                  f"crash {row['crash_rate']:.0%} success {row['success_rate']:.0%} ({row['seconds']} s)", flush=True)
            payload = {"benchmark": NAME, "rows": rows, "machine": machine, "not_measured": not_measured}
            write_json_atomic(path, payload)  # after every row: a long run keeps what it measured
            write_text_atomic(args.out / f"{NAME}.md", markdown(payload))
    print(f"wrote {path} and {args.out / f'{NAME}.md'}")
    return 0


def markdown(payload: dict[str, Any]) -> str:
    """The rows as a Markdown table, one line per scenario and baseline."""
    machine = payload["machine"]
    lines = [
        "| scenario | baseline | mean return [95% CI] | crash rate | success rate | episodes |",
        "|---|---|---|---|---|---|",
    ]
    for row in payload["rows"]:
        low, high = row["return_ci95"]
        name = row["driver"] if row["policy"] != "rules" else f"rules ({row['driver']})"
        lines.append(
            f"| {row['env_id']} | {name} | {row['mean_return']:.2f} [{low:.2f}, {high:.2f}] | "
            f"{row['crash_rate']:.0%} | {row['success_rate']:.0%} | {row['episodes']} |"
        )
    lines += [
        "",
        f"Protocol seeds, reference backend (highway-env). Command: `{machine.get('command', '')}`; "
        f"{machine.get('cpu', '')}, {machine.get('cpu_count', '')} cores, commit {machine.get('git_commit', '')}.",
    ]
    if payload.get("not_measured"):
        lines += ["", f"Not measured on the reference backend: {'; '.join(payload['not_measured'])}."]
    return "\n".join(lines) + "\n"
