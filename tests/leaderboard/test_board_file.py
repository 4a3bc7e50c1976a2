"""A board kept as one JSON file (``leaderboard.board_file``): what is exported loads back into a
fresh board unchanged, a board's own entries win over the file's, and `bench leaderboard` writes
the file with its pages and starts a new machine's board from it."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
from board_samples import make_metadata, run
from fakes import FakeDrivingVecEnv

from drivelab.benchmarks.bench import leaderboard as bench_leaderboard
from drivelab.benchmarks.bench.leaderboard import PlannedEntry
from drivelab.benchmarks.cli import main
from drivelab.benchmarks.leaderboard import board_file
from drivelab.benchmarks.leaderboard.store import Leaderboard

MERGE = "drivelab/merge-v0"


def _content(db) -> list[tuple]:
    """Every entry's metadata and runs (NaN as a string, so equal boards compare equal)."""
    with Leaderboard(db, readonly=True) as board:
        entries = board.entries()

    def plain(value):
        return "nan" if isinstance(value, float) and math.isnan(value) else value

    return sorted((entry.metadata.identity, dataclasses.asdict(entry.metadata),
                   [(r.policy_sha256, r.policy_label, r.training_seed,
                     [{k: plain(v) for k, v in dataclasses.asdict(e).items()} for e in r.episodes])
                    for r in entry.runs]) for entry in entries)  # fmt: skip


def test_an_exported_board_loads_into_a_fresh_one_unchanged(tmp_path, board_db):
    with Leaderboard(tmp_path / "first.db") as board:
        board.submit(make_metadata(), [run(5, seed=0), run(4, sha="b" * 64, offset=1.0, seed=1)])  # NaN inside
        board.submit(make_metadata(agent_name="idle", algorithm="baseline", env_id=MERGE), [run(3, seed=None)])
    path = tmp_path / "board.json"
    assert board_file.export(tmp_path / "first.db", path) == 2
    assert "NaN" not in path.read_text()  # strict JSON
    assert board_file.load_into(path, board_db) == 2
    assert _content(board_db) == _content(tmp_path / "first.db")
    assert board_file.load_into(path, board_db) == 0  # held already: nothing added twice


def test_the_boards_own_entry_wins_over_the_files(tmp_path):
    with Leaderboard(tmp_path / "old.db") as board:
        board.submit(make_metadata(), [run(5, offset=0.0)])
    board_file.export(tmp_path / "old.db", tmp_path / "board.json")
    with Leaderboard(tmp_path / "new.db") as board:  # evaluated again on the new machine
        board.submit(make_metadata(sha="c" * 64), [run(5, sha="c" * 64, offset=9.0)])
    assert board_file.load_into(tmp_path / "board.json", tmp_path / "new.db") == 0
    with Leaderboard(tmp_path / "new.db", readonly=True) as board:
        assert [e.metadata.policy_sha256 for e in board.entries()] == ["c" * 64]


@pytest.mark.parametrize("text, says", [("{not json", "is not JSON"), ('{"format": "other"}', "not a drivelab board")])
def test_a_damaged_board_file_is_refused_in_one_line(tmp_path, text, says):
    path = tmp_path / "board.json"
    path.write_text(text)
    with pytest.raises(board_file.BoardFileError, match=says):
        board_file.load_into(path, tmp_path / "lb.db")
    assert not (tmp_path / "lb.db").exists()


def test_bench_leaderboard_writes_the_board_file_and_a_new_machine_starts_from_it(tmp_path, monkeypatch, capsys):
    results = tmp_path / "results"
    bench_leaderboard.build_boards({MERGE: [PlannedEntry("idle", ("baseline:idle",))]}, tmp_path / "old.db",
                                   episodes=3, html=tmp_path / "html", results=results, make_env=FakeDrivingVecEnv)
    saved = json.loads((results / bench_leaderboard.BOARD_FILE).read_text())
    assert [e["metadata"]["agent_name"] for e in saved["entries"]] == ["idle"]
    (results / "LEADERBOARD.md").unlink()
    # a new machine: no board, the pages and the board file from the repository
    monkeypatch.setattr(bench_leaderboard, "RESULTS", results)
    monkeypatch.setattr(bench_leaderboard.submit, "evaluate_and_submit", None)  # calling it would fail
    argv = ["bench", "leaderboard", "--pages-only", "--scenarios", "merge", "--db", str(tmp_path / "new.db"),
            "--html", str(tmp_path / "html2")]
    assert main(argv) == 0
    assert "1 entries the board did not hold yet" in capsys.readouterr().out
    assert "| idle |" in (results / "LEADERBOARD.md").read_text()
    assert _content(tmp_path / "new.db") == _content(tmp_path / "old.db")
    # a damaged file: one line, before anything is evaluated or written
    (results / bench_leaderboard.BOARD_FILE).write_text("{")
    (results / "LEADERBOARD.md").unlink()
    assert main([*argv[:-4], "--db", str(tmp_path / "third.db"), "--html", str(tmp_path / "html3")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not JSON" in err[0]
    assert not (results / "LEADERBOARD.md").exists() and not (tmp_path / "third.db").exists()
