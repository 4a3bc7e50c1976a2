"""What a network looks at: gradient saliency and Grad-CAM, overlaid on frames with OpenCV.

A *target* is a function from the model's output to one scalar per image: a class logit for
a classifier, the strongest heatmap peak of a class for the detector, the feature norm for a
bare encoder. Saliency is the absolute
input gradient of that scalar (max over channels); Grad-CAM (Selvaraju et al. 2017) weights a
layer's activation maps by their mean gradient, keeps the positive part and upsamples it.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from drivelab.core.errors import ConfigError
from drivelab.perception.centernet import CenterNet
from drivelab.perception.classify import Classifier
from drivelab.perception.encoders import ConvEncoder, frames_to_float

Target = Callable[[object], torch.Tensor]  # model output -> (B,) scores


def classifier_target(class_index: int) -> Target:
    """Score = the logit of ``class_index``."""
    return lambda logits: logits[:, class_index]


def detector_target(class_index: int = 0) -> Target:
    """Score = the highest heatmap logit of ``class_index`` (the most confident detection)."""
    return lambda outputs: outputs["heatmap"][:, class_index].flatten(1).max(dim=1).values


def feature_norm_target() -> Target:
    """Score = the L2 norm of an encoder's feature vector (what drives its output at all)."""
    return lambda features: features.norm(dim=1)


def _normalise(heat: np.ndarray) -> np.ndarray:
    peak = float(heat.max())
    return heat / peak if peak > 0 else np.zeros_like(heat)


def _as_input(frames: torch.Tensor | np.ndarray) -> torch.Tensor:
    return frames_to_float(torch.as_tensor(frames)).detach().clone().requires_grad_(True)


def saliency(model: nn.Module, frames: torch.Tensor | np.ndarray, target: Target) -> np.ndarray:
    """Input-gradient saliency.

    Args:
        model: Takes (B, C, H, W) frames in [0, 1].
        frames: (B, C, H, W) uint8 or float in [0, 1].
        target: Output -> (B,) scores.

    Returns:
        (B, H, W) float in [0, 1], each map divided by its maximum.
    """
    model.eval()
    inputs = _as_input(frames)
    target(model(inputs)).sum().backward()
    heat = inputs.grad.abs().amax(dim=1).numpy()  # (B, H, W)
    return np.stack([_normalise(h) for h in heat])


def grad_cam(model: nn.Module, layer: nn.Module, frames: torch.Tensor | np.ndarray, target: Target) -> np.ndarray:
    """Grad-CAM on ``layer``'s output (B, C', H', W'), bilinearly upsampled to (B, H, W) in [0, 1]."""
    model.eval()
    captured: dict[str, torch.Tensor] = {}

    def keep(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        output.retain_grad()
        captured["activation"] = output

    handle = layer.register_forward_hook(keep)
    try:
        inputs = _as_input(frames)
        target(model(inputs)).sum().backward()
    finally:
        handle.remove()
    activation = captured["activation"]
    weights = activation.grad.mean(dim=(2, 3), keepdim=True)  # (B, C', 1, 1)
    cam = F.relu((weights * activation).sum(dim=1, keepdim=True))  # (B, 1, H', W')
    cam = F.interpolate(cam, size=inputs.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    return np.stack([_normalise(h) for h in cam.detach().numpy()])


def cam_layer(model: nn.Module) -> nn.Module:
    """The layer Grad-CAM reads for drivelab's models: the last feature map before the heads."""
    if isinstance(model, Classifier):
        return model.encoder.trunk
    if isinstance(model, CenterNet):
        return model.backbone.fuse
    if isinstance(model, ConvEncoder):
        return model.trunk
    raise ConfigError(f"no Grad-CAM layer known for {type(model).__name__}; pass one explicitly")


def overlay(frame: np.ndarray, heat: np.ndarray, alpha: float = 0.5, scale: int = 4) -> np.ndarray:
    """Blend a JET-coloured heatmap (H, W) in [0, 1] onto an (H, W, C) uint8 frame; BGR, upscaled."""
    base = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR) if frame.shape[2] == 1 else cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
    colour = cv2.applyColorMap(np.clip(heat * 255.0, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)
    blended = cv2.addWeighted(base, 1.0 - alpha, colour, alpha, 0.0)
    return cv2.resize(blended, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)


def explain_panel(model: nn.Module, frame: np.ndarray, target: Target, scale: int = 4) -> np.ndarray:
    """Frame | saliency overlay | Grad-CAM overlay, side by side (BGR), for one (H, W, C) frame."""
    batch = torch.from_numpy(np.ascontiguousarray(frame.transpose(2, 0, 1)))[None]
    sal = saliency(model, batch, target)[0]
    cam = grad_cam(model, cam_layer(model), batch, target)[0]
    plain = overlay(frame, np.zeros(frame.shape[:2]), alpha=0.0, scale=scale)
    return np.concatenate([plain, overlay(frame, sal, scale=scale), overlay(frame, cam, scale=scale)], axis=1)
