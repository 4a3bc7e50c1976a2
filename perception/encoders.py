"""CNN encoders that turn uint8 camera frames into feature vectors.

Three convolutional trunks share one wrapper, :class:`ConvEncoder`:

- ``"nature"``: the Nature-DQN CNN (8x8/4, 4x4/2, 3x3/1), the usual RL baseline.
- ``"fast"``: four 3x3 stride-2 convolutions, about half the multiply-adds of ``"nature"``
  on 64x128 frames; the CPU-friendly default.
- ``"centernet"``: the detector's backbone (stride 4, batch-normalised, with a stride-8 context
  branch), so a trained detector's backbone can serve as an RL encoder.

Every encoder takes ``(B, C, H, W)`` frames, uint8 (scaled by 1/255 here) or float already in
[0, 1] (what Stable-Baselines3 passes after its own image normalisation).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from drivelab.core.config import bounded, from_mapping
from drivelab.core.errors import ConfigError
from drivelab.perception.images import MAX_SIDE_PX

TRUNK_NAMES = ("nature", "fast", "centernet")
# Upper bounds of encoder sizes: far above any real use, low enough that a typo fails fast
# instead of exhausting memory.
MAX_CHANNELS = 64
MAX_FEATURES_DIM = 1 << 16
MAX_WIDTH_MULT = 512


@dataclass(frozen=True)
class EncoderSpec:
    """Everything that rebuilds an encoder.

    Attributes:
        name: Trunk architecture, one of ``TRUNK_NAMES``.
        in_channels: Input channels (frames x colour channels).
        height: Input height [px].
        width: Input width [px].
        features_dim: Length of the output feature vector.
        width_mult: Channel width of the ``"centernet"`` trunk (ignored by the others).
        pool_hw: Adaptive average pooling of the trunk's map before the linear head, or
            ``None`` to flatten it as is.
    """

    name: str = "fast"
    in_channels: int = bounded(1, low=1, high=MAX_CHANNELS)
    height: int = bounded(64, low=1, high=MAX_SIDE_PX)
    width: int = bounded(128, low=1, high=MAX_SIDE_PX)
    features_dim: int = bounded(256, low=1, high=MAX_FEATURES_DIM)
    width_mult: int = bounded(16, low=1, high=MAX_WIDTH_MULT)
    pool_hw: tuple[int, int] | None = bounded(None, low=1, high=MAX_SIDE_PX)

    def __post_init__(self) -> None:
        if self.name not in TRUNK_NAMES:
            raise ConfigError(f"unknown encoder {self.name!r}; valid encoders: {', '.join(TRUNK_NAMES)}")
        if min(self.in_channels, self.height, self.width, self.features_dim, self.width_mult) < 1:
            raise ConfigError(f"encoder sizes must be positive, got {self}")
        if self.name == "nature" and min(self.height, self.width) < 36:
            raise ConfigError(
                f"the nature encoder needs frames of at least 36x36 px, got {self.height}x{self.width}; "
                "resize the images or use encoder 'fast'"
            )


def nature_trunk(in_channels: int) -> nn.Sequential:
    """Nature-DQN convolutions (Mnih et al. 2015): (B, C, H, W) -> (B, 64, H', W')."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 32, kernel_size=8, stride=4),
        nn.ReLU(),
        nn.Conv2d(32, 64, kernel_size=4, stride=2),
        nn.ReLU(),
        nn.Conv2d(64, 64, kernel_size=3, stride=1),
        nn.ReLU(),
    )


def fast_trunk(in_channels: int) -> nn.Sequential:
    """Four 3x3 stride-2 convolutions: (B, C, H, W) -> (B, 64, H/16, W/16)."""
    layers: list[nn.Module] = []
    for c_in, c_out in ((in_channels, 16), (16, 32), (32, 64), (64, 64)):
        layers += [nn.Conv2d(c_in, c_out, kernel_size=3, stride=2, padding=1), nn.ReLU()]
    return nn.Sequential(*layers)


def _conv_bn(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(),
    )


class CenterNetTrunk(nn.Module):
    """Detector backbone: (B, C, H, W) -> (B, 2w, H/4, W/4), plus the stride-2 map on request.

    Vehicles are about 10x4 px, so the net stays shallow and keeps stride 4; the stride-8
    branch adds context (road edges, neighbours) and is upsampled back.
    """

    def __init__(self, in_channels: int, width_mult: int = 16) -> None:
        super().__init__()
        w = width_mult
        self.stem = _conv_bn(in_channels, w)  # stride 1
        self.down2 = _conv_bn(w, w, stride=2)  # stride 2
        self.down4 = nn.Sequential(_conv_bn(w, 2 * w, stride=2), _conv_bn(2 * w, 2 * w))  # stride 4
        self.context = nn.Sequential(_conv_bn(2 * w, 2 * w, stride=2), _conv_bn(2 * w, 2 * w))  # stride 8
        self.fuse = _conv_bn(2 * w, 2 * w)
        self.out_channels = 2 * w
        self.skip_channels = w

    def forward_levels(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the stride-2 map (B, w, H/2, W/2) and the stride-4 map (B, 2w, H/4, W/4)."""
        s2 = self.down2(self.stem(frames))
        s4 = self.down4(s2)
        s8 = self.context(s4)
        s4 = s4 + F.interpolate(s8, size=s4.shape[-2:], mode="nearest")
        return s2, self.fuse(s4)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.forward_levels(frames)[1]


def build_trunk(spec: EncoderSpec) -> nn.Module:
    """The convolutional trunk named by ``spec``."""
    if spec.name == "nature":
        return nature_trunk(spec.in_channels)
    if spec.name == "fast":
        return fast_trunk(spec.in_channels)
    return CenterNetTrunk(spec.in_channels, spec.width_mult)


def frames_to_float(frames: torch.Tensor) -> torch.Tensor:
    """uint8 frames -> float in [0, 1]; float frames are passed through unchanged."""
    if frames.dtype == torch.uint8:
        return frames.float() / 255.0
    return frames.float()


class ConvEncoder(nn.Module):
    """Trunk + (optional pooling) + linear layer: frames (B, C, H, W) -> features (B, D).

    Frames enter the trunk channels-last; with ``module.to(memory_format=torch.channels_last)``
    (what the training and loading functions do) convolutions take oneDNN's NHWC path, about
    twice as fast on CPU here. Parameters stay in the default format otherwise, because
    Stable-Baselines3's orthogonal initialisation needs contiguous weights.
    """

    def __init__(self, spec: EncoderSpec) -> None:
        super().__init__()
        self.spec = spec
        self.trunk = build_trunk(spec)
        self.pool = nn.AdaptiveAvgPool2d(spec.pool_hw) if spec.pool_hw else nn.Identity()
        with torch.no_grad():
            probe = torch.zeros(1, spec.in_channels, spec.height, spec.width)
            flat_dim = self.pool(self.trunk(probe)).flatten(1).shape[1]
        self.head = nn.Sequential(nn.Linear(flat_dim, spec.features_dim), nn.ReLU())
        self.features_dim = spec.features_dim

    def feature_map(self, frames: torch.Tensor) -> torch.Tensor:
        """The trunk's last feature map (B, C', H', W') (what Grad-CAM looks at)."""
        return self.trunk(frames_to_float(frames).contiguous(memory_format=torch.channels_last))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.feature_map(frames)).flatten(1))  # (B, D)


def build_encoder(
    name: str = "fast",
    in_channels: int = 1,
    height: int = 64,
    width: int = 128,
    features_dim: int = 256,
    **extra: object,
) -> ConvEncoder:
    """Build a randomly initialised encoder; ``extra`` may set other :class:`EncoderSpec` fields.

    Raises:
        ConfigError: An unknown option (naming the valid ones), or a value of the wrong type or range.
    """
    values = {"name": name, "in_channels": in_channels, "height": height, "width": width,
              "features_dim": features_dim, **extra}
    return ConvEncoder(from_mapping(EncoderSpec, values, "encoder config"))


def random_shift(frames: torch.Tensor, pad_px: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """DrQ-style augmentation: pad by replication and crop each frame at a random offset.

    Args:
        frames: (B, C, H, W) float frames.
        pad_px: Largest shift [px].
        generator: Optional RNG for reproducibility.

    Returns:
        (B, C, H, W) shifted frames; shifts are whole pixels drawn per sample.
    """
    batch, _, height, width = frames.shape
    padded = F.pad(frames, (pad_px,) * 4, mode="replicate")
    shifts = torch.randint(0, 2 * pad_px + 1, (batch, 2), generator=generator, device=frames.device)
    rows = torch.arange(height, device=frames.device)[None, :] + shifts[:, :1]  # (B, H)
    cols = torch.arange(width, device=frames.device)[None, :] + shifts[:, 1:]  # (B, W)
    index_rows = rows[:, None, :, None].expand(-1, frames.shape[1], -1, padded.shape[-1])
    cropped_rows = torch.gather(padded, 2, index_rows)  # (B, C, H, W + 2p)
    index_cols = cols[:, None, None, :].expand(-1, frames.shape[1], height, -1)
    return torch.gather(cropped_rows, 3, index_cols)  # (B, C, H, W)
