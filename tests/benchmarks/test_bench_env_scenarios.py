"""`drivelab bench env` over the scenarios: which backend measures each, the ratios, the table."""

import argparse
from pathlib import Path

import pytest

import drivelab.envs as de
from drivelab.benchmarks.bench import env as bench
from drivelab.core.errors import ConfigError


def _m(scenario, runner, observation, steps_per_s, num_envs=1):
    return bench.Measurement(scenario, runner, observation, num_envs, int(steps_per_s * 2), 2.0, 0.5)


def test_every_registered_scenario_is_measurable_and_all_selects_them(tmp_path):
    assert set(bench.SCENARIOS) == {s.name if s.version == 0 else f"{s.name}-v{s.version}"
                                    for s in de.SCENARIOS.values()}
    args = argparse.Namespace(scenarios=["all"], num_envs=64, worker_num_envs=8, seconds=1.0, baseline_seconds=1.0,
                              out=tmp_path / "r.json", processes=0)
    bench.check_args(args)
    assert args.scenarios == list(bench.SCENARIOS) and "intersection-v1" in args.scenarios
    with pytest.raises(ConfigError, match="'nope'"):
        bench.check_args(argparse.Namespace(**{**vars(args), "scenarios": ["nope"]}))
    with pytest.raises(ConfigError, match="--worker-num-envs"):
        bench.check_args(argparse.Namespace(**{**vars(args), "scenarios": ["exit"], "worker_num_envs": 0}))
    with pytest.raises(ConfigError, match="--processes must be 0"):
        bench.check_args(argparse.Namespace(**{**vars(args), "scenarios": ["merge"], "processes": 1}))


def test_ratios_and_the_workers_speedup_in_the_table():
    rows = [
        _m("merge", "highway-env", "native", 40), _m("merge", "highway-env", "grayscale", 50),
        _m("merge", "drivelab-envpool", "native", 6000, 64), _m("merge", "drivelab-envpool", "camera", 5000, 64),
        _m("exit", "highway-env", "native", 20), _m("exit", "highway-env", "grayscale", 10),
        _m("exit", "drivelab-workers", "native", 36, 8), _m("exit", "drivelab-workers", "camera", 30, 8),
        _m("exit", "drivelab-one-process", "native", 20, 8),
    ]
    merge, exit_ = bench.summarise(rows)
    assert merge["backend"] == "envpool" and merge["num_envs"] == 64
    assert merge["camera_vs_grayscale"] == pytest.approx(100) and merge["native_vs_native"] == pytest.approx(150)
    assert merge["workers_vs_one_process"] is None
    assert exit_["backend"] == "workers" and exit_["num_envs"] == 8
    assert exit_["camera_vs_grayscale"] == pytest.approx(3) and exit_["workers_vs_one_process"] == pytest.approx(1.8)
    table = bench.format_table({"table": [merge, exit_], "num_envs": 64})
    assert "| merge | envpool, 64 envs | 40.0 | 50.0 | 6,000 | 5,000 | 100x | 150x |  |  |" in table
    assert "| exit | workers, 8 envs |" in table and "| 20 | 1.80x |" in table


def test_camera_in_processes_gets_its_own_column_and_the_best_ratio():
    rows = [
        _m("merge", "highway-env", "native", 40), _m("merge", "highway-env", "grayscale", 50),
        _m("merge", "drivelab-envpool", "native", 6000, 64), _m("merge", "drivelab-envpool", "camera", 5000, 64),
        _m("merge", "drivelab-sharded", "camera", 7500, 64),
        _m("exit", "highway-env", "native", 20), _m("exit", "highway-env", "grayscale", 10),
        _m("exit", "drivelab-workers", "native", 36, 8), _m("exit", "drivelab-workers", "camera", 30, 8),
        _m("exit", "drivelab-one-process", "native", 20, 8),
    ]
    merge, exit_ = bench.summarise(rows)
    assert merge["camera_processes"] == pytest.approx(7500) and exit_["camera_processes"] is None
    table = bench.format_table({"table": [merge, exit_], "num_envs": 64, "processes": 2})
    assert "camera, 2 processes | best camera / grayscale |" in table
    assert "| 5,000 | 100x | 150x |  |  | 7,500 | 150x |" in table
    assert table.splitlines()[-1].endswith("| 1.80x |  |  |")
    assert "processes" not in bench.format_table({"table": [merge], "num_envs": 64, "processes": 0})


@pytest.mark.slow
def test_a_worker_scenario_is_measured_in_workers_and_in_one_process(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = bench.run(("two-way",), num_envs=4, seconds=0.5, baseline_seconds=0.5, worker_num_envs=2)
    runners = {(m["runner"], m["observation"]) for m in result["measurements"]}
    assert runners == {("highway-env", "native"), ("highway-env", "grayscale"), ("drivelab-workers", "native"),
                       ("drivelab-workers", "camera"), ("drivelab-one-process", "native")}
    assert result["table"][0]["workers_vs_one_process"] > 0
    assert not list(Path(tmp_path).iterdir())  # measuring writes nothing


def test_reference_measures_a_ported_scenario_on_highway_env_workers(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = bench.run(("roundabout",), num_envs=4, seconds=0.5, baseline_seconds=0.5, worker_num_envs=2,
                       reference=True)
    runners = {m["runner"] for m in result["measurements"]}
    assert runners == {"highway-env", "drivelab-workers", "drivelab-one-process"} and result["reference"]
    assert result["table"][0]["backend"] == "workers"
