"""Image containers and decoding shared by every dataset reader.

Classification data is one (N, H, W, C) uint8 array with labels; detection data keeps one
file per sample with its boxes, decoded on demand. Problems raise :class:`DatasetError` naming
the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from drivelab.core.errors import ConfigError
from drivelab.perception.errors import DatasetError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
MAX_SIDE_PX = 4096  # largest image side a model or resize takes: more is a typo that would exhaust memory


@dataclass
class ClassificationDataset:
    """Images with single-label or multi-label targets.

    Attributes:
        images: (N, H, W, C) uint8.
        labels: (N,) int64 class indices, or (N, K) {0, 1} int64 for multi-label.
        class_names: Name of each class (single-label) or each output (multi-label).
        multi_label: Whether ``labels`` is (N, K) binary.
        files: Source file per image where there is one.
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    multi_label: bool = False
    files: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, indices: np.ndarray) -> "ClassificationDataset":
        """The samples at ``indices`` (same class names)."""
        files = tuple(self.files[i] for i in indices) if self.files else ()
        return ClassificationDataset(self.images[indices], self.labels[indices], self.class_names,
                                     self.multi_label, files)


@dataclass
class DetectionSample:
    """One image and its boxes (x1, y1, x2, y2 in pixels, x2/y2 exclusive) and class indices."""

    file_name: Path
    image_id: int
    width: int
    height: int
    boxes: np.ndarray  # (N, 4) float64 x1, y1, x2, y2 [px]
    classes: np.ndarray  # (N,) int64 index into class_names


@dataclass
class DetectionDataset:
    """Images with boxes; ``category_ids`` maps class indices back to COCO category ids."""

    samples: list[DetectionSample]
    class_names: tuple[str, ...]
    category_ids: tuple[int, ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.category_ids:
            self.category_ids = tuple(range(1, len(self.class_names) + 1))

    def __len__(self) -> int:
        return len(self.samples)

    def load_images(self, channels: int | None = None) -> np.ndarray:
        """Decode every image into one (N, H, W, C) uint8 array; all must share one size."""
        images = [read_image(sample.file_name, channels) for sample in self.samples]
        return stack_fixed_size(images, [str(sample.file_name) for sample in self.samples])


def read_file(path: str | os.PathLike, what: str, binary: bool = False) -> str | bytes:
    """The text (or bytes) of a dataset file.

    Raises:
        DatasetError: The file is missing, a folder, unreadable or (text) not UTF-8; names ``what`` and the path.
    """
    path = Path(path)
    try:
        return path.read_bytes() if binary else path.read_text(encoding="utf-8")
    except FileNotFoundError as error:
        raise DatasetError(f"{what} {path} does not exist") from error
    except IsADirectoryError as error:
        raise DatasetError(f"{what} {path} is a folder; give the file") from error
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"cannot read {what} {path}: {getattr(error, 'strerror', None) or error}") from error


def check_labels(labels: np.ndarray, num_classes: int, where: str) -> None:
    """Require single-label class indices in ``[0, num_classes)``; the first bad entry is named."""
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if bad.size:
        raise DatasetError(f"{where} entry {bad[0]} has label {labels[bad[0]]} out of range [0, {num_classes})")


def read_image(path: str | os.PathLike, channels: int | None = None) -> np.ndarray:
    """Decode an image file to (H, W, C) uint8, RGB order for colour.

    Args:
        path: Image file.
        channels: 1 (grayscale) or 3 (RGB) to convert; ``None`` keeps the file's own.

    Raises:
        DatasetError: The file is missing or cannot be decoded.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"image {path} does not exist")
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise DatasetError(f"image {path} is corrupt or not an image OpenCV can decode")
    if image.dtype != np.uint8:
        raise DatasetError(f"image {path} has dtype {image.dtype}; only 8-bit images are supported")
    if image.ndim == 2:
        image = image[:, :, None]
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    else:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if channels == 1 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[:, :, None]
    elif channels == 3 and image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return image


def stack_fixed_size(images: list[np.ndarray], names: list[str]) -> np.ndarray:
    """Stack (H, W, C) images into (N, H, W, C), naming the first image of another size."""
    if not images:
        raise DatasetError("no images to stack")
    for image, name in zip(images, names):
        if image.shape != images[0].shape:
            raise DatasetError(
                f"image {name} is {image.shape[1]}x{image.shape[0]}x{image.shape[2]} but {names[0]} is "
                f"{images[0].shape[1]}x{images[0].shape[0]}x{images[0].shape[2]} (WxHxC); this needs one "
                "fixed size: pass a resize (e.g. --resize 64x64)"
            )
    return np.stack(images)


def check_size(size_hw: tuple[int, int], what: str = "resize") -> tuple[int, int]:
    """Require an image size (H, W) with both sides in [1, MAX_SIDE_PX]; returns it as a tuple."""
    size = tuple(size_hw)
    if len(size) != 2 or not all(isinstance(v, int | np.integer) and 1 <= v <= MAX_SIDE_PX for v in size):
        raise ConfigError(f"{what} must be HxW with both sides in [1, {MAX_SIDE_PX}] px, got {size_hw!r}")
    return int(size[0]), int(size[1])


def parse_size(text: str, what: str = "--resize") -> tuple[int, int]:
    """``"32x32"`` -> ``(32, 32)`` (H, W), checked by :func:`check_size`."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError as error:
        raise ConfigError(f"{what} expects HxW, e.g. 32x32, got {text!r}") from error
    return check_size((height, width), what)


def resize_all(images: np.ndarray | list[np.ndarray], size_hw: tuple[int, int]) -> list[np.ndarray]:
    """Resize (H, W, C) images to ``size_hw`` with area interpolation (channels kept)."""
    height, width = check_size(size_hw)
    out = []
    for image in images:
        resized = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        out.append(resized[:, :, None] if resized.ndim == 2 else resized)
    return out
