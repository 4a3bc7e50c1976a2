"""Evaluation speed: the protocol's 100 episodes on the batched backend vs highway-env.

Runs the same policy on the same held-out seeds on both backends in one invocation (each after
a 2-episode warm-up), prints the wall times and their ratio, and checks that both give statistically consistent results
(Welch's z for mean return and length, a two-proportion z for the crash rate; |z| < 3). The
backends draw traffic from different random streams, so episodes differ one by one; only
their statistics must agree. Target: batched >= 50x faster.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from drivelab.core.files import write_json_atomic
from drivelab.core.provenance import machine_info
from drivelab.benchmarks.protocol import env_kwargs_from_spec, evaluate, load_policy

RESULTS = Path("benchmarks/results")


def _z_mean(a: np.ndarray, b: np.ndarray) -> float:
    se = np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    return float((a.mean() - b.mean()) / se) if se > 0 else 0.0


def _z_rate(a: np.ndarray, b: np.ndarray) -> float:
    pooled = np.concatenate([a, b]).mean()
    se = np.sqrt(pooled * (1 - pooled) * (1 / len(a) + 1 / len(b)))
    return float((a.mean() - b.mean()) / se) if se > 0 else 0.0


def run(policy_label: str, env_id: str, episodes: int, reference_envs: int) -> dict[str, Any]:
    policy, source = load_policy(policy_label, env_id)
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


def register_bench(bench: argparse._SubParsersAction) -> None:
    parser = bench.add_parser("eval", help="protocol evaluation speed: batched backend vs highway-env")
    parser.add_argument("--policy", default="baseline:idm", help="policy path or baseline:NAME (default %(default)s)")
    parser.add_argument("--env", default="drivelab/highway-fast-v0")
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--reference-envs", type=int, default=8, help="envs stepped together on highway-env")
    parser.add_argument("--out", type=Path, default=RESULTS / "eval_speed.json")
    parser.set_defaults(func=run_from_args)


def register(subparsers: argparse._SubParsersAction) -> None:
    """No top-level command; see ``register_bench``."""


def run_from_args(args: argparse.Namespace) -> int:
    result = run(args.policy, args.env, args.episodes, args.reference_envs)
    write_json_atomic(args.out, result)
    table = format_table(result)
    md = args.out.with_suffix(".md")
    tmp = md.with_name(f".{md.name}.tmp")
    tmp.write_text(f"`{result['machine']['command']}` on {result['machine']['cpu']} "
                   f"({result['machine']['cpu_affinity']} cores), {result['machine']['timestamp_utc']}.\n\n{table}\n")
    tmp.replace(md)
    print(table)
    return 0
