"""Copy generated result tables into README.md between ``<!-- table:NAME -->`` markers.

Each ``benchmarks/results/NAME.md`` written by a benchmark script replaces the block
``<!-- table:NAME --> ... <!-- /table:NAME -->`` in README, so README numbers always come from
a recorded run, never from typing.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from drivelab.envs.errors import DrivelabError


def update(readme: Path, results: Path) -> list[str]:
    """Replace every marked block whose result file exists; returns the names updated."""
    if not readme.exists():
        raise DrivelabError(f"{readme} not found; run from the repository root")
    text = readme.read_text()
    updated = []
    for name in re.findall(r"<!-- table:([\w-]+) -->", text):
        source = results / f"{name}.md"
        if not source.exists():
            continue
        body = source.read_text().strip()
        pattern = re.compile(rf"(<!-- table:{re.escape(name)} -->\n).*?(\n<!-- /table:{re.escape(name)} -->)", re.S)
        text = pattern.sub(lambda m: m.group(1) + body + m.group(2), text)
        updated.append(name)
    tmp = readme.with_name(f".{readme.name}.tmp")
    tmp.write_text(text)
    tmp.replace(readme)
    return updated


def register_bench(bench: argparse._SubParsersAction) -> None:
    parser = bench.add_parser("readme", help="copy result tables from benchmarks/results into README.md")
    parser.add_argument("--readme", type=Path, default=Path("README.md"))
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results"))
    parser.set_defaults(func=lambda a: print("updated:", ", ".join(update(a.readme, a.results)) or "nothing") or 0)


def register(subparsers: argparse._SubParsersAction) -> None:
    """No top-level command; see ``register_bench``."""
