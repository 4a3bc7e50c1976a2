"""Training suites: scenario x algorithm x seed runs from one YAML file, locally or on Ray.

A suite file names the grid and the overrides shared by its runs::

    name: highway-camera
    scenarios: [drivelab/highway-fast-v0]
    algos: [ppo, dqn]
    seeds: [0, 1, 2]
    overrides: {total_steps: 200000}    # dotted TrainConfig keys, for every run
    algo_overrides: {dqn: {total_steps: 100000}}  # ... and for one algorithm's runs
    scenario_overrides: {drivelab/merge-v0: {ppo: {crash_penalty: 0}}}  # ... and on one scenario
    resources: {cpus_per_run: 1, gpus_per_run: 0}  # what one run takes on a Ray cluster
    runs_dir: runs/highway-camera

Each run lives in ``<runs_dir>/<scenario>_<algo>_s<seed>``. Running a suite again skips finished
runs (``finished_run``: no process, no env is started for them) and resumes unfinished ones from
their last checkpoint. This module is the one place for the grid, the per-run records and the
summary; ``run_suite`` trains the runs one after another in this process, and
``drivelab.agents.suite_ray.run_suite_ray`` fans them out as Ray tasks with the same records.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from drivelab.agents.checkpoints import POINTER_NAME
from drivelab.agents.configs import Algo, TrainConfig, load_train_config, scenario_name
from drivelab.agents.errors import ConfigError
from drivelab.agents.run_records import CONFIG_JSON, RUN_JSON
from drivelab.agents.spec import SPEC_FILE
from drivelab.agents.train import CHECKPOINTS, FINAL, TrainResult, train
from drivelab.core import provenance
from drivelab.core.config import bounded, from_mapping, read_yaml_mapping, to_plain

# A run's status in a suite record: trained now, finished by an earlier invocation (skipped),
# stopped by a signal (resumable), or failed for good (the record says why).
TRAINED, SKIPPED, INTERRUPTED, FAILED = "trained", "skipped", "interrupted", "failed"


@dataclass(frozen=True)
class RunResources:
    """What one run takes on a Ray cluster (Ray schedules runs by these; locally one runs at a time)."""

    cpus_per_run: int = bounded(1, low=1, high=1024)  # Ray CPUs, and the run's torch threads
    gpus_per_run: float = bounded(0.0, low=0, high=64)  # fractions share one GPU between runs


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
    # Scenario -> algorithm -> dotted keys, over `algo_overrides` for that algorithm's runs there.
    scenario_overrides: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    resources: RunResources = field(default_factory=RunResources)
    # Scenario -> algorithms not trained on it (e.g. DQN where the actions are continuous).
    exclude: dict[str, tuple[str, ...]] = field(default_factory=dict)
    runs_dir: str = "runs"

    def __post_init__(self) -> None:
        unknown = sorted(set(self.algo_overrides) - set(self.algos))
        if unknown:
            raise ConfigError(
                f"algo_overrides names {', '.join(unknown)}, which the suite does not train; "
                f"its algos are {', '.join(self.algos)}"
            )
        for scenario, per_algo in self.scenario_overrides.items():
            if scenario not in self.scenarios or not isinstance(per_algo, dict) or not set(per_algo) <= set(self.algos):
                raise ConfigError(
                    f"scenario_overrides names {scenario}: {per_algo!r}; it takes a scenario the suite trains, "
                    f"mapping algos it trains ({', '.join(self.algos)}) to dotted keys"
                )
        for scenario, algos in self.exclude.items():
            if scenario not in self.scenarios or not set(algos) <= set(self.algos):
                raise ConfigError(
                    f"exclude names {scenario}: {', '.join(algos)}, which the suite does not train; "
                    f"its scenarios are {', '.join(self.scenarios)} and its algos {', '.join(self.algos)}"
                )

    def overrides_for(self, algo: str, seed: int, scenario: str | None = None) -> dict[str, Any]:
        """The dotted TrainConfig overrides of one run (of ``scenario``, where it has its own)."""
        per_scenario = self.scenario_overrides.get(scenario, {}).get(algo, {}) if scenario else {}
        return {**self.overrides, **self.algo_overrides.get(algo, {}), **per_scenario,
                "seed": seed, "device": self.device}

    def run_dir(self, scenario: str, algo: str, seed: int) -> Path:
        return Path(self.runs_dir) / f"{scenario_name(scenario)}_{algo}_s{seed}"


@dataclass(frozen=True)
class SuiteRun:
    """One (scenario, algo, seed) of a suite with its resolved config and run folder."""

    scenario: str
    algo: str
    seed: int
    config: TrainConfig
    run_dir: Path


def read_suite(path: Path | str) -> SuiteConfig:
    """Read and check a suite file; every run's config is resolved up front.

    Raises:
        ConfigError: unreadable file, unknown key, or a run config that does not resolve.
    """
    path = Path(path)
    suite = from_mapping(SuiteConfig, read_yaml_mapping(path, "suite"), f"suite {path.name}")
    plan(suite)  # fail before the first run, not in the middle
    return suite


def grid(suite: SuiteConfig) -> list[tuple[str, str, int]]:
    """Every (scenario, algo, seed) of a suite, in run order."""
    return [(s, a, seed) for s in suite.scenarios for a in suite.algos for seed in suite.seeds
            if a not in suite.exclude.get(s, ())]


def plan(suite: SuiteConfig) -> list[SuiteRun]:
    """Every run of a suite with its resolved config, in run order.

    Raises:
        ConfigError: a run config that does not resolve.
    """
    return [SuiteRun(scenario, algo, seed, load_train_config(scenario, algo, suite.overrides_for(algo, seed, scenario)),
                     suite.run_dir(scenario, algo, seed))
            for scenario, algo, seed in grid(suite)]


def only(
    suite: SuiteConfig, algos: list[str] | None = None, seeds: list[int] | None = None,
    scenarios: list[str] | None = None,
) -> SuiteConfig:
    """The suite restricted to some of its algorithms, seeds and/or scenarios (to train parts of
    it in separate processes); None keeps them all.

    Raises:
        ConfigError: an algorithm, seed or scenario the suite does not train.
    """
    for what, asked, trained in (("algos", algos, suite.algos), ("seeds", seeds, suite.seeds),
                                 ("scenarios", scenarios, suite.scenarios)):
        unknown = sorted(set(asked or ()) - set(trained))
        if unknown:
            raise ConfigError(
                f"suite {suite.name} does not train {what} {', '.join(map(str, unknown))}; "
                f"its {what} are {', '.join(map(str, trained))}"
            )
    kept_algos = tuple(a for a in suite.algos if algos is None or a in algos)
    kept_scenarios = tuple(s for s in suite.scenarios if scenarios is None or s in scenarios)
    return dataclasses.replace(
        suite,
        scenarios=kept_scenarios,
        algos=kept_algos,
        seeds=tuple(s for s in suite.seeds if seeds is None or s in seeds),
        algo_overrides={a: o for a, o in suite.algo_overrides.items() if a in kept_algos},
        scenario_overrides={scenario: kept for scenario, per_algo in suite.scenario_overrides.items()
                            if scenario in kept_scenarios
                            and (kept := {a: o for a, o in per_algo.items() if a in kept_algos})},
        exclude={scenario: kept for scenario, excluded in suite.exclude.items()
                 if scenario in kept_scenarios and (kept := tuple(a for a in excluded if a in kept_algos))},
    )


def _invocations(run_dir: Path) -> list[dict[str, Any]]:
    """The invocations recorded in a run's ``run.json`` (none when it is missing or unreadable)."""
    try:
        record = json.loads((run_dir / RUN_JSON).read_text())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return []
    invocations = record.get("invocations") if isinstance(record, dict) else None
    return [i for i in invocations if isinstance(i, dict)] if isinstance(invocations, list) else []


def _final_spec(run_dir: Path) -> dict[str, Any]:
    try:
        spec = json.loads((run_dir / FINAL / SPEC_FILE).read_text())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return {}
    return spec if isinstance(spec, dict) else {}


def finished_run(run_dir: Path, config: TrainConfig) -> dict[str, Any] | None:
    """The outcome of a run that needs no more training under ``config``, else None.

    A run is finished when its latest invocation ended without a signal, left a final export,
    and reached ``config.total_steps`` or spent ``config.max_minutes`` of training time (both
    may be raised on a rerun, which then continues the run). This is read from what ``train``
    records (``run.json``'s finish summary, the final export's ``training_wall_s``), so a
    finished run is skipped without loading a model or starting an env.
    """
    invocations = _invocations(run_dir)
    finished = invocations[-1].get("finished") if invocations else None
    spec = _final_spec(run_dir)
    if not isinstance(finished, dict) or finished.get("interrupted_by") or not spec:
        return None
    steps = finished.get("num_timesteps")
    wall_s = spec.get("training_wall_s")
    if isinstance(steps, int) and steps >= config.total_steps:
        return finished
    if config.max_minutes > 0 and isinstance(wall_s, (int, float)) and wall_s >= config.max_minutes * 60:
        return finished
    return None


def start_mode(run_dir: Path) -> tuple[bool, bool]:
    """``(resume, force)`` for ``train`` on a run folder: resume where a checkpoint was written;
    start over (``force``) a run that was killed before its first checkpoint; else start fresh.

    Only looks for checkpoint files: ``train`` verifies them (hashes of model and replay buffer)
    and falls back to an older intact one itself.
    """
    if not (run_dir / CONFIG_JSON).is_file():
        return False, False
    checkpoints = run_dir / CHECKPOINTS
    if (checkpoints / POINTER_NAME).is_file() or any(checkpoints.glob("step_*")):
        return True, False
    return False, (run_dir / RUN_JSON).is_file()  # train refuses to delete a folder that is no run


def train_run(
    config: TrainConfig, run_dir: Path, progress_bar: bool = False, command: list[str] | None = None,
    extra_callbacks: Sequence[Any] = (),
) -> TrainResult:
    """Train one run of a suite into ``run_dir``, resuming it where it has a checkpoint."""
    resume, force = start_mode(run_dir)
    return train(config, run_dir, resume=resume, force=force, command=command, progress_bar=progress_bar,
                 extra_callbacks=list(extra_callbacks))


def run_record(
    run: SuiteRun, status: str, wall_s: float, attempts: int = 1, errors: Sequence[str] = (),
) -> dict[str, Any]:
    """One run's entry in a suite record, read from its run folder (so every runner writes the same).

    Args:
        run: the run.
        status: TRAINED, SKIPPED, INTERRUPTED or FAILED.
        wall_s: what this suite invocation spent on the run [s] (0 for a skipped run).
        attempts: how many times it was started in this invocation (Ray retries lost tasks).
        errors: why earlier attempts (or the last, for a failed run) did not finish.
    """
    invocations = _invocations(run.run_dir)
    finished = next((i["finished"] for i in reversed(invocations) if isinstance(i.get("finished"), dict)), {})
    final = run.run_dir / FINAL / SPEC_FILE
    return {
        "scenario": run.scenario, "algo": run.algo, "seed": run.seed, "run_dir": str(run.run_dir),
        "status": status, "attempts": attempts, "errors": list(errors),
        "num_timesteps": finished.get("num_timesteps"), "steps_per_s": finished.get("steps_per_s"),
        "wall_s": wall_s, "training_wall_s": _final_spec(run.run_dir).get("training_wall_s"),
        "best_eval": finished.get("best_eval"),
        "final_export": str(final) if final.is_file() else None,
        "interrupted_by": finished.get("interrupted_by"),
        "invocations": len(invocations),
        "resumed_from_step": invocations[-1].get("resumed_from_step") if invocations else None,
    }


def suite_record(suite: SuiteConfig, started_at: str, runs: list[dict[str, Any]],
                 runner: dict[str, Any]) -> dict[str, Any]:
    """The JSON-able record of one suite invocation: suite, machine, versions, commit, runs, summary.

    ``runner`` says how the runs were trained (``{"kind": "local"}`` or the Ray cluster's facts).
    """
    return {
        "suite": to_plain(suite),
        "runner": runner,
        "started_at": started_at,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": provenance.machine_info(),
        "packages": provenance.package_versions(),
        "git": provenance.git_commit(),
        "runs": runs,
        "summary": summarise(runs),
        "interrupted_by": next((r["interrupted_by"] for r in runs if r["status"] == INTERRUPTED), None),
    }


def run_suite(
    suite: SuiteConfig,
    progress_bar: bool = True,
    announce: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train every unfinished run of a suite in turn, in this process, and summarise them.

    Returns:
        ``suite_record``: each run's outcome and, per (scenario, algo), the mean and std over
        seeds of the best held-out evaluation.
    """
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    runs: list[dict[str, Any]] = []
    planned = plan(suite)
    for index, run in enumerate(planned, start=1):
        head = f"[{index}/{len(planned)}] {run.scenario} {run.algo} seed {run.seed} -> {run.run_dir}"
        if finished_run(run.run_dir, run.config) is not None:
            announce(f"{head} (finished earlier: skipped)")
            runs.append(run_record(run, SKIPPED, 0.0, attempts=0))
            continue
        announce(head + (" (resuming)" if start_mode(run.run_dir)[0] else ""))
        started_at = time.perf_counter()
        result = train_run(run.config, run.run_dir, progress_bar=progress_bar)
        status = INTERRUPTED if result.interrupted_by else TRAINED
        runs.append(run_record(run, status, time.perf_counter() - started_at))
        if result.interrupted_by:  # a signal stopped this run: do not start the next one
            break
    return suite_record(suite, started, runs, {"kind": "local"})


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
