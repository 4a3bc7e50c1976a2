"""`drivelab bench equivalence`: EnvPool's ports against highway-env, per scenario and policy.

Runs every case of ``drivelab.envs.equivalence.CASES`` (>= 200 EnvPool episodes against 30
highway-env episodes on disjoint seeds, the same open-loop policy on both), prints a table of
the means and z-scores, and writes ``equivalence.json`` and ``equivalence.md`` with machine
info. Differences beyond the tolerance are marked; the known ones are explained in
``drivelab.envs.scenarios.ENVPOOL_DIFFERENCES``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from drivelab.core.errors import ConfigError
from drivelab.core.files import check_writable, write_json_atomic, write_text_atomic
from drivelab.core.provenance import machine_info
from drivelab.envs import get_scenario
from drivelab.envs.equivalence import CASES, METRICS, agrees, compare, first_episodes
from drivelab.envs.scenarios import ENVPOOL_DIFFERENCES

RESULTS = Path("benchmarks/results")


def configure(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("--batched-episodes", type=int, default=200, help="EnvPool episodes per case (>= 200)")
    parser.add_argument("--reference-episodes", type=int, default=30, help="highway-env episodes per case (>= 30)")
    parser.add_argument("--env", action="append", default=None,
                        help="only this scenario id (repeatable); default: every case")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for equivalence.json/.md")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.batched_episodes < 200 or args.reference_episodes < 30:
        raise ConfigError("--batched-episodes must be >= 200 and --reference-episodes >= 30 (the issue's minimum)")
    cases = [c for c in CASES if args.env is None or c.env_id in args.env]
    if not cases:
        raise ConfigError(f"no equivalence case for {args.env}; cases cover {sorted({c.env_id for c in CASES})}")
    check_writable(args.out, folder=True)
    rows = []
    for case in cases:
        start = time.perf_counter()
        batched = first_episodes(case.env_id, "envpool", case.policy, episodes=args.batched_episodes, seed=0,
                                 config=case.config)
        reference = first_episodes(case.env_id, "highway-env", case.policy, episodes=args.reference_episodes,
                                   seed=100_000, config=case.config)
        comparison = compare(batched, reference)
        row = {
            "env_id": case.env_id, "policy": case.policy_name, "actions": [list(map(float, a)) if hasattr(a, "__len__")
                                                                         else int(a) for a in case.policy.actions],
            "config": dict(case.config or {}), "metrics": comparison,
            "agrees": {m: agrees(comparison, m) for m in METRICS},
            "known_differences": list(case.known_differences),
            "seconds": round(time.perf_counter() - start, 1),
        }
        rows.append(row)
        print(_line(row), flush=True)
    payload = {
        "benchmark": "equivalence", "batched_episodes": args.batched_episodes,
        "reference_episodes": args.reference_episodes, "cases": rows,
        "differences": ENVPOOL_DIFFERENCES, "machine": machine_info(),
    }
    write_json_atomic(args.out / "equivalence.json", payload)
    write_text_atomic(args.out / "equivalence.md", markdown(payload))
    print(f"wrote {args.out / 'equivalence.json'} and {args.out / 'equivalence.md'}")
    return 0


def _line(row: dict[str, Any]) -> str:
    cells = [f"{m} {row['metrics'][m]['envpool']:.2f}/{row['metrics'][m]['highway_env']:.2f}"
             f"{'' if row['agrees'][m] else ' (differs)'}" for m in METRICS]
    return f"{row['env_id']:<28} {row['policy']:<9} " + ", ".join(cells)


def markdown(payload: dict[str, Any]) -> str:
    """The results as a Markdown table: EnvPool / highway-env means, z, and what differs."""
    lines = [
        f"EnvPool ({payload['batched_episodes']} episodes) vs highway-env ({payload['reference_episodes']} episodes),"
        " the same open-loop policy; each cell: EnvPool / highway-env (z). **Bold**: beyond 3.5 standard errors.",
        "",
        "| scenario | policy | return | length | crash rate | success rate | auto backend |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in payload["cases"]:
        cells = []
        for metric in METRICS:
            m = row["metrics"][metric]
            text = f"{m['envpool']:.2f} / {m['highway_env']:.2f} ({m['z']:.1f})"
            cells.append(text if row["agrees"][metric] else f"**{text}**")
        auto = "envpool" if get_scenario(row["env_id"]).envpool_auto else "highway-env"
        lines.append(f"| {row['env_id']} | {row['policy']} | " + " | ".join(cells) + f" | {auto} |")
    lines += ["", "What EnvPool 1.2.5's ports do differently:", ""]
    lines += [f"- **{name}**: {text}" for name, text in payload["differences"].items()]
    machine = payload["machine"]
    lines += ["", f"Measured on {machine['cpu']} ({machine['cpu_affinity']} cores), "
              f"commit {machine['git_commit'][:12]}, "
              f"{machine['timestamp_utc']}; command `{machine['command']}`."]
    return "\n".join(lines) + "\n"
