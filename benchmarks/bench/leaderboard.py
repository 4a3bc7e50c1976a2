"""``drivelab bench leaderboard``: the benchmark's leaderboard per scenario, generated, never typed.

For every scenario asked for (default: highway-fast, merge, roundabout, intersection, parking,
racetrack) it evaluates random, idle, the scenario's rule-based driver (``baseline:rules``;
where this drivelab has no such label, the scenario's own driver, see ``RULE_DRIVERS``), the
zoo's trained agents (``zoo:ppo/<scenario>``, ``zoo:dqn/<scenario>``, ``zoo:sac/parking``,
where shipped) and the trained agents found under ``--runs`` (every run directory below it whose
``config.json`` names the scenario: one entry per algorithm and observation, e.g. ``ppo-camera``
or ``sac-native``, one run per training seed, as `drivelab bench rl` and the suites lay them
out), on the protocol's held-out
seeds with the reference backend. Each entry is submitted to ``--db`` through
``leaderboard.submit.evaluate_and_submit`` (an agent evaluated again updates its own entry)
with one success and one failure recorded as small MP4s for the page. Then it writes, from
everything on the board: ``benchmarks/results/LEADERBOARD.md`` (a section per scenario),
``leaderboard_scenarios.md`` (one row per scenario, shown in README), the static HTML page
(a tab per scenario, inline videos), and for each scenario's trained agents
``rl_<scenario>.{json,md}`` (highway-fast's: ``rl_highway_camera``): each agent's
per-seed results with mean and spread across training seeds, and ``leaderboard_board.json``, the
whole board (``leaderboard.board_file``). A board that lacks entries of that file (a new
machine's) gets them first, so the pages are always written from everything evaluated so far.
An entry that cannot drive a scenario (a policy refused by its action space) is listed under the
scenario with the reason, and the others go on.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import textwrap
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drivelab.agents import PolicyLoadError, load_policy, zoo
from drivelab.agents.protocol import DEFAULT_PROTOCOL, load_protocol
from drivelab.benchmarks.bench.leaderboard_tables import (
    leaderboard_md,
    order_by_scenario,
    scenario_table_md,
    short_name,
)
from drivelab.benchmarks.bench.rl_reports import (
    ALGOS,
    RL_REPORT_ENV,
    previous_report,
    report_stem,
    rl_report,
    rl_report_md,
)
from drivelab.benchmarks.leaderboard import board_file, pages, submit
from drivelab.benchmarks.leaderboard.database import parse_location
from drivelab.benchmarks.leaderboard.store import LeaderboardError, check_board_path
from drivelab.core.errors import ConfigError, DrivelabError, OutputPathError
from drivelab.core.files import check_writable, write_json_atomic, write_text_atomic
from drivelab.envs.scenarios import get_scenario

RESULTS = Path("benchmarks/results")
SCENARIOS = ("highway-fast", "merge", "roundabout", "intersection", "parking", "racetrack")
BASELINES = ("random", "idle", "rules", "idm")
OBSERVATIONS = ("camera", "native")  # trained entries are named ALGO-OBSERVATION
AGENTS = (*BASELINES, "zoo", *ALGOS)
DEFAULT_AGENTS = ("random", "idle", "rules", "zoo", *ALGOS)
RULES_LABEL = "baseline:rules"
# Where this drivelab has no baseline:rules: the driver written for the scenario's family (else IDM/MOBIL).
RULE_DRIVERS = {"intersection": "gap", "parking": "parker", "racetrack": "pursuit", "lane-keeping": "pursuit"}
FAILURE_VIDEOS_PER_AGENT = 3
NOTES_JSON = "leaderboard_notes.json"  # per scenario: each entry's command; entries not evaluated, and why
# The whole board (entries, runs, episodes) beside the pages, so a new machine's board starts from it
BOARD_FILE = "leaderboard_board.json"
DESCRIPTION = (
    "Evaluate, per scenario, random, idle, the rule-based driver, the zoo's PPO/DQN agents and the "
    "trained camera agents found under --runs on the protocol's held-out seeds; submit them to --db "
    "(an agent evaluated again updates its own entry) with one success and one failure video each; "
    "write LEADERBOARD.md (a section per scenario), leaderboard_scenarios.md (README's table), an "
    "HTML page with a tab per scenario, and the highway-fast RL report under benchmarks/results."
)


def configure(parser: argparse.ArgumentParser, command: str) -> None:
    """Add ``bench leaderboard``'s arguments to ``parser``."""
    parser.description = textwrap.fill(DESCRIPTION, 88)  # the table's formatter keeps line breaks
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), metavar="NAME",
                        help="short names or ids of protocol scenarios (default: %(default)s)")
    parser.add_argument("--runs", type=Path, nargs="+", default=[Path("runs/highway-camera")], metavar="DIR",
                        help="searched for PPO/DQN camera run directories, e.g. suite folders "
                        "(default %(default)s; a folder that does not exist holds none)")
    parser.add_argument("--episodes", type=int, default=100, help="episodes per run (default %(default)s)")
    parser.add_argument("--num-envs", type=int, default=8,
                        help="envs stepped together; does not change results (default %(default)s)")
    parser.add_argument("--db", type=parse_location, default=Path("runs/leaderboard.db"),
                        help="leaderboard: an SQLite file or a postgresql:// URL (default %(default)s)")
    parser.add_argument("--videos", type=Path, default=Path("runs/failures"),
                        help="failure videos of trained agents go to VIDEOS/SCENARIO/ALGO (default %(default)s)")
    parser.add_argument("--examples", type=Path, default=RESULTS / "videos",
                        help="each entry's success and failure clips go to EXAMPLES/SCENARIO/ENTRY "
                        "(default %(default)s)")
    parser.add_argument("--html", type=Path, default=Path("runs/leaderboard_html"),
                        help="static HTML page folder (default %(default)s)")
    parser.add_argument("--agents", nargs="+", choices=AGENTS, default=list(DEFAULT_AGENTS),
                        help="evaluate only these (the others keep their entries in --db); rules: the "
                        "scenario's rule-based driver, idm: IDM/MOBIL itself, zoo: zoo:ALGO/SCENARIO where "
                        "shipped (default %(default)s)")
    parser.add_argument("--reports-only", action="store_true",
                        help="write only the --scenarios' per-seed RL reports (and the board file), not "
                        "LEADERBOARD.md, leaderboard_scenarios.md or the HTML page: for a board that does not "
                        "hold every scenario's entries (a new machine's), whose pages would drop the others")
    parser.add_argument("--pages-only", action="store_true",
                        help="evaluate nothing: rewrite LEADERBOARD.md, leaderboard_scenarios.md, the HTML page "
                        "and the --scenarios' per-seed RL reports (rl_SCENARIO.json/.md) from --db (with the "
                        f"entries of {RESULTS / BOARD_FILE} it lacks)")
    parser.set_defaults(func=run)


def scenario_id(name: str) -> str:
    """``merge`` -> ``drivelab/merge-v0``; ``intersection-v1`` and full ids as they are.

    Raises:
        ConfigError: a scenario the default protocol has no seeds for (naming the valid ones).
    """
    env_id = name if "/" in name else f"drivelab/{name}" if name.rpartition("-v")[2].isdigit() else \
        f"drivelab/{name}-v0"  # fmt: skip
    known = load_protocol(DEFAULT_PROTOCOL).env_ids
    if env_id not in known:
        raise ConfigError(f"unknown scenario {name!r} for --scenarios; valid: "
                          f"{', '.join(short_name(e) for e in known)}")  # fmt: skip
    return env_id


@dataclass(frozen=True)
class PlannedEntry:
    """One leaderboard entry to evaluate: its name, policies (one per training run) and options."""

    name: str
    policies: tuple[str, ...]
    algorithm: str | None = None
    record_failures: Path | None = None
    record_examples: Path | None = None


def rules_driver(env_id: str) -> tuple[str, str]:
    """The rule-based driver for ``env_id``: ``(label, what to show as its algorithm)``.

    ``baseline:rules`` where ``load_policy`` takes it, else the driver written for the scenario's
    family (``RULE_DRIVERS``), else ``baseline:idm``.
    """
    fallback = f"baseline:{RULE_DRIVERS.get(get_scenario(env_id).family, 'idm')}"
    for label in dict.fromkeys((RULES_LABEL, fallback, "baseline:idm")):
        try:
            policy = load_policy(label, env_id)
        except (PolicyLoadError, ConfigError):
            continue
        name = label.partition(":")[2]
        driver = getattr(policy, "name", name)
        return label, name if driver in (name, "policy") else f"{name} ({driver})"
    raise ConfigError(f"no rule-based driver loads for {env_id}")  # baseline:idm always does


def plan_entries(
    agents: Sequence[str],
    runs_roots: Path | Sequence[Path],
    env_id: str,
    videos: Path,
    examples: Path | None = None,
) -> list[PlannedEntry]:
    """The entries to evaluate on ``env_id``: the baselines asked for, the zoo's agents, then each
    algorithm and observation with trained runs (failure videos of those to ``videos/ALGO``,
    ``videos/ALGO-native``); with ``examples``,
    every entry records its success and failure clips to ``examples/ENTRY``."""
    roots = [runs_roots] if isinstance(runs_roots, Path) else list(runs_roots)

    def clips(name: str) -> Path | None:
        return None if examples is None else examples / name

    planned = []
    for name in (b for b in BASELINES if b in agents):
        label, algorithm = rules_driver(env_id) if name == "rules" else (f"baseline:{name}", None)
        planned.append(PlannedEntry(name, (label,), algorithm, None, clips(name)))
    if "zoo" in agents:
        for agent in zoo.agents():
            if agent.algo in ALGOS and agent.scenario == short_name(env_id):
                planned.append(PlannedEntry(f"zoo-{agent.algo}", (agent.label,), agent.algo, None,
                                            clips(f"zoo-{agent.algo}")))  # fmt: skip
    for algo in (a for a in ALGOS if a in agents):
        for observation in OBSERVATIONS:
            runs = [run for root in roots for run in _run_dirs(root, algo, env_id, observation)]
            if runs:
                name = f"{algo}-{observation}"
                folder = videos / (algo if observation == "camera" else name)
                planned.append(PlannedEntry(name, tuple(map(str, runs)), algo, folder, clips(name)))
    return planned


def _run_dirs(root: Path, algo: str, env_id: str, observation: str = "camera") -> list[Path]:
    """Trained runs of ``algo`` on ``env_id`` and ``observation`` below ``root`` that have an exported policy."""
    found = []
    for config_path in sorted(root.glob("*/config.json")):
        try:
            config = json.loads(config_path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise ConfigError(
                f"run config {config_path} is unreadable or corrupt ({error}); fix or move that run "
                f"out of {root}, or pass --runs"
            ) from error
        run = config_path.parent
        if (config.get("algo"), config.get("env_id"), config.get("observation")) == (algo, env_id, observation) and (
            (run / "best").exists() or (run / "final").exists()
        ):
            found.append(run)
    return found
def _read_notes(path: Path) -> dict[str, dict[str, dict[str, str]]]:
    """Per scenario: the command that evaluated each entry, and the entries not evaluated and why."""
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, json.JSONDecodeError):
        return {}  # only notes: rewritten below from this run's outcome


def _note(path: Path, env_id: str, name: str, command: str, reason: str | None) -> dict[str, Any]:
    """Record at once (another slice may run beside this one) how an entry was evaluated, or why not."""
    notes = _read_notes(path)
    scenario = notes.setdefault(env_id, {"commands": {}, "not_evaluated": {}})
    if reason is None:
        scenario["not_evaluated"].pop(name, None)
        scenario["commands"][name] = command
    else:
        scenario["not_evaluated"][name] = reason
    write_json_atomic(path, notes)
    return notes


def _evaluate_entry(env_id: str, entry: PlannedEntry, db: Path, **options: Any) -> str | None:
    """Evaluate and submit one entry; the reason when the entry cannot drive this scenario."""
    print(f"{short_name(env_id)}: evaluating {entry.name}: {' '.join(entry.policies)}", flush=True)
    try:
        outcome = submit.evaluate_and_submit(
            list(entry.policies), env_id, db=db, name=entry.name, algorithm=entry.algorithm,
            record_failures=entry.record_failures, max_failure_videos=FAILURE_VIDEOS_PER_AGENT,
            record_examples=entry.record_examples, progress=True, **options,
        )  # fmt: skip
    except (LeaderboardError, OutputPathError):
        raise  # the board or an output folder: nothing else would work either
    except DrivelabError as error:  # this policy cannot drive this scenario (its action space, say)
        print(f"  not on the board: {error}", flush=True)
        return str(error)
    except Exception as error:  # a bug in one policy: say so, keep the hour of other entries going
        traceback.print_exc()
        print(f"  not on the board: it raised {type(error).__name__}: {error}", flush=True)
        return f"evaluating it raised {type(error).__name__}: {error}"
    print("\n".join(submit.summary_lines(outcome.results, outcome.protocol)))
    print("\n".join(submit.submission_lines(outcome)))
    return None


def build_boards(
    plans: Mapping[str, Sequence[PlannedEntry]],
    db: Path,
    *,
    episodes: int,
    html: Path,
    results: Path = RESULTS,
    num_envs: int = 8,
    make_env: submit.MakeEnv | None = None,
    scenarios: Sequence[str] = (),
    write_pages: bool = True,
) -> dict[str, Any]:
    """Evaluate and submit every planned entry per scenario, then write the pages from the whole board.

    Sections come in ``SCENARIOS`` order, then ``scenarios`` (env ids), then any others. Without
    ``write_pages``, only the per-seed RL reports and the board file are written. Returns the
    highway-fast RL report (its ``agents`` list is empty when no trained agent is on the board).
    """
    command = "drivelab " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["bench"] else "drivelab bench leaderboard"
    notes: dict[str, dict[str, dict[str, str]]] = {}
    if (results / BOARD_FILE).is_file():
        added = board_file.load_into(results / BOARD_FILE, db)
        print(f"{results / BOARD_FILE}: {added} entries the board did not hold yet added to it", flush=True)
    for env_id, planned in plans.items():
        for entry in planned:
            reason = _evaluate_entry(env_id, entry, db, episodes=episodes, num_envs=num_envs, make_env=make_env)
            notes = _note(results / NOTES_JSON, env_id, entry.name, command, reason)
    if write_pages:
        _write_pages(db, notes or _read_notes(results / NOTES_JSON), html, results,
                     [*(scenario_id(name) for name in SCENARIOS), *scenarios, *plans])
    entries = board_file.export(db, results / BOARD_FILE)
    print(f"wrote {results / BOARD_FILE} ({entries} entries)")
    report: dict[str, Any] = {"agents": []}
    # Per training seed, for every scenario evaluated (with --pages-only: every one asked for) that
    # has trained runs on the board.
    for env_id in dict.fromkeys([*plans, *scenarios]):
        stem = report_stem(env_id, short_name(env_id))
        scenario_report = rl_report(db, env_id, previous_report(results / f"{stem}.json"))
        if scenario_report["agents"]:
            write_json_atomic(results / f"{stem}.json", scenario_report)
            write_text_atomic(results / f"{stem}.md", rl_report_md(scenario_report) + "\n")
            print(rl_report_md(scenario_report))
        if env_id == RL_REPORT_ENV:
            report = scenario_report
    return report


def _write_pages(db: Path, notes: Mapping[str, Any], html: Path, results: Path, order: list[str]) -> None:
    """LEADERBOARD.md, leaderboard_scenarios.md and the HTML page, from the whole board."""
    ranked = order_by_scenario(pages.read_ranked(db), list(dict.fromkeys(order)))
    for text, out in ((leaderboard_md(ranked, notes), results / "LEADERBOARD.md"),
                      (scenario_table_md(ranked, notes), results / "leaderboard_scenarios.md")):  # fmt: skip
        write_text_atomic(out, text)
        print(f"wrote {out}")
    pages.export(ranked, "html", html)
    print(f"wrote {html / 'index.html'}")


def build_leaderboard(
    env_id: str,
    planned: list[PlannedEntry],
    db: Path,
    *,
    episodes: int,
    html: Path,
    results: Path = RESULTS,
    make_env: submit.MakeEnv | None = None,
) -> dict[str, Any]:
    """``build_boards`` for one scenario."""
    return build_boards({env_id: planned}, db, episodes=episodes, html=html, results=results, make_env=make_env)


def run(args: argparse.Namespace) -> int:
    """Handler of ``drivelab bench leaderboard``."""
    if args.episodes < 1:
        raise ConfigError(f"--episodes must be >= 1, got {args.episodes}")
    env_ids = list(dict.fromkeys(scenario_id(name) for name in args.scenarios))
    for env_id in env_ids:  # every option and output checked before the first episode
        submit.check_eval_options(env_id, episodes=args.episodes, num_envs=args.num_envs,
                                  record_examples=args.examples)  # fmt: skip
    for name in ("LEADERBOARD.md", "leaderboard_scenarios.md", NOTES_JSON, "rl_highway_camera.json", BOARD_FILE):
        check_writable(RESULTS / name)
    check_writable(args.html, folder=True)
    check_board_path(args.db)
    if (RESULTS / BOARD_FILE).is_file():
        board_file.read(RESULTS / BOARD_FILE)  # a damaged file is said now, not after the evaluations
    for env_id in env_ids:  # so is a damaged per-seed report, whose earlier seeds the new one keeps
        previous_report(RESULTS / f"{report_stem(env_id, short_name(env_id))}.json")
    plans = {} if args.pages_only else {
        env_id: plan_entries(args.agents, args.runs, env_id, args.videos / short_name(env_id),
                             args.examples / short_name(env_id))
        for env_id in env_ids
    }  # fmt: skip
    build_boards(plans, args.db, episodes=args.episodes, html=args.html, results=RESULTS, num_envs=args.num_envs,
                 scenarios=env_ids, write_pages=not args.reports_only)  # fmt: skip
    return 0
