"""Pretrained or fresh encoders as Stable-Baselines3 features extractors.

A checkpoint written by this package (classifier, detector or bare encoder) names its encoder
in ``spec["encoder"]`` and says where the encoder's tensors live in ``spec["encoder_state_map"]``
(state-dict prefix -> encoder prefix), so any of them yields a :class:`ConvEncoder`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import torch
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from drivelab.core.errors import CheckpointError, ConfigError
from drivelab.perception.checkpoints import load_state_strict, model_spec, read_checkpoint, save_checkpoint, spec_config
from drivelab.perception.encoders import (
    TRUNK_NAMES,
    ConvEncoder,
    EncoderSpec,
    build_encoder,
    frames_to_float,
    random_shift,
)

ENCODER_KINDS = ("encoder", "classifier", "detector")


def save_encoder(path: str | os.PathLike, encoder: ConvEncoder) -> Path:
    """Save a bare encoder (weights + spec) as a checkpoint."""
    return save_checkpoint(path, encoder, model_spec("encoder", None, encoder.spec, {"": ""}))


def load_encoder(
    path: str | os.PathLike, load_weights: bool = True, features_dim: int | None = None
) -> ConvEncoder:
    """Rebuild the encoder inside a classifier, detector or encoder checkpoint.

    Args:
        path: Checkpoint file.
        load_weights: ``False`` rebuilds the same architecture with random weights (the
            baseline for "pretrained vs random-init" comparisons).
        features_dim: Output size; when it differs from the checkpoint's, only the trunk is
            loaded and the linear head starts fresh.

    Raises:
        CheckpointError: Not an encoder-bearing checkpoint, or tensors that do not fit.
    """
    spec, state = read_checkpoint(path, kinds=ENCODER_KINDS)
    encoder_spec = spec_config(EncoderSpec, spec, "encoder", path)
    state_map = spec.get("encoder_state_map")
    if not isinstance(state_map, dict) or not all(isinstance(v, str) for v in [*state_map, *state_map.values()]):
        raise CheckpointError(f"checkpoint {path} ({spec.get('kind')}) carries no valid encoder_state_map")
    if features_dim is not None and features_dim != encoder_spec.features_dim:
        encoder_spec = dataclasses.replace(encoder_spec, features_dim=features_dim)
    encoder = ConvEncoder(encoder_spec)
    if not load_weights:
        return encoder
    mapped: dict[str, torch.Tensor] = {}
    for source_prefix, target_prefix in state_map.items():
        for key, tensor in state.items():
            if key.startswith(source_prefix):
                mapped[target_prefix + key[len(source_prefix):]] = tensor
    own = encoder.state_dict()
    mapped = {key: value for key, value in mapped.items() if key in own}
    head_fits = all(
        key in mapped and mapped[key].shape == own[key].shape for key in own if key.startswith("head.")
    )
    if not head_fits:  # a detector backbone, or another features_dim: fresh linear head
        mapped.update({key: value for key, value in own.items() if key.startswith("head.")})
    load_state_strict(encoder, mapped, path)
    return encoder


class EncoderExtractor(BaseFeaturesExtractor):
    """Stable-Baselines3 features extractor around a drivelab encoder.

    With stacked observations (e.g. 4 grayscale frames) and an encoder made for fewer
    channels (e.g. one trained on single frames), the encoder runs on each frame and a linear
    layer fuses the per-frame features.

    Args:
        observation_space: Image Box space (C, H, W).
        encoder: ``"nature"``, ``"fast"``, ``"centernet"`` (random init) or a checkpoint path.
        features_dim: Output size.
        freeze: Keep the encoder's weights fixed (the fusion layer still trains).
        augment_shift_px: Random-shift augmentation during training (0 = off).
        frame_channels: Channels per frame for a fresh encoder (``None`` = all channels at
            once); a checkpoint fixes it to its own input channels.
        load_weights: ``False`` rebuilds a checkpoint's architecture with random weights.
    """

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        encoder: str = "fast",
        features_dim: int = 256,
        freeze: bool = False,
        augment_shift_px: int = 0,
        frame_channels: int | None = None,
        load_weights: bool = True,
    ) -> None:
        channels, height, width = observation_space.shape
        if encoder in TRUNK_NAMES:
            per_frame = frame_channels or channels
            # The detector trunk keeps stride 4: pool its map like a loaded detector backbone.
            extra = {"pool_hw": (4, 8)} if encoder == "centernet" else {}
            backbone = build_encoder(encoder, per_frame, height, width, features_dim, **extra)
        else:
            backbone = load_encoder(encoder, load_weights=load_weights)
            if (backbone.spec.height, backbone.spec.width) != (height, width):
                raise ConfigError(
                    f"encoder {encoder} expects {backbone.spec.height}x{backbone.spec.width} frames, "
                    f"the observations are {height}x{width}"
                )
        per_frame = backbone.spec.in_channels
        if channels % per_frame:
            raise ConfigError(
                f"observations have {channels} channels, not a multiple of the encoder's {per_frame}"
            )
        super().__init__(observation_space, features_dim)
        self.backbone = backbone
        self.frames = channels // per_frame
        self.frozen = freeze
        self.pretrained = encoder not in TRUNK_NAMES and load_weights
        self.augment_shift_px = augment_shift_px
        fused_dim = self.frames * backbone.features_dim
        self.fuse: nn.Module = (
            nn.Identity() if fused_dim == features_dim and self.frames == 1
            else nn.Sequential(nn.Linear(fused_dim, features_dim), nn.ReLU())
        )
        if freeze:
            self.backbone.requires_grad_(False)
            self.backbone.eval()

    def apply(self, fn: Callable[[nn.Module], None]) -> "EncoderExtractor":
        """``nn.Module.apply`` that leaves a pretrained backbone alone.

        Stable-Baselines3's on-policy algorithms (PPO, A2C; ``ortho_init=True`` by default) call
        ``features_extractor.apply(init_weights)``, which would overwrite pretrained weights.
        """
        for name, child in self.named_children():
            if not (name == "backbone" and self.pretrained):
                child.apply(fn)
        fn(self)
        return self

    def train(self, mode: bool = True) -> "EncoderExtractor":
        super().train(mode)
        if self.frozen:  # frozen batch-norm statistics stay those of pretraining
            self.backbone.eval()
        return self

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        frames = frames_to_float(observations)
        if self.training and self.augment_shift_px > 0:
            frames = random_shift(frames, self.augment_shift_px)
        batch, channels, height, width = frames.shape
        per_frame = frames.reshape(batch * self.frames, channels // self.frames, height, width)
        features = self.backbone(per_frame).reshape(batch, -1)  # (B, frames * D)
        return self.fuse(features)
