"""``--db URL``: a PostgreSQL board through ``drivelab eval`` and ``drivelab leaderboard``, and
every way a URL can be bad (malformed, another scheme, no server, refused login, no database,
no psycopg) as one line, exit 2, no traceback, before any evaluation, password never shown."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from fakes import FakeDrivingVecEnv

import drivelab.envs as de
from drivelab.benchmarks import cli
from drivelab.benchmarks.leaderboard.database import describe, mask_password
from drivelab.benchmarks.leaderboard.store import Leaderboard, LeaderboardError, check_board_path

ENV_ID = "drivelab/highway-fast-v0"
SECRET = "s3cret-pw"


def test_passwords_are_masked_in_every_message():
    assert mask_password(f"postgresql://alice:{SECRET}@db.example.org:5433/board") == (
        "postgresql://alice:***@db.example.org:5433/board")
    assert mask_password(f"postgresql://alice@h/board?password={SECRET}&sslmode=require") == (
        "postgresql://alice@h/board?password=***&sslmode=require")
    assert mask_password("postgresql://alice@h/board") == "postgresql://alice@h/board"
    assert describe(Path("runs/leaderboard.db")) == "runs/leaderboard.db"


def _main(argv: list[str], capsys) -> tuple[int, str]:
    status = cli.main(argv)
    captured = capsys.readouterr()
    return status, captured.out + captured.err


@pytest.mark.parametrize("url, message", [
    (f"postgresql://alice:{SECRET}@127.0.0.1:1/board", "cannot reach the PostgreSQL server"),
    (f"postgresql://alice:{SECRET}@127.0.0.1:notaport/board", "bad --db URL"),
    (f"mysql://alice:{SECRET}@127.0.0.1/board", "unsupported --db URL scheme 'mysql'"),
])  # fmt: skip
def test_a_bad_url_is_one_line_with_the_password_masked(url, message, capsys):
    status, output = _main(["leaderboard", "--db", url], capsys)
    assert status == 2 and message in output and SECRET not in output and "***" in output
    assert len(output.strip().splitlines()) == 1


def test_the_command_line_prints_no_traceback_for_an_unreachable_server():
    url = f"postgresql://alice:{SECRET}@127.0.0.1:1/board"
    result = subprocess.run([sys.executable, "-m", "drivelab.benchmarks.cli", "leaderboard", "--db", url],
                            capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    assert result.returncode == 2 and result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert "cannot reach the PostgreSQL server" in line and "127.0.0.1:1" in line and SECRET not in line


def test_a_url_folded_into_a_path_is_refused_not_made_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folded = Path(f"postgresql://alice:{SECRET}@db.example.org/board")  # Path folds "//" into "/"
    for call in (lambda: Leaderboard(folded), lambda: check_board_path(folded)):
        with pytest.raises(LeaderboardError, match="reached the store as a file path") as caught:
            call()
        assert SECRET not in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_a_missing_psycopg_is_one_line_saying_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # `import psycopg` raises ImportError
    with pytest.raises(LeaderboardError, match=r"pip install 'drivelab\[postgres\]'"):
        Leaderboard("postgresql://alice@127.0.0.1:1/board", readonly=True)


def test_a_refused_login_or_missing_database_is_one_clear_line(postgres_server, capsys):
    cases = [(postgres_server.url("postgres", user="nobody_here"), "refused user 'nobody_here'"),
             (postgres_server.url("no_such_db"), "database 'no_such_db' does not exist")]  # fmt: skip
    for url, message in cases:
        status, output = _main(["leaderboard", "--db", url], capsys)
        assert status == 2 and message in output and len(output.strip().splitlines()) == 1
        with pytest.raises(LeaderboardError, match=message):
            check_board_path(url)


@pytest.fixture
def fake_envs(monkeypatch):
    monkeypatch.setattr(de, "make_vec", lambda env_id, num_envs, **kwargs: FakeDrivingVecEnv(num_envs))


def test_eval_checks_the_url_before_evaluating(monkeypatch, capsys):
    def never(*args, **kwargs):
        raise AssertionError("evaluated before checking --db")

    monkeypatch.setattr(de, "make_vec", never)
    argv = ["eval", "--policy", "baseline:idle", "--env", ENV_ID, "--episodes", "4", "--submit", "--name", "idle",
            "--db", f"postgresql://alice:{SECRET}@127.0.0.1:1/board"]  # fmt: skip
    status, output = _main(argv, capsys)
    assert status == 2 and "cannot reach the PostgreSQL server" in output and SECRET not in output


def test_eval_submits_to_postgresql_and_leaderboard_reads_it(postgres_server, fake_envs, capsys):
    url = postgres_server.create_database().replace("drivelab@", f"drivelab:{SECRET}@")  # trust: ignored
    argv = ["eval", "--policy", "baseline:idle", "--env", ENV_ID, "--episodes", "6", "--submit", "--name", "idle",
            "--db", url]  # fmt: skip
    assert _main(argv, capsys)[0] == 0
    assert _main(argv, capsys)[0] == 0  # the same identity again: replaced
    status, output = _main(["leaderboard", "--db", url, "--format", "csv"], capsys)
    assert status == 0 and "idle" in output and SECRET not in output
    with Leaderboard(url, readonly=True) as board:
        assert board.row_counts() == {"entries": 1, "runs": 1, "episodes": 6}
        (entry,) = board.entries()
    assert SECRET not in repr(entry)  # the URL is never stored in the board


def test_eval_never_prints_the_password(postgres_server, fake_envs, capsys):
    url = postgres_server.create_database().replace("drivelab@", f"drivelab:{SECRET}@")
    argv = ["eval", "--policy", "baseline:idle", "--env", ENV_ID, "--episodes", "3", "--submit", "--name", "idle",
            "--db", url]  # fmt: skip
    status, output = _main(argv, capsys)
    assert status == 0 and "submitted new entry 1" in output
    assert SECRET not in output


def test_psycopg_is_imported_only_for_a_url(tmp_path):
    probe = ("import sys; from drivelab.benchmarks.leaderboard.store import Leaderboard, check_board_path; "
             f"db = {str(tmp_path / 'board.db')!r}; check_board_path(db); Leaderboard(db).close(); "
             "import drivelab.benchmarks.cli.eval; print('psycopg' in sys.modules)")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, check=True)
    assert result.stdout.strip() == "False"
