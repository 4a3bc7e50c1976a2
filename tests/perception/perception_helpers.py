"""Synthetic camera-like frames drawn with OpenCV, and COCO files written from them."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np


def draw_frames(
    count: int, seed: int, height: int = 64, width: int = 128
) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """Road-like frames: grey background, lane lines, 10x4 px cars (class 0) and one ego (class 1).

    Returns:
        images (N, H, W, 1) uint8, boxes per image (n, 4) x1, y1, x2, y2, classes per image (n,).
    """
    rng = np.random.default_rng(seed)
    images, all_boxes, all_classes = [], [], []
    for _ in range(count):
        image = np.full((height, width), 60, np.uint8)
        for lane_y in (20, 28, 36, 44):
            image[lane_y, ::6] = 200
        boxes, classes = [[36, 30, 46, 34]], [1]  # ego, fixed like the camera's
        occupied = np.zeros((height, width), bool)
        occupied[28:36, 34:48] = True
        for _ in range(int(rng.integers(1, 6))):
            x1, y1 = int(rng.integers(0, width - 10)), int(rng.integers(16, height - 20))
            if occupied[y1 - 2:y1 + 6, max(0, x1 - 2):x1 + 12].any():
                continue
            occupied[y1 - 2:y1 + 6, max(0, x1 - 2):x1 + 12] = True
            boxes.append([x1, y1, x1 + 10, y1 + 4])
            classes.append(0)
        for (x1, y1, x2, y2), cls in zip(boxes, classes):
            cv2.rectangle(image, (x1, y1), (x2 - 1, y2 - 1), 230 if cls == 1 else 170, thickness=-1)
        images.append(image[:, :, None])
        all_boxes.append(np.asarray(boxes, np.float64))
        all_classes.append(np.asarray(classes, np.int64))
    return np.stack(images), all_boxes, all_classes


def write_coco_dataset(root: Path, name: str, images: np.ndarray, boxes: list, classes: list) -> Path:
    """Write PNGs under root/images/name and a COCO json root/name.json; returns the json path."""
    (root / "images" / name).mkdir(parents=True, exist_ok=True)
    entries, annotations = [], []
    for index, image in enumerate(images):
        file_name = f"images/{name}/{index:04d}.png"
        cv2.imwrite(str(root / file_name), image[:, :, 0])
        entries.append({"id": index + 1, "file_name": file_name, "width": image.shape[1], "height": image.shape[0]})
        for (x1, y1, x2, y2), cls in zip(boxes[index], classes[index]):
            annotations.append({"id": len(annotations) + 1, "image_id": index + 1, "category_id": int(cls) + 1,
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
    path = root / f"{name}.json"
    path.write_text(json.dumps({"images": entries, "annotations": annotations,
                                "categories": [{"id": 1, "name": "car"}, {"id": 2, "name": "ego"}]}))
    return path

