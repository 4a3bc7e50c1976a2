"""Watching an episode: the simulated scene with every intermediate simulation frame, a HUD, and
beside it the camera frame the agent sees (with perception overlays when asked).

The episode is played by the one episode runner, ``drivelab.agents.evaluation.evaluate``, so a
watched episode is exactly the evaluated one with the same seed; the viewer only draws, from the
runner's ``on_step`` hook. The scene comes from highway-env's own renderer on the reference
backend. highway-env renders the frames *between* policy steps through its video-recorder hook
(``set_record_video_wrapper``): with ``simulation_frequency / policy_frequency`` simulation
steps per action, every one becomes a video frame, so the video is smooth at real time x2.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from gymnasium import spaces

import drivelab.envs as de
from drivelab.agents.evaluation import evaluate
from drivelab.agents.policies import Policy
from drivelab.benchmarks.viewer.overlays import Overlay
from drivelab.benchmarks.viewer.video import camera_to_rgb, write_mp4
from drivelab.envs.actions import action_label

HUD_HEIGHT_PX = 22
REFERENCE_BACKEND = "highway-env"  # the only backend with highway-env's scene renderer


@dataclass
class WatchedEpisode:
    """One watched episode: composed video frames and its driving metrics."""

    seed: int
    frames: list[np.ndarray] = field(default_factory=list)  # RGB (H, W, 3) each
    driving: dict[str, float] = field(default_factory=dict)  # the env's infos["driving"] at the end
    fps: float = 10.0


class _SceneFrames:
    """Stands in for gymnasium's RecordVideo: highway-env calls ``_capture_frame`` between steps."""

    def __init__(self, env: Any) -> None:
        self.env = env
        self.frames: list[np.ndarray] = []
        self.frames_per_sec = 15  # set by highway-env's set_record_video_wrapper

    def _capture_frame(self) -> None:
        self.frames.append(self.env.render())

    def take(self) -> list[np.ndarray]:
        frames, self.frames = self.frames, []
        return frames


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


def _action_text(action: np.ndarray, space: spaces.Space) -> str:
    if isinstance(space, spaces.Discrete):
        return action_label(int(action), int(space.n))
    return np.array2string(np.asarray(action, float), precision=2)


def watch_episode(
    policy: Policy,
    env_id: str,
    seed: int,
    observation: str = "camera",
    camera: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
    overlays: list[Overlay] | None = None,
    show_camera: bool = True,
    on_frame: Callable[[np.ndarray], None] | None = None,
    deterministic: bool = True,
) -> WatchedEpisode:
    """Play one episode of ``policy`` on the reference backend from ``seed`` and compose its video.

    Args:
        policy: any ``drivelab.agents`` Policy.
        env_id: scenario id.
        seed: the episode's seed (same seed, same episode as ``evaluate`` with that seed).
        observation, camera, config: how the env is built (a trained policy's spec says).
        overlays: drawn on the camera panel.
        show_camera: put the agent's camera frame beside the scene.
        on_frame: called with every composed frame as it is made (a live window).
        deterministic: act greedily (as protocol evaluation does).

    Returns:
        The composed frames and the episode's driving metrics.
    """
    show_camera = show_camera and observation == "camera"
    overlays = overlays or []
    episode = WatchedEpisode(seed=seed)
    scene: _SceneFrames | None = None
    last: dict[str, Any] = {}  # the camera frame the policy saw before the step, the return and step so far

    def seen(observation_batch: Any) -> np.ndarray | None:  # the camera frame the panel shows, if any
        return observation_batch[0] if show_camera else None

    def flush(camera_seen: np.ndarray | None, hud: str) -> None:
        for image in scene.take():
            frame = compose(image, camera_seen if show_camera else None, hud, overlays)
            episode.frames.append(frame)
            if on_frame is not None:
                on_frame(frame)

    def make_env(num_envs: int) -> Any:
        nonlocal scene
        vec = de.make_vec(env_id, num_envs=1, backend=REFERENCE_BACKEND, observation=observation, camera=camera,
                          config=config, render_mode="rgb_array")
        try:
            highway = vec.sim.envs[0]
            scene = _SceneFrames(highway)
            highway.unwrapped.set_record_video_wrapper(scene)
            episode.fps = 2.0 * highway.unwrapped.config["simulation_frequency"]
            # The runner resets with this same seed, which recreates this very scene (same seed,
            # same episode): draw its first frame now. Rendering once also arms highway-env's
            # drawing of the frames between policy steps.
            first_observation, _ = vec.reset(seed=[seed])
            scene._capture_frame()
            last.update(camera=seen(first_observation), total=0.0, step=0)
            flush(seen(first_observation), f"{env_id}  seed {seed}  step 0")
        except BaseException:
            vec.close()
            raise
        return vec

    def on_step(vec: Any, observation_now: np.ndarray, actions: np.ndarray, infos: Mapping[str, Any]) -> None:
        last["step"] += 1
        action = _action_text(actions[0], vec.single_action_space)
        if bool(infos.get("_driving", np.zeros(1, bool))[0]):
            # The episode ended and the env has already started the next one (same-step autoreset):
            # hold the last simulated frame rather than draw the new episode's first.
            episode.driving = {key: values[0].item() for key, values in infos["driving"].items()}
            if scene.frames:
                scene.frames.append(scene.frames[-1])
            else:
                scene._capture_frame()
            total = episode.driving["return"]
            outcome = "crashed" if episode.driving["crashed"] else "success" if episode.driving["success"] else "ended"
            hud = f"step {last['step']}  action {action}  {outcome}  return {total:.1f}"
        else:
            scene._capture_frame()  # the frame at the end of the step
            total = float(vec.tracker.ret[0])  # the env's running return [sum of rewards]
            ego = vec.sim.envs[0].unwrapped.vehicle
            hud = (f"step {last['step']}  speed {ego.speed:5.1f} m/s  action {action}"
                   f"  reward {total - last['total']:.2f}  return {total:.1f}"
                   f"  lane {ego.lane_index[2] if ego.lane_index else '-'}")
        flush(last["camera"], hud)
        last.update(camera=seen(observation_now), total=total)

    evaluate(policy, env_id, seeds=[seed], backend=REFERENCE_BACKEND, num_envs=1, make_env=make_env,
             deterministic=deterministic, on_step=on_step)
    return episode


def record_episode(path: str | Path, episode: WatchedEpisode) -> Path:
    """Write a watched episode as MP4 (atomically)."""
    return write_mp4(path, episode.frames, fps=episode.fps)
