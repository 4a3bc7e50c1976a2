"""The `drivelab` command: one entry point, one sub-command module per concern.

Each command module exposes ``register(subparsers)``, which adds its sub-commands and sets
``func`` on their parsers. Errors a user can cause (``DrivelabError``) are printed as one
line without a traceback and exit with status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from drivelab.envs.errors import DrivelabError
from drivelab.benchmarks import bench_eval, bench_pretrained, cli_demo, cli_env, cli_watch, make_leaderboard, readme_tables
from drivelab.benchmarks import cli_eval
from drivelab.benchmarks import cli_perception
from drivelab.benchmarks import cli_train

COMMAND_MODULES = [cli_demo, cli_env, cli_watch, readme_tables, bench_eval, bench_pretrained, make_leaderboard, cli_eval, cli_perception, cli_train]


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every registered sub-command."""
    parser = argparse.ArgumentParser(prog="drivelab", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", required=True)
    bench = subparsers.add_parser("bench", help="benchmarks: throughput, training suites, perception")
    bench_subparsers = bench.add_subparsers(dest="bench", required=True)
    for module in COMMAND_MODULES:
        module.register(subparsers)
        if hasattr(module, "register_bench"):
            module.register_bench(bench_subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    args.dispatch = main  # commands that compose other commands (demo) run them through here
    try:
        status = args.func(args)
    except DrivelabError as error:
        print(f"drivelab: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("drivelab: interrupted", file=sys.stderr)
        return 130
    return int(status or 0)


if __name__ == "__main__":
    sys.exit(main())
