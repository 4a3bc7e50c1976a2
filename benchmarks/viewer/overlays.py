"""Perception overlays drawn on the camera panel of a watched episode (detections, saliency)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from drivelab.core.errors import ConfigError

OVERLAYS = ("camera", "detections", "saliency")

# An overlay draws on the upscaled camera panel: (panel RGB (h, w, 3), camera frame stack (C, H, W)) -> panel
Overlay = Callable[[np.ndarray, np.ndarray], np.ndarray]


def parse_overlays(text: str) -> list[str]:
    """Overlay names from a comma-separated list; an unknown name is a ``ConfigError``."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in OVERLAYS]
    if unknown:
        raise ConfigError(f"unknown overlay {unknown[0]!r}; choose from {', '.join(OVERLAYS)}")
    return names


def _newest_frame_hwc(camera: np.ndarray) -> np.ndarray:
    """Newest frame of a (stack * C, H, W) observation as (H, W, C), C = 1 or 3 (the env's colour)."""
    channels = 3 if camera.shape[0] % 3 == 0 and camera.shape[0] >= 3 else 1
    return np.ascontiguousarray(camera[-channels:].transpose(1, 2, 0))


def detections_overlay(detector_path: str | Path, score_threshold: float = 0.3) -> Overlay:
    """Boxes of a perception detector on the newest camera frame."""
    from drivelab.perception.centernet import load_detector
    from drivelab.perception.detector_pipeline import predict_detections  # runs under torch.no_grad

    model = load_detector(detector_path)

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
        raise ConfigError("the saliency overlay needs a trained policy (a network); baselines have none")

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
        with torch.enable_grad():  # saliency needs gradients even if a caller runs under no_grad
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
            raise ConfigError("the detections overlay needs --detector PATH "
                              "(a `drivelab perception train-detector` checkpoint)")
        overlays.append(detections_overlay(detector))
    if "saliency" in names:
        overlays.append(saliency_overlay(policy))
    return overlays
