"""The detector model: a CenterNet-style network, its training targets and loss, and decoding.

Training, evaluation and drawing live in ``detector_pipeline``; this module is what inference
needs (``load_detector`` + ``decode``).

CenterNet-style single-stage detector: heatmap + size + offset heads, decoded in torch.

Each object is a peak in a per-class heatmap at its centre cell (output stride 2 or 4), with
its box size [px] and sub-cell centre offset regressed at that cell (Zhou et al., "Objects as
Points", 2019). Decoding keeps 3x3 max-pool peaks, so no NMS is needed for well-separated
objects; :func:`nms` is there for crowded scenes.

Boxes are ``(x1, y1, x2, y2)`` in pixels with x2/y2 exclusive, the camera's convention.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from drivelab.core.config import bounded
from drivelab.core.errors import ConfigError
from drivelab.perception.checkpoints import load_model, model_spec
from drivelab.perception.encoders import (
    MAX_CHANNELS,
    MAX_SIDE_PX,
    MAX_WIDTH_MULT,
    CenterNetTrunk,
    EncoderSpec,
    frames_to_float,
)

HEATMAP_PRIOR = 0.01  # initial foreground probability: keeps the focal loss stable at step 0


@dataclass(frozen=True)
class DetectorConfig:
    """What rebuilds a detector.

    Attributes:
        class_names: Detection classes (``drivelab.envs.CLASS_NAMES`` for camera frames).
        in_channels: Image channels.
        height: Image height [px].
        width: Image width [px].
        width_mult: Backbone width (stride-4 maps have ``2 * width_mult`` channels).
        output_stride: 2 or 4; vehicles are ~10x4 px, so stride 4 still gives each its own cell.
        head_channels: Hidden channels of each head.
    """

    class_names: tuple[str, ...] = ("car", "ego")
    in_channels: int = bounded(1, low=1, high=MAX_CHANNELS)
    height: int = bounded(64, low=8, high=MAX_SIDE_PX)
    width: int = bounded(128, low=8, high=MAX_SIDE_PX)
    width_mult: int = bounded(16, low=1, high=MAX_WIDTH_MULT)
    output_stride: Literal[2, 4] = 4
    head_channels: int = bounded(32, low=1, high=4096)

    def __post_init__(self) -> None:
        if self.output_stride not in (2, 4):
            raise ConfigError(f"output_stride must be 2 or 4, got {self.output_stride}")
        if min(self.in_channels, self.width_mult, self.head_channels) < 1:
            raise ConfigError(f"detector sizes must be positive, got {self}")
        if self.height < 8 or self.width < 8 or self.height % 8 or self.width % 8:
            raise ConfigError(f"detector frames must be multiples of 8 px, got {self.height}x{self.width}")
        if not self.class_names:
            raise ConfigError("a detector needs at least one class name")

    @property
    def output_hw(self) -> tuple[int, int]:
        return self.height // self.output_stride, self.width // self.output_stride

    def encoder_spec(self) -> EncoderSpec:
        """The backbone as an RL encoder (pooled to 4x8 before a fresh linear layer)."""
        return EncoderSpec("centernet", self.in_channels, self.height, self.width, 256, self.width_mult, (4, 8))


def _head(in_channels: int, hidden: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, hidden, 3, padding=1), nn.ReLU(), nn.Conv2d(hidden, out_channels, 1))


class CenterNet(nn.Module):
    """frames (B, C, H, W) -> heatmap logits (B, K, h, w), size (B, 2, h, w) [px], offset (B, 2, h, w) [cells]."""

    def __init__(self, config: DetectorConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = CenterNetTrunk(config.in_channels, config.width_mult)
        channels = self.backbone.out_channels
        self.lateral = (
            nn.Conv2d(self.backbone.skip_channels, channels, 1) if config.output_stride == 2 else None
        )
        self.heatmap = _head(channels, config.head_channels, len(config.class_names))
        self.size = _head(channels, config.head_channels, 2)
        self.offset = _head(channels, config.head_channels, 2)
        nn.init.constant_(self.heatmap[-1].bias, float(np.log(HEATMAP_PRIOR / (1 - HEATMAP_PRIOR))))

    def features(self, frames: torch.Tensor) -> torch.Tensor:
        """Shared map the heads read, (B, 2w, H/stride, W/stride)."""
        s2, s4 = self.backbone.forward_levels(frames_to_float(frames).contiguous(memory_format=torch.channels_last))
        if self.lateral is None:
            return s4
        return F.relu(self.lateral(s2) + F.interpolate(s4, size=s2.shape[-2:], mode="nearest"))

    def forward(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        shared = self.features(frames)
        return {"heatmap": self.heatmap(shared), "size": self.size(shared), "offset": self.offset(shared)}


def checkpoint_spec(config: DetectorConfig, **extra: Any) -> dict[str, Any]:
    """The json spec stored with a detector's weights (the backbone doubles as an encoder)."""
    return model_spec("detector", config, config.encoder_spec(), {"backbone.": "trunk."}, **extra)


def load_detector(path: str | os.PathLike) -> CenterNet:
    """Rebuild a detector from its checkpoint (CheckpointError for any other model)."""
    return load_model(path, "detector", DetectorConfig, CenterNet)


@dataclass(frozen=True)
class TargetConfig:
    """How boxes become heatmap targets.

    Attributes:
        gaussian_alpha: Gaussian sigma = alpha * box side / 6 (in cells), per axis (TTFNet).
        min_sigma_cells: Lower bound on sigma: a 4 px high car at stride 4 spans one cell.
    """

    gaussian_alpha: float = bounded(0.54, low=0, low_open=True, high=100)
    min_sigma_cells: float = bounded(0.5, low=0, low_open=True, high=100)


def encode_targets(
    boxes: np.ndarray, classes: np.ndarray, config: DetectorConfig, target: TargetConfig = TargetConfig()
) -> dict[str, np.ndarray]:
    """Training targets of one image.

    Args:
        boxes: (N, 4) x1, y1, x2, y2 [px].
        classes: (N,) class indices.

    Returns:
        ``heatmap`` (K, h, w), ``size`` (2, h, w) [px], ``offset`` (2, h, w) [cells], ``mask`` (h, w).
    """
    out_h, out_w = config.output_hw
    stride = config.output_stride
    heatmap = np.zeros((len(config.class_names), out_h, out_w), np.float32)
    size = np.zeros((2, out_h, out_w), np.float32)
    offset = np.zeros((2, out_h, out_w), np.float32)
    mask = np.zeros((out_h, out_w), np.float32)
    ys, xs = np.mgrid[0:out_h, 0:out_w]
    for (x1, y1, x2, y2), cls in zip(np.asarray(boxes, np.float64), np.asarray(classes)):
        width_px, height_px = x2 - x1, y2 - y1
        if width_px <= 0 or height_px <= 0:
            continue
        centre_x, centre_y = (x1 + x2) / 2 / stride, (y1 + y2) / 2 / stride  # [cells]
        cell_x = int(np.clip(np.floor(centre_x), 0, out_w - 1))
        cell_y = int(np.clip(np.floor(centre_y), 0, out_h - 1))
        sigma_x = max(target.min_sigma_cells, target.gaussian_alpha * width_px / stride / 6)
        sigma_y = max(target.min_sigma_cells, target.gaussian_alpha * height_px / stride / 6)
        blob = np.exp(-((xs - cell_x) ** 2 / (2 * sigma_x**2) + (ys - cell_y) ** 2 / (2 * sigma_y**2)))
        heatmap[cls] = np.maximum(heatmap[cls], blob)
        size[:, cell_y, cell_x] = (width_px, height_px)
        offset[:, cell_y, cell_x] = (centre_x - cell_x, centre_y - cell_y)
        mask[cell_y, cell_x] = 1.0
    return {"heatmap": heatmap, "size": size, "offset": offset, "mask": mask}


def focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss (alpha 2, beta 4), summed and divided by #objects."""
    probability = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    positive = target.eq(1.0).float()
    positive_loss = -torch.log(probability) * (1 - probability) ** 2 * positive
    negative_loss = -torch.log(1 - probability) * probability**2 * (1 - target) ** 4 * (1 - positive)
    return (positive_loss.sum() + negative_loss.sum()) / positive.sum().clamp(min=1.0)


def detection_loss(
    outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor], size_weight: float = 0.1
) -> dict[str, torch.Tensor]:
    """Focal heatmap loss + masked L1 on size [px] and offset [cells]; returns each term and ``total``."""
    mask = targets["mask"].unsqueeze(1)  # (B, 1, h, w)
    count = mask.sum().clamp(min=1.0)
    heatmap = focal_loss(outputs["heatmap"], targets["heatmap"])
    size = (F.l1_loss(outputs["size"], targets["size"], reduction="none") * mask).sum() / count
    offset = (F.l1_loss(outputs["offset"], targets["offset"], reduction="none") * mask).sum() / count
    return {"heatmap": heatmap, "size": size, "offset": offset, "total": heatmap + size_weight * size + offset}


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression; returns kept indices (by descending score).

    Args:
        boxes: (N, 4) x1, y1, x2, y2.
        scores: (N,).
    """
    order = torch.argsort(scores, descending=True, stable=True)
    boxes = boxes[order]
    areas = (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)
    top_left = torch.maximum(boxes[:, None, :2], boxes[None, :, :2])
    bottom_right = torch.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(dim=2)
    iou = inter / (areas[:, None] + areas[None, :] - inter).clamp(min=1e-9)  # (N, N)
    keep = torch.ones(len(boxes), dtype=torch.bool)
    for i in range(len(boxes)):
        if keep[i]:
            suppressed = iou[i] > iou_threshold
            suppressed[: i + 1] = False
            keep &= ~suppressed
    return order[keep]


@torch.no_grad()
def decode(
    outputs: dict[str, torch.Tensor],
    stride: int,
    max_detections: int = 100,
    score_threshold: float = 0.05,
    nms_iou: float | None = None,
) -> list[dict[str, torch.Tensor]]:
    """Turn head outputs into boxes per image.

    Returns:
        One dict per image: ``boxes`` (N, 4) x1, y1, x2, y2 [px], ``scores`` (N,), ``classes`` (N,).
    """
    heat = torch.sigmoid(outputs["heatmap"])  # (B, K, h, w)
    batch, num_classes, out_h, out_w = heat.shape
    peaks = heat * (F.max_pool2d(heat, 3, stride=1, padding=1) == heat)
    top = min(max_detections, num_classes * out_h * out_w)
    scores, flat = peaks.reshape(batch, -1).topk(top, dim=1)  # (B, top)
    classes = flat // (out_h * out_w)
    cell = flat % (out_h * out_w)
    cell_y, cell_x = (cell // out_w).float(), (cell % out_w).float()
    size = outputs["size"].reshape(batch, 2, -1).gather(2, cell[:, None, :].expand(-1, 2, -1))  # (B, 2, top)
    offset = outputs["offset"].reshape(batch, 2, -1).gather(2, cell[:, None, :].expand(-1, 2, -1))
    centre_x, centre_y = (cell_x + offset[:, 0]) * stride, (cell_y + offset[:, 1]) * stride
    half_w, half_h = size[:, 0].clamp(min=0) / 2, size[:, 1].clamp(min=0) / 2
    boxes = torch.stack([centre_x - half_w, centre_y - half_h, centre_x + half_w, centre_y + half_h], dim=2)
    results = []
    for i in range(batch):
        keep = scores[i] >= score_threshold
        item = {"boxes": boxes[i][keep], "scores": scores[i][keep], "classes": classes[i][keep]}
        if nms_iou is not None and len(item["scores"]):
            # Offsetting boxes by class keeps NMS within each class.
            shifted = item["boxes"] + item["classes"][:, None].float() * 1e4
            kept = nms(shifted, item["scores"], nms_iou)
            item = {key: value[kept] for key, value in item.items()}
        results.append(item)
    return results
