"""drivelab tune: search spaces, the pruning hook, storage URLs, and tiny real studies on SQLite."""

from __future__ import annotations

import csv
import json
import re
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml

from drivelab.agents import load_train_config
from drivelab.agents.errors import ConfigError
from drivelab.agents.protocol import PROTOCOL_SEED_BASE
from drivelab.agents.tuning import (
    PruningReporter,
    TuneSettings,
    load_study,
    masked,
    open_storage,
    optimize,
    prepare,
    storage_url,
)
from drivelab.agents.tuning_space import (
    check_search_space,
    decode_params,
    parse_search_space,
    read_search_space,
    search_space_path,
    suggest,
)
from drivelab.benchmarks.cli import main

ENV = "drivelab/highway-fast-v0"
# Native observations, an MLP, two envs, two evaluation episodes: a trial is a few seconds.
TINY_SETS = ["observation=native", "policy=mlp", "dqn.n_envs=2", "dqn.buffer_size=500", "eval_episodes=2",
             "eval_envs=2", "checkpoint_every_steps=1000", "dqn.learning_starts=40", "dqn.net_arch=[16]"]
TINY_SPACE = {
    "dqn.learning_rate": {"type": "float", "low": 1e-4, "high": 1e-3, "log": True},
    "dqn.learning_starts": {"type": "int", "low": 20, "high": 60, "step": 20},
    "dqn.net_arch": {"type": "categorical", "choices": [[16], [32, 32]]},
}


@pytest.fixture(scope="module")
def dqn_base():
    return load_train_config(ENV, "dqn", {})


def test_shipped_search_spaces_parse_and_fit_their_configs():
    for algo, env in (("dqn", ENV), ("ppo", ENV), ("ppo", "drivelab/merge-v0")):
        base = load_train_config(env, algo, {})
        space = read_search_space(search_space_path(algo), base)
        assert space and all(key.startswith((f"{algo}.", "crash_penalty")) for key in space)


@pytest.mark.parametrize("entry, match", [
    ({"dqn.gamma": {"type": "floatt", "low": 0.8, "high": 0.9}}, "expects one of 'float'"),
    ({"dqn.gamma": {"type": "float", "low": 0.9, "high": 0.8}}, "low <= high"),
    ({"dqn.gamma": {"type": "float", "lo": 0.8, "high": 0.9}}, "unknown .* key 'lo'"),
    ({"dqn.learning_rate": {"type": "float", "low": 0.0, "high": 0.1, "log": True}}, "log-scaled range needs low > 0"),
    ({"dqn.batch_size": {"type": "int", "low": 16.5, "high": 64}}, "whole low, high"),
    ({"dqn.batch_size": {"type": "categorical"}}, "non-empty 'choices'"),
    ({"dqn.batch_size": {"type": "categorical", "choices": [32, 32]}}, "repeat a value"),
    ({"dqn.batch_size": {"type": "categorical", "choices": [32], "low": 1}}, "takes only 'choices'"),
    ({"dqn.gamma": [0.8, 0.9]}, "must be a mapping"),
    ({}, "is empty"),
])
def test_bad_search_space_entries_are_one_clear_error(entry, match):
    with pytest.raises(ConfigError, match=match):
        parse_search_space(entry, "search space test.yaml")


@pytest.mark.parametrize("entry, match", [
    ({"dqn.gama": {"type": "float", "low": 0.8, "high": 0.9}}, "unknown train config key 'dqn.gama'"),
    ({"dqn.gamma": {"type": "float", "low": 0.8, "high": 1.5}}, r"dqn.gamma = 1.5 is refused: .*must be in"),
    ({"dqn.net_arch": {"type": "categorical", "choices": [[64], "wide"]}}, "dqn.net_arch = 'wide' is refused"),
    ({"ppo.gamma": {"type": "float", "low": 0.8, "high": 0.9}}, "belongs to ppo, but this study tunes dqn"),
    ({"total_steps": {"type": "int", "low": 10, "high": 20}}, "set by drivelab tune's options"),
])
def test_search_space_is_checked_against_the_train_config(entry, match, dqn_base):
    space = parse_search_space(entry, "search space test.yaml")
    with pytest.raises(ConfigError, match=match):
        check_search_space(space, dqn_base, "search space test.yaml")


def test_suggest_returns_yaml_values_and_stored_params_decode_back(dqn_base):
    space = parse_search_space(TINY_SPACE, "tiny")
    check_search_space(space, dqn_base, "tiny")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    for _ in range(5):
        trial = study.ask()
        values = suggest(trial, space)
        assert values["dqn.net_arch"] in ([16], [32, 32])  # a list, stored by Optuna as JSON text
        assert isinstance(trial.params["dqn.net_arch"], str)
        assert values["dqn.learning_starts"] in (20, 40, 60)
        assert 1e-4 <= values["dqn.learning_rate"] <= 1e-3
        assert decode_params(trial.params, space) == values
        config = load_train_config(ENV, "dqn", values)
        assert list(config.dqn.net_arch) == values["dqn.net_arch"]


def test_storage_urls():
    assert storage_url("postgresql://u:secret@db:5432/optuna") == "postgresql+psycopg://u:secret@db:5432/optuna"
    assert storage_url("postgres://u@db/optuna") == "postgresql+psycopg://u@db/optuna"
    assert storage_url("sqlite:///runs/tune/study.db") == "sqlite:///runs/tune/study.db"
    for bad in ("runs/study.db", "sqlite:///", "sqlite:///:memory:", "mysql://u@h/db", ""):
        with pytest.raises(ConfigError, match="sqlite:///PATH"):
            storage_url(bad)
    assert "secret" not in masked("postgresql+psycopg://u:secret@db:5432/optuna")


class FakeResult:
    """What the pruning hook reads from an EvaluationResult."""

    def __init__(self, mean_return: float) -> None:
        self.mean_return = mean_return

    def summary(self) -> dict:
        return {"episodes": 4, "mean_return": self.mean_return, "crash_rate": 0.5, "mean_speed": 20.0}


def test_a_poor_trial_is_pruned_and_a_good_one_and_the_last_evaluation_are_not():
    pruner = optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0)
    study = optuna.create_study(direction="maximize", pruner=pruner)
    first = study.ask()
    for step in (100, 200, 300):
        first.report(20.0, step)
    study.tell(first, 20.0)

    poor = PruningReporter(study.ask(), total_steps=300)
    assert poor(100, FakeResult(5.0)) is False
    assert poor.pruned_at == 100
    assert study.trials[1].intermediate_values == {100: 5.0}

    good = PruningReporter(study.ask(), total_steps=300)
    assert good(100, FakeResult(25.0)) is True
    # The reported value is the best so far: a worse later evaluation does not undo a good one.
    assert good(200, FakeResult(1.0)) is True and good.best["mean_return"] == 25.0

    last = PruningReporter(study.ask(), total_steps=300)
    assert last(300, FakeResult(1.0)) is True and last.pruned_at is None  # the budget's end: complete, not pruned


def _tiny_args(tmp_path: Path, study: str, trials: int, *extra: str) -> list[str]:
    space = tmp_path / "space.yaml"
    if not space.exists():
        space.write_text(yaml.safe_dump(TINY_SPACE))
    sets = [arg for pair in TINY_SETS for arg in ("--set", pair)]
    return ["tune", "--env", ENV, "--algo", "dqn", "--study", study, "--trials", str(trials), "--steps", "120",
            "--eval-every", "60", "--startup-trials", "1", "--search-space", str(space), "--threads", "1",
            "--storage", f"sqlite:///{tmp_path / 'study.db'}", "--out", str(tmp_path / study), *sets, *extra]


def test_tiny_study_stores_trials_writes_outputs_and_continues(tmp_path, capsys):
    assert main(_tiny_args(tmp_path, "tiny", 2, "--enqueue-base")) == 0
    folder = tmp_path / "tiny"
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.load_study(study_name="tiny", storage=storage)
    assert len(study.trials) == 2 and all(t.state.is_finished() for t in study.trials)
    base = study.trials[0]  # the reference: the base config's own values of the searched keys
    assert base.user_attrs["base_config"] and base.params["dqn.net_arch"] == "[16]"
    assert base.params["dqn.learning_starts"] == 40 and base.params["dqn.learning_rate"] == 5e-4
    assert {t.user_attrs["run_dir"] for t in study.trials} == {str(folder / "trial_0"), str(folder / "trial_1")}
    for trial in study.trials:  # each trial is an ordinary run folder with its held-out evaluations
        evaluations = (folder / f"trial_{trial.number}" / "evaluations.jsonl").read_text().splitlines()
        assert [json.loads(line)["step"] for line in evaluations][:1] == [60]
    # The best YAML is what drivelab train --hyperparams reads, with the tuned values in it.
    best = study.best_trial
    config = load_train_config(ENV, "dqn", {}, folder / "best_hyperparams.yaml")
    assert config.dqn.learning_rate == pytest.approx(best.params["dqn.learning_rate"])
    assert list(config.dqn.net_arch) == json.loads(best.params["dqn.net_arch"])
    assert config.observation == "native" and config.dqn.n_envs == 2
    rows = list(csv.DictReader((folder / "trials.csv").open()))
    assert [int(r["trial"]) for r in rows] == [0, 1]
    assert float(rows[best.number]["best_return"]) == pytest.approx(best.value)
    assert "| trial | state |" in (folder / "trials.md").read_text()
    for png in ("history.png", "importance.png"):
        assert (folder / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((folder / "study.json").read_text())
    assert summary["best"]["trial"] == best.number and summary["best"]["crash_rate"] == best.user_attrs["crash_rate"]

    # Rerunning the same study continues it; another budget is refused before any training.
    assert main(_tiny_args(tmp_path, "tiny", 1)) == 0
    assert len(optuna.load_study(study_name="tiny", storage=storage).trials) == 3
    capsys.readouterr()
    assert main([*_tiny_args(tmp_path, "tiny", 1), "--set", "checkpoint_every_steps=2000"]) == 2
    assert "created with other settings (base_config differ)" in capsys.readouterr().err
    assert len(optuna.load_study(study_name="tiny", storage=storage).trials) == 3

    # Before/after on the protocol's seeds, from the storage alone (no new trial).
    results = tmp_path / "results" / "tune_tiny.json"
    assert main([*_tiny_args(tmp_path, "tiny", 1), "--report-only", "--compare", str(results),
                 "--compare-episodes", "2", "--compare-backend", "envpool"]) == 0
    payload = json.loads(results.read_text())
    assert len(optuna.load_study(study_name="tiny", storage=storage).trials) == 3
    best = optuna.load_study(study_name="tiny", storage=storage).best_trial.number
    assert payload["rows"][0]["trial"] == 0  # the base; then the best trial, or the runner-up when the base won
    assert payload["rows"][1]["trial"] == best if best != 0 else payload["rows"][1]["trial"] in (1, 2)
    assert all(row["episodes"] == 2 and row["first_seed"] >= PROTOCOL_SEED_BASE for row in payload["rows"])
    assert "| base (shipped hyperparameters) | 0 |" in results.with_suffix(".md").read_text()
    assert (results.parent / "tune_tiny_history.png").is_file()


def test_a_base_config_outside_the_search_space_is_refused_before_training(tmp_path, capsys):
    args = _tiny_args(tmp_path, "outside", 1, "--enqueue-base", "--set", "dqn.learning_starts=1000")
    assert main(args) == 2
    assert "learning_starts = 1000 lies outside the search space" in capsys.readouterr().err
    assert not (tmp_path / "outside").exists()


@pytest.mark.slow
def test_two_worker_processes_share_one_study(tmp_path):
    assert main(_tiny_args(tmp_path, "shared", 2, "--workers", "2")) == 0
    study = optuna.load_study(study_name="shared", storage=f"sqlite:///{tmp_path / 'study.db'}")
    assert len(study.trials) == 2 and all(t.state.is_finished() for t in study.trials)
    assert len({t.user_attrs["pid"] for t in study.trials}) == 2  # one trial from each process


@pytest.mark.slow
def test_trials_as_ray_tasks_share_one_study(tmp_path):
    assert main(_tiny_args(tmp_path, "on-ray", 2, "--workers", "2", "--ray", "local")) == 0
    study = optuna.load_study(study_name="on-ray", storage=f"sqlite:///{tmp_path / 'study.db'}")
    assert len(study.trials) == 2 and all(t.state.name == "COMPLETE" for t in study.trials)
    assert len({t.user_attrs["pid"] for t in study.trials}) == 2  # two Ray worker processes
    assert all((tmp_path / "on-ray" / f"trial_{t.number}" / "best").is_dir() for t in study.trials)


@pytest.mark.slow
def test_a_study_on_a_real_postgresql_server_continues_across_runs(tmp_path):
    # The leaderboard tests' throwaway server (initdb + pg_ctl on loopback), the one helper for it.
    sys.path.insert(0, str(Path(__file__).parents[1] / "leaderboard"))
    from pg_server import running_server

    try:
        context = running_server()
        server = context.__enter__()
    except LookupError as error:
        pytest.skip(str(error))
    try:
        url = server.create_database("optuna")
        args = _tiny_args(tmp_path, "on-pg", 1)
        args[args.index("--storage") + 1] = url  # plain postgresql://: the psycopg 3 driver is chosen
        assert main(args) == 0 and main(args) == 0
        study = optuna.load_study(study_name="on-pg", storage=url.replace("postgresql://", "postgresql+psycopg://"))
        assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
        assert (tmp_path / "on-pg" / "best_hyperparams.yaml").is_file()
    finally:
        context.__exit__(None, None, None)


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
def test_a_trial_left_running_by_a_killed_process_is_failed_and_retried(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(TINY_SPACE))
    overrides = dict(pair.split("=") for pair in TINY_SETS)
    overrides = {k: yaml.safe_load(v) for k, v in overrides.items()}
    settings = TuneSettings(env_id=ENV, algo="dqn", study="stale", trials=1, storage=f"sqlite:///{tmp_path / 's.db'}",
                            out=tmp_path / "stale", total_steps=60, eval_every_steps=60, search_space=space,
                            overrides=overrides, heartbeat_s=1, grace_s=2)
    prepared = prepare(settings)
    storage = open_storage(prepared)
    study = load_study(prepared, storage)
    killed = study.ask()  # as a process that died mid-trial leaves it: RUNNING, heartbeat stopped
    suggest(killed, prepared.space)
    storage.record_heartbeat(killed._trial_id)
    time.sleep(3.5)  # past the 2 s grace period, with a margin for a loaded machine
    optimize(prepared, 1)
    trials = optuna.load_study(study_name="stale", storage=storage).trials
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE"]
    assert trials[1].params == trials[0].params and trials[1].system_attrs["failed_trial"] == 0


@pytest.mark.parametrize("extra, match", [
    (["--env", "drivelab/highwy-v0"], "highwy"),
    (["--algo", "a2c"], "unknown algorithm 'a2c'"),
    (["--storage", "runs/study.db"], "is not supported; give sqlite:///PATH"),
    (["--storage", "postgresql://user:hunter2@127.0.0.1:9/optuna"], "cannot open the study storage"),
    (["--trials", "0"], "--trials must be at least 1"),
    (["--study", "../up"], "study name '../up'"),
    (["--workers", "5"], r"--workers must be in \[1, --trials\]"),
])
def test_bad_input_is_one_line_and_exit_2_before_any_training(tmp_path, capsys, extra, match):
    args = _tiny_args(tmp_path, "bad", 2)
    flag, value = extra
    if flag in args:
        args[args.index(flag) + 1] = value
    else:
        args += extra
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("drivelab: error:") and len(err.splitlines()) == 1
    assert re.search(match, err), err
    assert "hunter2" not in err
    assert not (tmp_path / "bad").exists()
