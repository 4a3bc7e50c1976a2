"""The `drivelab` command table: help is fast (no heavy imports) and every command has one."""

import argparse
import importlib.util
import json
import subprocess
import sys

import pytest

from drivelab.benchmarks.cli import COMMANDS, GROUPS, build_parser, main

HEAVY = ("torch", "stable_baselines3", "highway_env", "pygame")

# Runs main(argv) in a fresh interpreter and prints the exit status and the heavy modules loaded
# (read from sys.modules: a module counts as imported whether or not it was slow).
PROBE = r"""
import contextlib, io, json, sys
from drivelab.benchmarks.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        status = main(sys.argv[2:])
    except SystemExit as exit:
        status = exit.code
heavy = sorted(name for name in sys.argv[1].split(",") if name in sys.modules)
print(json.dumps({"status": status, "heavy": heavy, "stdout": out.getvalue()}))
"""


def _help(*words: str) -> dict:
    completed = subprocess.run([sys.executable, "-c", PROBE, ",".join(HEAVY), *words, "--help"],
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr[-2000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("words", [(), ("bench",), ("perception",)], ids=["drivelab", "bench", "perception"])
def test_help_of_the_top_level_and_groups_imports_no_heavy_module(words):
    result = _help(*words)
    assert result["status"] == 0
    assert result["heavy"] == [], f"`drivelab {' '.join(words)} --help` imported {result['heavy']}"
    listed = [c.words.rpartition(" ")[2] for c in COMMANDS if c.words.rpartition(" ")[0] == " ".join(words)]
    listed += list(GROUPS) if not words else []
    for name in listed:
        assert name in result["stdout"]


def test_the_probe_sees_a_heavy_import():
    # the check above can fail: a command's own --help imports its (heavy) module
    assert "torch" in _help("watch")["heavy"]


def _existing(command) -> bool:
    return importlib.util.find_spec(command.module) is not None


@pytest.mark.parametrize("command", [c for c in COMMANDS if _existing(c)], ids=lambda c: c.words)
def test_every_command_prints_its_help(command, capsys):
    with pytest.raises(SystemExit) as exit:
        main([*command.words.split(), "--help"])
    assert exit.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: drivelab {command.words}")
    # every option the command adds is described (read from the parser, not from the layout)
    parser = build_parser(command.words.split())
    for word in command.words.split():
        (choices,) = [a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        parser = choices[word]
    assert parser.description
    undocumented = [a.option_strings or a.dest for a in parser._actions if not a.help]
    assert not undocumented, f"`drivelab {command.words}` options without help: {undocumented}"
    for action in parser._actions:
        assert (action.option_strings or [action.dest])[-1] in text
