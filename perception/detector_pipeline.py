"""The detector pipeline: train from scratch, evaluate with COCO metrics, predict and draw overlays.

The model itself (network, targets, loss, decoding, ``load_detector``) is in ``centernet``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import torch

from drivelab.core.config import bounded, from_mapping, to_plain
from drivelab.core.files import atomic_output, ensure_dir, write_json_atomic
from drivelab.core.provenance import machine_info
from drivelab.perception.centernet import (
    CenterNet,
    DetectorConfig,
    TargetConfig,
    checkpoint_spec,
    decode,
    detection_loss,
    encode_targets,
)
from drivelab.perception.checkpoints import save_checkpoint
from drivelab.perception.classify import images_to_tensor
from drivelab.perception.coco_eval import evaluate_coco, evaluate_with_pycocotools, save_pr_curve
from drivelab.perception.encoders import MAX_WIDTH_MULT
from drivelab.perception.errors import DatasetError
from drivelab.perception.readers import DetectionDataset


@dataclass(frozen=True)
class DetectorTrainConfig:
    """Detector training settings; the defaults reproduce the README numbers.

    Attributes:
        epochs: Passes over the training set.
        batch_size: Images per step.
        learning_rate: Peak AdamW step size (one-cycle schedule).
        weight_decay: AdamW weight decay.
        size_weight: Weight of the size L1 term [per px] (CenterNet uses 0.1).
        seed: Seeds weights and shuffling.
        width_mult: Backbone width for a new model.
        output_stride: 2 or 4.
        gaussian_alpha: Heatmap Gaussian sigma = alpha * side / 6.
        min_sigma_cells: Smallest heatmap sigma [cells].
        eval_every: Evaluate on the validation set every this many epochs (and at the end).
        hflip: Also train on horizontally mirrored frames (doubles the epoch).
    """

    epochs: int = bounded(20, low=1, high=100_000)
    batch_size: int = bounded(32, low=1, high=1 << 20)
    learning_rate: float = bounded(3e-3, low=0, low_open=True, high=10)
    weight_decay: float = bounded(1e-4, low=0, high=10)
    size_weight: float = bounded(0.1, low=0, high=1000)
    seed: int = bounded(0, low=0, high=2**32 - 1)
    width_mult: int = bounded(16, low=1, high=MAX_WIDTH_MULT)
    output_stride: Literal[2, 4] = 4
    gaussian_alpha: float = bounded(0.54, low=0, low_open=True, high=100)
    min_sigma_cells: float = bounded(0.5, low=0, low_open=True, high=100)
    eval_every: int = bounded(5, low=1, high=100_000)
    hflip: bool = False


def dataset_to_coco(dataset: DetectionDataset) -> dict[str, Any]:
    """COCO ground-truth dict of a detection dataset (annotation ids from 1)."""
    images, annotations = [], []
    for sample in dataset.samples:
        images.append({"id": int(sample.image_id), "width": sample.width, "height": sample.height,
                       "file_name": str(sample.file_name)})
        for (x1, y1, x2, y2), cls in zip(sample.boxes, sample.classes):
            width, height = float(x2 - x1), float(y2 - y1)
            annotations.append({"id": len(annotations) + 1, "image_id": int(sample.image_id),
                                "category_id": int(dataset.category_ids[cls]),
                                "bbox": [float(x1), float(y1), width, height], "area": width * height, "iscrowd": 0})
    categories = [{"id": int(i), "name": n} for i, n in zip(dataset.category_ids, dataset.class_names)]
    return {"images": images, "annotations": annotations, "categories": categories}


@torch.no_grad()
def predict_detections(
    model: CenterNet, images: np.ndarray, batch_size: int = 256, score_threshold: float = 0.05,
    max_detections: int = 100, nms_iou: float | None = None,
) -> list[dict[str, np.ndarray]]:
    """Detections for (N, H, W, C) uint8 images: per image ``boxes`` (n, 4), ``scores``, ``classes``."""
    model.eval()
    frames = images_to_tensor(images)
    results: list[dict[str, np.ndarray]] = []
    for start in range(0, len(frames), batch_size):
        outputs = model(frames[start:start + batch_size])
        for item in decode(outputs, model.config.output_stride, max_detections, score_threshold, nms_iou):
            results.append({key: value.numpy() for key, value in item.items()})
    return results


def detections_to_coco(predictions: list[dict[str, np.ndarray]], dataset: DetectionDataset) -> list[dict[str, Any]]:
    """COCO results list for ``predictions`` made on ``dataset``'s images, in order."""
    results = []
    for sample, item in zip(dataset.samples, predictions):
        for (x1, y1, x2, y2), score, cls in zip(item["boxes"], item["scores"], item["classes"]):
            results.append({"image_id": int(sample.image_id), "category_id": int(dataset.category_ids[cls]),
                            "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)], "score": float(score)})
    return results


def _check_images(config: DetectorConfig, images: np.ndarray, name: str) -> None:
    if images.shape[1:] != (config.height, config.width, config.in_channels):
        raise DatasetError(f"{name} images are {images.shape[1:]} (H, W, C); the detector expects "
                           f"{(config.height, config.width, config.in_channels)}")


def _targets(
    dataset: DetectionDataset, config: DetectorConfig, target: TargetConfig, flip_width: int | None = None
) -> dict[str, torch.Tensor]:
    per_image = []
    for sample in dataset.samples:
        boxes = sample.boxes.copy()
        if flip_width is not None:
            boxes[:, [0, 2]] = flip_width - sample.boxes[:, [2, 0]]
        per_image.append(encode_targets(boxes, sample.classes, config, target))
    return {key: torch.from_numpy(np.stack([t[key] for t in per_image])) for key in per_image[0]}


def evaluate_detector(
    model: CenterNet, dataset: DetectionDataset, out_dir: str | os.PathLike | None = None,
    images: np.ndarray | None = None, reference: bool = True,
) -> dict[str, Any]:
    """COCO metrics of ``model`` on ``dataset``: ours and (``reference``) pycocotools'.

    With ``out_dir``, writes ``metrics.json`` and ``pr_curve.png``.
    """
    images = dataset.load_images(model.config.in_channels) if images is None else images
    _check_images(model.config, images, "evaluation")
    predictions = predict_detections(model, images)
    ground_truth, detections = dataset_to_coco(dataset), detections_to_coco(predictions, dataset)
    ours = evaluate_coco(ground_truth, detections)
    metrics: dict[str, Any] = {"stats": ours.stats, "num_images": len(dataset), "num_detections": len(detections)}
    if reference:
        metrics["pycocotools"] = evaluate_with_pycocotools(ground_truth, detections).stats
    if out_dir is not None:
        write_json_atomic(Path(out_dir) / "metrics.json", metrics, sort_keys=True)
        save_pr_curve(ours, Path(out_dir) / "pr_curve.png", model.config.class_names)
    return metrics


def train_detector(
    train: DetectionDataset, val: DetectionDataset, out_dir: str | os.PathLike,
    config: DetectorTrainConfig = DetectorTrainConfig(), in_channels: int | None = None, progress: bool = True,
) -> dict[str, Any]:
    """Train a detector from scratch; write checkpoints, TensorBoard logs and ``run.json``.

    ``best.safetensors`` holds the weights with the best validation AP (checked every
    ``eval_every`` epochs), ``last.safetensors`` the final ones.
    """
    from torch.utils.tensorboard import SummaryWriter
    from tqdm import tqdm

    config = from_mapping(DetectorTrainConfig, to_plain(config), "detector training config")  # bounds hold
    train_images = train.load_images(in_channels)
    val_images = val.load_images(train_images.shape[3])
    _, height, width, channels = train_images.shape
    model_config = from_mapping(DetectorConfig, {
        "class_names": list(train.class_names), "in_channels": channels, "height": height, "width": width,
        "width_mult": config.width_mult, "output_stride": config.output_stride,
    }, "detector config")
    _check_images(model_config, val_images, "validation")
    out_dir = ensure_dir(out_dir)
    torch.manual_seed(config.seed)
    target_config = TargetConfig(config.gaussian_alpha, config.min_sigma_cells)
    frames = images_to_tensor(train_images)
    targets = _targets(train, model_config, target_config)
    if config.hflip:
        frames = torch.cat([frames, frames.flip(3)])
        flipped = _targets(train, model_config, target_config, flip_width=width)
        targets = {key: torch.cat([targets[key], flipped[key]]) for key in targets}
    model = CenterNet(model_config).to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    steps_per_epoch = -(-len(frames) // config.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.learning_rate,
                                                   total_steps=config.epochs * steps_per_epoch)
    generator = torch.Generator().manual_seed(config.seed)
    writer = SummaryWriter(str(out_dir / "tb"))
    extra = {"train_config": to_plain(config), "category_ids": list(train.category_ids)}
    history, best_ap, step = [], -1.0, 0
    bar = tqdm(range(config.epochs), desc="train-detector", unit="epoch", disable=not progress)
    for epoch in bar:
        model.train()
        order = torch.randperm(len(frames), generator=generator)
        for start in range(0, len(order), config.batch_size):
            batch = order[start:start + config.batch_size]
            losses = detection_loss(model(frames[batch]), {key: value[batch] for key, value in targets.items()},
                                    config.size_weight)
            optimizer.zero_grad()
            losses["total"].backward()
            optimizer.step()
            schedule.step()
            if step % 10 == 0:
                for key, value in losses.items():
                    writer.add_scalar(f"losses/{key}", value.item(), step)
            step += 1
        bar.set_postfix(loss=f"{losses['total'].item():.3f}")
        if (epoch + 1) % config.eval_every == 0 or epoch + 1 == config.epochs:
            stats = evaluate_detector(model, val, images=val_images, reference=False)["stats"]
            for key in ("AP", "AP50", "AP75", "AR100"):
                writer.add_scalar(f"charts/val_{key}", stats[key], epoch)
            history.append({"epoch": epoch, **{f"val_{k}": stats[k] for k in ("AP", "AP50", "AP75", "AR100")}})
            bar.set_postfix(loss=f"{losses['total'].item():.3f}", ap=f"{stats['AP']:.3f}", ap50=f"{stats['AP50']:.3f}")
            if stats["AP"] > best_ap:
                best_ap = stats["AP"]
                save_checkpoint(out_dir / "best.safetensors", model,
                                checkpoint_spec(model_config, epoch=epoch, **extra))
    save_checkpoint(out_dir / "last.safetensors", model,
                    checkpoint_spec(model_config, epoch=config.epochs - 1, **extra))
    writer.close()
    record = {"kind": "train-detector", "model": to_plain(model_config), "train_config": to_plain(config),
              "num_train": len(train), "num_val": len(val), "history": history, "best_val_AP": best_ap,
              "machine": machine_info()}
    write_json_atomic(out_dir / "run.json", record, sort_keys=True)
    return record


_COLOURS_BGR = ((0, 200, 255), (80, 255, 80), (255, 120, 60), (200, 80, 255))


def draw_detections(
    image: np.ndarray, detections: dict[str, np.ndarray], class_names: tuple[str, ...],
    scale: int = 4, score_threshold: float = 0.3,
) -> np.ndarray:
    """Upscale an (H, W, C) uint8 frame by ``scale`` and draw boxes, classes and scores (BGR)."""
    bgr = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.shape[2] == 1 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    canvas = cv2.resize(bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    for box, score, cls in zip(detections["boxes"], detections["scores"], detections["classes"]):
        if score < score_threshold:
            continue
        x1, y1, x2, y2 = (np.asarray(box) * scale).round().astype(int)
        colour = _COLOURS_BGR[int(cls) % len(_COLOURS_BGR)]
        cv2.rectangle(canvas, (x1, y1), (x2 - 1, y2 - 1), colour, 1)
        label = f"{class_names[int(cls)] if int(cls) < len(class_names) else cls} {score:.2f}"
        cv2.putText(canvas, label, (x1, max(8, y1 - 2)), cv2.FONT_HERSHEY_SIMPLEX, 0.3, colour, 1, cv2.LINE_AA)
    return canvas


def write_overlays(
    model: CenterNet, images: np.ndarray, out: str | os.PathLike, names: list[str] | None = None,
    score_threshold: float = 0.3, fps: int = 10,
) -> list[Path]:
    """Draw predictions on frames: one PNG per frame into folder ``out``, or one MP4 if ``out`` ends in .mp4.

    Each file is written atomically. The output is opened before any prediction, so an
    unwritable ``out`` fails at once.
    """
    out = Path(out)

    def drawn() -> Any:  # frames one batch at a time: a long video never sits in memory as BGR
        for start in range(0, len(images), 256):
            chunk = images[start:start + 256]
            for image, item in zip(chunk, predict_detections(model, chunk)):
                yield draw_detections(image, item, model.config.class_names, score_threshold=score_threshold)

    if out.suffix.lower() == ".mp4":
        import imageio.v2 as imageio

        with atomic_output(out) as tmp:
            with imageio.get_writer(tmp, format="FFMPEG", fps=fps, codec="libx264", macro_block_size=1) as writer:
                for frame in drawn():
                    writer.append_data(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        return [out]
    ensure_dir(out)
    written = []
    for index, frame in enumerate(drawn()):
        path = out / f"{Path(names[index]).stem if names else f'{index:06d}'}_pred.png"
        with atomic_output(path) as tmp:
            if not cv2.imwrite(str(tmp), frame, [cv2.IMWRITE_PNG_COMPRESSION, 3]):
                raise DatasetError(f"could not write {path}")
        written.append(path)
    return written
