"""What a sweep leaves behind: the best hyperparameters as YAML, the trials table, and plots.

All of it is generated from the study in its storage (never typed), so any machine that shares
the storage can rewrite it: ``best_hyperparams.yaml`` (the format ``drivelab train
--hyperparams`` reads), ``trials.csv`` and ``trials.md``, ``history.png`` (optimization
history) and ``importance.png`` (PED-ANOVA parameter importance, Optuna's own numpy code: no
extra package, nothing downloaded), and ``study.json`` (summary with machine info).
"""

from __future__ import annotations

import csv
import io
import json
import warnings
from pathlib import Path
from typing import Any

import yaml

from drivelab.agents.configs import ALGOS, load_train_config
from drivelab.agents.tuning import Prepared, masked
from drivelab.agents.tuning_space import decode_params
from drivelab.core.files import atomic_output, ensure_dir, write_json_atomic, write_text_atomic
from drivelab.core.provenance import machine_info

BEST_YAML, TRIALS_CSV, TRIALS_MD = "best_hyperparams.yaml", "trials.csv", "trials.md"
HISTORY_PNG, IMPORTANCE_PNG, SUMMARY_JSON = "history.png", "importance.png", "study.json"
COLUMNS = ("trial", "state", "best_return", "crash_rate", "best_step", "steps", "minutes", "note", "host")


def trial_rows(prepared: Prepared, study: Any) -> list[dict[str, Any]]:
    """One row per trial: number, state, objective, crash rate, budget used, and its parameters."""
    rows = []
    for trial in study.trials:
        attrs = trial.user_attrs
        minutes = None
        if trial.datetime_start is not None and trial.datetime_complete is not None:
            minutes = round((trial.datetime_complete - trial.datetime_start).total_seconds() / 60, 2)
        value = trial.value if trial.value is not None else (
            max(trial.intermediate_values.values()) if trial.intermediate_values else None)
        notes = ["base config"] if attrs.get("base_config") else []
        if trial.state.name == "PRUNED" and trial.intermediate_values:
            notes.append(f"pruned at step {max(trial.intermediate_values)}")
        if "failed_trial" in trial.system_attrs:
            notes.append(f"retry of trial {trial.system_attrs['failed_trial']}")
        row = {"trial": trial.number, "state": trial.state.name.lower(), "best_return": value,
               "crash_rate": attrs.get("crash_rate"), "best_step": attrs.get("best_step"),
               "steps": attrs.get("num_timesteps"), "minutes": minutes, "note": "; ".join(notes),
               "host": attrs.get("host")}
        row.update(decode_params(trial.params, prepared.space))
        rows.append(row)
    return rows


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return json.dumps(list(value))
    return str(value)


def trials_csv(rows: list[dict[str, Any]], params: list[str]) -> str:
    """The trials as CSV (full precision; lists as JSON)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*COLUMNS, *params])
    for row in rows:
        writer.writerow([json.dumps(row.get(k)) if isinstance(row.get(k), list) else
                         ("" if row.get(k) is None else row.get(k)) for k in (*COLUMNS, *params)])
    return buffer.getvalue()


def trials_markdown(rows: list[dict[str, Any]], params: list[str], title: str) -> str:
    """The trials as a Markdown table; pruned trials show the best return they reached."""
    header = [*COLUMNS[:-1], *params]
    lines = [title, "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(k)) for k in header) + " |")
    return "\n".join(lines) + "\n"


def best_hyperparams_yaml(prepared: Prepared, study: Any) -> str:
    """The best trial's hyperparameters as a complete ``drivelab train --hyperparams`` file.

    The file is the base YAML with the tuned values over it; the study's per-trial budget
    (steps, minutes, evaluation period, seed) is not baked in but named in the header, since the
    file is meant for longer runs.
    """
    settings, best = prepared.settings, study.best_trial
    params = decode_params(best.params, prepared.space)
    config = load_train_config(settings.env_id, settings.algo, {**settings.overrides, **params}, settings.hyperparams)
    plain = config.to_dict()
    common = {k: v for k, v in plain.items() if k not in (*ALGOS, "env_id", "algo", "seed")}
    tuned = ", ".join(f"{k}={json.dumps(v)}" for k, v in params.items())
    base = prepared.base
    limit = f"at most {base.max_minutes} min" if base.max_minutes else "no time limit"
    header = [
        f"# Best hyperparameters of study {settings.study!r} ({masked(prepared.storage_url)}): trial {best.number},",
        f"# best held-out mean return {best.value:.3f} (crash rate {best.user_attrs.get('crash_rate')}) on "
        f"{base.eval_episodes} selection seeds from {base.eval_seed},",
        f"# trained {base.total_steps} steps ({limit}), seed {base.seed}, "
        f"evaluated every {base.eval_every_steps} steps.",
        f"# Tuned: {tuned}",
        f"# Reproduce the trial: drivelab train --env {settings.env_id} --algo {settings.algo} --hyperparams FILE "
        f"--steps {base.total_steps} --seed {base.seed} --set eval_every_steps={base.eval_every_steps}",
    ]
    body = yaml.safe_dump({"common": common, settings.algo: plain[settings.algo]}, sort_keys=False)
    return "\n".join(header) + "\n" + body


def _save_figure(axes: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    figure = axes.figure if not hasattr(axes, "flat") else axes.flat[0].figure
    figure.set_size_inches(7, 4)
    figure.tight_layout()
    with atomic_output(path) as temporary:
        figure.savefig(temporary, format="png", dpi=90)
    plt.close(figure)


def write_plots(study: Any, folder: Path) -> list[str]:
    """History and importance PNGs; importance needs two finished trials (returns what was skipped)."""
    import optuna
    from optuna.visualization import matplotlib as plots

    notes = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.simplefilter("ignore", UserWarning)  # PED-ANOVA on few trials: equal importances, said below
        _save_figure(plots.plot_optimization_history(study), folder / HISTORY_PNG)
        complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if len(complete) >= 2:
            evaluator = optuna.importance.PedAnovaImportanceEvaluator()
            _save_figure(plots.plot_param_importances(study, evaluator=evaluator), folder / IMPORTANCE_PNG)
        else:
            notes.append(f"no {IMPORTANCE_PNG}: parameter importance needs 2 complete trials, "
                         f"the study has {len(complete)}")
    return notes


def write_outputs(prepared: Prepared, study: Any) -> dict[str, Any]:
    """Write every output of the study into its folder; returns the summary also saved as study.json."""
    import optuna

    folder = ensure_dir(prepared.settings.folder)
    rows = trial_rows(prepared, study)
    params = list(prepared.space)
    title = (f"Study `{prepared.settings.study}`: {prepared.settings.algo} on {prepared.settings.env_id}, "
             f"{prepared.base.total_steps} steps a trial; best_return = best held-out mean return.")
    write_text_atomic(folder / TRIALS_CSV, trials_csv(rows, params))
    write_text_atomic(folder / TRIALS_MD, trials_markdown(rows, params, title))
    notes = write_plots(study, folder)
    states = {state.name.lower(): sum(t.state == state for t in study.trials) for state in optuna.trial.TrialState}
    summary: dict[str, Any] = {"study": prepared.settings.study, "storage": masked(prepared.storage_url),
                               "trials": {k: v for k, v in states.items() if v}, "best": None,
                               "settings": study.user_attrs.get("drivelab"), "notes": notes}
    if states["complete"]:
        best = study.best_trial
        write_text_atomic(folder / BEST_YAML, best_hyperparams_yaml(prepared, study))
        summary["best"] = {"trial": best.number, "best_return": best.value, **best.user_attrs,
                           "params": decode_params(best.params, prepared.space), "yaml": str(folder / BEST_YAML)}
    else:
        notes.append(f"no {BEST_YAML}: no trial has completed yet")
    summary["machine"] = machine_info()
    write_json_atomic(folder / SUMMARY_JSON, summary)
    return summary
