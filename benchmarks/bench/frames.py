"""`drivelab bench frames`: one PNG per scenario of what the camera sees, for the README and review.

For every registered scenario: 4 envs after a few steps of the rule-free driver (IDLE, or zero
for continuous actions), RGB camera frames in the scenario's default alignment, upscaled x3,
with the ground-truth boxes drawn on; written to ``benchmarks/results/frames/<name>.png``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

import drivelab.envs as de
from drivelab.core.errors import ConfigError
from drivelab.core.files import atomic_output, check_writable

RESULTS = Path("benchmarks/results/frames")
SCALE = 3


def configure(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("--env", action="append", default=None, help="only this scenario id (repeatable)")
    parser.add_argument("--steps", type=int, default=3, help="steps before the snapshot (default %(default)s)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the PNGs")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    env_ids = args.env or list(de.ENV_IDS)
    for env_id in env_ids:
        de.get_scenario(env_id)  # unknown ids fail before anything is drawn
    if not 0 <= args.steps <= 1000:
        raise ConfigError(f"--steps must be in [0, 1000], got {args.steps}")
    check_writable(args.out, folder=True)
    for env_id in env_ids:
        path = args.out / f"{env_id.split('/')[1]}.png"
        with atomic_output(path) as tmp:  # the temporary keeps the .png suffix cv2 needs
            cv2.imwrite(str(tmp), snapshot(env_id, args.steps)[..., ::-1])
        print(f"wrote {path}")
    return 0


def snapshot(env_id: str, steps: int, num_envs: int = 4) -> np.ndarray:
    """Newest camera frames of ``num_envs`` envs side by side, with their boxes: (H, W, 3) RGB."""
    env = de.make_vec(env_id, num_envs=num_envs, observation="camera", seed=0,
                      camera={"color": "rgb", "ground_truth": True})
    obs, infos = env.reset()
    space = env.single_action_space
    for _ in range(steps):
        actions = (np.ones(num_envs, np.int64) if hasattr(space, "n")
                   else np.zeros((num_envs, *space.shape), np.float32))
        obs, _, _, _, infos = env.step(actions)
    panels = []
    for b in range(num_envs):
        frame = np.ascontiguousarray(obs[b, -3:].transpose(1, 2, 0))
        frame = cv2.resize(frame, None, fx=SCALE, fy=SCALE, interpolation=cv2.INTER_NEAREST)
        for x1, y1, x2, y2 in infos["ground_truth"][b]["boxes"]:
            cv2.rectangle(frame, (int(x1) * SCALE, int(y1) * SCALE), (int(x2) * SCALE - 1, int(y2) * SCALE - 1),
                          (255, 60, 60), 1)
        panels.append(np.pad(frame, ((2, 2), (2, 2), (0, 0)), constant_values=255))
    label = f"{env_id}  backend {env.backend}  align {env.camera_config.align}"
    env.close()
    grid = np.concatenate([np.concatenate(panels[:2], 1), np.concatenate(panels[2:], 1)], 0)
    header = np.full((24, grid.shape[1], 3), 255, np.uint8)
    cv2.putText(header, label, (6, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([header, grid], 0)
