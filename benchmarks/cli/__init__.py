"""The `drivelab` command: one table of commands, each module imported only when its command runs.

Every command lives in a module that exposes ``configure(parser, command)``: it adds the
command's arguments to ``parser`` and sets ``func`` (``args -> exit status``) with
``parser.set_defaults``. ``command`` is the full command, e.g. ``"perception make-dataset"``,
so one module may serve several related commands. ``drivelab --help`` imports none of them
(so neither torch nor highway-env); ``drivelab train --help`` imports only the train module.

Errors a user can cause (``DrivelabError``) are printed as one line without a traceback and
exit with status 2; Ctrl-C exits with 130.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from drivelab.core.errors import DrivelabError


@dataclass(frozen=True)
class Command:
    """One ``drivelab`` command: its words, the module that configures it, and a one-line help."""

    words: str  # e.g. "train" or "bench env"
    module: str  # dotted module with configure(parser, command)
    help: str


GROUPS = {
    "perception": "supervised perception: datasets, classifiers, detectors, explanations, export",
    "zoo": "the zoo: trained agents shipped with drivelab, loadable by name (zoo:ALGO/SCENARIO)",
    "bench": "benchmarks: throughput, training suites, evaluation speed, leaderboards, README tables",
}

_CLI = "drivelab.benchmarks.cli"
_BENCH = "drivelab.benchmarks.bench"
COMMANDS: tuple[Command, ...] = (
    Command("demo", f"{_CLI}.demo", "the whole story in a few minutes: env demo, train, evaluate, watch, leaderboard"),
    Command("train", f"{_CLI}.train", "train a PPO or DQN agent (resumable run folder, checkpoints, exports)"),
    Command("eval", f"{_CLI}.eval", "evaluate policies on the protocol's held-out seeds; optionally submit"),
    Command("leaderboard", f"{_CLI}.eval", "show a leaderboard (table, Markdown, CSV or an HTML page)"),
    Command("watch", f"{_CLI}.watch", "watch a policy drive: a window when there is a display, else an MP4"),
    Command("tune", f"{_CLI}.tune", "hyperparameter sweep with Optuna (TPE, pruning) on shared storage"),
    Command("zoo list", f"{_CLI}.zoo", "the zoo's trained agents and their protocol results"),
    Command("zoo add", f"{_CLI}.zoo", "evaluate a trained export and add it to the zoo with its model card"),
    Command("perception make-dataset", f"{_CLI}.perception", "render labelled frames from the simulator"),
    Command("perception train-classifier", f"{_CLI}.perception", "train a single- or multi-label classifier"),
    Command("perception eval-classifier", f"{_CLI}.perception", "accuracy, classification report, confusion matrix"),
    Command("perception train-detector", f"{_CLI}.perception", "train the CenterNet-style detector from scratch"),
    Command("perception eval-detector", f"{_CLI}.perception", "COCO AP/AR (ours and pycocotools) and a PR curve"),
    Command("perception predict", f"{_CLI}.perception", "draw detections on frames (PNG folder or .mp4)"),
    Command("perception explain", f"{_CLI}.perception", "saliency and Grad-CAM overlays"),
    Command("perception export", f"{_CLI}.perception", "ONNX export, onnxruntime parity, int8 quantization, speed"),
    Command("bench env", f"{_BENCH}.env", "env throughput: drivelab vs highway-env, ratio printed and recorded"),
    Command("bench equivalence", f"{_BENCH}.equivalence", "EnvPool's ports vs highway-env, episode statistics"),
    Command("bench frames", f"{_BENCH}.frames", "one PNG per scenario of the camera frames and their ground truth"),
    Command("bench train-speed", f"{_BENCH}.train_speed", "training throughput: drivelab PPO vs SB3 + highway-env"),
    Command("bench eval", f"{_BENCH}.eval", "evaluation speed and backend consistency of one policy"),
    Command("bench rl", f"{_BENCH}.rl", "train a suite of agents (scenario x algorithm x seed) and report"),
    Command("bench baselines", f"{_BENCH}.baselines", "random, idle and the rule-based drivers on every scenario"),
    Command("bench leaderboard", f"{_BENCH}.leaderboard", "evaluate the benchmark's agents and write LEADERBOARD.md"),
    Command("bench perception", f"{_BENCH}.perception", "detector AP, classifier F1/accuracy, inference speed"),
    Command("bench pretrained", f"{_BENCH}.pretrained", "PPO with a pretrained perception encoder vs random init"),
    Command("bench imitation", f"{_BENCH}.imitation", "PPO from scratch vs BC vs BC->PPO vs BC->DQN, same seeds"),
    Command("bench gpu", f"{_BENCH}.gpu", "on a CUDA machine: PPO env-steps/s GPU vs CPU, batched eval, CPU parity"),
    Command("bench readme", f"{_BENCH}.readme", "regenerate README's results tables from benchmarks/results"),
)


def _invoked(argv: Sequence[str]) -> Command | None:
    """The command named by the leading words of ``argv`` (top-level options skipped), if any."""
    words = []
    for token in argv:
        if token.startswith("-"):
            if words:
                break
            continue
        words.append(token)
        if len(words) == 2:
            break
    for count in (2, 1):
        wanted = " ".join(words[:count])
        for command in COMMANDS:
            if command.words == wanted:
                return command
    return None


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The parser with every command listed; only the command in ``argv`` gets its arguments."""
    parser = argparse.ArgumentParser(prog="drivelab", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    top = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    groups = {name: top.add_parser(name, help=text, description=text).add_subparsers(
        dest="subcommand", required=True, metavar="COMMAND") for name, text in GROUPS.items()}
    invoked = _invoked(argv)
    for command in COMMANDS:
        group, _, name = command.words.rpartition(" ")
        subparsers = groups[group] if group else top
        sub = subparsers.add_parser(name, help=command.help, description=command.help,
                                    formatter_class=argparse.RawDescriptionHelpFormatter)
        if command is invoked:
            importlib.import_module(command.module).configure(sub, command.words)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser(argv)
    except DrivelabError as error:
        print(f"drivelab: error: {error}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    # matplotlib's "generated new fontManager" (its first import on a machine) is not the user's news.
    logging.getLogger("matplotlib").setLevel(logging.DEBUG if args.verbose else logging.WARNING)
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
