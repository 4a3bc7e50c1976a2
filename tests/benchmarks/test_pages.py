"""Leaderboard ranking, ties and pages (table, Markdown, CSV, HTML), `drivelab leaderboard` and
`drivelab bench leaderboard`."""

from __future__ import annotations

import csv
import hashlib
import html
import io
import json

import numpy as np
import pytest

from drivelab.agents.evaluation import EpisodeRecord
from drivelab.agents.protocol import ProtocolError
from drivelab.benchmarks.cli import build_parser
from drivelab.benchmarks.leaderboard import pages
from drivelab.benchmarks.leaderboard.pages import ExportError, rank_entries
from drivelab.benchmarks.leaderboard.store import EntryMetadata, Leaderboard, LeaderboardError, RunRecord
from drivelab.core.errors import ConfigError

HIGHWAY = "drivelab/highway-fast-v0"
MERGE = "drivelab/merge-v0"
REPS = 400


def episodes_with_returns(returns, crashed_every: int = 4, video_dir=None) -> list[EpisodeRecord]:
    records = []
    for i, value in enumerate(returns):
        crashed = i % crashed_every == 0
        video = str(video_dir / f"seed-{10_000_000 + i}.mp4") if video_dir and crashed else None
        records.append(EpisodeRecord(index=i, seed=10_000_000 + i, episode_return=float(value),
                                     length=30, crashed=crashed, success=not crashed,
                                     mean_speed=25.0, distance_m=750.0, lane_changes=2,
                                     right_lane_share=0.5, on_road_share=1.0, max_abs_jerk=5.0,
                                     video_path=video))  # fmt: skip
    return records


def submit(board: Leaderboard, name: str, env_id: str, mean_return: float, episodes: int = 100, **options) -> int:
    sha = hashlib.sha256(f"{name}@{env_id}".encode()).hexdigest()
    returns = mean_return + np.linspace(-1.0, 1.0, episodes)  # 100 episodes: CI of the mean about +-0.11
    metadata = EntryMetadata(submitter="bob", agent_name=name, algorithm="dqn", env_id=env_id,
                             protocol_version="drivelab-eval-v1", policy_sha256=sha,
                             backend="envpool", training_steps=5000)  # fmt: skip
    return board.submit(metadata, [RunRecord(sha, name, episodes_with_returns(returns, **options))]).entry_id


@pytest.fixture
def board(tmp_path):
    with Leaderboard(tmp_path / "board.db") as opened:
        yield opened


def test_ranking_marks_overlapping_cis_as_ties(board):
    for name, value in (("c", 5.0), ("a", 10.0), ("e", 0.0), ("b", 9.95), ("d", 4.9)):
        submit(board, name, HIGHWAY, value)
    ranked = rank_entries(board.entries(), reps=REPS)
    assert [r.entry.metadata.agent_name for r in ranked] == ["a", "b", "c", "d", "e"]
    assert [r.rank_label for r in ranked] == ["1", "=1", "3", "=3", "5"]
    assert ranked[0].stats.mean_return == pytest.approx(10.0)
    assert ranked[0].stats.crash_rate == 0.25
    assert not ranked[2].stats.mean_return_ci.overlaps(ranked[1].stats.mean_return_ci)


def test_partial_entries_rank_below_every_complete_entry(board):
    submit(board, "short but high", HIGHWAY, 50.0, episodes=20)  # fewer than the protocol's 100
    submit(board, "complete low", HIGHWAY, 1.0)
    submit(board, "complete high", HIGHWAY, 2.0)
    submit(board, "short and low", HIGHWAY, 1.0, episodes=20)
    ranked = rank_entries(board.entries(), reps=REPS)
    assert [r.entry.metadata.agent_name for r in ranked] == [
        "complete high", "complete low", "short but high", "short and low"]
    assert [r.rank_label for r in ranked] == ["1", "2", "3", "4"]  # a partial entry never ties a complete one
    table = pages.render_table(ranked)
    assert "20 (partial)" in table and pages.PARTIAL_NOTE in table
    rows = list(csv.DictReader(io.StringIO(pages.render_csv(ranked))))
    assert [r["partial"] for r in rows] == ["0", "0", "1", "1"]


def test_scenarios_are_ranked_separately(board):
    submit(board, "fast", HIGHWAY, 1.0)
    submit(board, "merger", MERGE, 50.0)
    ranked = rank_entries(board.entries(), reps=REPS)
    assert [(r.entry.metadata.env_id, r.rank) for r in ranked] == [(HIGHWAY, 1), (MERGE, 1)]


def test_markdown_csv_and_table_contain_every_entry(board):
    names = [f"agent {i} | v{i}" for i in range(12)]
    for i, name in enumerate(names):
        submit(board, name, HIGHWAY if i % 2 else MERGE, float(i))
    ranked = rank_entries(board.entries(), reps=REPS)
    markdown = pages.render_markdown(ranked)
    for name in names:
        assert name.replace("|", "\\|") in markdown
    assert markdown.count("\n| ") == 12 + 2  # one row per entry plus one header per scenario
    assert f"### {HIGHWAY} (drivelab-eval-v1)" in markdown
    rows = list(csv.DictReader(io.StringIO(pages.render_csv(ranked))))
    assert sorted(r["agent_name"] for r in rows) == sorted(names)
    best = next(r for r in rows if r["agent_name"] == names[11])
    assert best["rank"] == "1" and float(best["crash_rate"]) == 0.25
    assert float(best["mean_return"]) == pytest.approx(11.0, abs=1e-12)
    table = pages.render_table(ranked)
    assert all(name in table for name in names)


def test_html_folder_has_every_entry_plots_and_video_links(board, tmp_path):
    videos = tmp_path / "videos"
    ids = [submit(board, f"<agent {i}>", HIGHWAY, float(i), video_dir=videos) for i in range(5)]
    ids.append(submit(board, "merger", MERGE, 3.0))
    ranked = rank_entries(board.entries(), reps=REPS)
    out = tmp_path / "site"
    assert pages.export(ranked, "html", out) is None
    page = (out / "index.html").read_text()
    for item in ranked:
        assert html.escape(item.entry.metadata.agent_name) in page
    for entry_id in ids:
        png = out / "plots" / f"entry-{entry_id}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f'src="plots/entry-{entry_id}.png"' in page
    assert (out / "plots" / "overview-1.png").is_file()
    assert 'href="../videos/seed-10000000.mp4"' in page
    assert "seed 10000004 (crash)" in page


def test_html_export_replaces_the_old_folder_whole(board, tmp_path):
    submit(board, "solo", HIGHWAY, 1.0)
    ranked = rank_entries(board.entries(), reps=REPS)
    out = tmp_path / "site"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    pages.write_html(ranked, out)
    assert sorted(p.name for p in out.iterdir()) == ["index.html", "plots"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["board.db", "board.db-shm", "board.db-wal", "site"]


def test_unwritable_output_is_a_clear_error_leaving_nothing(board, tmp_path):
    submit(board, "solo", HIGHWAY, 1.0)
    ranked = rank_entries(board.entries(), reps=REPS)
    blocker = tmp_path / "a-file"
    blocker.write_text("I am a file")
    for fmt in ("md", "csv", "table", "html"):
        with pytest.raises(ExportError, match="cannot write"):
            pages.export(ranked, fmt, blocker / "inside" / "out")
    with pytest.raises(ExportError, match="is a file"):
        pages.export(ranked, "html", blocker)
    with pytest.raises(ExportError, match="--out"):
        pages.export(ranked, "html", None)
    assert blocker.read_text() == "I am a file"
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("board.db")) == ["a-file"]


def _run_cli(argv: list[str]) -> int:
    args = build_parser(argv).parse_args(argv)
    return args.func(args)


def test_leaderboard_command(board, tmp_path, capsys):
    submit(board, "alpha", HIGHWAY, 2.0)
    submit(board, "beta", MERGE, 1.0)
    db = str(board.path)
    assert _run_cli(["leaderboard", "--db", db, "--env", MERGE, "--reps", "200"]) == 0
    printed = capsys.readouterr().out
    assert "beta" in printed and "alpha" not in printed and "mean return" in printed
    out = tmp_path / "board.md"
    assert _run_cli(["leaderboard", "--db", db, "--format", "md", "--out", str(out), "--reps", "200"]) == 0
    assert "alpha" in out.read_text() and "beta" in out.read_text()
    with pytest.raises(LeaderboardError, match="no leaderboard"):
        _run_cli(["leaderboard", "--db", str(tmp_path / "none.db")])


def test_leaderboard_command_refuses_unknown_scenarios_protocols_and_reps(board, tmp_path):
    submit(board, "alpha", HIGHWAY, 2.0)
    db = str(board.path)
    with pytest.raises(ConfigError, match="did you mean 'drivelab/highway-v0'"):
        _run_cli(["leaderboard", "--db", db, "--env", "drivelab/highwai-v0"])
    with pytest.raises(ProtocolError, match="unknown protocol .v99."):
        _run_cli(["leaderboard", "--db", db, "--protocol", "v99"])
    for reps in ("0", "1000000000"):
        with pytest.raises(ConfigError, match=r"--reps must be an integer in \[1, 100000\]"):
            _run_cli(["leaderboard", "--db", db, "--reps", reps])


def test_leaderboard_command_never_writes_the_board(tmp_path, capsys):
    db = tmp_path / "board.db"
    with Leaderboard(db) as opened:
        submit(opened, "alpha", HIGHWAY, 2.0)
    content = db.read_bytes()
    assert _run_cli(["leaderboard", "--db", str(db), "--reps", "50"]) == 0
    assert "alpha" in capsys.readouterr().out
    assert db.read_bytes() == content
    empty = tmp_path / "empty.db"
    empty.touch()
    with pytest.raises(LeaderboardError, match="empty file"):
        _run_cli(["leaderboard", "--db", str(empty)])
    assert empty.stat().st_size == 0 and not (tmp_path / "empty.db-wal").exists()


def test_leaderboard_finds_camera_runs_by_their_config(tmp_path):
    from drivelab.benchmarks.bench.leaderboard import _run_dirs

    def run(name, algo, env="drivelab/highway-fast-v0", obs="camera", exported=True):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps({"algo": algo, "env_id": env, "observation": obs}))
        if exported:
            (folder / "best").mkdir()
        return folder

    wanted = [run("highway-fast_ppo_s0", "ppo"), run("ppo-s1", "ppo")]
    run("highway-fast_dqn_s0", "dqn")
    run("merge_ppo_s0", "ppo", env="drivelab/merge-v0")
    run("native_ppo_s0", "ppo", obs="native")
    run("unfinished_ppo_s2", "ppo", exported=False)
    assert _run_dirs(tmp_path, "ppo", "drivelab/highway-fast-v0") == sorted(wanted)
    assert [p.name for p in _run_dirs(tmp_path, "dqn", "drivelab/highway-fast-v0")] == ["highway-fast_dqn_s0"]
    (wanted[0] / "config.json").write_text('{"algo": "pp')  # cut short
    with pytest.raises(ConfigError, match="highway-fast_ppo_s0/config.json is unreadable or corrupt"):
        _run_dirs(tmp_path, "ppo", "drivelab/highway-fast-v0")


def test_leaderboard_script_evaluates_only_the_agents_asked_for(tmp_path):
    from drivelab.benchmarks.bench.leaderboard import plan_entries

    run_dir = tmp_path / "runs" / "highway-fast_dqn_s0"
    (run_dir / "best").mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps(
        {"algo": "dqn", "env_id": "drivelab/highway-fast-v0", "observation": "camera"}))
    args = build_parser(["bench", "leaderboard"]).parse_args(
        ["bench", "leaderboard", "--runs", str(tmp_path / "runs"), "--db", str(tmp_path / "lb.db"),
         "--agents", "idm", "dqn"])  # fmt: skip
    planned = plan_entries(args.agents, args.runs, HIGHWAY, args.videos)
    assert [entry.name for entry in planned] == ["idm", "dqn-camera"]
    assert planned[0].policies == ("baseline:idm",) and planned[0].record_failures is None
    assert planned[1].policies == (str(run_dir),) and planned[1].algorithm == "dqn"
    assert planned[1].record_failures == args.videos / "dqn"


def test_rl_report_reads_each_runs_training_budget(tmp_path):
    from drivelab.benchmarks.bench.rl_reports import _training_record, rl_report_md

    run = tmp_path / "highway-fast_ppo_s0"
    (run / "final").mkdir(parents=True)
    (run / "best").mkdir()
    (run / "final" / "policy.json").write_text(json.dumps({"num_timesteps": 1371840, "training_wall_s": 1800.5}))
    (run / "best" / "policy.json").write_text(json.dumps({"eval": {"step": 851968}}))
    record = _training_record(str(run))
    assert record == {"trained_steps": 1371840, "training_min": pytest.approx(30.008, abs=1e-3), "best_step": 851968}
    assert _training_record("baseline:idm") == {"trained_steps": None, "training_min": None, "best_step": None}
    runs = [{"seed": s, "episodes": 100, "mean_return": r, "crash_rate": c, **record}
            for s, r, c in [(0, 25.0, 0.1), (1, 23.0, 0.2)]]
    md = rl_report_md({"env_id": "e", "protocol": "p", "backend": "b", "target": "t", "agents": [
        {"agent": "ppo-camera", "runs": runs, "mean_return": 24.0, "return_std_across_seeds": 1.41421,
         "crash_rate": 0.15, "crash_rate_std_across_seeds": 0.0707}]})
    assert "| ppo-camera | 1 | 1,371,840 | 30.0 | 851,968 | 100 | 23.00 | 0.20 |" in md
    assert "**24.00 ± 1.41**" in md and "over 2 seeds" in md


def test_leaderboard_script_replaces_an_agent_re_evaluated_with_new_weights(tmp_path, monkeypatch, capsys):
    from fakes import FakeDrivingVecEnv

    from drivelab.benchmarks.bench import leaderboard as bench_leaderboard

    db, results = tmp_path / "lb.db", tmp_path / "results"
    monkeypatch.setattr(bench_leaderboard, "rl_report", lambda db, env_id, previous=None: {"agents": []})
    boards = []
    for agents in (["idle", "random"], ["idle"]):
        planned = bench_leaderboard.plan_entries(agents, tmp_path / "none", HIGHWAY, tmp_path / "videos")
        # A different env per invocation stands in for new weights: other numbers, same agent.
        offset = 10.0 * len(boards)
        bench_leaderboard.build_leaderboard(HIGHWAY, planned, db, episodes=5, html=tmp_path / "html",
                                            results=results,
                                            make_env=lambda n, o=offset: FakeDrivingVecEnv(n, return_offset=o))
        with Leaderboard(db, readonly=True) as board:
            boards.append({e.metadata.agent_name: e for e in board.entries()})
    assert "updated entry" in capsys.readouterr().out
    first, second = boards
    assert len(second) == 2
    assert second["idle"].id == first["idle"].id  # updated in place, not a second entry
    assert second["idle"].runs[0].episodes[0].episode_return == first["idle"].runs[0].episodes[0].episode_return + 10.0
    assert second["random"].runs[0].episodes == first["random"].runs[0].episodes  # not re-evaluated: kept
    assert (results / "LEADERBOARD.md").is_file() and (tmp_path / "html" / "index.html").is_file()
