"""`drivelab bench imitation --reuse`: runs of the very same command and their evaluations are not redone."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from drivelab.benchmarks.bench.imitation import BENCH_COMMAND, BENCH_EVAL, _evaluate, _train, _train_seed
from drivelab.benchmarks.cli import main

TINY = ["--set", "total_steps=64", "--set", "ppo.n_envs=4", "--set", "ppo.n_steps=16", "--set", "ppo.batch_size=32",
        "--set", "ppo.n_epochs=1", "--set", "ppo.net_arch=[16]", "--set", "camera.width=32",
        "--set", "camera.height=16", "--set", "camera.stack=2", "--set", "encoder.features_dim=16",
        "--set", "eval_every_steps=0", "--set", "checkpoint_every_steps=64"]


def _argv(run_dir: Path, seed: int) -> list[str]:
    return ["train", "--env", "drivelab/highway-fast-v0", "--algo", "ppo", "--seed", str(seed), "--threads", "1",
            "--no-progress", "--force", *TINY, "--run-dir", str(run_dir)]


def _started(run_dir: Path) -> list[str]:
    return [i["started_at"] for i in json.loads((run_dir / "run.json").read_text())["invocations"]]


def test_reuse_skips_only_runs_of_the_same_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "ppo-s0"
    args = argparse.Namespace(dispatch=main, reuse=True)
    _train(args, _argv(run_dir, 0))
    assert json.loads((run_dir / BENCH_COMMAND).read_text()) == _argv(run_dir, 0)
    first = _started(run_dir)
    weights = (run_dir / "final" / "policy.safetensors").read_bytes()
    (run_dir / "sentinel").touch()  # training again (--force) starts from an empty folder

    _train(args, _argv(run_dir, 0))  # same command: reused
    assert "reusing" in capsys.readouterr().out
    assert (run_dir / "sentinel").exists() and _started(run_dir) == first

    _train(args, _argv(run_dir, 1))  # another seed: trained again from scratch
    assert "reusing" not in capsys.readouterr().out
    assert json.loads((run_dir / BENCH_COMMAND).read_text()) == _argv(run_dir, 1)
    assert not (run_dir / "sentinel").exists() and len(_started(run_dir)) == 1
    assert (run_dir / "final" / "policy.safetensors").read_bytes() != weights

    _train(argparse.Namespace(dispatch=main, reuse=False), _argv(run_dir, 1))  # without --reuse: trained
    assert "reusing" not in capsys.readouterr().out


def test_reuse_reads_back_an_evaluation_of_the_same_policy_and_episodes(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "ppo-s0"
    _train(argparse.Namespace(dispatch=main, reuse=False), _argv(run_dir, 0))
    cache = run_dir / BENCH_EVAL
    first = _evaluate(str(run_dir), 2, cache)
    assert "reusing" not in capsys.readouterr().out and first["episodes"] == 2
    stored = json.loads(cache.read_text())
    stored["result"]["mean_return"] = 1234.5  # what comes back is the stored row, not a new evaluation
    cache.write_text(json.dumps(stored))
    assert _evaluate(str(run_dir), 2, cache)["mean_return"] == 1234.5
    assert "reusing the evaluation" in capsys.readouterr().out
    again = _evaluate(str(run_dir), 3, cache)  # other episodes: evaluated again
    assert again["episodes"] == 3 and again["mean_return"] != 1234.5


def test_every_variant_of_a_seed_gets_the_same_budget(tmp_path: Path) -> None:
    """BC clones within --bc-share of the budget and the RL variants started from it get the rest;
    BC alone with the whole budget and PPO from scratch get all of it."""
    commands: list[list[str]] = []

    def dispatch(argv: list[str]) -> int:  # records the command; a run that used 12 minutes
        commands.append(argv)
        final = Path(argv[argv.index("--run-dir") + 1]) / "final"
        final.mkdir(parents=True)
        (final / "policy.json").write_text(json.dumps({"training_wall_s": 720.0}))
        return 0

    args = argparse.Namespace(dispatch=dispatch, reuse=False, threads=1, settings=["camera.hud=true"], minutes=30.0,
                              bc_share=0.4, bc_samples=None, runs=tmp_path,
                              variants=["ppo", "bc", "bc_bal", "bc_bal1", "bc_full", "bc_ppo", "bc_dqn",
                                        "bc_dqn_safe", "bc_bal_ppo", "bc_bal_dqn", "bc_bal_dqn_margin"])
    runs = _train_seed(args, 3)
    by_run = {Path(argv[argv.index("--run-dir") + 1]).name: argv for argv in commands}
    budget = {name: argv[-1] for name, argv in by_run.items()}  # each command ends with its budget
    assert budget == {"ppo-s3": "max_minutes=30.0", "bc_full-s3": "max_minutes=30.0", "bc-s3": "max_minutes=12.0",
                      "bc_bal-s3": "max_minutes=12.0", "bc_bal1-s3": "max_minutes=12.0",
                      "bc_ppo-s3": "max_minutes=18.0", "bc_dqn-s3": "max_minutes=18.0",
                      "bc_dqn_safe-s3": "max_minutes=18.0", "bc_bal_ppo-s3": "max_minutes=18.0",
                      "bc_bal_dqn-s3": "max_minutes=18.0", "bc_bal_dqn_margin-s3": "max_minutes=18.0"}
    for argv in commands:
        assert argv[argv.index("--seed") + 1] == "3" and "camera.hud=true" in argv
    assert "bc.dagger_rounds=12" in by_run["bc_full-s3"] and "bc.dagger_rounds=12" not in by_run["bc-s3"]
    assert "bc.class_balance=0.5" in by_run["bc_bal-s3"] and "bc.class_balance=0.5" not in by_run["bc-s3"]
    assert "bc.class_balance=1.0" in by_run["bc_bal1-s3"]
    # the safe DQN is charged for crashes as PPO is; plain BC -> DQN is not (its rows stay comparable)
    assert "crash_penalty=5.0" in by_run["bc_dqn_safe-s3"] and "crash_penalty=5.0" not in by_run["bc_dqn-s3"]
    assert by_run["bc_dqn_safe-s3"][by_run["bc_dqn_safe-s3"].index("--init-from") + 1] == str(tmp_path / "bc-s3")
    assert by_run["bc_bal_ppo-s3"][by_run["bc_bal_ppo-s3"].index("--init-from") + 1] == str(tmp_path / "bc_bal-s3")
    assert by_run["bc_bal_dqn-s3"][by_run["bc_bal_dqn-s3"].index("--init-from") + 1] == str(tmp_path / "bc_bal-s3")
    margin = by_run["bc_bal_dqn_margin-s3"]
    assert margin[margin.index("--init-from") + 1] == str(tmp_path / "bc_bal-s3")
    assert "clone_margin_coef=1.0" in margin and "clone_margin_coef=1.0" not in by_run["bc_bal_dqn-s3"]
    assert len(commands) == len(by_run)  # each clone trained once, however many variants start from it
    assert runs["bc_ppo"]["run_dirs"] == [str(tmp_path / "bc-s3"), str(tmp_path / "bc_ppo-s3")]
    assert runs["bc_ppo"]["wall_s"] == [720.0, 720.0] and runs["bc_full"]["wall_s"] == [720.0]


def _results(seeds: list[int], rows: list[tuple[str, int, float]], **comparison: object) -> dict[str, object]:
    """A results JSON as the bench writes it (the fields --join reads), with the given (variant, seed, return)."""
    return {"benchmark": "imitation", "env_id": "drivelab/highway-fast-v0", "minutes": 30.0, "bc_share": 0.4,
            "bc_samples": None, "threads": 1, "settings": ["camera.width=96"], "episodes": 50,
            "eval_backend": "highway-env", "seeds": seeds,
            "expert": {"mean_return": 21.8, "crash_rate": 0.02, "mean_speed": 21.6, "episodes": 50}, **comparison,
            "runs": [{"variant": v, "seed": s, "run_dirs": [f"runs/x/{v}-s{s}"], "wall_s": [600.0], "mean_return": r,
                      "crash_rate": 0.1, "mean_speed": 21.0, "episodes": 50} for v, s, r in rows],
            "machine": {"command": f"drivelab bench imitation --seeds {' '.join(map(str, seeds))}"}}


def test_join_merges_seeds_of_one_comparison_and_refuses_another(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    first, second, other = tmp_path / "s01.json", tmp_path / "s2.json", tmp_path / "other.json"
    first_record = _results([0, 1], [("bc", 0, 20.0), ("bc", 1, 21.0), ("bc_ppo", 1, 22.0)])
    first_record["machine"].update(cpu="Some CPU", cpu_count=2)  # each part says where it ran
    first.write_text(json.dumps(first_record))
    second.write_text(json.dumps(_results([1, 2], [("bc_ppo", 1, 25.0), ("bc", 2, 23.0), ("ppo", 2, 19.0)])))
    out = tmp_path / "joined.json"
    assert main(["bench", "imitation", "--join", str(first), str(second), "--out", str(out)]) == 0
    joined = json.loads(out.read_text())
    assert [(r["variant"], r["seed"], r["mean_return"]) for r in joined["runs"]] == [
        ("bc", 0, 20.0), ("bc", 1, 21.0), ("bc_ppo", 1, 25.0), ("ppo", 2, 19.0), ("bc", 2, 23.0)]  # later replaces
    assert joined["seeds"] == [0, 1, 2] and joined["settings"] == ["camera.width=96"]
    assert joined["summary"]["bc"] == {"seeds": 3, "mean_return": pytest.approx(21.333333),
                                       "crash_rate": pytest.approx(0.1)}
    assert [s["file"] for s in joined["joined_from"]] == [str(first), str(second)]
    assert "--seeds 1 2" in out.with_suffix(".md").read_text() and out.with_name("joined_curves.png").is_file()
    assert f"from `{first}` on Some CPU (2 CPUs): `drivelab bench imitation --seeds 0 1`" in \
        out.with_suffix(".md").read_text()
    capsys.readouterr()

    # A run folder's selection evaluations go into the joined row, and stay when the folder is gone.
    second_record = json.loads(second.read_text())
    run_dir = tmp_path / "ppo-s2"
    run_dir.mkdir()
    (run_dir / "evaluations.jsonl").write_text('{"step": 100, "mean_return": 18.5, "crash_rate": 0.2}\n'
                                               '{"step": 200, "mean_return": 19.5, "crash_rate": 0.1}\n')
    (run_dir / "final").mkdir()
    (run_dir / "final" / "policy.json").write_text(json.dumps({"training_wall_s": 600.0}))
    for row in second_record["runs"][1:]:  # bc-s2's folder holds a run trained since (another wall time)
        row["run_dirs"] = [str(run_dir)]
    second_record["runs"][1]["wall_s"] = [599.0]
    second.write_text(json.dumps(second_record))
    assert main(["bench", "imitation", "--join", str(first), str(second), "--out", str(out)]) == 0
    (run_dir / "evaluations.jsonl").unlink()
    assert main(["bench", "imitation", "--join", str(out), "--out", str(tmp_path / "again.json")]) == 0
    rows = {(r["variant"], r["seed"]): r for r in json.loads((tmp_path / "again.json").read_text())["runs"]}
    assert rows["ppo", 2]["curve"] == [[100, 18.5, 0.2], [200, 19.5, 0.1]]
    assert "curve" not in rows["bc", 2] and "curve" not in rows["bc", 0]
    capsys.readouterr()

    other.write_text(json.dumps(_results([3], [("bc", 3, 20.0)], episodes=100)))
    expert = tmp_path / "expert.json"  # the expert's driver changed: its clones learnt other labels
    expert.write_text(json.dumps(_results([3], [("bc", 3, 20.0)], expert={"mean_return": 21.9, "crash_rate": 0.0,
                                                                           "mean_speed": 21.6, "episodes": 50})))
    (tmp_path / "broken.json").write_text("{")
    for bad, why in ((other, "another comparison"), (expert, "another comparison than"),
                     (tmp_path / "broken.json", "not a results JSON"),
                     (tmp_path / "missing.json", "not a results JSON")):
        before = out.read_bytes()
        assert main(["bench", "imitation", "--join", str(first), str(bad), "--out", str(out)]) == 2
        error = capsys.readouterr().err
        assert why in error and len(error.strip().splitlines()) == 1 and "Traceback" not in error
        assert out.read_bytes() == before  # nothing written
