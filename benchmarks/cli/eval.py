"""``drivelab eval`` (evaluate policies under the protocol, optionally submit them) and
``drivelab leaderboard`` (rank and export the stored entries, read-only).

Thin: parse, call ``drivelab.benchmarks.leaderboard`` (``submit``, ``pages``), print.
"""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

from drivelab.agents.evaluation import DEFAULT_NUM_ENVS
from drivelab.agents.protocol import DEFAULT_PROTOCOL
from drivelab.benchmarks.leaderboard import pages, submit
from drivelab.benchmarks.leaderboard.database import POSTGRES_URL, parse_location
from drivelab.benchmarks.leaderboard.store import DEFAULT_DB_PATH
from drivelab.core.errors import ConfigError

EVAL_DESCRIPTION = (
    "Evaluate one policy (or several training runs of one agent) on the held-out seeds of an "
    "evaluation protocol; optionally submit it to the leaderboard. An entry is identified by "
    "(submitter, name, scenario, protocol, backend): submitting again under the same identity "
    "updates it and prints old vs new numbers. Fewer episodes than the protocol's count make a "
    "partial entry, ranked below every complete one."
)
LEADERBOARD_DESCRIPTION = (
    "Rank entries per scenario by mean return (crash rate beside it), with 95% stratified-"
    "bootstrap CIs; overlapping CIs are marked as ties, partial entries rank below complete "
    "ones. Reads the board without writing to it."
)


def configure(parser: argparse.ArgumentParser, command: str) -> None:
    """Add the arguments of ``eval`` or ``leaderboard`` (``command``) to ``parser``."""
    if command == "eval":
        _configure_eval(parser)
    elif command == "leaderboard":
        _configure_leaderboard(parser)
    else:
        raise ValueError(f"{__name__} serves eval and leaderboard, not {command!r}")


def _configure_eval(parser: argparse.ArgumentParser) -> None:
    parser.description = textwrap.fill(EVAL_DESCRIPTION, 88)  # the table's formatter keeps line breaks
    parser.add_argument("--policy", nargs="+", required=True, metavar="PATH|baseline:NAME",
                        help="policy file(s) or folder(s), one per training run of the same agent "
                        "(no file twice), or baseline:random|idle|idm")  # fmt: skip
    parser.add_argument("--env", required=True, help="scenario id, e.g. drivelab/highway-fast-v0")
    parser.add_argument("--episodes", type=int, default=None,
                        help="episodes per run (default: the protocol's, 100)")  # fmt: skip
    parser.add_argument("--backend", default=None, choices=("highway-env", "envpool"),
                        help="default: the protocol's reference, highway-env")  # fmt: skip
    parser.add_argument("--num-envs", type=int, default=DEFAULT_NUM_ENVS,
                        help="envs stepped together, >= 1; does not change results (default %(default)s)")  # fmt: skip
    parser.add_argument("--protocol", default=DEFAULT_PROTOCOL,
                        help="evaluation protocol version (default %(default)s)")  # fmt: skip
    parser.add_argument("--submit", action="store_true", help="store the result in the leaderboard")
    parser.add_argument("--name", help="agent name on the leaderboard (with --submit, required there)")
    parser.add_argument("--submitter", default=None,
                        help="who submits, part of the entry's identity (default: the OS user)")  # fmt: skip
    parser.add_argument("--algorithm", default=None, help="algorithm shown (default: from the spec)")
    parser.add_argument("--training-steps", type=int, default=None,
                        help="training env steps, >= 0 (default: from the policy spec)")  # fmt: skip
    parser.add_argument("--training-wall-s", type=float, default=None,
                        help="training wall time [s], finite and >= 0 (default: from the policy spec)")  # fmt: skip
    parser.add_argument("--db", type=parse_location, default=DEFAULT_DB_PATH, metavar="PATH|URL",
                        help=f"leaderboard: an SQLite file or {POSTGRES_URL} (default: {DEFAULT_DB_PATH})")  # fmt: skip
    parser.add_argument("--trust-pickle", action="store_true",
                        help="load files that need unpickling (runs their code)")  # fmt: skip
    parser.add_argument("--record-failures", type=Path, default=None, metavar="DIR",
                        help="replay failed episodes from their seeds into DIR/*.mp4, listed in "
                        "DIR/failures.json")  # fmt: skip
    parser.add_argument("--max-failure-videos", type=int, default=submit.DEFAULT_MAX_FAILURE_VIDEOS,
                        help="record at most this many failures, >= 0 (default %(default)s)")  # fmt: skip
    parser.set_defaults(func=run_eval)


def _configure_leaderboard(parser: argparse.ArgumentParser) -> None:
    parser.description = textwrap.fill(LEADERBOARD_DESCRIPTION, 88)  # the table's formatter keeps line breaks
    parser.add_argument("--env", default=None, help="only this scenario (an id the protocols know)")
    parser.add_argument("--protocol", default=None, help="only this protocol version")
    parser.add_argument("--format", default="table", choices=pages.FORMATS,
                        help="terminal table, Markdown, CSV or a static HTML folder (default %(default)s)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=None,
                        help="output file (folder for html); default: print to stdout")  # fmt: skip
    parser.add_argument("--db", type=parse_location, default=DEFAULT_DB_PATH, metavar="PATH|URL",
                        help=f"leaderboard, read only: an SQLite file or {POSTGRES_URL} "
                        f"(default: {DEFAULT_DB_PATH})")  # fmt: skip
    parser.add_argument("--reps", type=int, default=None,
                        help=f"bootstrap replicates, 1..{pages.MAX_BOOTSTRAP_REPS} "
                        "(default: the protocol's, 10000)")  # fmt: skip
    parser.set_defaults(func=run_leaderboard)


def run_eval(args: argparse.Namespace) -> int:
    """Handler of ``drivelab eval``."""
    options = dict(episodes=args.episodes, backend=args.backend, num_envs=args.num_envs,
                   protocol=args.protocol, trust_pickle=args.trust_pickle,
                   record_failures=args.record_failures, max_failure_videos=args.max_failure_videos,
                   progress=True)  # fmt: skip
    if not args.submit:
        entry_options = {"--name": args.name, "--submitter": args.submitter, "--algorithm": args.algorithm,
                         "--training-steps": args.training_steps, "--training-wall-s": args.training_wall_s}
        unused = [flag for flag, value in entry_options.items() if value is not None]
        if unused:
            raise ConfigError(f"{', '.join(unused)} only describe a leaderboard entry; add --submit or drop them")
        evaluation = submit.evaluate_policies(args.policy, args.env, **options)
    else:
        if not args.name:
            raise ConfigError("--submit needs --name NAME (the agent's name on the leaderboard)")
        outcome = submit.evaluate_and_submit(
            args.policy, args.env, db=args.db, name=args.name, submitter=args.submitter,
            algorithm=args.algorithm, training_steps=args.training_steps,
            training_wall_s=args.training_wall_s, **options,
        )  # fmt: skip
        evaluation = outcome.evaluation
    print("\n".join(submit.summary_lines(evaluation.results, evaluation.protocol)))
    if evaluation.failures_manifest is not None:
        print(f"failed episodes and their videos: {evaluation.failures_manifest}")
    if args.submit:
        print("\n".join(submit.submission_lines(outcome)))
    return 0


def run_leaderboard(args: argparse.Namespace) -> int:
    """Handler of ``drivelab leaderboard``."""
    if args.format == "html" and args.out is None:
        raise ConfigError("--format html writes a folder; pass --out FOLDER")
    ranked = pages.read_ranked(args.db, env_id=args.env, protocol=args.protocol, reps=args.reps)
    text = pages.export(ranked, args.format, args.out)
    if text is not None:
        print(text, end="")
    else:
        print(f"wrote {args.out}")
    return 0
