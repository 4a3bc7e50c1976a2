"""`drivelab tune`: an Optuna hyperparameter sweep (TPE, pruning) whose trials are ordinary runs."""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import sys
from pathlib import Path
from typing import Any

from drivelab.agents import ALGOS, ConfigError
from drivelab.agents.configs import scenario_name
from drivelab.benchmarks.cli.train import DEFAULT_ALGO, DEFAULT_ENV, check_threads
from drivelab.core.config import parse_overrides
from drivelab.core.errors import DrivelabError

EPILOG = """\
Each trial trains in OUT/trial_<n> (an ordinary run folder: drivelab eval --policy OUT/trial_<n>/best)
and reports every held-out evaluation to the pruner. The objective is the trial's best held-out
mean return (the protocol's selection seeds); its crash rate is stored with the trial.

Several processes or machines can work on one study: run the same command (same --study, same
--storage, same budget) on each machine with a PostgreSQL storage every machine can reach, e.g.
  drivelab tune --env drivelab/highway-fast-v0 --algo dqn --study hw-dqn --trials 10 \\
      --storage postgresql://USER:PASSWORD@DBHOST:5432/optuna
(each machine writes its trial folders locally; the trials table names the host of every trial).
On one machine, --workers K starts K processes on a SQLite storage. Rerunning a command adds
--trials more trials to the study; a trial left running by a killed process is failed after
3 minutes without a heartbeat and queued again once with the same parameters.

Outputs in OUT: best_hyperparams.yaml (drivelab train --hyperparams takes it), trials.csv,
trials.md, history.png, importance.png, study.json.
"""


def configure(parser: argparse.ArgumentParser, command: str) -> None:
    """Add the arguments of ``drivelab tune``."""
    from drivelab.agents.tuning import DEFAULT_STORAGE, PRUNERS

    parser.description = (
        "Hyperparameter sweep with Optuna, as rl-zoo3's -optimize --storage: TPE sampling from the "
        "search space in agents/hyperparams/search/<algo>.yaml, a median or Hyperband pruner fed by "
        "the periodic held-out evaluations, trials from several processes or machines on one storage."
    )
    parser.epilog = EPILOG
    parser.add_argument("--env", default=DEFAULT_ENV, help=f"scenario id (default {DEFAULT_ENV})")
    parser.add_argument("--algo", default=DEFAULT_ALGO, help=f"one of {', '.join(ALGOS)} (default {DEFAULT_ALGO})")
    parser.add_argument("--trials", type=int, default=None, help="trials this invocation runs (a rerun adds more)")
    parser.add_argument("--study", default=None, help="study name (default <scenario>_<algo>); also the folder name")
    parser.add_argument("--storage", default=DEFAULT_STORAGE,
                        help=f"Optuna storage: sqlite:///FILE or postgresql://... (default {DEFAULT_STORAGE})")
    parser.add_argument("--out", type=Path, default=None, help="study folder (default runs/tune/<study>)")
    parser.add_argument("--steps", type=int, default=None, help="env steps per trial (default from the YAML)")
    parser.add_argument("--max-minutes", type=float, default=None, help="wall-clock budget per trial [min]")
    parser.add_argument("--eval-every", type=int, default=None,
                        help="env steps between held-out evaluations (default: 5 per trial)")
    parser.add_argument("--seed", type=int, default=0, help="training seed of every trial and the sampler's seed")
    parser.add_argument("--pruner", default="median", choices=PRUNERS, help="pruner (default median)")
    parser.add_argument("--startup-trials", type=int, default=5,
                        help="random trials before TPE and complete trials before pruning (default 5)")
    parser.add_argument("--search-space", type=Path, default=None,
                        help="search-space YAML (default agents/hyperparams/search/<algo>.yaml)")
    parser.add_argument("--hyperparams", type=Path, default=None, help="base hyperparameter YAML of every trial")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key in every trial, e.g. device=cpu (repeatable)")
    parser.add_argument("--enqueue-base", action="store_true",
                        help="a new study's first trial trains the base hyperparameters (the reference to beat)")
    parser.add_argument("--workers", type=int, default=1, help="local processes working on the study (default 1)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads per process")
    parser.add_argument("--ray", default=None, metavar="ADDRESS",
                        help="run the trials as --workers Ray tasks on a cluster: local (start one here), auto or "
                             "HOST:PORT; every node must reach --storage (PostgreSQL or a shared SQLite file)")
    parser.add_argument("--report-only", action="store_true",
                        help="run no trials: rewrite the outputs from the study in the storage")
    parser.add_argument("--compare", type=Path, default=None, metavar="RESULTS.json",
                        help="then evaluate the base trial (--enqueue-base) and the best trial on the protocol's "
                             "seeds; write RESULTS.json, RESULTS.md and the plots beside them")
    parser.add_argument("--compare-episodes", type=int, default=50, help="protocol episodes per policy (default 50)")
    parser.add_argument("--compare-backend", default=None, help="evaluation backend (default: the protocol's)")
    parser.set_defaults(func=run)


def _settings(args: argparse.Namespace) -> Any:
    from drivelab.agents.tuning import TuneSettings

    study = args.study or f"{scenario_name(args.env)}_{args.algo}"
    return TuneSettings(
        env_id=args.env, algo=args.algo, study=study, storage=args.storage, out=args.out,
        total_steps=args.steps, max_minutes=args.max_minutes, eval_every_steps=args.eval_every, seed=args.seed,
        pruner=args.pruner, startup_trials=args.startup_trials, search_space=args.search_space,
        hyperparams=args.hyperparams, overrides=parse_overrides(args.set), command=tuple(sys.argv),
        trials=1 if args.report_only else args.trials,
    )


def _worker(prepared: Any, n_trials: int, worker: int, threads: int | None) -> None:
    """Entry of one spawned worker process: its own torch threads and log lines, then its trials."""
    import torch

    from drivelab.agents.tuning import optimize

    if threads:
        torch.set_num_threads(threads)
    logging.basicConfig(level=logging.INFO, format=f"%(levelname)s worker {worker} %(name)s: %(message)s")
    try:
        optimize(prepared, n_trials, worker)
    except DrivelabError as error:
        print(f"drivelab: error: worker {worker}: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


def _run_workers(prepared: Any, workers: int, threads: int | None) -> int:
    """K spawned processes share the trials; returns the worst exit status."""
    trials = prepared.settings.trials
    shares = [trials // workers + (i < trials % workers) for i in range(workers)]
    context = multiprocessing.get_context("spawn")  # fresh interpreters: no forked torch/env threads
    processes = [context.Process(target=_worker, args=(prepared, share, i, threads), name=f"tune-worker-{i}")
                 for i, share in enumerate(shares)]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    return max(abs(process.exitcode or 0) for process in processes)


def run(args: argparse.Namespace) -> int:
    """Check everything (options, configs, search space, storage, study), then run the trials."""
    from drivelab.agents import tuning

    check_threads(args.threads)
    if args.trials is None and not args.report_only:
        raise ConfigError("--trials is required (or --report-only to rewrite the outputs of a study)")
    if not args.report_only and not 1 <= args.workers <= max(args.trials, 1):
        raise ConfigError(f"--workers must be in [1, --trials], got {args.workers}")
    prepared = tuning.prepare(_settings(args))
    storage = tuning.open_storage(prepared)
    if args.report_only and prepared.settings.study not in _study_names(storage):
        raise ConfigError(f"no study {prepared.settings.study!r} in {tuning.masked(prepared.storage_url)}")
    study = tuning.load_study(prepared, storage)  # reachable, and made for this setup
    status = 0
    if not args.report_only:
        print(f"study {study.study_name} ({tuning.masked(prepared.storage_url)}): {len(study.trials)} trials so far;"
              f" running {args.trials} more in {args.workers} process(es), trials in {prepared.settings.folder}")
        if args.enqueue_base and tuning.enqueue_base(prepared, study):
            print("the first trial trains the base hyperparameters, the reference to beat")
        status = _optimize(prepared, args)
    return _report(prepared, tuning.load_study(prepared, tuning.open_storage(prepared)), args) or status


def _study_names(storage: Any) -> list[str]:
    import optuna

    return optuna.get_all_study_names(storage=storage)


def _optimize(prepared: Any, args: argparse.Namespace) -> int:
    from drivelab.agents.tuning import optimize

    if args.ray is not None:
        from drivelab.agents.tuning_ray import run_on_ray

        run_on_ray(prepared, args.ray, args.workers, args.threads)
        return 0
    if args.workers > 1:
        return _run_workers(prepared, args.workers, args.threads)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    optimize(prepared, args.trials)
    return 0


def _report(prepared: Any, study: Any, args: argparse.Namespace) -> int:
    """Write the study's outputs (and the protocol comparison); print where they are."""
    from drivelab.agents.tuning_report import write_outputs

    summary = write_outputs(prepared, study)
    best = summary["best"]
    counts = ", ".join(f"{count} {state}" for state, count in summary["trials"].items())
    print(f"study {prepared.settings.study}: {counts}; outputs in {prepared.settings.folder}")
    if best:
        print(f"best trial {best['trial']}: held-out return {best['best_return']:.2f}, crash rate "
              f"{best.get('crash_rate')} -> {best['yaml']}")
    for note in summary["notes"]:
        print(note)
    if args.compare is not None:
        from drivelab.agents.tuning_compare import write_comparison

        payload = write_comparison(prepared, study, args.compare, args.compare_episodes, args.compare_backend,
                                   " ".join(["drivelab", *sys.argv[1:]]))
        for row in payload["rows"]:
            print(f"{row['config']} (trial {row['trial']}): protocol return {row['mean_return']:.2f}, "
                  f"crash rate {row['crash_rate']:.2f} over {row['episodes']} episodes")
        print(f"comparison -> {args.compare} and {args.compare.with_suffix('.md')}")
    return 0
