"""Readers for the image-dataset formats people already have.

COCO json, YOLO txt + dataset yaml, ImageFolder, CIFAR-10 python batches, MNIST idx, the
affordance label CSV written by ``make-dataset``, and scikit-learn's bundled digits. Every
problem (missing or corrupt image, label out of range, an annotation that refers to a missing
image, mixed image sizes where one size is required) raises :class:`DatasetError` naming the
file or entry.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import pickle
from pathlib import Path

import numpy as np
import yaml

from drivelab.perception.errors import DatasetError
from drivelab.perception.images import (
    IMAGE_SUFFIXES,
    ClassificationDataset,
    DetectionDataset,
    DetectionSample,
    check_labels,
    check_size,
    read_file,
    read_image,
    resize_all,
    stack_fixed_size,
)

__all__ = [
    "CLASSIFICATION_FORMATS", "IMAGE_SUFFIXES", "ClassificationDataset", "DetectionDataset", "DetectionSample",
    "load_digits_dataset", "read_cifar10", "read_classification", "read_coco", "read_detection", "read_idx",
    "read_image", "read_image_folder", "read_label_csv", "read_mnist", "read_yolo", "stack_fixed_size",
]


def read_coco(json_path: str | os.PathLike, image_root: str | os.PathLike | None = None) -> DetectionDataset:
    """Read COCO-format detection annotations.

    Args:
        json_path: The annotation json.
        image_root: Folder holding ``file_name``s; default: the json's folder.
    """
    json_path = Path(json_path)
    root = Path(image_root) if image_root is not None else json_path.parent
    try:
        data = json.loads(read_file(json_path, "annotation file"))
    except json.JSONDecodeError as error:
        raise DatasetError(f"annotation file {json_path} is not valid json: {error}") from error
    for key in ("images", "annotations", "categories"):
        if not isinstance(data, dict) or not isinstance(data.get(key), list):
            raise DatasetError(f"annotation file {json_path} has no {key!r} list")
    categories = sorted(data["categories"], key=lambda c: c["id"])
    category_index = {c["id"]: i for i, c in enumerate(categories)}
    samples: dict[int, DetectionSample] = {}
    for entry in data["images"]:
        image_id = entry["id"]
        if image_id in samples:
            raise DatasetError(f"{json_path}: image id {image_id} appears twice")
        file_name = root / entry["file_name"]
        if not file_name.is_file():
            raise DatasetError(f"{json_path}: image id {image_id} refers to missing file {file_name}")
        samples[image_id] = DetectionSample(file_name, image_id, int(entry["width"]), int(entry["height"]),
                                            np.zeros((0, 4)), np.zeros(0, np.int64))
    boxes: dict[int, list[list[float]]] = {i: [] for i in samples}
    classes: dict[int, list[int]] = {i: [] for i in samples}
    for ann in data["annotations"]:
        where = f"{json_path}: annotation id {ann.get('id')}"
        if ann.get("image_id") not in samples:
            raise DatasetError(f"{where} refers to image_id {ann.get('image_id')}, which is not in 'images'")
        if ann.get("category_id") not in category_index:
            raise DatasetError(
                f"{where} has category_id {ann.get('category_id')}, not one of {sorted(category_index)}"
            )
        bbox = ann.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4 or bbox[2] < 0 or bbox[3] < 0:
            raise DatasetError(f"{where} has an invalid bbox {bbox!r}; expected [x, y, width, height]")
        x, y, w, h = (float(v) for v in bbox)
        boxes[ann["image_id"]].append([x, y, x + w, y + h])
        classes[ann["image_id"]].append(category_index[ann["category_id"]])
    for image_id, sample in samples.items():
        sample.boxes = np.asarray(boxes[image_id], np.float64).reshape(-1, 4)
        sample.classes = np.asarray(classes[image_id], np.int64)
    return DetectionDataset(list(samples.values()), tuple(c["name"] for c in categories),
                            tuple(c["id"] for c in categories))


def _yolo_image_list(root: Path, entry: str | list[str], yaml_path: Path) -> list[Path]:
    entries = entry if isinstance(entry, list) else [entry]
    files: list[Path] = []
    for item in entries:
        location = root / item
        if location.is_dir():
            files += sorted(p for p in location.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        elif location.is_file() and location.suffix == ".txt":
            text = read_file(location, "image list")
            files += [root / line.strip() for line in text.splitlines() if line.strip()]
        else:
            raise DatasetError(f"{yaml_path}: split entry {item!r} ({location}) is neither a folder nor a list file")
    return files


def _yolo_label_path(image_path: Path) -> Path:
    parts = list(image_path.parts)
    # YOLO convention: .../images/.../x.png -> .../labels/.../x.txt (last 'images' component).
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def read_yolo(yaml_path: str | os.PathLike, split: str = "train") -> DetectionDataset:
    """Read a YOLO dataset: a yaml with ``path``, split entries and ``names``, plus txt labels.

    Each label line is ``class cx cy w h`` with coordinates normalised to [0, 1]; an image
    without a label file has no objects.
    """
    yaml_path = Path(yaml_path)
    try:
        config = yaml.safe_load(read_file(yaml_path, "dataset yaml"))
    except yaml.YAMLError as error:
        raise DatasetError(f"dataset yaml {yaml_path} is not valid yaml: {error}") from error
    if not isinstance(config, dict) or "names" not in config or split not in config:
        raise DatasetError(f"dataset yaml {yaml_path} needs 'names' and a {split!r} entry")
    names = config["names"]
    names = [names[k] for k in sorted(names)] if isinstance(names, dict) else list(names)
    root = yaml_path.parent / config.get("path", ".")
    samples = []
    for image_id, image_path in enumerate(_yolo_image_list(root, config[split], yaml_path), start=1):
        height, width = read_image(image_path).shape[:2]
        label_path = _yolo_label_path(image_path)
        rows = []
        if label_path.is_file():
            for line_no, line in enumerate(read_file(label_path, "label file").splitlines(), start=1):
                if not line.strip():
                    continue
                values = line.split()
                try:
                    cls, cx, cy, w, h = int(values[0]), *map(float, values[1:5])
                    if len(values) != 5:
                        raise ValueError
                except (ValueError, IndexError) as error:
                    raise DatasetError(
                        f"{label_path} line {line_no}: expected 'class cx cy w h', got {line!r}"
                    ) from error
                if not 0 <= cls < len(names):
                    raise DatasetError(f"{label_path} line {line_no}: class {cls} out of range [0, {len(names)})")
                if not all(0.0 <= v <= 1.0 for v in (cx, cy, w, h)):
                    raise DatasetError(f"{label_path} line {line_no}: coordinates must be normalised to [0, 1]")
                rows.append((cls, (cx - w / 2) * width, (cy - h / 2) * height,
                             (cx + w / 2) * width, (cy + h / 2) * height))
        table = np.asarray(rows, np.float64).reshape(-1, 5)
        samples.append(DetectionSample(image_path, image_id, width, height, table[:, 1:], table[:, 0].astype(np.int64)))
    return DetectionDataset(samples, tuple(names))


def read_image_folder(
    root: str | os.PathLike, channels: int | None = None, resize_hw: tuple[int, int] | None = None
) -> ClassificationDataset:
    """Read ``root/<class name>/<image>``; classes are the sorted folder names."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"image folder {root} does not exist")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir())
    if not class_dirs:
        raise DatasetError(f"image folder {root} has no class sub-folders")
    files, labels = [], []
    for index, class_dir in enumerate(class_dirs):
        for path in sorted(class_dir.iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                files.append(path)
                labels.append(index)
    if not files:
        raise DatasetError(f"image folder {root} has no images ({', '.join(IMAGE_SUFFIXES)})")
    images = [read_image(path, channels) for path in files]
    if resize_hw is not None:
        images = resize_all(images, resize_hw)
    return ClassificationDataset(stack_fixed_size(images, [str(p) for p in files]),
                                 np.asarray(labels, np.int64), tuple(p.name for p in class_dirs),
                                 files=tuple(str(p) for p in files))


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickles CIFAR batches: builtins and numpy arrays only, no arbitrary code."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("builtins", "bytes"),
    }

    def find_class(self, module: str, name: str) -> type:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _load_cifar_batch(path: Path) -> dict:
    if not path.is_file():
        raise DatasetError(f"CIFAR-10 batch {path} does not exist")
    try:
        with path.open("rb") as handle:
            content = _ArrayOnlyUnpickler(handle, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError) as error:
        raise DatasetError(f"CIFAR-10 batch {path} is corrupt: {error}") from error
    except OSError as error:
        raise DatasetError(f"cannot read CIFAR-10 batch {path}: {error.strerror or error}") from error
    if not isinstance(content, dict):
        raise DatasetError(f"CIFAR-10 batch {path} is corrupt: it holds a {type(content).__name__}, not a dict")
    return content


def _cifar_entry(batch: dict, key: bytes, path: Path) -> object:
    if key not in batch:
        raise DatasetError(f"CIFAR-10 batch {path} is corrupt: it has no {key.decode()!r} entry")
    return batch[key]


def read_cifar10(root: str | os.PathLike, split: str = "train") -> ClassificationDataset:
    """Read CIFAR-10 python batches (``data_batch_1..5`` or ``test_batch`` + ``batches.meta``)."""
    root = Path(root)
    meta_path = root / "batches.meta"
    label_names = _cifar_entry(_load_cifar_batch(meta_path), b"label_names", meta_path)
    if not isinstance(label_names, list) or not label_names or not all(isinstance(n, bytes | str) for n in label_names):
        raise DatasetError(f"CIFAR-10 batch {meta_path} is corrupt: label_names must be a list of names")
    names = tuple(n.decode(errors="replace") if isinstance(n, bytes) else n for n in label_names)
    batch_names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    images, labels = [], []
    for batch_name in batch_names:
        path = root / batch_name
        if split == "train" and not path.exists() and images:
            break  # fewer than five training batches is fine (small test sets)
        batch = _load_cifar_batch(path)
        try:
            data = np.asarray(_cifar_entry(batch, b"data", path), np.uint8)
            batch_labels = np.asarray(_cifar_entry(batch, b"labels", path), np.int64)
        except (TypeError, ValueError, OverflowError) as error:
            raise DatasetError(f"CIFAR-10 batch {path} is corrupt: {error}") from error
        if data.ndim != 2 or data.shape[1] != 3072:
            raise DatasetError(f"CIFAR-10 batch {path}: data has shape {data.shape}, expected (N, 3072)")
        if batch_labels.shape != (len(data),):
            raise DatasetError(f"CIFAR-10 batch {path}: {batch_labels.size} labels for {len(data)} images")
        check_labels(batch_labels, len(names), f"CIFAR-10 batch {path}:")
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))  # (N, 32, 32, 3) RGB
        labels.append(batch_labels)
    return ClassificationDataset(np.concatenate(images), np.concatenate(labels), names)


_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an idx file (MNIST's format), gzipped or not."""
    path = Path(path)
    raw = read_file(path, "idx file", binary=True)
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as error:
            raise DatasetError(f"idx file {path} is a corrupt gzip file: {error}") from error
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DatasetError(f"idx file {path} has a bad magic number {raw[:4].hex()}")
    ndim = raw[3]
    dims = np.frombuffer(raw, ">u4", count=ndim, offset=4).astype(int)
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    body = raw[4 + 4 * ndim:]
    if len(body) != expected:
        raise DatasetError(f"idx file {path} holds {len(body)} data bytes, its header promises {expected}")
    return np.frombuffer(body, dtype).reshape(dims)


def read_mnist(images_path: str | os.PathLike, labels_path: str | os.PathLike) -> ClassificationDataset:
    """Read MNIST-style idx images (N, H, W) and labels (N,) with classes 0-9."""
    images = read_idx(images_path)
    labels = read_idx(labels_path).astype(np.int64)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DatasetError(f"{images_path} ({images.shape}) and {labels_path} ({labels.shape}) do not pair up")
    check_labels(labels, 10, f"{labels_path}:")
    return ClassificationDataset(images.astype(np.uint8)[..., None], labels, tuple(str(d) for d in range(10)))


def load_digits_dataset(resize_hw: tuple[int, int] | None = None) -> ClassificationDataset:
    """scikit-learn's bundled 8x8 digits (1797 images, offline) as uint8 images."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]  # (N, 8, 8, 1)
    if resize_hw is not None:
        images = np.stack(resize_all(images, resize_hw))
    return ClassificationDataset(images, digits.target.astype(np.int64), tuple(str(d) for d in range(10)))


def read_label_csv(
    csv_path: str | os.PathLike,
    image_root: str | os.PathLike | None = None,
    class_names: tuple[str, ...] | None = None,
    channels: int | None = None,
) -> ClassificationDataset:
    """Read a multi-label file ``file_name,<label>,...`` (what ``make-dataset`` writes).

    0/1 columns become one output each; a column named ``*_index`` is categorical and becomes
    one-hot outputs ``name=0 .. name=K-1``.

    Args:
        csv_path: The label CSV.
        image_root: Folder of the images; default: the CSV's folder.
        class_names: Outputs to produce (a trained model's); default: derived from the file.
        channels: Image channels to convert to.
    """
    csv_path = Path(csv_path)
    root = Path(image_root) if image_root is not None else csv_path.parent
    try:
        rows = list(csv.DictReader(io.StringIO(read_file(csv_path, "label file"))))
    except csv.Error as error:
        raise DatasetError(f"label file {csv_path} is not a valid CSV: {error}") from error
    if not rows or "file_name" not in rows[0]:
        raise DatasetError(f"label file {csv_path} is empty or has no 'file_name' column")
    columns = [c for c in rows[0] if c != "file_name"]
    values = np.zeros((len(rows), len(columns)), np.int64)
    for r, row in enumerate(rows):
        for c, column in enumerate(columns):
            try:
                values[r, c] = int(row[column])
            except (TypeError, ValueError) as error:
                raise DatasetError(
                    f"{csv_path} row {r + 2}: column {column} = {row[column]!r} is not an integer"
                ) from error
    if class_names is None:
        names: list[str] = []
        for c, column in enumerate(columns):
            if column.endswith("_index"):
                names += [f"{column}={k}" for k in range(int(values[:, c].max()) + 1)]
            else:
                names.append(column)
        class_names = tuple(names)
    labels = np.zeros((len(rows), len(class_names)), np.int64)
    for c, column in enumerate(columns):
        if column.endswith("_index"):
            outputs = [i for i, n in enumerate(class_names) if n.startswith(column + "=")]
            for r in range(len(rows)):
                if not 0 <= values[r, c] < len(outputs):
                    raise DatasetError(
                        f"{csv_path} row {r + 2}: {column} = {values[r, c]} out of range [0, {len(outputs)})"
                    )
                labels[r, outputs[values[r, c]]] = 1
        else:
            if column not in class_names:
                raise DatasetError(f"{csv_path}: column {column} is not one of the model's outputs {class_names}")
            bad = np.flatnonzero((values[:, c] < 0) | (values[:, c] > 1))
            if bad.size:
                raise DatasetError(f"{csv_path} row {bad[0] + 2}: {column} = {values[bad[0], c]} is not 0 or 1")
            labels[:, class_names.index(column)] = values[:, c]
    files = [root / row["file_name"] for row in rows]
    images = stack_fixed_size([read_image(path, channels) for path in files], [str(p) for p in files])
    return ClassificationDataset(images, labels, tuple(class_names), multi_label=True,
                                 files=tuple(str(p) for p in files))


CLASSIFICATION_FORMATS = ("digits", "mnist", "cifar10", "imagefolder", "affordance")
_MNIST_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def _find(root: Path, stem: str) -> Path:
    for candidate in (root / stem, root / f"{stem}.gz"):
        if candidate.exists():
            return candidate
    raise DatasetError(f"{root} has no {stem} (or {stem}.gz)")


def read_classification(
    kind: str, root: str | os.PathLike | None, split: str = "train", resize_hw: tuple[int, int] | None = None,
    class_names: tuple[str, ...] | None = None, channels: int | None = None,
) -> ClassificationDataset:
    """Read one split of a classification dataset in any supported format.

    Args:
        kind: One of ``CLASSIFICATION_FORMATS``.
        root: ``digits``: unused. ``mnist``: folder of the idx files (``val``/``test`` read t10k).
            ``cifar10``: folder of the batches (``val``/``test`` read test_batch).
            ``imagefolder``: ``root/<split>`` if it exists, else ``root``.
            ``affordance``: a ``make-dataset`` folder (reads ``<split>_labels.csv``) or a CSV.
        split: ``train``, ``val`` or ``test``. ``digits`` keeps a fixed 25 % (seed 0) for val/test.
        resize_hw: Resize every image to (H, W).
        class_names: Outputs a trained model expects (affordance only).
        channels: Convert images to 1 or 3 channels.
    """
    if kind not in CLASSIFICATION_FORMATS:
        raise DatasetError(f"unknown dataset format {kind!r}; valid: {', '.join(CLASSIFICATION_FORMATS)}")
    resize_hw = check_size(resize_hw) if resize_hw is not None else None  # before reading any image
    if kind == "digits":
        data = load_digits_dataset(resize_hw)
        order = np.random.default_rng(0).permutation(len(data))
        cut = int(round(0.75 * len(data)))
        return data.subset(order[:cut] if split == "train" else order[cut:])
    if root is None:
        raise DatasetError(f"dataset format {kind!r} needs a path")
    root = Path(root)
    if kind == "mnist":
        images_stem, labels_stem = _MNIST_FILES["train" if split == "train" else "test"]
        data = read_mnist(_find(root, images_stem), _find(root, labels_stem))
    elif kind == "cifar10":
        data = read_cifar10(root, "train" if split == "train" else "test")
    elif kind == "imagefolder":
        return read_image_folder(root / split if (root / split).is_dir() else root, channels, resize_hw)
    else:
        csv_path = root / f"{split}_labels.csv" if root.is_dir() else root
        data = read_label_csv(csv_path, None, class_names, channels)
    if resize_hw is not None and data.images.shape[1:3] != tuple(resize_hw):
        data = ClassificationDataset(np.stack(resize_all(data.images, resize_hw)), data.labels, data.class_names,
                                     data.multi_label, data.files)
    return data


def read_detection(path: str | os.PathLike, split: str = "train") -> DetectionDataset:
    """Read detection data: a ``make-dataset`` folder (``<split>.json``), a COCO json, or a YOLO yaml."""
    path = Path(path)
    if path.is_dir():
        return read_coco(path / f"{split}.json", path)
    if path.suffix in (".yaml", ".yml"):
        return read_yolo(path, split)
    return read_coco(path)
