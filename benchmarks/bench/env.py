"""`drivelab bench env`: environment throughput, highway-env vs drivelab, every scenario in one invocation.

Measures env-steps/s of highway-env 1.12.1 with its default observation and with
GrayscaleObservation (one env, the way it is usually stepped) and of drivelab's vector env with
native observations and with camera frames (4x64x128): EnvPool's batched port where drivelab
runs one, elsewhere highway-env in worker processes, which is also measured in one process
(num_workers=0) for exactly the steps the workers made, to give the workers' speed-up. With
``--processes N`` the EnvPool scenarios' camera frames are also measured split over N processes
(``drivelab.envs.sharded``), the way past one interpreter lock on machines with many cores.
Seeded uniform random actions; each cell is a
short timed window after a warm-up. Prints a table with the ratios and writes JSON with machine
info and the load average (other processes on the host slow both sides).
"""

from __future__ import annotations

import argparse
import logging
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np

import drivelab.envs as de
from drivelab.core.errors import ConfigError
from drivelab.core.files import check_writable, write_json_atomic, write_text_atomic
from drivelab.core.provenance import machine_info
from drivelab.envs.processes import usable_cpus

log = logging.getLogger(__name__)

RESULTS = Path("benchmarks/results")


def _label(scenario: de.Scenario) -> str:
    """A scenario's name on the command line and in the table: ``intersection-v1`` for a v1."""
    return scenario.name if scenario.version == 0 else f"{scenario.name}-v{scenario.version}"


SCENARIOS: dict[str, de.Scenario] = {_label(s): s for s in de.SCENARIOS.values()}
NEWLY_BATCHED = ("merge", "roundabout", "intersection", "parking", "racetrack")
WORKER_TARGET = ("exit", "two-way", "u-turn")  # workers >= 1.7x one process on 2 cores

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
    runner: str  # "highway-env", "drivelab-envpool", "drivelab-workers", "drivelab-one-process", "drivelab-sharded"
    observation: str
    num_envs: int
    env_steps: int
    seconds: float
    load_average: float  # 1-minute load average when the window ended

    @property
    def steps_per_s(self) -> float:
        return self.env_steps / self.seconds


def _load() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def _sampler(space: gymnasium.Space, num_envs: int | None, rng: np.random.Generator):
    """Uniform random actions: ``(B,)`` meta-actions or ``(B, A)`` continuous ones (no B for one env)."""
    shape = () if num_envs is None else (num_envs,)
    if isinstance(space, gymnasium.spaces.Discrete):
        return lambda: rng.integers(space.start, space.start + space.n, shape)
    return lambda: rng.uniform(space.low, space.high, (*shape, *space.shape)).astype(space.dtype)


def measure_highway_env(scenario: str, observation: str, seconds: float, seed: int = 0) -> Measurement:
    """Step one highway-env env (its default observation, or ``"grayscale"``) for about ``seconds``."""
    import highway_env  # noqa: F401

    from drivelab.envs.backends import traffic_rules

    spec = SCENARIOS[scenario]
    config = {"observation": HIGHWAY_ENV_GRAYSCALE} if observation == "grayscale" else {}
    with traffic_rules(spec.family), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is out of date.*")  # v0 on purpose, as drivelab runs
        env = gymnasium.make(spec.highway_env_id)
        env.unwrapped.configure(config)  # before reset, which builds the observation (some ids take no config=)
        env.reset(seed=seed)
        act = _sampler(env.action_space, None, np.random.default_rng(seed))
        steps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            _, _, terminated, truncated, _ = env.step(act())
            steps += 1
            if terminated or truncated:
                env.reset()
        elapsed = time.perf_counter() - start
    env.close()
    return Measurement(scenario, "highway-env", observation, 1, steps, elapsed, _load())


def measure_drivelab(
    scenario: str, observation: str, num_envs: int, seconds: float, seed: int = 0, num_workers: int | None = None,
    batches: int | None = None, reference: bool = False,
) -> Measurement:
    """Step drivelab's vector env with random actions for about ``seconds`` (after a warm-up), or
    exactly ``batches`` vector steps.

    EnvPool where drivelab runs the scenario's port; otherwise highway-env, in worker processes
    (``num_workers`` None: one per core) or in this process (``num_workers=0``). Same seed and
    ``batches`` give the same work: the same episodes, actions and resets. ``reference``: highway-env
    even where EnvPool ports the scenario.
    """
    spec = SCENARIOS[scenario]
    backend = "envpool" if spec.envpool_id is not None and not reference else "highway-env"
    if reference and spec.envpool_id is not None and num_workers is None:
        num_workers = usable_cpus()  # as backend "auto" runs highway-env in place of a port
    env = de.make_vec(spec.env_id, num_envs=num_envs, backend=backend, observation=observation, seed=seed,
                      num_workers=num_workers)
    if backend == "envpool":
        runner = "drivelab-sharded" if num_workers else "drivelab-envpool"
    else:
        runner = "drivelab-workers" if getattr(env.sim, "num_workers", 0) >= 2 else "drivelab-one-process"
    try:
        env.reset()
        act = _sampler(env.single_action_space, num_envs, np.random.default_rng(seed))
        for _ in range(10 if backend == "envpool" else 2):  # warm-up: compiled kernels, caches, rasters
            env.step(act())
        steps, start = 0, time.perf_counter()
        while (time.perf_counter() - start < seconds) if batches is None else steps < batches * num_envs:
            env.step(act())
            steps += num_envs
        elapsed = time.perf_counter() - start
    finally:
        env.close()
    return Measurement(scenario, runner, observation, num_envs, steps, elapsed, _load())


def run(
    scenarios: tuple[str, ...], num_envs: int, seconds: float, baseline_seconds: float, worker_num_envs: int = 8,
    processes: int = 0, reference: bool = False,
) -> dict[str, Any]:
    """Measure every runner on every scenario; returns the result record. ``reference``: drivelab on
    highway-env in worker processes everywhere (the backend roundabout, intersection and racetrack
    train on, EnvPool's ports of them not being equivalent)."""
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    rows: list[Measurement] = []
    for scenario in scenarios:
        batched = SCENARIOS[scenario].envpool_id is not None and not reference
        for observation in ("native", "grayscale"):
            rows.append(measure_highway_env(scenario, observation, baseline_seconds))
            log.info("%s highway-env %s: %.1f steps/s", scenario, observation, rows[-1].steps_per_s)
        n = num_envs if batched else worker_num_envs
        for observation in ("native", "camera"):
            rows.append(measure_drivelab(scenario, observation, n, seconds, reference=reference))
            log.info("%s %s %s: %.0f steps/s", scenario, rows[-1].runner, observation, rows[-1].steps_per_s)
        if not batched:
            # The very steps the workers made (same seeds and actions: the same episodes), in one
            # process: the speed-up is then a ratio of times for equal work, not of two windows
            # over different episodes (highway-env's step cost varies a lot from episode to episode).
            workers = next(m for m in rows if m.scenario == scenario and m.observation == "native"
                           and m.runner != "highway-env")
            rows.append(measure_drivelab(scenario, "native", n, seconds, num_workers=0,
                                         batches=workers.env_steps // n, reference=reference))
            log.info("%s one process native: %.0f steps/s", scenario, rows[-1].steps_per_s)
        elif processes >= 2:
            rows.append(measure_drivelab(scenario, "camera", n, seconds, num_workers=processes))
            log.info("%s camera in %d processes: %.0f steps/s", scenario, processes, rows[-1].steps_per_s)
    return {
        "benchmark": "env-throughput",
        "num_envs": num_envs,
        "worker_num_envs": worker_num_envs,
        "processes": processes,
        "reference": reference,
        "seconds_per_measurement": seconds,
        "baseline_seconds_per_measurement": baseline_seconds,
        "targets": {
            "camera_vs_grayscale": f"camera >= 100x highway-env GrayscaleObservation on {', '.join(NEWLY_BATCHED)}",
            "highway_fast_camera": "camera >= 10,000 env-steps/s on highway-fast (stretch 20,000)",
            "workers_vs_one_process": f"worker processes >= 1.7x one process on 2 cores on {', '.join(WORKER_TARGET)}",
        },
        "load_average_before": load_before,
        "load_average_after": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "measurements": [dict(vars(m), steps_per_s=m.steps_per_s) for m in rows],
        "table": summarise(rows),
        "machine": machine_info(),
    }


_DRIVELAB_RUNNERS = ("drivelab-envpool", "drivelab-workers", "drivelab-one-process")


def summarise(rows: list[Measurement]) -> list[dict[str, Any]]:
    """One table row per scenario: rates and the ratios (None where a runner was not measured)."""
    table = []
    for scenario in dict.fromkeys(m.scenario for m in rows):
        cells = {(m.runner, m.observation): m for m in rows if m.scenario == scenario}
        fast = next(r for r in _DRIVELAB_RUNNERS if (r, "camera") in cells)  # the scenario's fast backend
        rate = {key: m.steps_per_s for key, m in cells.items()}
        one = rate.get(("drivelab-one-process", "native"))
        table.append({
            "scenario": scenario,
            "backend": fast.removeprefix("drivelab-"),
            "num_envs": cells[(fast, "camera")].num_envs,
            "highway_env_native": rate[("highway-env", "native")],
            "highway_env_grayscale": rate[("highway-env", "grayscale")],
            "drivelab_native": rate[(fast, "native")],
            "drivelab_camera": rate[(fast, "camera")],
            "camera_vs_grayscale": rate[(fast, "camera")] / rate[("highway-env", "grayscale")],
            "native_vs_native": rate[(fast, "native")] / rate[("highway-env", "native")],
            "one_process_native": one,
            "workers_vs_one_process": rate[(fast, "native")] / one if one and fast == "drivelab-workers" else None,
            "camera_processes": rate.get(("drivelab-sharded", "camera")),
        })
    return table


def format_table(result: dict[str, Any]) -> str:
    """Markdown table of env-steps/s and ratios."""
    processes = result.get("processes", 0)
    sharded = processes >= 2 and any(row.get("camera_processes") for row in result["table"])
    extra = f" camera, {processes} processes | best camera / grayscale |" if sharded else ""
    lines = [
        "| scenario | drivelab backend | highway-env native | highway-env grayscale | drivelab native "
        "| drivelab camera 4x64x128 | camera / grayscale | native / native | one process native "
        "| workers / one process |" + extra,
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if sharded else ""),
    ]
    for row in result["table"]:
        one = row.get("one_process_native")
        speedup = row.get("workers_vs_one_process")
        lines.append(
            f"| {row['scenario']} | {row.get('backend', 'envpool')}, {row.get('num_envs', result['num_envs'])} envs "
            f"| {row['highway_env_native']:.1f} | {row['highway_env_grayscale']:.1f} | "
            f"{row['drivelab_native']:,.0f} | {row['drivelab_camera']:,.0f} | "
            f"{row['camera_vs_grayscale']:,.0f}x | {row['native_vs_native']:,.0f}x | "
            f"{'' if one is None else f'{one:,.0f}'} | {'' if speedup is None else f'{speedup:.2f}x'} |"
            + (_sharded_cells(row) if sharded else "")
        )
    return "\n".join(lines)


def _sharded_cells(row: dict[str, Any]) -> str:
    rate = row.get("camera_processes")
    if not rate:
        return "  |  |"
    best = max(rate, row["drivelab_camera"]) / row["highway_env_grayscale"]
    return f" {rate:,.0f} | {best:,.0f}x |"


def configure(parser: argparse.ArgumentParser, command: str) -> None:
    """Arguments of ``drivelab bench env``."""
    parser.description = __doc__.split("\n\n", 1)[1]
    parser.add_argument("--scenarios", nargs="+", default=["highway-fast", "highway"], metavar="NAME",
                        help=f"scenario names, of {', '.join(SCENARIOS)}, or 'all' (default: highway-fast highway)")
    parser.add_argument("--num-envs", type=int, default=256,
                        help="batch size of the EnvPool runs (default %(default)s)")
    parser.add_argument("--worker-num-envs", type=int, default=8,
                        help="batch size of the highway-env runs, in worker processes and in one (default %(default)s)")
    parser.add_argument("--processes", type=int, default=0, metavar="N",
                        help="also measure EnvPool camera frames split over N worker processes "
                             "(num_workers=N; 0: not measured, the default)")
    parser.add_argument("--reference", action="store_true",
                        help="run drivelab on highway-env (worker processes) even where EnvPool ports the scenario")
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="seconds per drivelab measurement (default %(default)s)")
    parser.add_argument("--baseline-seconds", type=float, default=20.0,
                        help="seconds per highway-env measurement (default %(default)s)")
    parser.add_argument("--out", type=Path, default=RESULTS / "env_throughput.json",
                        help="result JSON; the Markdown table goes beside it as .md (default %(default)s)")
    parser.set_defaults(func=run_command)


def check_args(args: argparse.Namespace) -> None:
    """Refuse bad arguments before measuring anything."""
    if args.scenarios == ["all"]:
        args.scenarios = list(SCENARIOS)
    unknown = [name for name in args.scenarios if name not in SCENARIOS]
    if unknown:
        raise ConfigError(f"bench env has no scenario {unknown[0]!r}; choose from {', '.join(SCENARIOS)} or 'all'")
    for flag, value in (("--num-envs", args.num_envs), ("--worker-num-envs", args.worker_num_envs)):
        if not 1 <= value <= 4096:
            raise ConfigError(f"{flag} must be an integer in [1, 4096], got {value}")
    if not (args.processes == 0 or 2 <= args.processes <= 64):
        raise ConfigError(f"--processes must be 0 (off) or an integer in [2, 64], got {args.processes}")
    for flag, value in (("--seconds", args.seconds), ("--baseline-seconds", args.baseline_seconds)):
        if not 0 < value < float("inf"):
            raise ConfigError(f"{flag} must be a positive number of seconds, got {value}")
    check_writable(args.out)
    check_writable(args.out.with_suffix(".md"))


def _header(result: dict[str, Any]) -> str:
    machine = result["machine"]
    before, after = result["load_average_before"], result["load_average_after"]
    load = "" if before is None else (f"; 1-minute load average {before[0]:.1f} before and {after[0]:.1f} after "
                                      f"on {machine['cpu_count']} logical CPUs (other processes ran meanwhile)")
    return (f"Env-steps/s, `{machine['command']}` on {machine['cpu']} ({machine['cpu_affinity']} cores), "
            f"{result['num_envs']} envs on EnvPool and {result['worker_num_envs']} on highway-env, "
            f"commit {machine['git_commit'][:12]}, {machine['timestamp_utc']}{load}.")


def run_command(args: argparse.Namespace) -> int:
    """Measure, write the JSON record and the Markdown table, print the table."""
    check_args(args)
    result = run(tuple(args.scenarios), args.num_envs, args.seconds, args.baseline_seconds, args.worker_num_envs,
                 args.processes, args.reference)
    write_json_atomic(args.out, result)
    table = format_table(result)
    md = args.out.with_suffix(".md")
    write_text_atomic(md, f"{_header(result)}\n\n{table}\n")
    print(table)
    print(f"wrote {args.out} and {md}")
    return 0
