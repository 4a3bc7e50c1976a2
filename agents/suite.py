"""Training suites: scenario x algorithm x seed runs from one YAML file, one after another.

A suite file names the grid and the overrides shared by its runs::

    name: highway-camera
    scenarios: [drivelab/highway-fast-v0]
    algos: [ppo, dqn]
    seeds: [0, 1, 2]
    overrides: {total_steps: 200000}    # dotted TrainConfig keys, for every run
    algo_overrides: {dqn: {total_steps: 100000}}  # ... and for one algorithm's runs
    runs_dir: runs/highway-camera

Each run lives in ``<runs_dir>/<scenario>_<algo>_s<seed>``; running a suite again continues
unfinished runs from their checkpoints and skips finished ones.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from drivelab.agents.configs import Algo, load_train_config, scenario_name
from drivelab.agents.errors import ConfigError
from drivelab.agents.train import TrainResult, train
from drivelab.core import provenance
from drivelab.core.config import bounded, from_mapping, read_yaml_mapping


@dataclass(frozen=True)
class SuiteConfig:
    """A grid of training runs."""

    name: str
    scenarios: tuple[str, ...]
    algos: tuple[Algo, ...]
    seeds: tuple[int, ...] = bounded(low=0)
    description: str = ""
    device: str = "auto"
    overrides: dict[str, Any] = field(default_factory=dict)  # dotted TrainConfig keys
    algo_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)  # per algorithm, over `overrides`
    runs_dir: str = "runs"

    def __post_init__(self) -> None:
        unknown = sorted(set(self.algo_overrides) - set(self.algos))
        if unknown:
            raise ConfigError(
                f"algo_overrides names {', '.join(unknown)}, which the suite does not train; "
                f"its algos are {', '.join(self.algos)}"
            )

    def overrides_for(self, algo: str, seed: int) -> dict[str, Any]:
        """The dotted TrainConfig overrides of one run."""
        return {**self.overrides, **self.algo_overrides.get(algo, {}), "seed": seed, "device": self.device}

    def run_dir(self, scenario: str, algo: str, seed: int) -> Path:
        return Path(self.runs_dir) / f"{scenario_name(scenario)}_{algo}_s{seed}"


def read_suite(path: Path | str) -> SuiteConfig:
    """Read and check a suite file; every run's config is resolved up front.

    Raises:
        ConfigError: unreadable file, unknown key, or a run config that does not resolve.
    """
    path = Path(path)
    suite = from_mapping(SuiteConfig, read_yaml_mapping(path, "suite"), f"suite {path.name}")
    for scenario, algo, seed in grid(suite):  # fail before the first run, not in the middle
        load_train_config(scenario, algo, suite.overrides_for(algo, seed))
    return suite


def grid(suite: SuiteConfig) -> list[tuple[str, str, int]]:
    """Every (scenario, algo, seed) of a suite, in run order."""
    return [(s, a, seed) for s in suite.scenarios for a in suite.algos for seed in suite.seeds]


def only(suite: SuiteConfig, algos: list[str] | None = None, seeds: list[int] | None = None) -> SuiteConfig:
    """The suite restricted to some of its algorithms and/or seeds (to train parts of it in
    separate processes); None keeps them all.

    Raises:
        ConfigError: an algorithm or seed the suite does not train.
    """
    for what, asked, trained in (("algos", algos, suite.algos), ("seeds", seeds, suite.seeds)):
        unknown = sorted(set(asked or ()) - set(trained))
        if unknown:
            raise ConfigError(
                f"suite {suite.name} does not train {what} {', '.join(map(str, unknown))}; "
                f"its {what} are {', '.join(map(str, trained))}"
            )
    kept_algos = tuple(a for a in suite.algos if algos is None or a in algos)
    return dataclasses.replace(
        suite,
        algos=kept_algos,
        seeds=tuple(s for s in suite.seeds if seeds is None or s in seeds),
        algo_overrides={a: o for a, o in suite.algo_overrides.items() if a in kept_algos},
    )


def run_suite(
    suite: SuiteConfig,
    progress_bar: bool = True,
    announce: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train every run of a suite in turn and summarise them.

    Returns:
        A JSON-able record: suite, machine, versions, commit, each run's outcome and, per
        (scenario, algo), the mean and std over seeds of the best held-out evaluation.
    """
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    runs: list[dict[str, Any]] = []
    for index, (scenario, algo, seed) in enumerate(grid(suite), start=1):
        config = load_train_config(scenario, algo, suite.overrides_for(algo, seed))
        run_dir = suite.run_dir(scenario, algo, seed)
        resume = (run_dir / "config.json").is_file()
        announce(f"[{index}/{len(grid(suite))}] {scenario} {algo} seed {seed} -> {run_dir}"
                 + (" (resuming)" if resume else ""))
        started_at = time.perf_counter()
        result: TrainResult = train(config, run_dir, resume=resume, progress_bar=progress_bar)
        runs.append({
            "scenario": scenario, "algo": algo, "seed": seed, "run_dir": str(run_dir),
            "num_timesteps": result.num_timesteps, "steps_per_s": result.steps_per_s,
            "wall_s": time.perf_counter() - started_at, "best_eval": result.best_eval,
            "final_export": str(result.final_export), "interrupted_by": result.interrupted_by,
        })
        if result.interrupted_by:  # a signal stopped this run: do not start the next one
            break
    return {
        "suite": {**suite.__dict__, "scenarios": list(suite.scenarios), "algos": list(suite.algos),
                  "seeds": list(suite.seeds)},
        "started_at": started,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": provenance.machine_info(),
        "packages": provenance.package_versions(),
        "git": provenance.git_commit(),
        "runs": runs,
        "summary": summarise(runs),
        "interrupted_by": next((r["interrupted_by"] for r in runs if r["interrupted_by"]), None),
    }


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and std over seeds of the best evaluation's return and crash rate."""
    rows = []
    for key in sorted({(r["scenario"], r["algo"]) for r in runs}):
        evals = [r["best_eval"] for r in runs if (r["scenario"], r["algo"]) == key and r["best_eval"]]
        returns = np.array([e["mean_return"] for e in evals])
        crashes = np.array([e["crash_rate"] for e in evals])
        rows.append({
            "scenario": key[0], "algo": key[1], "seeds": len(evals),
            "mean_return": float(returns.mean()) if evals else None,
            "std_return": float(returns.std()) if evals else None,
            "crash_rate": float(crashes.mean()) if evals else None,
            "eval_episodes": int(evals[0]["episodes"]) if evals else None,
        })
    return rows
