"""Before/after of a sweep: the base trial and the best trial, evaluated on the protocol's seeds.

The objective a study maximises is measured on the selection seeds, which also chose each
trial's ``best/`` policy and, through the sampler, the hyperparameters: a number that has been
selected on twice. The protocol's evaluation seeds were seen by neither, so this comparison is
the honest one. It needs a study whose first trial trained the base config
(``drivelab tune --enqueue-base``), so both policies had the same budget, seed and selection.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from drivelab.agents.errors import ConfigError
from drivelab.agents.evaluation import evaluate
from drivelab.agents.loading import env_kwargs_from_spec, load_policy
from drivelab.agents.protocol import DEFAULT_PROTOCOL
from drivelab.agents.tuning import Prepared, masked
from drivelab.agents.tuning_report import HISTORY_PNG, IMPORTANCE_PNG, TRIALS_MD
from drivelab.agents.tuning_space import decode_params
from drivelab.core.files import check_writable, write_bytes_atomic, write_json_atomic, write_text_atomic
from drivelab.core.provenance import hardware_summary, machine_info


def compared_trials(study: Any) -> tuple[Any, Any]:
    """(base trial, best trial) of a study, both complete.

    Raises:
        ConfigError: no complete base trial (study made without --enqueue-base), or none complete.
    """
    import optuna

    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    base = [t for t in complete if t.user_attrs.get("base_config")]
    if not base:
        raise ConfigError(f"study {study.study_name!r} has no complete trial of the base config to compare "
                          "with; start a new study with --enqueue-base")
    return base[0], study.best_trial


def _row(label: str, trial: Any, prepared: Prepared, episodes: int, backend: str | None) -> dict[str, Any]:
    env_id = prepared.settings.env_id
    folder = Path(trial.user_attrs["run_dir"]) / "best"
    policy = load_policy(str(folder), env_id)
    result = evaluate(policy, env_id, episodes=episodes, backend=backend,
                      env_kwargs=env_kwargs_from_spec(policy.source.spec))
    summary = result.summary()
    return {
        "config": label, "trial": trial.number, "policy": str(folder),
        "selection_best_return": trial.value, "selection_crash_rate": trial.user_attrs.get("crash_rate"),
        "selection_best_step": trial.user_attrs.get("best_step"),
        "trained_steps": trial.user_attrs.get("num_timesteps"),
        "params": decode_params(trial.params, prepared.space), "backend": result.backend,
        "protocol": result.protocol_version, "first_seed": summary["first_seed"], "episodes": summary["episodes"],
        "mean_return": summary["mean_return"],
        "sem_return": summary["std_return"] / math.sqrt(max(summary["episodes"] - 1, 1)),
        "crash_rate": summary["crash_rate"], "mean_speed": summary["mean_speed"],
    }


def _study_command(trial: Any) -> str:
    """The ``drivelab tune`` command that ran a trial, from its run folder's run.json."""
    try:
        invocations = json.loads((Path(trial.user_attrs["run_dir"]) / "run.json").read_text())["invocations"]
        words = list(invocations[0]["command"])
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return ""
    return " ".join(["drivelab", *words[1:]])


def comparison_markdown(payload: dict[str, Any], trials_table: str = "") -> str:
    """The before/after table with its budget, seeds and machine."""
    rows, budget = payload["rows"], payload["budget"]
    lines = [
        f"{payload['env_id']}, {payload['algo']}: base hyperparameters vs the best of study `{payload['study']}` "
        f"({payload['trials']} trials), both trained {budget['total_steps']:,} steps with seed {budget['seed']} "
        f"and chosen on {budget['eval_episodes']} selection seeds; then {rows[0]['episodes']} protocol episodes "
        f"({rows[0]['protocol']}, {rows[0]['backend']} backend, seeds from {rows[0]['first_seed']}).",
        "",
        "| config | trial | selection seeds: best return | selection crash rate | protocol: mean return ± s.e. "
        "| protocol crash rate | mean speed [m/s] |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(f"| {row['config']} | {row['trial']} | {row['selection_best_return']:.2f} | "
                     f"{row['selection_crash_rate']:.2f} | {row['mean_return']:.2f} ± {row['sem_return']:.2f} | "
                     f"{row['crash_rate']:.2f} | {row['mean_speed']:.1f} |")
    tuned = rows[-1]["params"]
    lines += ["", "Tuned values: " + ", ".join(f"`{k}={v}`" for k, v in tuned.items()) + ".",
              f"Machine: {payload['hardware']}.", f"Study: `{payload['study_command']}`.",
              f"This table: `{payload['command']}`."]
    if trials_table:
        lines += ["", "Every trial (selection seeds):", "", *trials_table.strip().splitlines()[2:]]
    return "\n".join(lines) + "\n"


def write_comparison(prepared: Prepared, study: Any, results: Path, episodes: int,
                     backend: str | None = None, command: str = "") -> dict[str, Any]:
    """Evaluate base and best on the protocol; write ``results`` (.json), its .md and the plots beside it."""
    check_writable(results)
    base, best = compared_trials(study)
    label = "tuned (best trial)"
    if best.number == base.number:  # nothing beat the base: check the runner-up, so the table still says why
        others = sorted((t for t in study.trials if t.state.name == "COMPLETE" and t.number != base.number),
                        key=lambda t: t.value, reverse=True)
        best, label = (others[0], "best other trial (the base was best)") if others else (base, label)
    rows = [_row("base (shipped hyperparameters)", base, prepared, episodes, backend)]
    rows.append(_row(label, best, prepared, episodes, backend) if best.number != base.number
                else {**rows[0], "config": "tuned (best trial) = base"})
    config = prepared.base
    payload = {
        "env_id": config.env_id, "algo": config.algo, "study": prepared.settings.study,
        "storage": masked(prepared.storage_url), "trials": len(study.trials),
        "states": {s: sum(t.state.name.lower() == s for t in study.trials) for s in ("complete", "pruned", "fail")},
        "budget": {"total_steps": config.total_steps, "max_minutes": config.max_minutes, "seed": config.seed,
                   "eval_every_steps": config.eval_every_steps, "eval_episodes": config.eval_episodes,
                   "eval_seed": config.eval_seed, "pruner": prepared.settings.pruner},
        "protocol_default": DEFAULT_PROTOCOL, "rows": rows, "command": command, "study_command": _study_command(base),
        "hardware": hardware_summary(), "machine": machine_info(),
    }
    write_json_atomic(results, payload)
    table = prepared.settings.folder / TRIALS_MD
    write_text_atomic(results.with_suffix(".md"),
                      comparison_markdown(payload, table.read_text() if table.is_file() else ""))
    for png in (HISTORY_PNG, IMPORTANCE_PNG):
        plot = prepared.settings.folder / png
        if plot.is_file():
            write_bytes_atomic(results.with_name(f"{results.stem}_{png}"), plot.read_bytes())
    return payload
