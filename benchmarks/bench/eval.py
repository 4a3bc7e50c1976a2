"""``drivelab bench eval``: the protocol's 100 episodes on the batched backend vs highway-env.

Runs the same policy on the same held-out seeds on both backends in one invocation (each after
a 2-episode warm-up), prints the wall times and their ratio, and checks that both give statistically consistent results
(Welch's z for mean return and length, a two-proportion z for the crash rate; |z| < 3). The
backends draw traffic from different random streams, so episodes differ one by one; only
their statistics must agree. Target: batched >= 50x faster.
"""

from __future__ import annotations

import argparse
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np

from drivelab.agents import env_kwargs_from_spec, evaluate, load_policy
from drivelab.core.errors import ConfigError
from drivelab.core.files import check_writable, write_json_atomic, write_text_atomic
from drivelab.core.provenance import machine_info

RESULTS = Path("benchmarks/results")
DESCRIPTION = (
    "Evaluation speed: one policy on the protocol's held-out seeds, on the batched backend "
    "(envpool) and on highway-env in one invocation; prints both wall times, their ratio and "
    "whether the two backends' statistics agree (|z| < 3). Writes OUT (JSON) and OUT with .md."
)


def _z_mean(a: np.ndarray, b: np.ndarray) -> float:
    se = np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    return float((a.mean() - b.mean()) / se) if se > 0 else 0.0


def _z_rate(a: np.ndarray, b: np.ndarray) -> float:
    pooled = np.concatenate([a, b]).mean()
    se = np.sqrt(pooled * (1 - pooled) * (1 / len(a) + 1 / len(b)))
    return float((a.mean() - b.mean()) / se) if se > 0 else 0.0


def run(policy_label: str, env_id: str, episodes: int, reference_envs: int) -> dict[str, Any]:
    """Time ``episodes`` protocol episodes on both backends and compare their statistics."""
    policy = load_policy(policy_label, env_id)
    source = policy.source
    env_kwargs = env_kwargs_from_spec(source.spec)
    timings, results = {}, {}
    for backend, num_envs in (("envpool", episodes), ("highway-env", reference_envs)):
        # warm-up (compiled kernels, torch's first calls, caches), then the timed run
        evaluate(policy, env_id, episodes=2, backend=backend, num_envs=2, env_kwargs=env_kwargs)
        policy.reset(None)
        start = time.perf_counter()
        results[backend] = evaluate(policy, env_id, episodes=episodes, backend=backend, num_envs=num_envs,
                                    env_kwargs=env_kwargs)
        timings[backend] = time.perf_counter() - start
    batched, reference = results["envpool"], results["highway-env"]
    summary = {}
    for name, field in (("return", "episode_return"), ("length", "length"), ("crash_rate", "crashed")):
        a, b = batched.metric(field).astype(float), reference.metric(field).astype(float)
        z = _z_rate(a, b) if name == "crash_rate" else _z_mean(a, b)
        summary[name] = {"envpool": float(a.mean()), "highway-env": float(b.mean()), "z": z, "consistent": abs(z) < 3}
    return {
        "benchmark": "eval-speed",
        "policy": policy_label,
        "policy_sha256": source.sha256,
        "env_id": env_id,
        "episodes": episodes,
        "seconds": timings,
        "speedup": timings["highway-env"] / timings["envpool"],
        "target": "batched >= 50x faster than highway-env, statistically consistent",
        "statistics": summary,
        "machine": machine_info(),
    }


def format_table(result: dict[str, Any]) -> str:
    """The result as a Markdown table with the speed-up and the consistency verdict."""
    s, t = result["statistics"], result["seconds"]
    lines = [
        f"Policy `{result['policy']}`, {result['env_id']}, {result['episodes']} protocol episodes per backend.",
        "",
        "| backend | wall time [s] | mean return | mean length | crash rate |",
        "|---|---:|---:|---:|---:|",
    ]
    for backend in ("envpool", "highway-env"):
        lines.append(f"| {backend} | {t[backend]:.1f} | {s['return'][backend]:.2f} | {s['length'][backend]:.1f} | "
                     f"{s['crash_rate'][backend]:.2f} |")
    zs = ", ".join(f"{k} z={v['z']:+.2f}" for k, v in s.items())
    lines += ["", f"Speed-up **{result['speedup']:.0f}x**; consistency ({zs}): "
              f"{'all |z| < 3' if all(v['consistent'] for v in s.values()) else 'NOT consistent'}."]
    return "\n".join(lines)


def configure(parser: argparse.ArgumentParser, command: str) -> None:
    """Add ``bench eval``'s arguments to ``parser``."""
    parser.description = textwrap.fill(DESCRIPTION, 88)  # the table's formatter keeps line breaks
    parser.add_argument("--policy", default="baseline:idm", help="policy path or baseline:NAME (default %(default)s)")
    parser.add_argument("--env", default="drivelab/highway-fast-v0", help="scenario id (default %(default)s)")
    parser.add_argument("--episodes", type=int, default=100, help="protocol episodes per backend (default %(default)s)")
    parser.add_argument("--reference-envs", type=int, default=8,
                        help="envs stepped together on highway-env (default %(default)s)")
    parser.add_argument("--out", type=Path, default=RESULTS / "eval_speed.json",
                        help="result JSON; the Markdown table goes beside it with .md (default %(default)s)")
    parser.set_defaults(func=run_from_args)


def run_from_args(args: argparse.Namespace) -> int:
    """Handler of ``drivelab bench eval``."""
    for name, value in (("--episodes", args.episodes), ("--reference-envs", args.reference_envs)):
        if value < 1:
            raise ConfigError(f"{name} must be >= 1, got {value}")
    check_writable(args.out)
    check_writable(args.out.with_suffix(".md"))
    result = run(args.policy, args.env, args.episodes, args.reference_envs)
    write_json_atomic(args.out, result)
    table = format_table(result)
    machine = result["machine"]
    write_text_atomic(args.out.with_suffix(".md"), f"`{machine['command']}` on {machine['cpu']} "
                      f"({machine['cpu_affinity']} cores), {machine['timestamp_utc']}.\n\n{table}\n")
    print(table)
    return 0
