"""MP4 and PNG writing (imageio-ffmpeg, OpenCV), atomically through ``drivelab.core.files``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import cv2
import imageio.v2 as imageio
import numpy as np

from drivelab.core.errors import OutputPathError
from drivelab.core.files import atomic_output, check_writable


def check_video_path(path: str | Path) -> Path:
    """Check, before any rendering, that ``path`` is a writable ``.mp4`` file path.

    Raises:
        OutputPathError: not an .mp4 name, a folder, or not writable.
    """
    path = check_writable(path)
    if path.suffix.lower() != ".mp4":
        raise OutputPathError(f"{path}: videos are written as MP4; give a path ending in .mp4")
    return path


def write_mp4(path: str | Path, frames: Iterable[np.ndarray], fps: float, quality: float = 8.0) -> Path:
    """Encode RGB uint8 frames (H, W, 3), all the same size, as H.264 MP4.

    Sizes are padded to even numbers as yuv420p requires. ``quality`` is imageio-ffmpeg's 0..10
    (10 best, largest). Returns the path.
    """
    path = check_writable(path)
    with atomic_output(path) as tmp:
        writer = imageio.get_writer(tmp, fps=fps, codec="libx264", macro_block_size=1, pixelformat="yuv420p",
                                    quality=quality)
        try:
            for frame in frames:
                h, w = frame.shape[:2]
                if h % 2 or w % 2:
                    frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)))
                writer.append_data(frame)
        finally:
            writer.close()
    return path


def shrink_clip(frames: Sequence[np.ndarray], max_width: int, max_frames: int) -> list[np.ndarray]:
    """At most ``max_frames`` frames, evenly spaced (first and last kept), at most ``max_width`` px wide.

    For small videos on a web page: a long episode plays faster instead of growing the file.
    """
    if not frames:
        return []
    keep = np.unique(np.linspace(0, len(frames) - 1, min(len(frames), max(max_frames, 1))).round().astype(int))
    height, width = frames[0].shape[:2]
    scale = min(1.0, max_width / width)
    size = (max(2, round(width * scale)), max(2, round(height * scale)))  # (W, H) for OpenCV
    return [frames[i] if scale == 1.0 else cv2.resize(frames[i], size, interpolation=cv2.INTER_AREA) for i in keep]


def write_png(path: str | Path, image: np.ndarray) -> Path:
    """Write an RGB (H, W, 3) or gray (H, W) uint8 image as PNG."""
    path = check_writable(path)
    bgr = image[..., ::-1] if image.ndim == 3 else image
    with atomic_output(path) as tmp:
        if not cv2.imwrite(str(tmp), np.ascontiguousarray(bgr)):
            raise OutputPathError(f"could not encode {path} as PNG")
    return path


def upscale(image: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour upscaling, so single pixels stay visible."""
    return cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_NEAREST)


def camera_to_rgb(frame: np.ndarray) -> np.ndarray:
    """One camera frame (C, H, W) with C = 1 or 3 -> RGB (H, W, 3)."""
    hwc = np.transpose(frame, (1, 2, 0))
    return np.repeat(hwc, 3, axis=2) if hwc.shape[2] == 1 else np.ascontiguousarray(hwc)
