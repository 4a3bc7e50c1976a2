"""MP4 and PNG writing (imageio-ffmpeg, OpenCV), always through a temporary file and a rename."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import cv2
import imageio.v2 as imageio
import numpy as np

from drivelab.envs.errors import DrivelabError


def _check_writable(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DrivelabError(f"cannot create the folder for {path}: {error.strerror}") from None
    if not os.access(path.parent, os.W_OK):
        raise DrivelabError(f"cannot write {path}: its folder is not writable")


def write_mp4(path: str | Path, frames: Iterable[np.ndarray], fps: float) -> Path:
    """Encode RGB uint8 frames (H, W, 3), all the same size, as H.264 MP4.

    Sizes are padded to even numbers as yuv420p requires. Returns the path.
    """
    path = Path(path)
    _check_writable(path)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    writer = imageio.get_writer(tmp, fps=fps, codec="libx264", macro_block_size=1, pixelformat="yuv420p", quality=8)
    try:
        for frame in frames:
            h, w = frame.shape[:2]
            if h % 2 or w % 2:
                frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)))
            writer.append_data(frame)
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
    writer.close()
    os.replace(tmp, path)
    return path


def write_png(path: str | Path, image: np.ndarray) -> Path:
    """Write an RGB (H, W, 3) or gray (H, W) uint8 image as PNG."""
    path = Path(path)
    _check_writable(path)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    bgr = image[..., ::-1] if image.ndim == 3 else image
    if not cv2.imwrite(str(tmp), np.ascontiguousarray(bgr)):
        raise DrivelabError(f"could not encode {path}")
    os.replace(tmp, path)
    return path


def upscale(image: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour upscaling, so single pixels stay visible."""
    return cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_NEAREST)


def camera_to_rgb(frame: np.ndarray) -> np.ndarray:
    """One camera frame (C, H, W) with C = 1 or 3 -> RGB (H, W, 3)."""
    hwc = np.transpose(frame, (1, 2, 0))
    return np.repeat(hwc, 3, axis=2) if hwc.shape[2] == 1 else np.ascontiguousarray(hwc)
