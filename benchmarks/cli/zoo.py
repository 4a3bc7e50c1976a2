"""`drivelab zoo list` and `drivelab zoo add`: the trained agents shipped with drivelab.

``zoo list`` prints what ``zoo:ALGO/SCENARIO`` names load (``drivelab.agents.zoo``), with the
protocol results of each agent's model card. ``zoo add RUN_OR_EXPORT`` is how an agent enters
the zoo: it checks the export is small and weights-only, evaluates it on the protocol's held-out
seeds on the reference backend, records one episode as MP4, and writes the folder
``agents/zoo/<algo>/<scenario>/`` (export, ``card.json``, the model card ``README.md``,
``episode.mp4``) in one atomic step.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

from drivelab.agents import env_kwargs_from_spec, load_policy, zoo
from drivelab.agents.configs import scenario_name
from drivelab.agents.evaluation import evaluate
from drivelab.agents.protocol import DEFAULT_PROTOCOL, load_protocol
from drivelab.agents.run_records import previous_wall_s
from drivelab.agents.spec import read_spec
from drivelab.benchmarks.leaderboard.stats import entry_stats
from drivelab.benchmarks.viewer.episode import watch_episode
from drivelab.benchmarks.viewer.video import shrink_clip, write_mp4
from drivelab.core import provenance
from drivelab.core.errors import ConfigError
from drivelab.core.files import atomic_dir, check_writable, write_json_atomic, write_text_atomic

MAX_WEIGHTS_BYTES = 2 * 1024 * 1024  # one zoo agent; the whole zoo stays under ~40 MB
VIDEO_MAX_WIDTH = 480  # px: a model card's clip, not a recording
# A longer episode plays faster (frames evenly spaced): racetrack's 150 s at 30 fps made a 12 MB clip
VIDEO_MAX_FRAMES = 450


def configure(parser: argparse.ArgumentParser, command: str) -> None:
    if command == "zoo list":
        parser.add_argument("--format", choices=("table", "markdown", "json"), default="table",
                            help="terminal table, Markdown or JSON (default %(default)s)")
        parser.add_argument("--zoo-dir", type=Path, default=None, help="zoo folder (default: the package's)")
        parser.add_argument("--out", type=Path, default=None,
                            help="also write the Markdown table here (README's copy: benchmarks/results/zoo.md)")
        parser.set_defaults(func=run_list)
        return
    parser.add_argument("policy", help="run folder (its best/ export) or export folder to add")
    parser.add_argument("--episodes", type=int, default=None,
                        help="protocol episodes to evaluate (default: the protocol's count)")
    parser.add_argument("--num-envs", type=int, default=8, help="envs evaluated at once")
    parser.add_argument("--zoo-dir", type=Path, default=None, help="zoo folder (default: the package's)")
    parser.add_argument("--force", action="store_true", help="replace an agent already in the zoo")
    parser.set_defaults(func=run_add)


def _row(agent: zoo.ZooAgent) -> dict[str, Any]:
    card = agent.card
    metrics = card.get("metrics", {})
    return {
        "name": agent.label, "scenario": card.get("env_id", agent.scenario), "algo": agent.algo,
        "observation": card.get("observation", "?"),
        "return": _with_ci(metrics.get("mean_return"), metrics.get("mean_return_ci")),
        "crash": _percent(metrics.get("crash_rate")), "success": _percent(metrics.get("success_rate")),
        "episodes": metrics.get("episodes", "?"), "steps": card.get("num_timesteps", "?"),
    }


def _with_ci(value: float | None, ci: list[float] | None) -> str:
    if value is None:
        return "?"
    return f"{value:.1f} [{ci[0]:.1f}, {ci[1]:.1f}]" if ci else f"{value:.1f}"


def _percent(value: float | None) -> str:
    return "?" if value is None else f"{100 * value:.0f} %"


def markdown_table(rows: list[dict[str, Any]]) -> str:
    columns = ("name", "scenario", "algo", "observation", "return", "crash", "success", "episodes", "steps")
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row[c]) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def run_list(args: argparse.Namespace) -> int:
    if args.out is not None:
        check_writable(args.out)
    rows = [_row(agent) for agent in zoo.agents(args.zoo_dir)]
    if args.out is not None:
        write_text_atomic(args.out, "`drivelab zoo list --out " + str(args.out) + "`; each agent's model card is "
                          "agents/zoo/ALGO/SCENARIO/README.md.\n\n" + markdown_table(rows) + "\n")
    if args.format == "json":
        print(json.dumps(rows, indent=2))
    elif args.format == "markdown":
        print(markdown_table(rows))
    elif not rows:
        print("the zoo is empty")
    else:
        widths = {key: max(len(key), *(len(str(row[key])) for row in rows)) for key in rows[0]}
        print("  ".join(key.ljust(widths[key]) for key in widths))
        for row in rows:
            print("  ".join(str(row[key]).ljust(widths[key]) for key in widths))
    return 0


def _training_record(export_folder: Path) -> dict[str, Any]:
    """The command, steps, wall time, hardware and commit of the run that made an export, and, for a
    run started from another policy (``init_from``, e.g. a behaviour clone), that run's command and wall
    time (``started_from``): the agent's cost includes it."""
    run_dir = export_folder.parent
    record: dict[str, Any] = {}
    invocations = _invocations(run_dir)
    if invocations:
        first = invocations[0]
        record["command"] = " ".join(first.get("command", []))
        record["commit"] = first.get("git")
        record["device"] = first.get("device")
        machine = first.get("machine", {})
        record["hardware"] = (f"{machine.get('cpu', '?')} ({machine.get('cpu_affinity', '?')} cores)"
                              if machine else None)
    config_json = run_dir / "config.json"
    init_from = json.loads(config_json.read_text()).get("init_from") if config_json.is_file() else None
    if init_from:
        source = Path(init_from)
        source_run = source if (source / "run.json").is_file() else source.parent  # a run or its export
        earlier = _invocations(source_run)
        record["started_from"] = {
            "policy": init_from,
            "command": " ".join(earlier[0].get("command", [])) if earlier else None,
            "wall_s": previous_wall_s(source_run) or None,
        }
    return record


def _invocations(run_dir: Path) -> list[dict[str, Any]]:
    run_json = run_dir / "run.json"
    return json.loads(run_json.read_text()).get("invocations", []) if run_json.is_file() else []


def _started_from_rows(started: dict[str, Any] | None) -> list[str]:
    """Model-card rows for the policy a run started from (none for a run from random weights)."""
    if not started:
        return []
    wall = f"{started['wall_s'] / 60:.1f} min" if started.get("wall_s") else "?"
    return [f"| started from | `{started['policy']}`, trained in {wall} by `{started.get('command') or '?'}` |"]


def model_card(card: dict[str, Any]) -> str:
    m, t = card["metrics"], card["training"]
    lines = [
        f"# {card['label']}: {card['algo'].upper()} on {card['env_id']}",
        "",
        f"Load it with `drivelab.agents.load_policy(\"{card['label']}\")`, evaluate it with "
        f"`drivelab eval --policy {card['label']} --env {card['env_id']}`, watch it with "
        f"`drivelab watch --policy {card['label']}`.",
        "",
        "| | |", "|---|---|",
        f"| scenario | `{card['env_id']}` |",
        f"| algorithm | {card['algo']} |",
        f"| observation | {card['observation']}"
        f"{' ' + json.dumps(card.get('camera') or {}) if card['observation'] == 'camera' else ''} |",
        f"| protocol | {card['protocol']}, {m['episodes']} held-out episodes, {card['backend']} backend |",
        f"| mean return (95 % CI) | {_with_ci(m['mean_return'], m['mean_return_ci'])} |",
        f"| IQM return (95 % CI) | {_with_ci(m['iqm_return'], m['iqm_return_ci'])} |",
        f"| crash rate (95 % CI) | {_percent(m['crash_rate'])} "
        f"[{_percent(m['crash_rate_ci'][0])}, {_percent(m['crash_rate_ci'][1])}] |",
        f"| success rate | {_percent(m['success_rate'])} |",
        f"| training steps | {card['num_timesteps']:,} |",
        f"| training wall time | {card['training_wall_s'] / 60:.1f} min |" if card.get("training_wall_s")
        else "| training wall time | ? |",
        f"| training command | `{t.get('command', '?')}` |",
        *_started_from_rows(t.get("started_from")),
        f"| hardware | {t.get('hardware') or '?'}, device {t.get('device') or '?'} |",
        f"| commit | {t.get('commit') or '?'} |",
        f"| weights | `policy.safetensors` (weights only), sha256 `{card['weights_sha256'][:16]}...` |",
        "",
        f"One episode (seed {card['video_seed']}, deterministic): [episode.mp4](episode.mp4)",
        "",
        f"Added by `{card['added_by']}` on {card['added_at']}.",
    ]
    return "\n".join(lines) + "\n"


def run_add(args: argparse.Namespace) -> int:
    policy = load_policy(args.policy)  # refuses pickles, checks the spec and weights
    spec = dict(policy.source.spec)
    if "env_id" not in spec or "weights" not in spec:
        raise ConfigError(f"{args.policy} is not a trained policy export; give a run or export folder")
    _, spec_file = read_spec(Path(policy.source.label))
    weights = spec_file.parent / spec["weights"]
    if weights.stat().st_size > MAX_WEIGHTS_BYTES:
        raise ConfigError(f"{weights} is {weights.stat().st_size / 2**20:.1f} MiB; zoo agents stay under "
                          f"{MAX_WEIGHTS_BYTES / 2**20:.0f} MiB (train a smaller network)")
    env_id, algo = spec["env_id"], spec["algo"]
    folder = (args.zoo_dir or zoo.ZOO_DIR) / algo / scenario_name(env_id)
    if folder.exists() and not args.force:
        raise ConfigError(f"the zoo already has {folder}; pass --force to replace it")
    protocol = load_protocol(DEFAULT_PROTOCOL)
    seeds = protocol.seeds_for(env_id, args.episodes)  # checks --episodes before any work
    env_kwargs = env_kwargs_from_spec(spec)
    result = evaluate(policy, env_id, seeds=seeds, backend=protocol.reference_backend, num_envs=args.num_envs,
                      env_kwargs=env_kwargs, progress=True)
    stats = entry_stats([result.as_run_arrays()], confidence=protocol.confidence, reps=protocol.bootstrap_reps)
    episode = watch_episode(policy, env_id, seeds[0], **env_kwargs)
    machine = provenance.machine_info()
    card = {
        "label": f"{zoo.ZOO_PREFIX}{algo}/{scenario_name(env_id)}", "env_id": env_id, "algo": algo,
        "observation": spec.get("observation"), "camera": spec.get("camera"),
        "protocol": protocol.version, "backend": protocol.reference_backend,
        "metrics": {
            "episodes": stats.num_episodes, "mean_return": stats.mean_return,
            "mean_return_ci": [stats.mean_return_ci.low, stats.mean_return_ci.high],
            "iqm_return": stats.iqm_return, "iqm_return_ci": [stats.iqm_return_ci.low, stats.iqm_return_ci.high],
            "crash_rate": stats.crash_rate, "crash_rate_ci": [stats.crash_rate_ci.low, stats.crash_rate_ci.high],
            "success_rate": stats.success_rate, "mean_speed": float(result.metric("mean_speed").mean()),
        },
        "num_timesteps": spec.get("num_timesteps"), "training_wall_s": spec.get("training_wall_s"),
        "training": _training_record(spec_file.parent), "weights_sha256": spec["weights_sha256"],
        "video_seed": int(seeds[0]), "source": str(args.policy),
        "added_by": machine["command"], "added_at": machine["timestamp_utc"],
    }
    with atomic_dir(folder) as staging:
        shutil.copyfile(spec_file, staging / "policy.json")
        shutil.copyfile(weights, staging / spec["weights"])
        write_json_atomic(staging / zoo.CARD_JSON, card)
        write_text_atomic(staging / "README.md", model_card(card))
        write_mp4(staging / "episode.mp4", shrink_clip(episode.frames, VIDEO_MAX_WIDTH, VIDEO_MAX_FRAMES),
                  fps=episode.fps)
    print(f"added {card['label']}: return {_with_ci(stats.mean_return, card['metrics']['mean_return_ci'])}, "
          f"crashes {_percent(stats.crash_rate)} over {stats.num_episodes} protocol episodes -> {folder}")
    return 0
