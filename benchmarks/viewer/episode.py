"""Watching episodes: the simulated scene with every intermediate simulation frame, a HUD, and
beside it the camera frame the agent sees (with perception overlays when asked).

The scene comes from highway-env's own renderer on the reference backend. highway-env renders
the frames *between* policy steps through its video-recorder hook
(``set_record_video_wrapper``): with ``simulation_frequency / policy_frequency`` simulation
steps per action, every one becomes a video frame, so the video is smooth at real time x2.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

import drivelab.envs as de
from drivelab.benchmarks.video import camera_to_rgb, write_mp4

log = logging.getLogger(__name__)

META_ACTIONS = ("LANE_LEFT", "IDLE", "LANE_RIGHT", "FASTER", "SLOWER")
OVERLAYS = ("camera", "detections", "saliency")
HUD_HEIGHT_PX = 22
# SDL drivers that open no window: "offscreen" (what we use headless) and the other,
# black-frame driver some setups still export; either way there is no screen to show.
HEADLESS_SDL_DRIVERS = ("offscreen", "dummy")

# An overlay draws on the upscaled camera panel: (panel RGB (h, w, 3), camera frame stack (C, H, W)) -> panel
Overlay = Callable[[np.ndarray, np.ndarray], np.ndarray]


class _FrameCollector:
    """Stands in for gymnasium's RecordVideo: highway-env calls ``_capture_frame`` between steps."""

    def __init__(self, env: Any) -> None:
        self.env = env
        self.frames: list[np.ndarray] = []
        self.frames_per_sec = 15

    def _capture_frame(self) -> None:
        self.frames.append(self.env.render())


@dataclass
class WatchedEpisode:
    """One watched episode: composed video frames and its driving metrics."""

    seed: int
    frames: list[np.ndarray] = field(default_factory=list)
    driving: dict[str, float] = field(default_factory=dict)
    fps: float = 10.0


def display_available() -> bool:
    """A window can be opened: an X or Wayland display and a real SDL video driver."""
    has_display = bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return has_display and os.environ.get("SDL_VIDEODRIVER", "") not in HEADLESS_SDL_DRIVERS


def _action_label(action: np.ndarray, space: Any) -> str:
    if np.ndim(action) == 0 and int(action) < len(META_ACTIONS) and getattr(space, "n", 0) in (3, 5):
        names = META_ACTIONS if space.n == 5 else ("SLOWER", "IDLE", "FASTER")
        return names[int(action)]
    return np.array2string(np.asarray(action, float), precision=2)


def compose(scene: np.ndarray, camera: np.ndarray | None, hud: str, overlays: list[Overlay]) -> np.ndarray:
    """Scene (H, W, 3) + camera panel beside it + HUD strip below -> one RGB video frame."""
    height, width = scene.shape[:2]
    parts = [scene]
    if camera is not None:
        newest = camera_to_rgb(camera[-(3 if camera.shape[0] % 3 == 0 and camera.shape[0] >= 3 else 1):])
        factor = max(1, min(height // newest.shape[0], width // newest.shape[1]))
        panel = cv2.resize(newest, None, fx=factor, fy=factor, interpolation=cv2.INTER_NEAREST)
        for overlay in overlays:
            panel = overlay(panel, camera)
        pad = np.zeros((height, panel.shape[1] + 8, 3), np.uint8)
        pad[: panel.shape[0], 8:] = panel[:height]
        parts.append(pad)
    frame = np.concatenate(parts, axis=1)
    strip = np.zeros((HUD_HEIGHT_PX, frame.shape[1], 3), np.uint8)
    cv2.putText(strip, hud, (6, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return np.concatenate([frame, strip], axis=0)


def watch_episode(
    policy: Any,
    env_id: str,
    seed: int,
    observation: str = "camera",
    camera: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
    overlays: list[Overlay] | None = None,
    show_camera: bool = True,
    on_frame: Callable[[np.ndarray], None] | None = None,
) -> WatchedEpisode:
    """Run one episode of ``policy`` on the reference backend from ``seed`` and compose its video.

    Args:
        policy: a ``drivelab.agents`` Policy (``act(observation, env)`` and ``reset(mask)``).
        env_id: scenario id.
        seed: the episode's seed (same seed, same episode).
        observation, camera, config: how the env is built (a trained policy's spec says).
        overlays: drawn on the camera panel.
        show_camera: put the agent's camera frame beside the scene.
        on_frame: called with every composed frame as it is made (a live window).
    """
    env = de.make_vec(env_id, num_envs=1, backend="highway-env", observation=observation, camera=camera,
                  config=config, render_mode="rgb_array")
    highway = env.sim.envs[0].unwrapped
    collector = _FrameCollector(env.sim.envs[0])
    highway.set_record_video_wrapper(collector)
    obs, _ = env.reset(seed=[seed])
    if hasattr(policy, "reset"):
        policy.reset(np.ones(1, bool))
    episode = WatchedEpisode(seed=seed, fps=2.0 * highway.config["simulation_frequency"])
    collector._capture_frame()  # first frame; also arms highway-env's automatic rendering
    step, total = 0, 0.0
    hud = f"{env_id}  seed {seed}  step 0"

    def flush(camera_obs: np.ndarray | None, text: str) -> None:
        for scene in collector.frames:
            frame = compose(scene, camera_obs if show_camera and observation == "camera" else None, text, overlays or [])
            episode.frames.append(frame)
            if on_frame is not None:
                on_frame(frame)
        collector.frames.clear()

    flush(obs[0], hud)
    while True:
        action = policy.act(obs, env=env)
        camera_seen = obs[0]
        obs, reward, terminated, truncated, infos = env.step(action)
        collector._capture_frame()  # the frame at the end of the step
        step += 1
        total += float(reward[0])
        ego = highway.vehicle
        hud = (f"step {step}  speed {ego.speed:5.1f} m/s  action {_action_label(np.asarray(action)[0], env.single_action_space)}"
               f"  reward {float(reward[0]):.2f}  return {total:.1f}  lane {ego.lane_index[2] if ego.lane_index else '-'}")
        flush(camera_seen, hud)
        if terminated[0] or truncated[0]:
            episode.driving = {k: v[0].item() for k, v in infos["driving"].items()}
            break
    env.close()
    return episode


def record_episode(path: str | Path, episode: WatchedEpisode) -> Path:
    """Write a watched episode as MP4."""
    return write_mp4(path, episode.frames, fps=episode.fps)


@contextlib.contextmanager
def live_window(title: str) -> Iterator[Callable[[np.ndarray], None]]:
    """A pygame window; yields a callable that shows one RGB frame (closing the window stops)."""
    import pygame

    pygame.init()
    clock = pygame.time.Clock()
    screen = None

    def show(frame: np.ndarray) -> None:
        nonlocal screen
        if screen is None:
            screen = pygame.display.set_mode((frame.shape[1], frame.shape[0]))
            pygame.display.set_caption(title)
        for event in pygame.event.get():
            if event.type == pygame.QUIT:
                raise KeyboardInterrupt
        screen.blit(pygame.surfarray.make_surface(frame.swapaxes(0, 1)), (0, 0))
        pygame.display.flip()
        clock.tick(15)

    try:
        yield show
    finally:
        pygame.quit()


def _newest_frame_hwc(camera: np.ndarray) -> np.ndarray:
    """Newest frame of a (stack * C, H, W) observation as (H, W, C), C = 1 or 3 (the env's colour)."""
    channels = 3 if camera.shape[0] % 3 == 0 and camera.shape[0] >= 3 else 1
    return np.ascontiguousarray(camera[-channels:].transpose(1, 2, 0))


def detections_overlay(detector_path: str | Path, score_threshold: float = 0.3) -> Overlay:
    """Boxes of a perception detector on the newest camera frame."""
    import torch

    from drivelab.perception.detect import load_detector
    from drivelab.perception.detection import predict_detections

    model = load_detector(detector_path)
    torch.set_grad_enabled(False)

    def draw(panel: np.ndarray, camera: np.ndarray) -> np.ndarray:
        frame = _newest_frame_hwc(camera)
        found = predict_detections(model, frame[None], score_threshold=score_threshold)[0]
        factor = panel.shape[1] / frame.shape[1]
        panel = panel.copy()
        for box, score in zip(found["boxes"], found["scores"]):
            x1, y1, x2, y2 = (np.asarray(box) * factor).round().astype(int)
            cv2.rectangle(panel, (x1, y1), (x2 - 1, y2 - 1), (255, 60, 60), 1)
            cv2.putText(panel, f"{score:.2f}", (x1, max(8, y1 - 2)), cv2.FONT_HERSHEY_SIMPLEX, 0.3, (255, 60, 60), 1)
        return panel

    return draw


def saliency_overlay(policy: Any) -> Overlay:
    """Input-gradient saliency of the policy's chosen action score, on the newest camera frame."""
    import torch

    from drivelab.perception.explain import saliency

    sb3_policy = getattr(policy, "sb3_policy", None)
    if sb3_policy is None:
        raise de.ConfigError("the saliency overlay needs a trained policy (a network); baselines have none")

    def action_scores(frames01: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) in [0, 1] -> (B, A)
        observation = frames01 * 255.0  # SB3 normalises image observations itself
        if hasattr(sb3_policy, "q_net"):
            return sb3_policy.q_net(observation)
        return sb3_policy.get_distribution(observation).distribution.logits

    class _Scores(torch.nn.Module):
        def forward(self, frames01: torch.Tensor) -> torch.Tensor:
            return action_scores(frames01)

    model = _Scores()

    def draw(panel: np.ndarray, camera: np.ndarray) -> np.ndarray:
        with torch.enable_grad():
            heat = saliency(model, camera[None], lambda scores: scores.max(dim=1).values)[0]  # (H, W)
        heat = cv2.resize(heat.astype(np.float32), (panel.shape[1], panel.shape[0]), interpolation=cv2.INTER_NEAREST)
        colour = cv2.applyColorMap(np.clip(heat * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
        return cv2.addWeighted(panel, 0.55, colour, 0.45, 0.0)

    return draw


def build_overlays(names: list[str], policy: Any, detector: str | Path | None = None) -> list[Overlay]:
    """Overlays for the camera panel by name (``camera`` is the panel itself and adds nothing)."""
    overlays: list[Overlay] = []
    if "detections" in names:
        if detector is None:
            raise de.ConfigError("the detections overlay needs --detector PATH (a `drivelab perception train-detector` checkpoint)")
        overlays.append(detections_overlay(detector))
    if "saliency" in names:
        overlays.append(saliency_overlay(policy))
    return overlays
