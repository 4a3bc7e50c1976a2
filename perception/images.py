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

from drivelab.perception.errors import DatasetError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


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


def resize_all(images: np.ndarray | list[np.ndarray], size_hw: tuple[int, int]) -> list[np.ndarray]:
    """Resize (H, W, C) images to ``size_hw`` with area interpolation (channels kept)."""
    height, width = size_hw
    out = []
    for image in images:
        resized = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        out.append(resized[:, :, None] if resized.ndim == 2 else resized)
    return out
