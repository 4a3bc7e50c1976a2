"""`drivelab bench imitation`: PPO from scratch vs BC vs BC -> PPO vs BC -> DQN, same seeds, same wall clock.

Every variant of a seed gets the same wall-clock budget (``--minutes``), expert recording
included. BC records the rule-based expert (``baseline:idm``) and clones it within
``--bc-share`` of the budget; BC -> PPO and BC -> DQN start from that same BC run (``--init-from``)
and train for what is left of the budget, so each of them used at most ``--minutes`` in all;
class-balanced BC -> PPO starts from the class-balanced clone (``bc.class_balance``) instead;
BC -> PPO + KL does the same as BC -> PPO with a decaying KL(clone || policy) penalty
(``clone_kl_coef``, ``drivelab.agents.clone_anchor``), and BC -> DQN + margin with a decaying
large-margin loss toward the clone's actions (``clone_margin_coef``). "BC, whole budget" clones with the whole
``--minutes``, spent on more DAgger rounds (``BC_FULL_SETTINGS``).
PPO from scratch trains the whole budget with the suite's settings
(``benchmarks/suites/highway-camera.yaml``: crash penalty 5). Each variant's selected policy
(``best/``, chosen on the selection seeds) is then evaluated on the protocol's held-out episodes
with the reference backend (highway-env), as a leaderboard entry would be; the expert is
evaluated beside them. With ``--reuse``, a run this benchmark already trained with the very same
``drivelab train`` command (recorded beside it in ``bench_command.json``) is evaluated again
instead of trained again, and its protocol result (``bench_eval.json``, same policy bytes and
episodes) is read back, so a variant or a seed can be added to a finished comparison. With
``--join``, results JSONs of the same comparison written earlier (other seeds or variants, run on
another machine or before its run folders were lost) are joined into ``--out`` without training.
Writes ``imitation.json`` (every seed, phase wall times, selection curves, machine),
``imitation.md`` (the table) and ``imitation_curves.png`` (each run's held-out evaluations).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from drivelab.agents import env_kwargs_from_spec, load_policy
from drivelab.agents.configs import load_train_config
from drivelab.agents.evaluation import evaluate
from drivelab.agents.protocol import TRAIN_SEED_LIMIT, load_protocol
from drivelab.benchmarks.cli.train import check_threads
from drivelab.core.config import parse_overrides
from drivelab.core.errors import ConfigError
from drivelab.core.files import atomic_output, check_writable, write_json_atomic, write_text_atomic
from drivelab.core.provenance import machine_info

RESULTS = Path("benchmarks/results")
ENV_ID = "drivelab/highway-fast-v0"
EXPERT = "baseline:idm"
VARIANTS = ("ppo", "bc", "bc_bal", "bc_bal1", "bc_full", "bc_ref", "bc_ppo", "bc_ppo_kl", "bc_dqn", "bc_dqn_safe",
            "bc_bal_ppo", "bc_bal_ppo_kl", "bc_bal_dqn", "bc_bal_dqn_margin",
            "bc_bal_dqn_margin_weak", "bc_bal_refsel", "bc_bal_aug",
            "bc_bal_ep4", "bc_bal_nolc")
LABELS = {"ppo": "PPO from scratch", "bc": "BC", "bc_bal": "BC, class-balanced",
          "bc_bal1": "BC, fully class-balanced", "bc_full": "BC, whole budget",
          "bc_ref": "BC + highway-env DAgger", "bc_ppo": "BC -> PPO",
          "bc_ppo_kl": "BC -> PPO + KL", "bc_dqn": "BC -> DQN", "bc_dqn_safe": "BC -> DQN, crash penalty",
          "bc_bal_ppo": "class-balanced BC -> PPO", "bc_bal_ppo_kl": "class-balanced BC -> PPO + KL",
          "bc_bal_dqn": "class-balanced BC -> DQN", "bc_bal_dqn_margin": "class-balanced BC -> DQN + margin",
          "bc_bal_dqn_margin_weak": "class-balanced BC -> DQN + weak margin",
          "bc_bal_refsel": "BC, class-balanced, chosen on highway-env",
          "bc_bal_aug": "BC, class-balanced, random shifts",
          "bc_bal_ep4": "BC, class-balanced, 4 epochs a round",
          "bc_bal_nolc": "BC, class-balanced but lane changes"}
# BC alone given the whole budget spends it on more DAgger rounds (the learner drives, the expert
# labels): 8 rounds of 20k samples took 20 minutes with a 96 m view on this machine; the budget
# stops it where it is, keeping the best clone on the selection seeds.
# Both whole-budget variants lift bc's total_steps (10^6 samples in highway-fast.yaml), which
# stopped the seed-0 pilots of stop 23 at 18 and 24 minutes, short of the budget.
BC_FULL_SETTINGS = ["--set", "bc.dagger_rounds=12", "--set", "total_steps=100000000"]
# BC + highway-env DAgger: the whole budget too, the rounds after the EnvPool ones recorded on the
# protocol's reference backend (~25 samples/s there on one core, against ~2,000 on EnvPool): the
# 12-round clone made 22.4 / 0 % crashes on EnvPool's selection seeds and 20.9 / 14 % on highway-env's.
BC_REF_SETTINGS = ["--set", "bc.reference_rounds=3", "--set", "bc.reference_samples=5000",
                   "--set", "total_steps=100000000"]
WHOLE_BUDGET_BC = {"bc_full": BC_FULL_SETTINGS, "bc_ref": BC_REF_SETTINGS}  # variant -> its bc settings
# BC within --bc-share as "BC", each sample's loss weighted by its action's share^-0.5 (bc.class_balance):
# the clone's ~10 % disagreements with the expert cost crashes, and a fifth of them are braking
# (SLOWER is ~20 % of the labels, FASTER ~5 %, lane changes ~2 %, IDLE the rest).
# "Fully": weights share^-1, every action's rows weigh the same in all. Clones within --bc-share, by
# variant -> its bc settings ("bc" is plain BC, the clone the RL variants start from).
# "Chosen on highway-env": the class-balanced clone whose best/ checkpoint is chosen on the
# reference backend's episodes (training seeds, 50 every 100k samples: ~30 s each on one core) rather
# than EnvPool's: on EnvPool the three class-balanced clones match the expert (21.8-22.1, 2-4 %
# crashes over 100 protocol seeds), on highway-env seed 2's crashes 11 %.
# "Random shifts": the class-balanced clone fitted on frames shifted by up to 4 px (DrQ's augmentation,
# encoder.augment_shift_px), so that it does not hang on EnvPool's exact pixels.
# "4 epochs a round": the class-balanced clone with twice the passes over the data after each
# recording (a later --set wins over the comparison's bc.epochs=2): at 2 its held-out agreement and
# log-likelihood were still improving when the last round ended, and cloning used ~4 of its 12 minutes.
# "Class-balanced but lane changes": braking and speeding up balanced, lane changes (actions 0 and 2)
# weighed as idling: seed 2's class-balanced clone changed lane 60 % more often than the expert.
BALANCED = ["--set", "bc.class_balance=0.5"]
SHARE_BC = {"bc": [], "bc_bal": BALANCED,
            "bc_bal1": ["--set", "bc.class_balance=1.0"],
            "bc_bal_refsel": [*BALANCED, "--set", "eval_backend=highway-env", "--set", "eval_every_steps=100000"],
            "bc_bal_aug": [*BALANCED, "--set", "encoder.augment_shift_px=4"],
            "bc_bal_ep4": [*BALANCED, "--set", "bc.epochs=4"],
            "bc_bal_nolc": [*BALANCED, "--set", "bc.class_balance_skip=[0,2]"]}
# RL variants started from one of the seed's clones (a SHARE_BC run, e.g. bc-sN), by their RL_SETTINGS key
FROM_CLONE = {"bc_ppo": ("bc", "ppo"), "bc_ppo_kl": ("bc", "ppo_kl"), "bc_dqn": ("bc", "dqn"),
              "bc_dqn_safe": ("bc", "dqn_safe"), "bc_bal_ppo": ("bc_bal", "ppo"),
              "bc_bal_ppo_kl": ("bc_bal", "ppo_kl"), "bc_bal_dqn": ("bc_bal", "dqn"),
              "bc_bal_dqn_margin": ("bc_bal", "dqn_margin"), "bc_bal_dqn_margin_weak": ("bc_bal", "dqn_margin_weak")}
BENCH_COMMAND = "bench_command.json"  # the drivelab train command that made a run (``--reuse``)
BENCH_EVAL = "bench_eval.json"  # a run's protocol result (``--reuse``; the expert is evaluated every time)
# The suite's RL settings (benchmarks/suites/highway-camera.yaml); a started DQN explores at its
# final rate from the start, so random actions do not wreck the clone's driving in the buffer.
PPO_SETTINGS = ["--algo", "ppo", "--set", "total_steps=1500000", "--set", "crash_penalty=5.0"]
DQN_SETTINGS = ["--algo", "dqn", "--set", "total_steps=400000", "--set", "dqn.exploration_initial_eps=0.05",
                "--set", "dqn.learning_starts=0"]


def _anchor(key: str, weight: float) -> list[str]:
    """A pull toward the clone (clone_kl_coef for PPO, clone_margin_coef for DQN) of ``weight``,
    falling to 0 over 400k env steps."""
    return ["--set", f"{key}={weight}", "--set", "clone_kl_decay_steps=400000"]


RL_SETTINGS = {
    "ppo": PPO_SETTINGS,
    # KL(clone || policy) weighted 1.0 at the start, falling to 0 after 400k env steps (about half
    # of an 18-minute PPO run here), so the first updates, driven by a young critic, keep the clone.
    "ppo_kl": [*PPO_SETTINGS, *_anchor("clone_kl_coef", 1.0)],
    "dqn": DQN_SETTINGS,
    # BC -> DQN as above, charged 5 for a crash as PPO is (the pre-filled expert transitions too), and
    # evaluated on the selection seeds every 20k steps instead of 50k, so the best of its ~125k steps
    # is not one of three snapshots: plain BC -> DQN drove 28 m/s into 12-20 % crashes.
    "dqn_safe": [*DQN_SETTINGS, "--set", "crash_penalty=5.0", "--set", "eval_every_steps=20000"],
    # BC -> DQN with DQfD's large-margin loss toward the clone's greedy actions (clone_margin_coef,
    # drivelab.agents.clone_anchor), weighted 1.0: class-balanced BC -> DQN was at 36 % crashes on the
    # selection seeds by its first evaluation (50k steps), its clone at 4 %.
    "dqn_margin": [*DQN_SETTINGS, *_anchor("clone_margin_coef", 1.0)],
    # The same at a fifth of the weight: at 1.0 DQN stayed at its clone's actions (and crash rate) to the end.
    "dqn_margin_weak": [*DQN_SETTINGS, *_anchor("clone_margin_coef", 0.2)],
}


def configure(parser: argparse.ArgumentParser, command: str) -> None:
    """Arguments of ``drivelab bench imitation``."""
    parser.description = __doc__
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (default 0 1 2)")
    parser.add_argument("--minutes", type=float, default=30.0,
                        help="wall-clock budget of each variant per seed, expert recording included (default 30)")
    parser.add_argument("--bc-share", type=float, default=0.25,
                        help="share of the budget for recording and cloning in the BC variants (default 0.25)")
    parser.add_argument("--bc-samples", type=int, default=None,
                        help="expert samples to record (default: the bc section of highway-fast.yaml)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads per run (default 1)")
    parser.add_argument("--episodes", type=int, default=100, help="protocol episodes per policy (default 100)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="settings",
                        help="a config override for every variant's training, as drivelab train --set, e.g. "
                             "camera.hud=true or bc.dagger_rounds=2 (repeatable)")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS),
                        help="variants to run (default all)")
    parser.add_argument("--reuse", action="store_true",
                        help="evaluate runs trained earlier by the same command again instead of training them")
    parser.add_argument("--runs", type=Path, default=Path("runs/imitation"), help="run folders (default %(default)s)")
    parser.add_argument("--join", type=Path, nargs="+", metavar="JSON",
                        help="join results JSONs of one comparison (same budget, settings and episodes) into --out "
                             "without training; a variant and seed in a later file replaces an earlier one")
    parser.add_argument("--out", type=Path, default=RESULTS / "imitation.json",
                        help="results JSON; .md and _curves.png go beside it (default %(default)s)")
    parser.set_defaults(func=run)


def _check_args(args: argparse.Namespace) -> None:
    check_threads(args.threads)
    bad = [seed for seed in args.seeds if not 0 <= seed < TRAIN_SEED_LIMIT - 64]
    if bad:
        raise ConfigError(f"--seeds must be training seeds in [0, {TRAIN_SEED_LIMIT - 64}), got {bad[0]}")
    if not args.minutes > 0 or not 0 < args.bc_share < 1 or args.episodes < 1 or (args.bc_samples or 1) < 1:
        raise ConfigError("--minutes must be > 0, --bc-share in (0, 1), --episodes and --bc-samples >= 1")
    overrides = parse_overrides(args.settings)  # a bad key fails here, not after hours of training
    for algo in ("ppo", "bc", "dqn"):
        load_train_config(ENV_ID, algo, overrides)
    check_writable(args.runs, folder=True)
    _check_outputs(args.out)


def _check_outputs(out: Path) -> None:
    for path in (out, out.with_suffix(".md"), _curves_path(out)):
        check_writable(path)


# What makes two results JSONs one comparison (``--join``); "expert" is the expert's own protocol
# result, so parts whose rule-based driver changed between them (other labels, other clones) differ.
COMPARISON = ("env_id", "minutes", "bc_share", "bc_samples", "threads", "settings", "episodes", "eval_backend",
              "expert")


def _join(paths: list[Path]) -> dict[str, Any]:
    """One record from results JSONs of the same comparison; later rows replace earlier ones."""
    records = []
    for path in paths:
        record = _stored(path)
        if not isinstance(record, dict) or record.get("benchmark") != "imitation" \
                or not all(isinstance(record.get(k), list) for k in ("runs", "seeds")) or "expert" not in record:
            raise ConfigError(f"{path} is missing or not a results JSON of drivelab bench imitation; "
                              f"give files its --out wrote")
        differ = [k for k in COMPARISON if record.get(k) != records[0].get(k)] if records else []
        if differ:
            raise ConfigError(f"{path} is another comparison than {paths[0]} ({differ[0]}: "
                              f"{record.get(differ[0])!r} vs {records[0].get(differ[0])!r}); join only the same one")
        records.append(record)
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    for record in records:
        rows.update({(row["variant"], row["seed"]): row for row in record["runs"]})
    ordered = sorted((_with_curve(r) for r in rows.values()), key=lambda r: (r["seed"], VARIANTS.index(r["variant"])))
    joined = {k: records[-1][k] for k in COMPARISON}
    return {"benchmark": "imitation", **joined,
            "seeds": sorted({r["seed"] for r in ordered}), "runs": ordered, "summary": _summary(ordered),
            "joined_from": [{"file": str(path), "seeds": record["seeds"], "machine": record.get("machine")}
                            for path, record in zip(paths, records)]}


def _summary(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per variant: the seeds it has, and the means of their protocol return and crash rate."""
    summary = {}
    for variant in VARIANTS:
        mine = [r for r in rows if r["variant"] == variant]
        if mine:
            summary[variant] = {"seeds": len(mine), "mean_return": float(np.mean([r["mean_return"] for r in mine])),
                                "crash_rate": float(np.mean([r["crash_rate"] for r in mine]))}
    return summary


def _curves_path(out: Path) -> Path:
    return out.with_name(out.stem + "_curves.png")


def _train(args: argparse.Namespace, argv: list[str]) -> None:
    run_dir = Path(argv[argv.index("--run-dir") + 1])
    marker = run_dir / BENCH_COMMAND
    if args.reuse and (run_dir / "final" / "policy.json").is_file() and _stored(marker) == argv:
        print(f"reusing {run_dir} (trained by the same command)", flush=True)
        return
    print("$ drivelab " + " ".join(argv), flush=True)
    status = args.dispatch(argv)
    if status != 0:
        raise ConfigError(f"`drivelab {' '.join(argv)}` failed with status {status}; see its output above")
    write_json_atomic(marker, argv)


def _stored(path: Path) -> Any:
    """What ``--reuse`` wrote to ``path``; None when it is missing or unreadable (the work is redone)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _wall_s(run_dir: Path) -> float:
    """Training wall time of a run, from its final export (the run's own clock, resumes included)."""
    return float(json.loads((run_dir / "final" / "policy.json").read_text()).get("training_wall_s", 0.0))


def _train_seed(args: argparse.Namespace, seed: int) -> dict[str, dict[str, Any]]:
    """Train the variants of one seed; returns per variant its run folders and phase wall times."""
    common = ["train", "--env", ENV_ID, "--seed", str(seed), "--threads", str(args.threads), "--no-progress",
              "--force", *(item for setting in args.settings for item in ("--set", setting))]
    budget = args.minutes
    runs: dict[str, dict[str, Any]] = {}
    if "ppo" in args.variants:
        run_dir = args.runs / f"ppo-s{seed}"
        _train(args, [*common, *RL_SETTINGS["ppo"], "--run-dir", str(run_dir), "--set",
                               f"max_minutes={budget}"])
        runs["ppo"] = {"run_dirs": [str(run_dir)], "wall_s": [_wall_s(run_dir)]}
    samples = ["--set", f"bc.samples={args.bc_samples}"] if args.bc_samples else []
    for variant, settings in WHOLE_BUDGET_BC.items():
        if variant in args.variants:
            run_dir = args.runs / f"{variant}-s{seed}"
            _train(args, [*common, "--algo", "bc", "--expert", EXPERT, "--run-dir", str(run_dir), *samples,
                                   *settings, "--set", f"max_minutes={budget}"])
            runs[variant] = {"run_dirs": [str(run_dir)], "wall_s": [_wall_s(run_dir)]}
    wanted = set(args.variants)
    clones: dict[str, tuple[Path, float]] = {}  # clone variant -> its run folder and wall time
    for variant, settings in SHARE_BC.items():
        if variant in wanted or any(FROM_CLONE[v][0] == variant for v in wanted & set(FROM_CLONE)):
            run_dir = args.runs / f"{variant}-s{seed}"
            _train(args, [*common, "--algo", "bc", "--expert", EXPERT, "--run-dir", str(run_dir), *samples,
                                   *settings, "--set", f"max_minutes={budget * args.bc_share}"])
            clones[variant] = (run_dir, _wall_s(run_dir))
            if variant in wanted:
                runs[variant] = {"run_dirs": [str(run_dir)], "wall_s": [clones[variant][1]]}
    for variant, (clone, algo) in FROM_CLONE.items():
        if variant in wanted:
            bc_dir, bc_wall = clones[clone]
            run_dir = args.runs / f"{variant}-s{seed}"
            left = max(budget - bc_wall / 60.0, 0.5)
            _train(args, [*common, *RL_SETTINGS[algo], "--init-from", str(bc_dir), "--run-dir",
                                   str(run_dir), "--set", f"max_minutes={left}"])
            runs[variant] = {"run_dirs": [str(bc_dir), str(run_dir)], "wall_s": [bc_wall, _wall_s(run_dir)]}
    return runs


def _evaluate(label: str, episodes: int, cache: Path | None = None) -> dict[str, Any]:
    """The protocol's held-out episodes on the reference backend, as a leaderboard entry.

    With ``cache`` (``--reuse``), a result stored there for the same policy bytes, episodes and
    backend is returned instead of evaluating again; a new result is stored there.
    """
    policy = load_policy(label, ENV_ID)
    backend = load_protocol().reference_backend
    key = {"policy_sha256": policy.source.sha256 if policy.source else label, "episodes": episodes,
           "backend": backend}
    stored = _stored(cache) if cache is not None else None
    if isinstance(stored, dict) and stored.get("key") == key and isinstance(stored.get("result"), dict):
        print(f"reusing the evaluation of {label} in {cache}", flush=True)
        return stored["result"]
    kwargs = env_kwargs_from_spec(policy.source.spec) if policy.source and "observation" in policy.source.spec else {}
    result = evaluate(policy, ENV_ID, episodes=episodes, backend=backend, env_kwargs=kwargs)
    summary = result.summary()
    row = {"mean_return": summary["mean_return"], "crash_rate": summary["crash_rate"],
           "mean_speed": summary["mean_speed"], "episodes": summary["episodes"]}
    if cache is not None:
        write_json_atomic(cache, {"key": key, "result": row})
    return row


def _with_curve(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with its (last) run's selection evaluations as ``curve``: [step, mean return, crash rate]
    rows, read from the run folder when the row has none yet (a joined row keeps the one it has) and
    the folder still holds that run (same training wall time: not one trained there since)."""
    run_dir = Path(row["run_dirs"][-1])
    history = run_dir / "evaluations.jsonl"
    final = _stored(run_dir / "final" / "policy.json")
    if row.get("curve") or not history.is_file() or not isinstance(final, dict) \
            or float(final.get("training_wall_s", 0.0)) != row["wall_s"][-1]:
        return row
    points = [json.loads(line) for line in history.read_text().splitlines() if line.strip()]
    return {**row, "curve": [[p["step"], p["mean_return"], p.get("crash_rate")] for p in points]}


def _curves(rows: list[dict[str, Any]], path: Path) -> None:
    """One panel per variant: each seed's held-out selection evaluations over its (last) run's steps."""
    from matplotlib.figure import Figure  # heavy; only here

    variants = [v for v in VARIANTS if any(r["variant"] == v for r in rows)]
    figure = Figure(figsize=(4.2 * len(variants), 3.4), layout="constrained")
    axes = figure.subplots(1, len(variants), squeeze=False)[0]
    for axis, variant in zip(axes, variants):
        for row in (r for r in rows if r["variant"] == variant):
            if row.get("curve"):
                steps, returns, _ = zip(*row["curve"])
                axis.plot(steps, returns, marker="o", label=f"seed {row['seed']}")
        axis.set_title(LABELS[variant])
        axis.set_xlabel("training samples" if variant in {**WHOLE_BUDGET_BC, **SHARE_BC}
                        else "env steps (after the clone)" if variant in FROM_CLONE else "env steps")
        axis.set_ylabel("selection-seed mean return")
        axis.grid(alpha=0.3)
        if axis.lines:  # a joined result's runs may be on another machine, their curves with them
            axis.legend(fontsize=8)
    with atomic_output(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110)


def _table(record: dict[str, Any]) -> str:
    lines = [
        f"{ENV_ID}, camera frames; each variant {record['minutes']:g} wall-clock minutes per seed on this "
        f"machine (expert recording included; BC variants clone within {record['bc_share']:.0%} of it), "
        f"{record['threads']} torch thread(s); {record['episodes']} protocol episodes per policy on the "
        f"reference backend ({record['eval_backend']})"
        + (f"; settings {', '.join(record['settings'])}." if record.get("settings") else "."), "",
        "| variant | seed | mean return | crash rate | mean speed [m/s] | wall [min] |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    expert = record["expert"]
    lines.append(f"| expert ({EXPERT}) | - | {expert['mean_return']:.2f} | {expert['crash_rate']:.2f} | "
                 f"{expert['mean_speed']:.1f} | - |")
    for row in record["runs"]:
        lines.append(f"| {LABELS[row['variant']]} | {row['seed']} | {row['mean_return']:.2f} | "
                     f"{row['crash_rate']:.2f} | {row['mean_speed']:.1f} | {sum(row['wall_s']) / 60:.1f} |")
    for variant, summary in record["summary"].items():
        lines.append(f"| **{LABELS[variant]}** (mean of {summary['seeds']}) | | **{summary['mean_return']:.2f}** | "
                     f"**{summary['crash_rate']:.2f}** | | |")
    for source in record.get("joined_from", []):
        machine = source.get("machine") or {}
        seeds = source["seeds"]
        where = f" on {machine['cpu']} ({machine.get('cpu_count', '?')} CPUs)" if machine.get("cpu") else ""
        lines.append(f"\nSeed{'s' * (len(seeds) > 1)} {', '.join(map(str, seeds))} from `{source['file']}`{where}: "
                     f"`{machine.get('command', '?')}`")
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    """Train every variant of every seed, evaluate on the protocol, write JSON, Markdown and curves."""
    if args.join:
        _check_outputs(args.out)
        record = {**_join(args.join), "machine": machine_info()}
        _write(record, args.out)
        return 0
    _check_args(args)
    rows: list[dict[str, Any]] = []
    for seed in args.seeds:
        for variant, trained in _train_seed(args, seed).items():
            run_dir = Path(trained["run_dirs"][-1])
            evaluation = _evaluate(str(run_dir), args.episodes, run_dir / BENCH_EVAL if args.reuse else None)
            rows.append(_with_curve({"variant": variant, "seed": seed, **trained, **evaluation}))
            print({k: v for k, v in rows[-1].items() if k != "curve"}, flush=True)
    # Never reused: a rule-based driver's result follows its code, which no stored file tracks (and 50
    # episodes of it take half a minute).
    expert = _evaluate(EXPERT, args.episodes)
    record = {"benchmark": "imitation", "env_id": ENV_ID, "expert": expert,
              "minutes": args.minutes, "bc_share": args.bc_share, "bc_samples": args.bc_samples,
              "threads": args.threads, "seeds": args.seeds, "settings": args.settings,
              "episodes": args.episodes, "eval_backend": load_protocol().reference_backend, "runs": rows,
              "summary": _summary(rows), "machine": machine_info()}
    _write(record, args.out)
    return 0


def _write(record: dict[str, Any], out: Path) -> None:
    write_json_atomic(out, record)
    write_text_atomic(out.with_suffix(".md"), _table(record))
    _curves(record["runs"], _curves_path(out))
    print(_table(record))
