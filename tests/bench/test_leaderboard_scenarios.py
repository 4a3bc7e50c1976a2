"""`drivelab bench leaderboard` per scenario: scenario names, which rule-based driver and which
zoo agents are planned, bad input refused before anything runs, and an entry that cannot drive
a scenario listed with its reason while the others are evaluated (fake env, no simulator)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fakes import FakeDrivingVecEnv

from drivelab.agents import PolicyLoadError, zoo
from drivelab.agents.policies import BASELINES
from drivelab.benchmarks.bench import leaderboard as bench_leaderboard
from drivelab.benchmarks.bench.leaderboard import PlannedEntry, plan_entries, rules_driver, scenario_id
from drivelab.benchmarks.cli import build_parser
from drivelab.benchmarks.leaderboard.store import Leaderboard
from drivelab.core.errors import ConfigError

MERGE = "drivelab/merge-v0"


def test_scenario_names_resolve_to_protocol_ids():
    assert scenario_id("merge") == MERGE
    assert scenario_id("intersection-v1") == "drivelab/intersection-v1"
    assert scenario_id("drivelab/racetrack-v0") == "drivelab/racetrack-v0"
    with pytest.raises(ConfigError, match=r"unknown scenario 'mergee' for --scenarios; valid: .*roundabout"):
        scenario_id("mergee")


def test_an_unknown_scenario_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["bench", "leaderboard", "--scenarios", "merge", "nowhere", "--db", str(tmp_path / "lb.db")]
    args = build_parser(argv).parse_args(argv)
    with pytest.raises(ConfigError, match="'nowhere'"):
        args.func(args)
    assert list(tmp_path.iterdir()) == []


def test_the_rule_based_entry_falls_back_to_the_scenarios_own_driver(monkeypatch):
    real = bench_leaderboard.load_policy

    def without_rules(label, env_id=None, **options):
        if label == "baseline:rules":
            raise PolicyLoadError("unknown baseline 'rules'")
        return real(label, env_id, **options)

    monkeypatch.setattr(bench_leaderboard, "load_policy", without_rules)
    label, algorithm = rules_driver("drivelab/intersection-v0")
    assert label == ("baseline:gap" if "gap" in BASELINES else "baseline:idm") and algorithm == label[9:]
    assert rules_driver(MERGE) == ("baseline:idm", "idm")


def test_zoo_agents_of_the_scenario_are_planned_with_clips(tmp_path, monkeypatch):
    shipped = [zoo.ZooAgent("ppo", "merge", tmp_path, {}), zoo.ZooAgent("dqn", "highway-fast", tmp_path, {})]
    monkeypatch.setattr(zoo, "agents", lambda: shipped)
    planned = plan_entries(["idle", "zoo"], [], MERGE, tmp_path / "failures", tmp_path / "clips")
    assert [(p.name, p.policies, p.record_examples) for p in planned] == [
        ("idle", ("baseline:idle",), tmp_path / "clips" / "idle"),
        ("zoo-ppo", ("zoo:ppo/merge",), tmp_path / "clips" / "zoo-ppo"),
    ]


def test_an_entry_that_cannot_drive_is_listed_with_its_reason_and_the_others_are_evaluated(tmp_path, capsys):
    db, results = tmp_path / "lb.db", tmp_path / "results"

    def build(ghost: str) -> None:
        planned = [PlannedEntry("idle", ("baseline:idle",)), PlannedEntry("ghost", (ghost,))]
        bench_leaderboard.build_boards({MERGE: planned}, db, episodes=4, html=tmp_path / "html", results=results,
                                       make_env=FakeDrivingVecEnv)  # fmt: skip

    build(str(tmp_path / "no-such-policy"))
    with Leaderboard(db, readonly=True) as board:
        assert [e.metadata.agent_name for e in board.entries()] == ["idle"]
    notes = json.loads((results / "leaderboard_notes.json").read_text())
    assert list(notes) == [MERGE] and "no-such-policy does not exist" in notes[MERGE]["not_evaluated"]["ghost"]
    assert list(notes[MERGE]["commands"]) == ["idle"]
    board_md = (results / "LEADERBOARD.md").read_text()
    assert "## merge (drivelab/merge-v0)" in board_md and "Not on the board: **ghost**" in board_md
    assert "not on the board" in capsys.readouterr().out
    build("baseline:random")  # evaluated now: its note goes
    notes = json.loads((results / "leaderboard_notes.json").read_text())
    assert notes[MERGE]["not_evaluated"] == {} and sorted(notes[MERGE]["commands"]) == ["ghost", "idle"]
    table = (results / "leaderboard_scenarios.md").read_text()
    assert "| merge | 4 |" in table and "Not on the board" not in (results / "LEADERBOARD.md").read_text()
    assert Path(tmp_path / "html" / "index.html").is_file()
    # a command whose entry the board no longer holds (a lost board's) is not shown
    lost = {MERGE: {"commands": {"idle": "drivelab idle-command", "lost": "drivelab lost-command"}}}
    board_md = bench_leaderboard.leaderboard_md(bench_leaderboard.pages.read_ranked(db), lost)
    assert "idle: `drivelab idle-command`" in board_md and "lost-command" not in board_md


def test_pages_only_rewrites_the_pages_from_the_board_without_evaluating(tmp_path, monkeypatch):
    db = tmp_path / "lb.db"
    bench_leaderboard.build_boards({MERGE: [PlannedEntry("idle", ("baseline:idle",))]}, db, episodes=3,
                                   html=tmp_path / "first", results=tmp_path / "first", make_env=FakeDrivingVecEnv)
    monkeypatch.setattr(bench_leaderboard, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(bench_leaderboard.submit, "evaluate_and_submit", None)  # calling it would fail
    reported = []  # the per-seed RL report of every scenario asked for is rewritten from the board too

    def rl_report(board: Path, env_id: str, previous: dict | None = None) -> dict:
        reported.append(env_id)
        return {"env_id": env_id, "protocol": "p", "backend": "b", "target": "t", "agents": [
            {"agent": "ppo-camera", "runs": [], "mean_return": 1.0, "return_std_across_seeds": 0.0,
             "crash_rate": 0.0, "crash_rate_std_across_seeds": 0.0}] if env_id == MERGE else []}

    monkeypatch.setattr(bench_leaderboard, "rl_report", rl_report)
    argv = ["bench", "leaderboard", "--pages-only", "--db", str(db), "--html", str(tmp_path / "html")]
    args = build_parser(argv).parse_args(argv)
    assert args.func(args) == 0
    assert MERGE in reported and len(reported) == len(bench_leaderboard.SCENARIOS)
    assert json.loads((tmp_path / "results" / "rl_merge.json").read_text())["agents"][0]["agent"] == "ppo-camera"
    assert sorted(p.name for p in (tmp_path / "results").glob("rl_*")) == ["rl_merge.json", "rl_merge.md"]
    assert "## merge (drivelab/merge-v0)" in (tmp_path / "results" / "LEADERBOARD.md").read_text()
    assert "| merge | 3 |" in (tmp_path / "results" / "leaderboard_scenarios.md").read_text()
    assert (tmp_path / "html" / "index.html").is_file()


def test_the_per_seed_report_keeps_the_seeds_of_an_earlier_board(tmp_path):
    """A seed evaluated on a lost board stays in rl_SCENARIO until its policy is evaluated again, and
    so do the seeds of an agent the board holds no entry of."""
    from board_samples import make_metadata, run

    from drivelab.benchmarks.bench.rl_reports import rl_report, rl_report_md

    with Leaderboard(tmp_path / "lb.db") as board:
        board.submit(make_metadata(env_id=MERGE, agent_name="ppo-camera"),
                     [run(4, offset=1.0, seed=1)])  # returns 1.0, 1.5, 2.0, 2.5: mean 1.75; label policy.safetensors
    earlier = {"agents": [{"agent": "ppo-camera", "runs": [
        {"policy": "runs/lost/s0", "seed": 0, "episodes": 30, "mean_return": 5.75, "crash_rate": 0.5,
         "trained_steps": 100, "training_min": 30.0, "best_step": 100},
        {"policy": "policy.safetensors", "seed": 1, "episodes": 30, "mean_return": -9.0, "crash_rate": 1.0,
         "trained_steps": 100, "training_min": 30.0, "best_step": 100}]},
        {"agent": "dqn-camera", "algorithm": "dqn", "runs": [  # an agent the board holds no entry of
            {"policy": "runs/lost/d1", "seed": 1, "episodes": 30, "mean_return": 4.0, "crash_rate": 0.2,
             "trained_steps": 50, "training_min": 30.0, "best_step": 50},
            {"policy": "runs/lost/d0", "seed": 0, "episodes": 30, "mean_return": 2.0, "crash_rate": 0.4,
             "trained_steps": 50, "training_min": 30.0, "best_step": 50}]}]}
    report = rl_report(tmp_path / "lb.db", MERGE, earlier)
    agent, lost = report["agents"]
    assert (lost["agent"], lost["algorithm"], [r["seed"] for r in lost["runs"]]) == ("dqn-camera", "dqn", [0, 1])
    assert all(r["from_earlier_board"] for r in lost["runs"]) and lost["mean_return"] == pytest.approx(3.0)
    assert lost["crash_rate"] == pytest.approx(0.3) and lost["return_std_across_seeds"] == pytest.approx(2 ** 0.5)
    assert [(r["seed"], r["mean_return"], r.get("from_earlier_board", False)) for r in agent["runs"]] == [
        (0, 5.75, True), (1, 1.75, False)]  # the board's evaluation of seed 1 replaces the earlier one
    assert agent["mean_return"] == pytest.approx(3.75)
    assert agent["crash_rate"] == pytest.approx((0.5 + 0.5) / 2)  # run(): episodes 0 and 3 of 4 crash
    text = rl_report_md(report)
    assert "| ppo-camera | 0 (a) |" in text and "(a) evaluated on an earlier board" in text
    assert [r["seed"] for r in rl_report(tmp_path / "lb.db", MERGE)["agents"][0]["runs"]] == [1]


def test_reports_only_leaves_the_pages_of_the_whole_board_alone(tmp_path):
    """A new machine's board (one scenario's entries) writes that scenario's per-seed report and the
    board file, not LEADERBOARD.md or the README table, which would lose every other scenario."""
    results = tmp_path / "results"
    results.mkdir()
    (results / "LEADERBOARD.md").write_text("every scenario\n")
    planned = [PlannedEntry("ppo-camera", ("baseline:idle",), algorithm="ppo")]  # stands in for a trained run
    bench_leaderboard.build_boards({MERGE: planned}, tmp_path / "lb.db", episodes=3, html=tmp_path / "html",
                                   results=results, make_env=FakeDrivingVecEnv, scenarios=[MERGE],
                                   write_pages=False)  # fmt: skip
    assert (results / "LEADERBOARD.md").read_text() == "every scenario\n"
    assert not (results / "leaderboard_scenarios.md").exists() and not (tmp_path / "html").exists()
    report = json.loads((results / "rl_merge.json").read_text())
    assert [run["episodes"] for run in report["agents"][0]["runs"]] == [3]
    assert json.loads((results / bench_leaderboard.BOARD_FILE).read_text())["entries"][0]["metadata"][
        "agent_name"] == "ppo-camera"


def test_a_damaged_per_seed_report_is_one_line_before_anything_runs(tmp_path, monkeypatch, capsys):
    """Its earlier seeds would be dropped silently: said before any evaluation, nothing written."""
    from drivelab.benchmarks.cli import main

    results = tmp_path / "results"
    results.mkdir()
    (results / "rl_merge.json").write_text("{broken")
    monkeypatch.setattr(bench_leaderboard, "RESULTS", results)
    monkeypatch.setattr(bench_leaderboard.submit, "evaluate_and_submit", None)  # calling it would fail
    argv = ["bench", "leaderboard", "--scenarios", "merge", "--agents", "idle", "--db", str(tmp_path / "lb.db"),
            "--html", str(tmp_path / "html")]
    assert main(argv) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "rl_merge.json is not a readable report" in err[0]
    assert sorted(p.name for p in results.iterdir()) == ["rl_merge.json"] and not (tmp_path / "lb.db").exists()
