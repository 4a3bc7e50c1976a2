"""`drivelab demo`: the main job end to end, through the same commands a user runs.

1. the batched environments: the scenario's rule-based driver on 64 envs with camera
   frames: throughput, episode metrics, a camera MP4 and a PNG of the frame stacks;
2. `drivelab train`: a small PPO agent on camera frames;
3. `drivelab eval --submit`: the agent and two baselines on held-out protocol seeds, into a
   leaderboard, with the agent's failed episodes replayed as MP4;
4. `drivelab watch --record`: a video of the agent driving (the first protocol seed);
5. the zoo: the trained agent shipped for the scenario (``zoo:ppo/<scenario>``), evaluated and
   submitted beside the small one, and a video of it and of one other scenario's zoo agent;
6. `drivelab leaderboard`: the ranked table (and a static HTML page).

Everything goes under --out (default runs/demo); the demo replaces its own earlier output.
Every argument is checked before any work starts.
"""

from __future__ import annotations

import argparse
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

import drivelab.envs as de
from drivelab.agents import zoo
from drivelab.agents.baselines import fitting_drivers, make_baseline
from drivelab.agents.configs import scenario_name
from drivelab.agents.protocol import PROTOCOL_SEED_BASE, TRAIN_SEED_LIMIT
from drivelab.benchmarks.viewer.video import camera_to_rgb, upscale, write_mp4, write_png
from drivelab.core.errors import ConfigError
from drivelab.core.files import check_writable, ensure_dir, write_json_atomic

Dispatch = Callable[[Sequence[str]], int]

ENV_DEMO_ENVS = 64
ENV_DEMO_STEPS = 300
EPISODE_KEYS = ("return", "length", "crashed", "success", "mean_speed", "distance_m", "lane_changes",
                "right_lane_share")


def configure(parser: argparse.ArgumentParser, command: str) -> None:
    """Arguments of ``drivelab demo``."""
    parser.description = __doc__.split("\n\n", 1)[1]
    parser.add_argument("--env", default="drivelab/highway-fast-v0", help="scenario id (default %(default)s)")
    parser.add_argument("--train-steps", type=int, default=30_000,
                        help="PPO env steps to train, at least 1 (default %(default)s)")
    parser.add_argument("--episodes", type=int, default=20,
                        help="evaluation episodes per leaderboard entry, at least 1 (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0,
                        help=f"seed of the env demo and of training, 0..{TRAIN_SEED_LIMIT - 1} (default %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("runs/demo"),
                        help="output folder, created if missing (default %(default)s)")
    parser.add_argument("--env-only", action="store_true", help="stop after the environment demo (step 1)")
    parser.set_defaults(func=run)


def _step(title: str) -> None:
    print(f"\n=== {title} ===", flush=True)


def _check_args(args: argparse.Namespace) -> None:
    """Refuse bad arguments before any work (and before anything is written)."""
    if args.train_steps < 1:
        raise ConfigError(f"--train-steps must be at least 1, got {args.train_steps}")
    if args.episodes < 1:
        raise ConfigError(f"--episodes must be at least 1, got {args.episodes}")
    if not 0 <= args.seed < TRAIN_SEED_LIMIT:
        raise ConfigError(f"--seed must lie in 0..{TRAIN_SEED_LIMIT - 1} (training seeds; evaluation uses "
                          f"the protocol's held-out seeds), got {args.seed}")
    de.get_scenario(args.env)  # an unknown id names the closest one
    check_writable(args.out, folder=True)


def run_env_demo(env_id: str, num_envs: int, steps: int, seed: int, out: Path) -> int:
    """Drive the batched backend with the rule-based driver; print throughput and metrics; save MP4 + PNG."""
    env = de.make_vec(env_id, num_envs=num_envs, observation="camera", seed=seed,
                      camera={"color": "rgb", "ground_truth": True})
    try:
        print(f"{env_id}: backend {env.backend}, {num_envs} envs, camera {env.single_observation_space.shape}")
        # the scenario's rule-based driver; random actions where none fits (intersection-v1)
        policy = make_baseline("rules" if fitting_drivers(env_id) else "random", env_id, seed=seed)
        policy.check_env(env)
        obs, _ = env.reset()
        policy.reset(np.ones(num_envs, bool))
        video, episodes = [], []
        start = time.perf_counter()
        for _ in range(steps):
            obs, _, terminated, truncated, infos = env.step(policy.act(obs, env))
            policy.reset(terminated | truncated)  # same-step autoreset: those envs start anew
            if "_driving" in infos:
                episodes += [{k: v[i].item() for k, v in infos["driving"].items()}
                             for i in np.flatnonzero(infos["_driving"])]
            video.append(upscale(camera_to_rgb(obs[0, -3:]), 4))
        elapsed = time.perf_counter() - start
        dt = env.dt
    finally:
        env.close()
    print(f"throughput: {steps * num_envs / elapsed:,.0f} env-steps/s (camera, RGB, ground truth on, "
          f"driver {policy.name})")
    if episodes:
        summary = {k: float(np.mean([e[k] for e in episodes])) for k in EPISODE_KEYS}
        print(f"{len(episodes)} episodes: " + ", ".join(f"{k} {v:.3g}" for k, v in summary.items()))
    mp4 = write_mp4(out / "camera.mp4", video, fps=1.0 / dt * 3)
    stacks = [np.concatenate([camera_to_rgb(obs[b, 3 * s : 3 * s + 3]) for s in range(4)], 1) for b in range(4)]
    png = write_png(out / "frames.png", upscale(np.concatenate(stacks, 0), 2))
    write_json_atomic(out / "episodes.json", episodes)
    print(f"wrote {mp4}, {png} (rows: 4 envs; columns: frame stack oldest -> newest)")
    return 0


def _commands(args: argparse.Namespace, run_dir: Path, db: Path) -> list[tuple[str | None, list[str]]]:
    """The demo's steps 2-5 as ``drivelab`` command lines, with the title printed before each step."""
    out, env, episodes = args.out, args.env, str(args.episodes)
    eval_every = max(args.train_steps // 3, 1)
    return [
        ("2. train a small PPO agent on camera frames",
         ["train", "--env", env, "--algo", "ppo", "--steps", str(args.train_steps), "--seed", str(args.seed),
          "--run-dir", str(run_dir), "--force", "--threads", "1", "--no-progress",
          "--set", f"eval_every_steps={eval_every}", "--set", f"checkpoint_every_steps={eval_every}",
          "--set", "eval_episodes=20"]),
        ("3. evaluate it and two baselines under drivelab-eval-v1, submit to the leaderboard",
         ["eval", "--policy", str(run_dir), "--env", env, "--episodes", episodes, "--submit",
          "--name", "demo-ppo", "--db", str(db), "--record-failures", str(out / "failures"),
          "--max-failure-videos", "1"]),
        (None, ["eval", "--policy", "baseline:idm", "--env", env, "--episodes", episodes,
                "--submit", "--name", "idm", "--db", str(db)]),
        (None, ["eval", "--policy", "baseline:idle", "--env", env, "--episodes", episodes,
                "--submit", "--name", "idle", "--db", str(db)]),
        ("4. watch the agent drive (MP4)",
         ["watch", "--policy", str(run_dir), "--env", env, "--seed", str(PROTOCOL_SEED_BASE),
          "--record", str(out / "agent.mp4")]),
        *_zoo_commands(args, db),
        ("6. the leaderboard",
         ["leaderboard", "--db", str(db), "--format", "html", "--out", str(out / "leaderboard")]),
        (None, ["leaderboard", "--db", str(db), "--format", "table"]),
    ]


def _zoo_commands(args: argparse.Namespace, db: Path) -> list[tuple[str | None, list[str]]]:
    """Step 5: the zoo's agent for the demo's scenario (if shipped) and one other scenario's."""
    shipped = {agent.scenario: agent for agent in zoo.agents() if agent.algo == "ppo"}
    scenario = scenario_name(args.env)
    commands: list[tuple[str | None, list[str]]] = []
    if scenario in shipped:
        label = shipped[scenario].label
        commands += [
            (f"5. the zoo's trained agent ({label}): evaluate, submit, watch",
             ["eval", "--policy", label, "--env", args.env, "--episodes", str(args.episodes), "--submit",
              "--name", f"zoo-ppo-{scenario}", "--db", str(db)]),
            (None, ["watch", "--policy", label, "--seed", str(PROTOCOL_SEED_BASE),
                    "--record", str(args.out / f"zoo-{scenario}.mp4")]),
        ]
    other = next((agent for name, agent in sorted(shipped.items()) if name != scenario), None)
    if other is not None:
        commands.append((None if commands else f"5. the zoo's trained agent ({other.label})",
                         ["watch", "--policy", other.label, "--seed", str(PROTOCOL_SEED_BASE),
                          "--record", str(args.out / f"zoo-{other.scenario}.mp4")]))
    return commands


def run(args: argparse.Namespace) -> int:
    """Check the arguments, run the env demo, then steps 2-5 through ``args.dispatch``."""
    _check_args(args)
    dispatch: Dispatch = args.dispatch
    out = ensure_dir(args.out)
    _step(f"1. environments: {ENV_DEMO_ENVS} batched envs, camera frames, the rule-based driver")
    run_env_demo(args.env, ENV_DEMO_ENVS, ENV_DEMO_STEPS, args.seed, out)
    if args.env_only:
        return 0
    run_dir, db = out / "ppo", out / "leaderboard.db"
    for stale in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        stale.unlink(missing_ok=True)  # the demo's own leaderboard starts afresh
    shutil.rmtree(out / "failures", ignore_errors=True)
    for title, argv in _commands(args, run_dir, db):
        if title:
            _step(title)
        print("$ drivelab " + " ".join(argv), flush=True)
        status = dispatch(argv)
        if status != 0:
            return status
    return 0
