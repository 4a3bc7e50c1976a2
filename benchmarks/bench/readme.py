"""`drivelab bench readme`: copy generated result tables into README.md between ``<!-- table:NAME -->`` markers.

Each ``benchmarks/results/NAME.md`` written by a benchmark script replaces the block
``<!-- table:NAME --> ... <!-- /table:NAME -->`` in README, so README numbers always come from
a recorded run, never from typing.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from drivelab.core.errors import DrivelabError
from drivelab.core.files import write_text_atomic


def _train_speed_md(record: dict[str, Any]) -> str:
    ours, base, m = record["drivelab"], record["highway_env_baseline"], record["machine"]
    return (
        f"`{m['command']}` on {m['cpu']} ({m['cpu_affinity']} cores), torch threads {record['torch_threads']}, "
        f"{m['timestamp_utc']}.\n\n"
        "| end-to-end PPO training | env-steps/s |\n|---|---:|\n"
        f"| SB3 PPO on highway-env GrayscaleObservation (1 env) | {base['steps_per_s']:,.1f} |\n"
        f"| drivelab: SB3 PPO on batched camera frames | {ours['steps_per_s']:,.0f} |\n"
        f"| speed-up | {record['speedup']:.1f}x |"
    )


def _perception_md(record: dict[str, Any]) -> str:
    r, t, met, m = record["results"], record["targets"], record["met"], record["machine"]
    names = {
        "detector_AP50": "detector AP50", "detector_AP": "detector AP@[.5:.95]",
        "affordance_macro_f1": "affordance classifier macro-F1", "digits_accuracy": "digits test accuracy",
        "classifier_frames_per_s": "classifier inference [frames/s]",
    }
    lines = [
        f"`{m['command']}` on {m['cpu']} ({m['cpu_affinity']} cores), {record['settings']['frames']} frames, "
        f"{m['timestamp_utc']}.",
        "",
        "| metric | result | target | met |",
        "|---|---:|---:|:---:|",
    ]
    for key, label in names.items():
        lines.append(f"| {label} | {r[key]:,.3f} | {t[key]:,} | {'yes' if met[key] else 'no'} |")
    lines.append(f"| detector AP75 / AR@100 | {r['detector_AP75']:.3f} / {r['detector_AR100']:.3f} | | |")
    lines += ["", "| model | runtime | frames/s (batched) |", "|---|---|---:|"]
    for model, speed in record["throughput"].items():
        for runtime, fps in speed["frames_per_s"].items():
            lines.append(f"| {model} | {runtime} | {fps:,.0f} |")
    return "\n".join(lines)


# Result JSON files whose table is made here (other benchmarks write their own NAME.md).
FORMATTERS: dict[str, Callable[[dict[str, Any]], str]] = {"train_speed": _train_speed_md, "perception": _perception_md}


def table_for(name: str, results: Path) -> str | None:
    """The Markdown of result ``name``: its .md file, else its .json through a formatter."""
    md, js = results / f"{name}.md", results / f"{name}.json"
    if md.exists():
        return md.read_text().strip()
    if js.exists() and name in FORMATTERS:
        try:
            record = json.loads(js.read_text())
            return FORMATTERS[name](record)
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise DrivelabError(f"{js} is not a complete {name} result ({error}); re-run its benchmark") from None
    return None


def update(readme: Path, results: Path) -> list[str]:
    """Replace every marked block whose result file exists; returns the names updated."""
    if not readme.exists():
        raise DrivelabError(f"{readme} not found; run from the repository root")
    text = readme.read_text()
    updated = []
    for name in re.findall(r"<!-- table:([\w-]+) -->", text):
        body = table_for(name, results)
        if body is None:
            continue
        # The block between the markers may be empty (a table added to README before its first run).
        marker = re.escape(name)
        pattern = re.compile(rf"(<!-- table:{marker} -->\n)(?:.*?\n)?(<!-- /table:{marker} -->)", re.S)
        text = pattern.sub(lambda m, body=body: m.group(1) + body + "\n" + m.group(2), text)
        updated.append(name)
    write_text_atomic(readme, text)
    return updated


def configure(parser: argparse.ArgumentParser, command: str) -> None:
    """Arguments of ``drivelab bench readme``."""
    parser.description = __doc__
    parser.add_argument("--readme", type=Path, default=Path("README.md"),
                        help="the README to update in place (default %(default)s)")
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results"),
                        help="folder of the benchmarks' NAME.md / NAME.json results (default %(default)s)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Update the README's tables and say which."""
    if not args.results.is_dir():
        raise DrivelabError(f"results folder {args.results} not found; run from the repository root")
    print("updated:", ", ".join(update(args.readme, args.results)) or "nothing")
    return 0
