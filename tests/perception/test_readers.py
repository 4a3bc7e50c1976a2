"""Readers: small files written in each format are read back; bad input names the culprit."""

from __future__ import annotations

import gzip
import json
import pickle
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
from perception_helpers import draw_frames, write_coco_dataset

from drivelab.perception.errors import DatasetError
from drivelab.perception.readers import (
    load_digits_dataset,
    read_cifar10,
    read_classification,
    read_coco,
    read_image,
    read_image_folder,
    read_label_csv,
    read_mnist,
    read_yolo,
)


def test_coco_round_trip(tmp_path: Path) -> None:
    images, boxes, classes = draw_frames(3, seed=0)
    dataset = read_coco(write_coco_dataset(tmp_path, "train", images, boxes, classes))
    assert dataset.class_names == ("car", "ego")
    for sample, expected_boxes, expected_classes in zip(dataset.samples, boxes, classes):
        np.testing.assert_array_equal(sample.boxes, expected_boxes)
        np.testing.assert_array_equal(sample.classes, expected_classes)
    np.testing.assert_array_equal(dataset.load_images(), images)


def test_coco_errors_name_the_entry(tmp_path: Path) -> None:
    images, boxes, classes = draw_frames(2, seed=0)
    path = write_coco_dataset(tmp_path, "train", images, boxes, classes)
    data = json.loads(path.read_text())
    data["annotations"][0]["image_id"] = 99
    path.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match="annotation id 1 refers to image_id 99"):
        read_coco(path)
    data["annotations"][0]["image_id"] = 1
    (tmp_path / data["images"][1]["file_name"]).unlink()
    path.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match="0001.png"):
        read_coco(path)
    path.write_text("{not json")
    with pytest.raises(DatasetError, match="not valid json"):
        read_coco(path)


def test_corrupt_and_missing_images(tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DatasetError, match="bad.png is corrupt"):
        read_image(bad)
    with pytest.raises(DatasetError, match="nope.png does not exist"):
        read_image(tmp_path / "nope.png")


def _write_yolo(root: Path, class_id: int = 0) -> Path:
    images, boxes, classes = draw_frames(2, seed=3)
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    for index, image in enumerate(images):
        cv2.imwrite(str(root / "images" / "train" / f"{index}.png"), image[:, :, 0])
        lines = [f"{class_id if c == 0 else c} {(x1 + x2) / 256} {(y1 + y2) / 128} {(x2 - x1) / 128} {(y2 - y1) / 64}"
                 for (x1, y1, x2, y2), c in zip(boxes[index], classes[index])]
        (root / "labels" / "train" / f"{index}.txt").write_text("\n".join(lines) + "\n")
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nnames:\n  0: car\n  1: ego\n")
    return root / "data.yaml"


def test_yolo_round_trip(tmp_path: Path) -> None:
    dataset = read_yolo(_write_yolo(tmp_path))
    _, boxes, classes = draw_frames(2, seed=3)
    assert dataset.class_names == ("car", "ego")
    for sample, expected_boxes, expected_classes in zip(dataset.samples, boxes, classes):
        np.testing.assert_allclose(sample.boxes, expected_boxes, atol=1e-9)
        np.testing.assert_array_equal(sample.classes, expected_classes)


def test_yolo_class_out_of_range(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"0.txt line 2: class 5 out of range \[0, 2\)"):
        read_yolo(_write_yolo(tmp_path, class_id=5))


def test_image_folder_and_mixed_sizes(tmp_path: Path) -> None:
    for name, value in (("cat", 10), ("dog", 200)):
        (tmp_path / name).mkdir()
        for index in range(3):
            cv2.imwrite(str(tmp_path / name / f"{index}.png"), np.full((8, 6), value + index, np.uint8))
    data = read_image_folder(tmp_path)
    assert data.class_names == ("cat", "dog")
    np.testing.assert_array_equal(data.labels, [0, 0, 0, 1, 1, 1])
    assert data.images.shape == (6, 8, 6, 1) and data.images[4, 0, 0, 0] == 201
    cv2.imwrite(str(tmp_path / "dog" / "9.png"), np.zeros((5, 5), np.uint8))
    with pytest.raises(DatasetError, match=r"dog/9.png is 5x5x1 but .* fixed size"):
        read_image_folder(tmp_path)
    assert read_image_folder(tmp_path, resize_hw=(4, 4)).images.shape == (7, 4, 4, 1)


def _write_cifar(root: Path, labels: list[int]) -> np.ndarray:
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (len(labels), 3072), dtype=np.uint8)
    names = [n.encode() for n in ("airplane", "automobile", "bird", "cat", "deer",
                                  "dog", "frog", "horse", "ship", "truck")]
    with open(root / "batches.meta", "wb") as handle:
        pickle.dump({b"label_names": names}, handle)
    with open(root / "data_batch_1", "wb") as handle:
        pickle.dump({b"data": data, b"labels": labels}, handle)
    return data


def test_cifar10_batches(tmp_path: Path) -> None:
    data = _write_cifar(tmp_path, [3, 1, 9])
    dataset = read_cifar10(tmp_path)
    assert dataset.class_names[3] == "cat"
    np.testing.assert_array_equal(dataset.labels, [3, 1, 9])
    # Channel-major rows: pixel (0, 0) of image 1 is (data[1, 0], data[1, 1024], data[1, 2048]).
    np.testing.assert_array_equal(dataset.images[1, 0, 0], data[1, [0, 1024, 2048]])
    _write_cifar(tmp_path, [3, 10, 9])
    with pytest.raises(DatasetError, match=r"data_batch_1: entry 1 has label 10 out of range"):
        read_cifar10(tmp_path)


def test_cifar10_refuses_code_in_pickles(tmp_path: Path) -> None:
    _write_cifar(tmp_path, [0])
    with open(tmp_path / "data_batch_1", "wb") as handle:
        pickle.dump({b"data": Path("x")}, handle)  # any non-array class must be refused
    with pytest.raises(DatasetError, match="corrupt"):
        read_cifar10(tmp_path)


def _idx(array: np.ndarray) -> bytes:
    return struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def test_mnist_idx(tmp_path: Path) -> None:
    images = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(images)))
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(_idx(np.array([7, 0, 9], np.uint8)))
    data = read_classification("mnist", tmp_path, "train")
    np.testing.assert_array_equal(data.images[..., 0], images)
    np.testing.assert_array_equal(data.labels, [7, 0, 9])
    (tmp_path / "bad-labels").write_bytes(_idx(np.array([7, 12, 9], np.uint8)))
    with pytest.raises(DatasetError, match="bad-labels: entry 1 has label 12"):
        read_mnist(tmp_path / "train-images-idx3-ubyte.gz", tmp_path / "bad-labels")
    (tmp_path / "short").write_bytes(_idx(images)[:-3])
    with pytest.raises(DatasetError, match="short holds"):
        read_mnist(tmp_path / "short", tmp_path / "bad-labels")


def test_digits_offline() -> None:
    data = load_digits_dataset()
    assert data.images.shape == (1797, 8, 8, 1) and data.images.max() == 255
    train, val = read_classification("digits", None, "train"), read_classification("digits", None, "val")
    assert len(train) + len(val) == 1797


def test_label_csv_one_hot_and_range(tmp_path: Path) -> None:
    for index in range(3):
        cv2.imwrite(str(tmp_path / f"{index}.png"), np.full((4, 4), index, np.uint8))
    (tmp_path / "labels.csv").write_text("file_name,left_lane_free,ego_lane_index\n0.png,1,0\n1.png,0,2\n2.png,1,1\n")
    data = read_label_csv(tmp_path / "labels.csv")
    assert data.class_names == ("left_lane_free", "ego_lane_index=0", "ego_lane_index=1", "ego_lane_index=2")
    np.testing.assert_array_equal(data.labels, [[1, 1, 0, 0], [0, 0, 0, 1], [1, 0, 1, 0]])
    with pytest.raises(DatasetError, match=r"row 3: ego_lane_index = 2 out of range \[0, 2\)"):
        read_label_csv(tmp_path / "labels.csv", class_names=("left_lane_free", "ego_lane_index=0", "ego_lane_index=1"))
