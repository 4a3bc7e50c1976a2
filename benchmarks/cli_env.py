"""`drivelab demo` and `drivelab bench env`: the environment demo and throughput benchmark."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import drivelab.envs as de
from drivelab.benchmarks import bench_env
from drivelab.benchmarks.video import camera_to_rgb, upscale, write_mp4, write_png

RESULTS = Path("benchmarks/results")


def register(subparsers: argparse._SubParsersAction) -> None:
    """No top-level command of its own: ``drivelab demo`` (cli_demo) calls ``run_env_demo``."""


def register_bench(bench: argparse._SubParsersAction) -> None:
    env = bench.add_parser("env", help="env-steps/s: highway-env vs drivelab batched (kinematics, camera)")
    env.add_argument("--scenarios", nargs="+", default=["highway-fast", "highway"])
    env.add_argument("--num-envs", type=int, default=256, help="batch size of the drivelab runs (default %(default)s)")
    env.add_argument("--seconds", type=float, default=10.0, help="per drivelab measurement")
    env.add_argument("--baseline-seconds", type=float, default=20.0, help="per highway-env measurement")
    env.add_argument("--out", type=Path, default=RESULTS / "env_throughput.json")
    env.set_defaults(func=lambda a: bench_env.main(tuple(a.scenarios), a.num_envs, a.seconds, a.baseline_seconds, a.out) and 0)


def _cruise_actions(states: de.VehicleBatch) -> np.ndarray:
    """A simple baseline driver: slow down behind a close leader, otherwise speed up."""
    same_lane = (states.lane_index == states.lane_index[:, :1]) & states.present
    gap = np.where(same_lane[:, 1:], states.x[:, 1:] - states.x[:, :1], np.inf)
    gap = np.where(gap > 0, gap, np.inf).min(axis=1)  # (B,) distance to the leader [m]
    return np.where(gap < 25.0, 4, np.where(gap > 50.0, 3, 1))  # SLOWER, FASTER, IDLE


def run_env_demo(env_id: str, num_envs: int, steps: int, seed: int, out: Path) -> int:
    """Roll out a simple driver on the batched backend; print throughput and metrics; save MP4 + PNG."""
    args = argparse.Namespace(env=env_id, num_envs=num_envs, steps=steps, seed=seed, out=out)
    env = de.make_vec(args.env, num_envs=args.num_envs, observation="camera", seed=args.seed,
                  camera={"color": "rgb", "ground_truth": True})
    print(f"{args.env}: backend {env.backend}, {args.num_envs} envs, camera {env.single_observation_space.shape}")
    obs, _ = env.reset()
    video, episodes = [], []
    start = time.perf_counter()
    for _ in range(args.steps):
        actions = _cruise_actions(env.vehicle_states())
        obs, _, _, _, infos = env.step(actions)
        if "_driving" in infos:
            mask = infos["_driving"]
            episodes += [{k: v[i].item() for k, v in infos["driving"].items()} for i in np.flatnonzero(mask)]
        video.append(upscale(camera_to_rgb(obs[0, -3:]), 4))
    elapsed = time.perf_counter() - start
    print(f"throughput: {args.steps * args.num_envs / elapsed:,.0f} env-steps/s (camera, RGB, ground truth on)")
    if episodes:
        keys = ("return", "length", "crashed", "success", "mean_speed", "distance_m", "lane_changes", "right_lane_share")
        summary = {k: float(np.mean([e[k] for e in episodes])) for k in keys}
        print(f"{len(episodes)} episodes: " + ", ".join(f"{k} {v:.3g}" for k, v in summary.items()))
    args.out.mkdir(parents=True, exist_ok=True)
    mp4 = write_mp4(args.out / "camera.mp4", video, fps=1.0 / env.dt * 3)
    grid = np.concatenate([np.concatenate([camera_to_rgb(obs[b, 3 * s: 3 * s + 3]) for s in range(4)], 1) for b in range(4)], 0)
    png = write_png(args.out / "frames.png", upscale(grid, 2))
    (args.out / "episodes.json").write_text(json.dumps(episodes, indent=1))
    print(f"wrote {mp4}, {png} (rows: 4 envs; columns: frame stack oldest -> newest)")
    env.close()
    return 0
