"""`drivelab watch`: play a policy's episodes in a window, or record them as MP4."""

from __future__ import annotations

import argparse
from pathlib import Path

from drivelab.benchmarks import protocol, watch
from drivelab.envs.errors import ConfigError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("watch", help="watch a policy drive: pygame window, or MP4 when recording/headless")
    parser.add_argument("--policy", required=True, help="policy export (folder/.json/.safetensors), run dir, or baseline:NAME")
    parser.add_argument("--env", default=None, help="scenario id (default: the policy's own, else drivelab/highway-fast-v0)")
    parser.add_argument("--episodes", type=int, default=1, help="episodes to play (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first episode; episode k uses seed + k")
    parser.add_argument("--record", type=Path, default=None, help="write MP4 here (episode k > 0 gets a -k suffix)")
    parser.add_argument("--overlay", default="camera", help=f"comma-separated, of {', '.join(watch.OVERLAYS)}")
    parser.add_argument("--detector", default=None, help="detector checkpoint for the detections overlay")
    parser.add_argument("--trust-pickle", action="store_true", help="allow pickled checkpoints you made yourself")
    parser.set_defaults(func=run_watch)


def _overlays(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in watch.OVERLAYS]
    if unknown:
        raise ConfigError(f"unknown overlay {unknown[0]!r}; choose from {', '.join(watch.OVERLAYS)}")
    return names


def episode_path(record: Path, episode: int) -> Path:
    return record if episode == 0 else record.with_name(f"{record.stem}-{episode}{record.suffix}")


def run_watch(args: argparse.Namespace) -> int:
    names = _overlays(args.overlay)
    if args.episodes < 1:
        raise ConfigError("--episodes must be at least 1")
    policy, source = protocol.load_policy(args.policy, args.env or "drivelab/highway-fast-v0", trust_pickle=args.trust_pickle)
    spec = dict(getattr(policy, "spec", {}) or source.spec or {})
    env_id = args.env or spec.get("env_id") or "drivelab/highway-fast-v0"
    observation = spec.get("observation", "camera")
    camera = spec.get("camera") if observation == "camera" else None
    overlays = watch.build_overlays(names, policy, args.detector)
    record = args.record
    if record is None and not watch.display_available():
        record = Path("runs/watch") / f"{env_id.split('/')[-1]}-seed{args.seed}.mp4"
    for k in range(args.episodes):
        seed = args.seed + k
        if record is None:
            with watch.live_window(f"drivelab watch {env_id} seed {seed}") as show:
                episode = watch.watch_episode(policy, env_id, seed, observation, camera, overlays=overlays, on_frame=show)
        else:
            episode = watch.watch_episode(policy, env_id, seed, observation, camera, overlays=overlays)
            path = watch.record_episode(episode_path(record, k), episode)
            print(f"wrote {path} ({len(episode.frames)} frames at {episode.fps:g} fps)")
        d = episode.driving
        print(f"seed {seed}: return {d['return']:.2f}, length {d['length']}, crashed {d['crashed']}, success {d['success']}")
    return 0
