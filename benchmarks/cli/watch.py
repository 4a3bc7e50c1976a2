"""`drivelab watch`: play a policy's episodes in a window, or record them as MP4.

With a display (X or Wayland, and an SDL video driver that opens windows) and no ``--record``,
the episodes play in a pygame window; otherwise each is written as an MP4.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import drivelab.envs as de
from drivelab.agents import env_kwargs_from_spec, load_policy
from drivelab.benchmarks.viewer.episode import record_episode, watch_episode
from drivelab.benchmarks.viewer.overlays import OVERLAYS, build_overlays, parse_overlays
from drivelab.benchmarks.viewer.video import check_video_path
from drivelab.benchmarks.viewer.window import display_available, live_window
from drivelab.core.config import apply_overrides, parse_overrides
from drivelab.core.errors import ConfigError
from drivelab.envs.vector import MAX_SEED

log = logging.getLogger(__name__)

DEFAULT_ENV = "drivelab/highway-fast-v0"
HEADLESS_FOLDER = Path("runs/watch")  # where MP4s go when there is no display and no --record


def configure(parser: argparse.ArgumentParser, command: str) -> None:
    """Arguments of ``drivelab watch``."""
    parser.description = "watch a policy drive.\n\n" + __doc__.split("\n\n", 1)[1]
    parser.add_argument("--policy", required=True,
                        help="policy export (folder, policy.json, policy.safetensors), run folder, or baseline:NAME "
                             "(random, idle, idm)")
    parser.add_argument("--env", default=None, help=f"scenario id (default: the policy's own, else {DEFAULT_ENV})")
    parser.add_argument("--episodes", type=int, default=1, help="episodes to play, at least 1 (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0,
                        help=f"seed of the first episode, 0..{MAX_SEED}; episode k uses seed + k (default %(default)s)")
    parser.add_argument("--record", type=Path, default=None,
                        help="write an .mp4 here instead of opening a window (episode k > 0 gets a -k suffix); "
                             f"headless default: {HEADLESS_FOLDER}/SCENARIO-seedN.mp4")
    parser.add_argument("--overlay", default="camera",
                        help=f"what to draw on the camera panel, comma-separated, of {', '.join(OVERLAYS)} "
                             "(default %(default)s)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="highway-env config override for the watched episodes, over the policy's own, "
                             "e.g. duration=10 (repeatable)")
    parser.add_argument("--detector", default=None, help="detector checkpoint for the detections overlay")
    parser.add_argument("--trust-pickle", action="store_true",
                        help="allow pickled checkpoints (SB3 .zip) you made yourself; unpickling can run code")
    parser.set_defaults(func=run)


def episode_path(record: Path, episode: int) -> Path:
    """The MP4 of episode ``episode``: ``record`` itself for the first, ``NAME-k.mp4`` after."""
    return record if episode == 0 else record.with_name(f"{record.stem}-{episode}{record.suffix}")


def _check_seeds(seed: int, episodes: int) -> None:
    if episodes < 1:
        raise ConfigError(f"--episodes must be at least 1, got {episodes}")
    if not 0 <= seed or seed + episodes - 1 > MAX_SEED:
        raise ConfigError(f"--seed must lie in 0..{MAX_SEED - episodes + 1} for {episodes} episode(s) "
                          f"(episode k uses seed + k); got {seed}")


def run(args: argparse.Namespace) -> int:
    """Check every argument, load the policy, then play (window) or record (MP4) each episode."""
    names = parse_overlays(args.overlay)
    _check_seeds(args.seed, args.episodes)
    overrides = parse_overrides(args.set)
    if args.env is not None:
        de.get_scenario(args.env)  # an unknown id names the closest one
    record: Path | None = args.record
    if record is not None:
        check_video_path(record)
    policy = load_policy(args.policy, args.env or DEFAULT_ENV, trust_pickle=args.trust_pickle)
    spec = dict(policy.source.spec or {})
    env_id = args.env or spec.get("env_id") or DEFAULT_ENV
    env_kwargs = env_kwargs_from_spec(spec)
    config = apply_overrides(env_kwargs.get("config") or {}, overrides) or None
    observation = env_kwargs.get("observation", "camera")
    if record is None and not display_available():
        record = check_video_path(HEADLESS_FOLDER / f"{env_id.split('/')[-1]}-seed{args.seed}.mp4")
        log.info("no display (DISPLAY unset or a windowless SDL driver): recording to %s", record)
    overlays = build_overlays(names, policy, args.detector)
    for k in range(args.episodes):
        seed = args.seed + k
        if record is None:
            with live_window(f"drivelab watch {env_id} seed {seed}") as show:
                episode = watch_episode(policy, env_id, seed, observation, env_kwargs.get("camera"),
                                        config, overlays=overlays, on_frame=show)
        else:
            episode = watch_episode(policy, env_id, seed, observation, env_kwargs.get("camera"),
                                    config, overlays=overlays)
            path = record_episode(episode_path(record, k), episode)
            print(f"wrote {path} ({len(episode.frames)} frames at {episode.fps:g} fps)")
        d = episode.driving
        print(f"seed {seed}: return {d['return']:.2f}, length {d['length']}, crashed {d['crashed']}, "
              f"success {d['success']}", flush=True)
    return 0
