"""`drivelab bench env`: environment throughput, highway-env vs drivelab's batched backend, in one invocation.

Measures env-steps/s of highway-env 1.12.1 with its Kinematics and GrayscaleObservation
observations (one env, the way it is usually stepped) and of drivelab's batched backend with
native kinematics and with camera frames (4x64x128), on highway-fast and highway, all with
seeded uniform random actions; prints a table with the ratios and writes JSON with machine info.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np

import drivelab.envs as de
from drivelab.core.errors import ConfigError
from drivelab.core.files import check_writable, write_json_atomic, write_text_atomic
from drivelab.core.provenance import machine_info

log = logging.getLogger(__name__)

RESULTS = Path("benchmarks/results")
# Scenarios both runners step, by name (the ids are NAME-v0): highway-env, and drivelab's envpool
# backend (the batched one).
SCENARIOS = tuple(s.name for s in de.SCENARIOS.values() if s.envpool_id is not None and s.version == 0)

# highway-env's GrayscaleObservation as its documentation configures it: 128x64, 4 frames.
HIGHWAY_ENV_GRAYSCALE = {
    "type": "GrayscaleObservation",
    "observation_shape": (128, 64),
    "stack_size": 4,
    "weights": [0.2989, 0.5870, 0.1140],
    "scaling": 1.75,
}


@dataclass(frozen=True)
class Measurement:
    scenario: str
    runner: str
    observation: str
    num_envs: int
    env_steps: int
    seconds: float

    @property
    def steps_per_s(self) -> float:
        return self.env_steps / self.seconds


def measure_highway_env(scenario: str, observation: str, seconds: float, seed: int = 0) -> Measurement:
    """Step one highway-env env with random actions for about ``seconds``."""
    import highway_env  # noqa: F401

    config = {"observation": HIGHWAY_ENV_GRAYSCALE} if observation == "grayscale" else {}
    env = gymnasium.make(f"{scenario}-v0")
    env.unwrapped.configure(config)  # before reset, which builds the observation (some ids take no config=)
    env.reset(seed=seed)
    env.action_space.seed(seed)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        steps += 1
        if terminated or truncated:
            env.reset()
    elapsed = time.perf_counter() - start
    env.close()
    return Measurement(scenario, "highway-env", observation, 1, steps, elapsed)


def measure_drivelab(scenario: str, observation: str, num_envs: int, seconds: float, seed: int = 0) -> Measurement:
    """Step drivelab's batched backend with random actions for about ``seconds`` (after warm-up)."""
    env = de.make_vec(f"drivelab/{scenario}-v0", num_envs=num_envs, backend="envpool", observation=observation,
                      seed=seed)
    env.reset()
    rng = np.random.default_rng(seed)
    space = env.single_action_space

    def random_actions() -> np.ndarray:  # (B,) meta-actions or (B, A) continuous actions
        if isinstance(space, gymnasium.spaces.Discrete):
            return rng.integers(0, space.n, num_envs)
        return rng.uniform(space.low, space.high, (num_envs, *space.shape)).astype(space.dtype)

    for _ in range(10):  # warm-up: compiled kernels, caches
        env.step(random_actions())
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        env.step(random_actions())
        steps += num_envs
    elapsed = time.perf_counter() - start
    env.close()
    return Measurement(scenario, "drivelab-envpool", observation, num_envs, steps, elapsed)


def run(scenarios: tuple[str, ...], num_envs: int, seconds: float, baseline_seconds: float) -> dict[str, Any]:
    """Measure every runner on every scenario; returns the result record."""
    rows: list[Measurement] = []
    for scenario in scenarios:
        for observation in ("kinematics", "grayscale"):
            rows.append(measure_highway_env(scenario, observation, baseline_seconds))
            log.info("%s highway-env %s: %.1f steps/s", scenario, observation, rows[-1].steps_per_s)
        for observation in ("native", "camera"):
            rows.append(measure_drivelab(scenario, observation, num_envs, seconds))
            log.info("%s drivelab %s: %.0f steps/s", scenario, observation, rows[-1].steps_per_s)
    table = []
    for scenario in scenarios:
        by = {(m.runner, m.observation): m.steps_per_s for m in rows if m.scenario == scenario}
        table.append(
            {
                "scenario": scenario,
                "highway_env_kinematics": by[("highway-env", "kinematics")],
                "highway_env_grayscale": by[("highway-env", "grayscale")],
                "drivelab_kinematics": by[("drivelab-envpool", "native")],
                "drivelab_camera": by[("drivelab-envpool", "camera")],
                "camera_vs_grayscale": by[("drivelab-envpool", "camera")] / by[("highway-env", "grayscale")],
                "kinematics_vs_kinematics": by[("drivelab-envpool", "native")] / by[("highway-env", "kinematics")],
            }
        )
    return {
        "benchmark": "env-throughput",
        "num_envs": num_envs,
        "seconds_per_measurement": seconds,
        "baseline_seconds_per_measurement": baseline_seconds,
        "target": "camera >= 10,000 env-steps/s on highway-fast and >= 200x highway-env GrayscaleObservation",
        "measurements": [dict(vars(m), steps_per_s=m.steps_per_s) for m in rows],
        "table": table,
        "machine": machine_info(),
    }


def format_table(result: dict[str, Any]) -> str:
    """Markdown table of env-steps/s and ratios."""
    lines = [
        "| scenario | highway-env kinematics | highway-env grayscale | drivelab kinematics "
        "| drivelab camera 4x64x128 | camera / grayscale | kinematics / kinematics |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result["table"]:
        lines.append(
            f"| {row['scenario']} | {row['highway_env_kinematics']:.1f} | {row['highway_env_grayscale']:.1f} | "
            f"{row['drivelab_kinematics']:,.0f} | {row['drivelab_camera']:,.0f} | "
            f"{row['camera_vs_grayscale']:,.0f}x | {row['kinematics_vs_kinematics']:,.0f}x |"
        )
    return "\n".join(lines)


def configure(parser: argparse.ArgumentParser, command: str) -> None:
    """Arguments of ``drivelab bench env``."""
    parser.description = __doc__.split("\n\n", 1)[1]
    parser.add_argument("--scenarios", nargs="+", default=["highway-fast", "highway"], metavar="NAME",
                        help=f"scenario names, of {', '.join(SCENARIOS)} (default: highway-fast highway)")
    parser.add_argument("--num-envs", type=int, default=256,
                        help="batch size of the drivelab runs (default %(default)s)")
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="seconds per drivelab measurement (default %(default)s)")
    parser.add_argument("--baseline-seconds", type=float, default=20.0,
                        help="seconds per highway-env measurement (default %(default)s)")
    parser.add_argument("--out", type=Path, default=RESULTS / "env_throughput.json",
                        help="result JSON; the Markdown table goes beside it as .md (default %(default)s)")
    parser.set_defaults(func=run_command)


def check_args(args: argparse.Namespace) -> None:
    """Refuse bad arguments before measuring anything."""
    unknown = [name for name in args.scenarios if name not in SCENARIOS]
    if unknown:
        raise ConfigError(f"bench env cannot measure scenario {unknown[0]!r}: it needs both backends; "
                          f"choose from {', '.join(SCENARIOS)}")
    if args.num_envs < 1:
        raise ConfigError(f"--num-envs must be at least 1, got {args.num_envs}")
    for flag, value in (("--seconds", args.seconds), ("--baseline-seconds", args.baseline_seconds)):
        if not 0 < value < float("inf"):
            raise ConfigError(f"{flag} must be a positive number of seconds, got {value}")
    check_writable(args.out)
    check_writable(args.out.with_suffix(".md"))


def run_command(args: argparse.Namespace) -> int:
    """Measure, write the JSON record and the Markdown table, print the table."""
    check_args(args)
    result = run(tuple(args.scenarios), args.num_envs, args.seconds, args.baseline_seconds)
    write_json_atomic(args.out, result)
    table = format_table(result)
    md = args.out.with_suffix(".md")
    machine = result["machine"]
    write_text_atomic(md, f"Env-steps/s, `{machine['command']}` on {machine['cpu']} ({machine['cpu_affinity']} cores), "
                          f"{result['num_envs']} envs, commit {machine['git_commit'][:12]}, "
                          f"{machine['timestamp_utc']}.\n\n{table}\n")
    print(table)
    print(f"wrote {args.out} and {md}")
    return 0
