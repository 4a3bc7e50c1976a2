"""Image classification: single-label (digits, MNIST, CIFAR-10, ImageFolder) and multi-label
(driving affordances from camera frames), with reports, confusion matrices and checkpoints.

A checkpoint stores the :class:`ClassifierConfig` that rebuilds the model, so
``load_classifier(path)`` needs nothing else.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from drivelab.core.config import bounded, from_mapping, to_plain
from drivelab.core.errors import ConfigError
from drivelab.core.files import atomic_output, ensure_dir, write_json_atomic, write_text_atomic
from drivelab.core.provenance import machine_info
from drivelab.perception.checkpoints import load_model, model_spec, save_checkpoint
from drivelab.perception.encoders import (
    MAX_CHANNELS,
    MAX_FEATURES_DIM,
    MAX_SIDE_PX,
    ConvEncoder,
    EncoderSpec,
    random_shift,
)
from drivelab.perception.errors import DatasetError
from drivelab.perception.images import ClassificationDataset, check_labels


@dataclass(frozen=True)
class ClassifierConfig:
    """What rebuilds a classifier.

    Attributes:
        class_names: One name per output.
        multi_label: Independent sigmoid outputs (True) or one softmax (False).
        encoder: Trunk name (see ``drivelab.perception.encoders.TRUNK_NAMES``).
        in_channels: Image channels.
        height: Image height [px].
        width: Image width [px].
        features_dim: Encoder output size.
    """

    class_names: tuple[str, ...]
    multi_label: bool = False
    encoder: str = "fast"
    in_channels: int = bounded(1, low=1, high=MAX_CHANNELS)
    height: int = bounded(64, low=1, high=MAX_SIDE_PX)
    width: int = bounded(128, low=1, high=MAX_SIDE_PX)
    features_dim: int = bounded(256, low=1, high=MAX_FEATURES_DIM)

    def __post_init__(self) -> None:
        if not self.class_names:
            raise ConfigError("a classifier needs at least one class name")

    def encoder_spec(self) -> EncoderSpec:
        return EncoderSpec(self.encoder, self.in_channels, self.height, self.width, self.features_dim)


@dataclass(frozen=True)
class ClassifierTrainConfig:
    """Training settings; the defaults reproduce the README numbers.

    Attributes:
        epochs: Passes over the training set.
        batch_size: Images per step.
        learning_rate: Adam step size.
        weight_decay: AdamW decoupled weight decay.
        seed: Seeds weights and shuffling.
        augment_shift_px: Random-shift augmentation (0 = off) [px].
        encoder: Trunk name for a new model.
        features_dim: Encoder output size for a new model.
    """

    epochs: int = bounded(15, low=1, high=100_000)
    batch_size: int = bounded(64, low=1, high=1 << 20)
    learning_rate: float = bounded(2e-3, low=0, low_open=True, high=10)
    weight_decay: float = bounded(1e-4, low=0, high=10)
    seed: int = bounded(0, low=0, high=2**32 - 1)
    augment_shift_px: int = bounded(0, low=0, high=64)
    encoder: str = "fast"
    features_dim: int = bounded(256, low=1, high=MAX_FEATURES_DIM)


class Classifier(nn.Module):
    """Encoder + linear layer: frames (B, C, H, W) -> logits (B, K)."""

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = ConvEncoder(config.encoder_spec())
        self.classifier = nn.Linear(config.features_dim, len(config.class_names))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.encoder(frames))  # (B, K)


def checkpoint_spec(config: ClassifierConfig, **extra: Any) -> dict[str, Any]:
    """The json spec stored with a classifier's weights (its encoder reloads as an RL encoder)."""
    return model_spec("classifier", config, config.encoder_spec(), {"encoder.": ""}, **extra)


def load_classifier(path: str | os.PathLike) -> Classifier:
    """Rebuild a classifier from its checkpoint (CheckpointError for any other model)."""
    return load_model(path, "classifier", ClassifierConfig, Classifier)


def images_to_tensor(images: np.ndarray) -> torch.Tensor:
    """(N, H, W, C) uint8 numpy -> (N, C, H, W) uint8 tensor."""
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))


@torch.no_grad()
def predict_scores(model: Classifier, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Class probabilities (N, K): softmax for single-label, sigmoid for multi-label."""
    model.eval()
    frames = images_to_tensor(images)
    out = []
    for start in range(0, len(frames), batch_size):
        logits = model(frames[start:start + batch_size])
        out.append(torch.sigmoid(logits) if model.config.multi_label else torch.softmax(logits, dim=1))
    return torch.cat(out).numpy() if out else np.zeros((0, len(model.config.class_names)), np.float32)


def _check_compatible(model_config: ClassifierConfig, data: ClassificationDataset, name: str) -> None:
    _, height, width, channels = data.images.shape
    if (height, width, channels) != (model_config.height, model_config.width, model_config.in_channels):
        raise DatasetError(
            f"{name} images are {height}x{width}x{channels} (HxWxC) but the model expects "
            f"{model_config.height}x{model_config.width}x{model_config.in_channels}"
        )
    if data.multi_label != model_config.multi_label or len(data.class_names) != len(model_config.class_names):
        raise DatasetError(f"{name} labels ({len(data.class_names)} classes, multi_label={data.multi_label}) "
                           f"do not match the model ({model_config.class_names})")
    if not data.multi_label:
        check_labels(data.labels, len(model_config.class_names), name)


def evaluate_scores(scores: np.ndarray, data: ClassificationDataset) -> dict[str, Any]:
    """Accuracy, macro F1, sklearn classification report and confusion matrix for ``scores``."""
    from sklearn.metrics import classification_report, confusion_matrix, f1_score, multilabel_confusion_matrix

    names = list(data.class_names)
    if data.multi_label:
        predicted = (scores >= 0.5).astype(np.int64)
        matrix = multilabel_confusion_matrix(data.labels, predicted)  # (K, 2, 2)
        accuracy = float(np.mean(np.all(predicted == data.labels, axis=1)))  # exact-match
        label_accuracy = float(np.mean(predicted == data.labels))
    else:
        predicted = scores.argmax(axis=1)
        matrix = confusion_matrix(data.labels, predicted, labels=list(range(len(names))))
        accuracy = float(np.mean(predicted == data.labels))
        label_accuracy = accuracy
    kwargs = {"target_names": names, "zero_division": 0}
    if not data.multi_label:
        kwargs["labels"] = list(range(len(names)))
    return {
        "accuracy": accuracy,
        "label_accuracy": label_accuracy,
        "macro_f1": float(f1_score(data.labels, predicted, average="macro", zero_division=0,
                                   **({} if data.multi_label else {"labels": list(range(len(names)))}))),
        "report": classification_report(data.labels, predicted, output_dict=True, **kwargs),
        "report_text": classification_report(data.labels, predicted, digits=4, **kwargs),
        "confusion_matrix": matrix.tolist(),
        "num_images": int(len(data)),
    }


def save_confusion_png(matrix: np.ndarray, class_names: tuple[str, ...], path: str | os.PathLike) -> Path:
    """Plot a (K, K) confusion matrix, or (K, 2, 2) per-label matrices, to a PNG."""
    from matplotlib.figure import Figure  # no pyplot: the process's matplotlib backend stays as it is

    matrix = np.asarray(matrix)
    if matrix.ndim == 3:
        columns = min(4, len(matrix))
        rows = -(-len(matrix) // columns)
        figure = Figure(figsize=(3 * columns, 3 * rows))
        axes = figure.subplots(rows, columns, squeeze=False)
        for ax, label_matrix, name in zip(axes.flat, matrix, class_names):
            _draw_matrix(ax, label_matrix, ("0", "1"), name)
        for ax in list(axes.flat)[len(matrix):]:
            ax.axis("off")
    else:
        size = max(4.0, 0.5 * len(class_names) + 2)
        figure = Figure(figsize=(size, size))
        ax = figure.subplots()
        _draw_matrix(ax, matrix, class_names, "confusion matrix")
    figure.tight_layout()
    with atomic_output(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    return Path(path)


def _draw_matrix(ax: Any, matrix: np.ndarray, names: tuple[str, ...], title: str) -> None:
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(names)), names, rotation=90)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, str(value), ha="center", va="center", fontsize=7,
                color="white" if value > matrix.max() / 2 else "black")


def _loss(logits: torch.Tensor, labels: torch.Tensor, multi_label: bool) -> torch.Tensor:
    if multi_label:
        return F.binary_cross_entropy_with_logits(logits, labels.float())
    return F.cross_entropy(logits, labels)


def train_classifier(
    train: ClassificationDataset,
    val: ClassificationDataset,
    out_dir: str | os.PathLike,
    config: ClassifierTrainConfig = ClassifierTrainConfig(),
    progress: bool = True,
) -> dict[str, Any]:
    """Train a classifier; write checkpoints, TensorBoard logs and a run record to ``out_dir``.

    ``out_dir`` receives ``best.safetensors`` (highest validation macro-F1), ``last.safetensors``,
    ``tb/`` (TensorBoard: ``losses/train``, ``charts/val_accuracy``, ``charts/val_macro_f1``)
    and ``run.json`` (config, machine info, per-epoch metrics).

    Returns:
        The run record (also in ``run.json``).
    """
    from torch.utils.tensorboard import SummaryWriter
    from tqdm import tqdm

    config = from_mapping(ClassifierTrainConfig, to_plain(config), "classifier training config")  # bounds hold
    _, height, width, channels = train.images.shape
    model_config = from_mapping(ClassifierConfig, {
        "class_names": list(train.class_names), "multi_label": train.multi_label, "encoder": config.encoder,
        "in_channels": channels, "height": height, "width": width, "features_dim": config.features_dim,
    }, "classifier config")
    model_config.encoder_spec()  # the encoder must fit the images (e.g. nature needs >= 36x36 px)
    _check_compatible(model_config, train, "training set")
    _check_compatible(model_config, val, "validation set")
    if len(train) == 0 or len(val) == 0:
        raise DatasetError(f"the training set ({len(train)} images) and validation set ({len(val)}) must not be empty")
    out_dir = ensure_dir(out_dir)
    torch.manual_seed(config.seed)
    model = Classifier(model_config).to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    steps_per_epoch = -(-len(train) // config.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.learning_rate,
                                                   total_steps=config.epochs * steps_per_epoch)
    frames, labels = images_to_tensor(train.images), torch.from_numpy(train.labels)
    generator = torch.Generator().manual_seed(config.seed)
    writer = SummaryWriter(str(out_dir / "tb"))
    spec_extra = {"train_config": to_plain(config)}
    history, best_f1, step = [], -1.0, 0
    bar = tqdm(range(config.epochs), desc="train-classifier", unit="epoch", disable=not progress)
    for epoch in bar:
        model.train()
        order = torch.randperm(len(train), generator=generator)
        for start in range(0, len(order), config.batch_size):
            batch = order[start:start + config.batch_size]
            inputs = frames[batch].float() / 255.0
            if config.augment_shift_px:
                inputs = random_shift(inputs, config.augment_shift_px, generator)
            loss = _loss(model(inputs), labels[batch], train.multi_label)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            writer.add_scalar("losses/train", loss.item(), step)
            step += 1
        metrics = evaluate_scores(predict_scores(model, val.images), val)
        writer.add_scalar("charts/val_accuracy", metrics["accuracy"], epoch)
        writer.add_scalar("charts/val_macro_f1", metrics["macro_f1"], epoch)
        history.append({"epoch": epoch, "val_accuracy": metrics["accuracy"], "val_macro_f1": metrics["macro_f1"]})
        bar.set_postfix(val_acc=f"{metrics['accuracy']:.4f}", val_f1=f"{metrics['macro_f1']:.4f}")
        save_checkpoint(out_dir / "last.safetensors", model, checkpoint_spec(model_config, epoch=epoch, **spec_extra))
        if metrics["macro_f1"] > best_f1:
            best_f1 = metrics["macro_f1"]
            spec = checkpoint_spec(model_config, epoch=epoch, **spec_extra)
            save_checkpoint(out_dir / "best.safetensors", model, spec)
    writer.close()
    record = {
        "kind": "train-classifier",
        "model": to_plain(model_config),
        "train_config": to_plain(config),
        "num_train": len(train),
        "num_val": len(val),
        "history": history,
        "best_val_macro_f1": best_f1,
        "machine": machine_info(),
    }
    write_json_atomic(out_dir / "run.json", record, sort_keys=True)
    return record


def evaluate_classifier(
    model: Classifier, data: ClassificationDataset, out_dir: str | os.PathLike | None = None
) -> dict[str, Any]:
    """Evaluate ``model`` on ``data``; with ``out_dir`` also write ``metrics.json``,
    ``report.txt`` and ``confusion_matrix.png``."""
    _check_compatible(model.config, data, "evaluation set")
    metrics = evaluate_scores(predict_scores(model, data.images), data)
    if out_dir is not None:
        out_dir = Path(out_dir)
        write_json_atomic(out_dir / "metrics.json", {k: v for k, v in metrics.items() if k != "report_text"},
                          sort_keys=True)
        write_text_atomic(out_dir / "report.txt", metrics["report_text"])
        save_confusion_png(np.asarray(metrics["confusion_matrix"]), data.class_names, out_dir / "confusion_matrix.png")
    return metrics


def split_dataset(
    data: ClassificationDataset, val_fraction: float, seed: int
) -> tuple[ClassificationDataset, ClassificationDataset]:
    """Random train/validation split with a fixed seed."""
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"val_fraction must be in (0, 1), got {val_fraction}")
    order = np.random.default_rng(seed).permutation(len(data))
    cut = int(round(len(data) * (1.0 - val_fraction)))
    return data.subset(order[:cut]), data.subset(order[cut:])


__all__ = [
    "Classifier", "ClassifierConfig", "ClassifierTrainConfig", "evaluate_classifier", "evaluate_scores",
    "load_classifier", "predict_scores", "save_confusion_png", "split_dataset", "train_classifier",
]
