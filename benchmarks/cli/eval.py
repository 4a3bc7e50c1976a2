"""``drivelab eval`` (evaluate a policy under the protocol, optionally submit it) and
``drivelab leaderboard`` (rank and export the stored entries)."""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import hashlib
import json
import os
import platform
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from drivelab.benchmarks import exports, watch
from drivelab.core import provenance as records
from drivelab.benchmarks.leaderboard import (
    DEFAULT_DB_PATH,
    EntryMetadata,
    Leaderboard,
    RunRecord,
)
from drivelab.benchmarks.protocol import (
    DEFAULT_NUM_ENVS,
    DEFAULT_PROTOCOL,
    EvalProtocol,
    EvaluationResult,
    PolicySource,
    env_kwargs_from_spec,
    evaluate,
    load_policy,
    load_protocol,
)
from drivelab.benchmarks.stats import entry_stats
from drivelab.envs.errors import ConfigError, DrivelabError

# Spec keys that describe an export's files or its evaluations, not the agent's config.
SPEC_KEYS_NOT_CONFIG = ("weights", "weights_sha256", "encoder_file", "eval")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``eval`` and ``leaderboard`` sub-commands."""
    parser = subparsers.add_parser(
        "eval", help="evaluate a policy on the protocol's held-out seeds",
        description="Evaluate one policy (or several training runs of one agent) on the "
        "held-out seeds of an evaluation protocol; optionally submit it to the leaderboard.",
    )  # fmt: skip
    parser.add_argument("--policy", nargs="+", required=True, metavar="PATH|baseline:NAME",
                        help="policy file(s), one per training run of the same agent, "
                        "or baseline:random|idle|idm")  # fmt: skip
    parser.add_argument("--env", required=True, help="scenario id, e.g. drivelab/highway-fast-v0")
    parser.add_argument("--episodes", type=int, default=None,
                        help="episodes per run (default: the protocol's, 100)")  # fmt: skip
    parser.add_argument("--backend", default=None, choices=("highway-env", "envpool"),
                        help="default: the protocol's reference, highway-env")  # fmt: skip
    parser.add_argument("--num-envs", type=int, default=DEFAULT_NUM_ENVS,
                        help="envs stepped together; does not change results")  # fmt: skip
    parser.add_argument("--protocol", default=DEFAULT_PROTOCOL, help="evaluation protocol version")
    parser.add_argument("--submit", action="store_true", help="store the result in the leaderboard")
    parser.add_argument("--name", help="agent name on the leaderboard (required with --submit)")
    parser.add_argument("--submitter", default=None, help="who submits (default: the OS user)")
    parser.add_argument("--algorithm", default=None, help="algorithm (default: from the spec)")
    parser.add_argument("--training-steps", type=int, default=None,
                        help="training env steps (default: from the policy spec)")  # fmt: skip
    parser.add_argument("--training-wall-s", type=float, default=None,
                        help="training wall time [s] (default: unrecorded)")  # fmt: skip
    parser.add_argument("--db", type=Path, default=DEFAULT_DB_PATH,
                        help=f"leaderboard SQLite file (default: {DEFAULT_DB_PATH})")  # fmt: skip
    parser.add_argument("--trust-pickle", action="store_true",
                        help="load files that need unpickling (runs their code)")  # fmt: skip
    parser.add_argument("--record-failures", type=Path, default=None, metavar="DIR",
                        help="replay failed episodes from their seeds into DIR/*.mp4, listed in DIR/failures.json")  # fmt: skip
    parser.add_argument("--max-failure-videos", type=int, default=10,
                        help="record at most this many failures (default %(default)s)")  # fmt: skip
    parser.set_defaults(func=run_eval)

    board = subparsers.add_parser(
        "leaderboard", help="rank and export leaderboard entries",
        description="Rank entries per scenario by mean return (crash rate beside it), with "
        "95% stratified-bootstrap CIs; overlapping CIs are marked as ties.",
    )  # fmt: skip
    board.add_argument("--env", default=None, help="only this scenario")
    board.add_argument("--protocol", default=None, help="only this protocol version")
    board.add_argument("--format", default="table", choices=exports.FORMATS,
                       help="terminal table, Markdown, CSV or a static HTML folder")  # fmt: skip
    board.add_argument("--out", type=Path, default=None,
                       help="output file (folder for html); default: print to stdout")  # fmt: skip
    board.add_argument("--db", type=Path, default=DEFAULT_DB_PATH,
                       help=f"leaderboard SQLite file (default: {DEFAULT_DB_PATH})")  # fmt: skip
    board.add_argument("--reps", type=int, default=None,
                       help="bootstrap replicates (default: the protocol's, 10000)")  # fmt: skip
    board.set_defaults(func=run_leaderboard)


def hardware() -> str:
    """CPU (and GPU when torch is loaded and sees one) this process runs on."""
    parts = [f"{records.cpu_model()} ({os.cpu_count()} CPUs, {platform.machine()})"]
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        parts.append(torch.cuda.get_device_name(0))
    return ", ".join(parts)


def entry_digest(sources: Sequence[PolicySource]) -> str:
    """The entry's policy digest: the file's sha256, or of all run digests for several runs."""
    if len(sources) == 1:
        return sources[0].sha256
    return hashlib.sha256("\n".join(sorted(s.sha256 for s in sources)).encode()).hexdigest()


def _spec_value(sources: Sequence[PolicySource], key: str) -> Any:
    values = [s.spec.get(key) for s in sources if s.spec.get(key) is not None]
    return values[0] if values else None


def _check_submission_args(args: argparse.Namespace, protocol: EvalProtocol) -> None:
    if args.submit and not args.name:
        raise ConfigError("--submit needs --name NAME (the agent's name on the leaderboard)")
    if args.episodes is not None and args.episodes < 1:
        raise ConfigError(f"--episodes must be >= 1, got {args.episodes}")
    protocol.seeds_for(args.env, args.episodes)  # raises for an unknown scenario or count


def build_metadata(
    args: argparse.Namespace,
    protocol: EvalProtocol,
    sources: Sequence[PolicySource],
    results: Sequence[EvaluationResult],
) -> EntryMetadata:
    """Everything a leaderboard entry records about this submission."""
    config = {
        "training": [
            dict(s.run_config) or {k: v for k, v in s.spec.items() if k not in SPEC_KEYS_NOT_CONFIG}
            for s in sources
        ],
        "evaluation": {
            "protocol": protocol.version, "env_id": args.env, "backend": results[0].backend,
            "episodes": len(results[0].episodes),
        },
    }  # fmt: skip
    return EntryMetadata(
        submitter=args.submitter or getpass.getuser(),
        agent_name=args.name,
        algorithm=args.algorithm or _spec_value(sources, "algo") or "unknown",
        env_id=args.env,
        protocol_version=protocol.version,
        policy_sha256=entry_digest(sources),
        backend=results[0].backend,
        config=config,
        package_versions=records.package_versions(),
        git_commit=records.git_commit(),
        training_steps=args.training_steps or _spec_value(sources, "num_timesteps"),
        training_wall_s=args.training_wall_s or _spec_value(sources, "training_wall_s"),
        hardware=hardware(),
    )


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", label.strip("/")).strip("_")[-60:] or "policy"


def record_failures(
    folder: Path,
    loaded: Sequence[tuple[Any, PolicySource]],
    results: Sequence[EvaluationResult],
    max_videos: int,
) -> tuple[list[EvaluationResult], Path]:
    """Replay failed episodes from their seeds, record them as MP4 and list them in ``failures.json``.

    Replays run on the reference backend (``drivelab watch``'s renderer), so only evaluations
    on highway-env replay exactly; each manifest row says whether the replay reproduced the
    evaluated episode. Returns the results with ``video_path`` set on the recorded episodes.
    """
    updated, rows, recorded = [], [], 0
    for (policy, source), result in zip(loaded, results):
        env_kwargs = env_kwargs_from_spec(source.spec)
        episodes = []
        for e in result.episodes:
            row = {"policy": source.label, "policy_sha256": source.sha256, "env_id": result.env_id,
                   "backend": result.backend, "protocol": result.protocol_version, "seed": e.seed,
                   "crashed": e.crashed, "success": e.success, "episode_return": e.episode_return}  # fmt: skip
            if e.failed and recorded < max_videos:
                replay = watch.watch_episode(policy, result.env_id, e.seed, env_kwargs.get("observation", "camera"),
                                             env_kwargs.get("camera"), env_kwargs.get("config"))  # fmt: skip
                path = watch.record_episode(folder / f"{_slug(source.label)}-seed{e.seed}.mp4", replay)
                row.update(video=str(path), replay_return=replay.driving["return"],
                           replay_matches=bool(replay.driving["crashed"] == e.crashed
                                               and abs(replay.driving["return"] - e.episode_return) < 1e-6))  # fmt: skip
                e = dataclasses.replace(e, video_path=str(path))
                recorded += 1
            if e.failed:
                rows.append(row)
            episodes.append(e)
        updated.append(dataclasses.replace(result, episodes=tuple(episodes)))
    target = folder / "failures.json"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        temporary = folder / f".failures.json.{os.getpid()}.tmp"
        temporary.write_text(json.dumps(rows, indent=1) + "\n")
        os.replace(temporary, target)
    except OSError as error:
        raise DrivelabError(f"cannot write {target}: {error}; choose another --record-failures") from None
    return updated, target


def _summary_lines(results: Sequence[EvaluationResult], protocol: EvalProtocol) -> list[str]:
    stats = entry_stats([r.as_run_arrays() for r in results], reps=protocol.bootstrap_reps)
    return [
        f"{results[0].env_id} [{results[0].backend}, {protocol.version}]: "
        f"{stats.num_runs} run(s) x {stats.num_episodes // stats.num_runs} episodes",
        f"  mean return {stats.mean_return:.3f}  95% CI [{stats.mean_return_ci.low:.3f}, "
        f"{stats.mean_return_ci.high:.3f}]",
        f"  IQM return  {stats.iqm_return:.3f}  95% CI [{stats.iqm_return_ci.low:.3f}, "
        f"{stats.iqm_return_ci.high:.3f}]",
        f"  crash rate {stats.crash_rate:.3f}  success rate {stats.success_rate:.3f}  "
        f"collisions/km {stats.collisions_per_km:.3f}",
    ]


def run_eval(args: argparse.Namespace) -> int:
    """Handler of ``drivelab eval``."""
    protocol = load_protocol(args.protocol)
    _check_submission_args(args, protocol)
    board = Leaderboard(args.db) if args.submit else None  # a bad --db fails before evaluating
    try:
        loaded = [load_policy(p, args.env, trust_pickle=args.trust_pickle) for p in args.policy]
        if args.submit:  # a policy trained on evaluation seeds cannot enter the leaderboard
            seeds = [s.spec["seed"] for _, s in loaded if isinstance(s.spec.get("seed"), int)]
            protocol.assert_disjoint(seeds)
        results = []
        for policy, source in loaded:
            env_kwargs = env_kwargs_from_spec(source.spec)
            results.append(evaluate(policy, args.env, episodes=args.episodes, backend=args.backend,
                                    num_envs=args.num_envs, protocol=protocol,
                                    env_kwargs=env_kwargs, progress=True))  # fmt: skip
        sources = [source for _, source in loaded]
        print("\n".join(_summary_lines(results, protocol)))
        if args.record_failures is not None:
            results, manifest = record_failures(args.record_failures, loaded, results, args.max_failure_videos)
            print(f"failed episodes and their videos: {manifest}")
        if board is not None:
            metadata = build_metadata(args, protocol, sources, results)
            runs = [
                RunRecord(s.sha256, s.label, r.episodes, s.spec.get("seed"))
                for s, r in zip(sources, results)
            ]
            entry_id = board.submit(metadata, runs)
            print(f"submitted entry {entry_id} to {args.db}")
    finally:
        if board is not None:
            board.close()
    return 0


def run_leaderboard(args: argparse.Namespace) -> int:
    """Handler of ``drivelab leaderboard``."""
    reps = args.reps if args.reps is not None else load_protocol(DEFAULT_PROTOCOL).bootstrap_reps
    if reps < 1:
        raise ConfigError(f"--reps must be >= 1, got {reps}")
    with Leaderboard(args.db, create=False) as board:
        entries = board.entries(env_id=args.env, protocol_version=args.protocol)
    ranked = exports.rank_entries(entries, reps=reps)
    text = exports.export(ranked, args.format, args.out)
    if text is not None:
        print(text, end="")
    else:
        print(f"wrote {args.out}")
    return 0
