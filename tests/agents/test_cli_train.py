"""`drivelab train` (benchmarks/cli/train.py) and `drivelab bench rl` (benchmarks/bench/rl.py), in-process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from drivelab.benchmarks.cli import main

TINY_FLAGS = [
    "--set", "camera={width: 64, height: 32, metres_per_pixel: 1.0, stack: 2}",
    "--set", "ppo.n_envs=4", "--set", "ppo.n_steps=16", "--set", "ppo.batch_size=32",
    "--set", "ppo.n_epochs=1", "--set", "encoder.features_dim=32", "--set", "eval_every_steps=0",
    "--set", "checkpoint_every_steps=64", "--threads", "1", "--no-progress",
]


def test_train_then_resume(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run_dir = tmp_path / "run"
    args = ["train", "--env", "drivelab/highway-fast-v0", "--algo", "ppo", "--obs", "camera",
            "--steps", "64", "--seed", "3", "--device", "auto", "--encoder", "fast", "--run-dir", str(run_dir)]
    assert main(args + TINY_FLAGS) == 0
    assert "64 steps" in capsys.readouterr().out
    config = json.loads((run_dir / "config.json").read_text())
    assert (config["seed"], config["ppo"]["n_envs"], config["camera"]["width"]) == (3, 4, 64)
    assert main(args + TINY_FLAGS) == 2  # exists: neither --resume nor --force
    assert "--resume to continue it or --force" in capsys.readouterr().err
    assert main(["train", "--run-dir", str(run_dir), "--resume", "--steps", "128", "--no-progress"]) == 0
    assert "128 steps" in capsys.readouterr().out
    command = json.loads((run_dir / "run.json").read_text())["invocations"][1]["command"]
    assert "--resume" in command


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--algo", "a2c"], "Valid algorithms: ppo, dqn"),
        (["--env", "drivelab/parking-v0", "--algo", "dqn"], "use --algo ppo"),
        (["--policy", "mlp"], "need policy: cnn"),
        (["--set", "ppo.lr=0.1"], "Valid keys of ppo"),
        (["--set", "nonsense"], "KEY=VALUE"),
        (["--resume"], "--resume needs --run-dir"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    args: list, message: str, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    argv = ["train", *args] if "--resume" in args else ["train", "--run-dir", str(tmp_path / "never"), *args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "never").exists()


def test_bench_rl_runs_a_suite_and_writes_results(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    suite = {
        "name": "tiny", "scenarios": ["drivelab/highway-fast-v0"], "algos": ["ppo"], "seeds": [0, 1],
        "device": "cpu", "runs_dir": str(tmp_path / "runs"),
        "overrides": {"total_steps": 64, "camera": {"width": 64, "height": 32, "metres_per_pixel": 1.0, "stack": 2},
                      "ppo.n_envs": 4, "ppo.n_steps": 16, "ppo.batch_size": 32, "ppo.n_epochs": 1,
                      "encoder.features_dim": 32, "eval_every_steps": 64, "eval_episodes": 2, "eval_envs": 2},
    }
    suite_file = tmp_path / "suite.yaml"
    suite_file.write_text(yaml.safe_dump(suite))
    out = tmp_path / "results.json"
    assert main(["bench", "rl", "--suite", str(suite_file), "--out", str(out), "--no-progress"]) == 0
    record = json.loads(out.read_text())
    assert [(r["algo"], r["seed"], r["num_timesteps"]) for r in record["runs"]] == [("ppo", 0, 64), ("ppo", 1, 64)]
    assert record["machine"]["cpu_count"] and record["packages"]["torch"]
    row = record["summary"][0]
    assert row["seeds"] == 2 and row["eval_episodes"] == 2
    returns = [r["best_eval"]["mean_return"] for r in record["runs"]]
    assert row["mean_return"] == pytest.approx(sum(returns) / 2)
    suite["overrides"]["ppo.gamma_typo"] = 0.9
    suite_file.write_text(yaml.safe_dump(suite))
    assert main(["bench", "rl", "--suite", str(suite_file), "--out", str(out)]) == 2
    assert "Valid keys of ppo" in capsys.readouterr().err


def test_shipped_suites_resolve() -> None:
    from drivelab.agents.suite import grid, read_suite

    suites = Path(__file__).parents[2] / "benchmarks" / "suites"
    suite = read_suite(suites / "highway-camera.yaml")
    assert grid(suite) == [("drivelab/highway-fast-v0", a, s) for a in ("ppo", "dqn") for s in (0, 1, 2)]
    assert grid(read_suite(suites / "smoke.yaml")) == [("drivelab/highway-fast-v0", a, 0) for a in ("ppo", "dqn")]
    everything = grid(read_suite(suites / "all-scenarios.yaml"))  # DQN only where the actions are discrete
    assert len(everything) == 33 and ("drivelab/parking-v0", "dqn", 0) not in everything
    assert [(s, a) for s, a, _ in everything if a == "sac"] == [("drivelab/parking-v0", "sac")] * 3
    assert {(s, a) for s, a, _ in everything} >= {("drivelab/merge-v0", "dqn"), ("drivelab/racetrack-v0", "ppo")}


def test_suite_exclude_drops_pairs_and_names_what_is_trained(tmp_path: Path) -> None:
    from drivelab.agents import ConfigError
    from drivelab.agents.suite import grid, only, read_suite

    suite = {"name": "x", "scenarios": ["drivelab/highway-fast-v0", "drivelab/parking-v0"], "algos": ["ppo", "dqn"],
             "seeds": [0], "exclude": {"drivelab/parking-v0": ["dqn"]}}
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    loaded = read_suite(path)
    assert [(s, a) for s, a, _ in grid(loaded)] == [
        ("drivelab/highway-fast-v0", "ppo"), ("drivelab/highway-fast-v0", "dqn"), ("drivelab/parking-v0", "ppo")]
    assert only(loaded, algos=["ppo"]).exclude == {}
    path.write_text(yaml.safe_dump({**suite, "exclude": {"drivelab/merge-v0": ["dqn"]}}))
    with pytest.raises(ConfigError, match="exclude names drivelab/merge-v0"):
        read_suite(path)


def test_suite_algo_overrides_and_algo_and_seed_filters(tmp_path: Path) -> None:
    from drivelab.agents import ConfigError, load_train_config
    from drivelab.agents.suite import grid, only, read_suite

    suite = {"name": "two", "scenarios": ["drivelab/highway-fast-v0"], "algos": ["ppo", "dqn"], "seeds": [0, 1],
             "overrides": {"total_steps": 1000, "max_minutes": 30},
             "algo_overrides": {"dqn": {"total_steps": 500, "dqn.gamma": 0.9}}}
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    loaded = read_suite(path)
    ppo = load_train_config("drivelab/highway-fast-v0", "ppo", loaded.overrides_for("ppo", 1))
    dqn = load_train_config("drivelab/highway-fast-v0", "dqn", loaded.overrides_for("dqn", 1))
    assert (ppo.total_steps, dqn.total_steps, dqn.dqn.gamma, ppo.max_minutes, dqn.seed) == (1000, 500, 0.9, 30, 1)
    only_dqn = only(loaded, algos=["dqn"])
    assert grid(only_dqn) == [("drivelab/highway-fast-v0", "dqn", 0), ("drivelab/highway-fast-v0", "dqn", 1)]
    assert only_dqn.overrides_for("dqn", 0)["total_steps"] == 500
    with pytest.raises(ConfigError, match="does not train algos sac"):
        only(loaded, algos=["sac"])
    assert grid(only(only_dqn, seeds=[1])) == [("drivelab/highway-fast-v0", "dqn", 1)]
    assert grid(only(loaded, ["ppo"], [0])) == [("drivelab/highway-fast-v0", "ppo", 0)]
    with pytest.raises(ConfigError, match="does not train seeds 5; its seeds are 0, 1"):
        only(loaded, seeds=[1, 5])
    with pytest.raises(ConfigError, match="does not train scenarios drivelab/merge-v0"):
        only(loaded, scenarios=["drivelab/merge-v0"])
    assert only(loaded, scenarios=["drivelab/highway-fast-v0"]).scenarios == ("drivelab/highway-fast-v0",)
    path.write_text(yaml.safe_dump({**suite, "algos": ["ppo"]}))
    with pytest.raises(ConfigError, match="algo_overrides names dqn"):
        read_suite(path)


def test_suite_scenario_overrides_apply_to_one_algorithm_on_one_scenario(tmp_path: Path) -> None:
    from drivelab.agents import ConfigError
    from drivelab.agents.suite import only, plan, read_suite

    suite = {"name": "s", "scenarios": ["drivelab/highway-fast-v0", "drivelab/merge-v0"], "algos": ["ppo", "dqn"],
             "seeds": [0], "algo_overrides": {"ppo": {"crash_penalty": 5.0}},
             "scenario_overrides": {"drivelab/merge-v0": {"ppo": {"crash_penalty": 0.0, "ppo.gamma": 0.9}}}}
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    loaded = read_suite(path)
    configs = {(r.scenario, r.algo): r.config for r in plan(loaded)}
    assert configs["drivelab/highway-fast-v0", "ppo"].crash_penalty == 5.0
    assert configs["drivelab/merge-v0", "ppo"].crash_penalty == 0.0
    assert configs["drivelab/merge-v0", "ppo"].ppo.gamma == 0.9
    assert configs["drivelab/merge-v0", "dqn"].crash_penalty == 0.0
    assert only(loaded, algos=["dqn"]).scenario_overrides == {}
    assert only(loaded, scenarios=["drivelab/merge-v0"]).scenario_overrides == suite["scenario_overrides"]
    path.write_text(yaml.safe_dump({**suite, "scenario_overrides": {"drivelab/parking-v0": {"ppo": {}}}}))
    with pytest.raises(ConfigError, match="scenario_overrides names drivelab/parking-v0"):
        read_suite(path)
    path.write_text(yaml.safe_dump({**suite, "scenario_overrides": {"drivelab/merge-v0": {"ppo": {"nope": 1}}}}))
    with pytest.raises(ConfigError, match="nope"):
        read_suite(path)
