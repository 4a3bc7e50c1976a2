"""`drivelab perception ...`: datasets, classifiers, detectors, explanations and export.

One module serves the eight ``perception`` commands: ``configure(parser, command)`` adds the
arguments of one of them and sets its ``run`` function. Each run function checks every option
and the output path before any expensive work, then calls the ``drivelab.perception`` library
and prints a JSON summary. The torch thread count is set here (``--threads``), never in the library.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from drivelab.core.config import from_mapping
from drivelab.core.errors import CheckpointError, ConfigError
from drivelab.core.files import atomic_output, check_writable, write_json_atomic
from drivelab.perception.centernet import load_detector
from drivelab.perception.checkpoints import read_checkpoint
from drivelab.perception.classify import (
    Classifier,
    ClassifierTrainConfig,
    evaluate_classifier,
    load_classifier,
    split_dataset,
    train_classifier,
)
from drivelab.perception.coco_eval import stats_table
from drivelab.perception.datasets import CAMERA_KEYS, DatasetConfig, make_dataset
from drivelab.perception.detector_pipeline import DetectorTrainConfig, evaluate_detector, train_detector, write_overlays
from drivelab.perception.encoders import TRUNK_NAMES, ConvEncoder
from drivelab.perception.errors import DatasetError
from drivelab.perception.images import IMAGE_SUFFIXES, parse_size, read_image, stack_fixed_size
from drivelab.perception.readers import CLASSIFICATION_FORMATS, read_classification, read_detection

EPILOG = """examples:
  drivelab perception make-dataset --env drivelab/highway-fast-v0 --frames 6000 --out data/highway
  drivelab perception train-detector --data data/highway --out runs/detector
  drivelab perception eval-detector --checkpoint runs/detector/best.safetensors --data data/highway \\
      --split test --out runs/detector/test
  drivelab perception train-classifier --format affordance --data data/highway --out runs/affordance
  drivelab perception train-classifier --format digits --resize 32x32 --out runs/digits
"""
MAX_THREADS = 1024


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the examples' line breaks and shows the default of every option that has one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.option_strings and action.default not in (None, False, argparse.SUPPRESS):
            text += " (default: %(default)s)"
        return text


def _key_values(text: str) -> dict[str, Any]:
    """'width=128,height=64,color=rgb' -> dict, numbers parsed."""
    out: dict[str, Any] = {}
    for item in filter(None, text.split(",")):
        if "=" not in item:
            raise ConfigError(f"--camera expects key=value pairs separated by commas, got {item!r}")
        key, value = item.split("=", 1)
        for convert in (int, float):
            try:
                out[key.strip()] = convert(value)
                break
            except ValueError:
                continue
        else:
            out[key.strip()] = value.strip()
    return out


def _print_json(payload: dict[str, Any]) -> None:
    print(json.dumps(payload, indent=2, sort_keys=True, default=str))


def _set_threads(threads: int) -> None:
    """The process's torch CPU threads (a CLI decision, never a library one)."""
    if not 1 <= threads <= MAX_THREADS:
        raise ConfigError(f"--threads must be in [1, {MAX_THREADS}], got {threads}")
    torch.set_num_threads(threads)


def quiet_onnxruntime_info() -> None:
    """Drop onnxruntime's per-tensor INFO chatter during quantization (it logs through the root logger).

    A command-line decision, made in run functions only: the library leaves logging alone.
    """
    def not_onnxruntime_info(record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or "onnxruntime" not in record.pathname

    for handler in logging.getLogger().handlers:
        handler.addFilter(not_onnxruntime_info)


def _at_least(value: int | None, low: int, option: str) -> None:
    if value is not None and value < low:
        raise ConfigError(f"{option} must be >= {low}, got {value}")


# -- run functions --------------------------------------------------------------------------------


def run_make_dataset(args: argparse.Namespace) -> int:
    camera = _key_values(args.camera or "")
    unknown = sorted(set(camera) - set(CAMERA_KEYS))
    if unknown:
        raise ConfigError(f"unknown --camera key(s) {unknown}; valid: {', '.join(CAMERA_KEYS)}")
    config = from_mapping(DatasetConfig, {
        "env_id": args.env, "frames": args.frames, "num_envs": args.num_envs, "seed": args.seed,
        "backend": args.backend, "yolo": args.yolo, "frame_every": args.frame_every,
        "random_action_prob": args.random_action_prob, **camera,
    }, "dataset config")
    summary = make_dataset(config, args.out, progress=not args.no_progress)  # checks env, camera and --out first
    _print_json({"out": args.out, "counts": summary["counts"], "objects": summary["objects"],
                 "label_rates": summary["label_rates"]})
    return 0


def _classification_data(args: argparse.Namespace, split: str, class_names: tuple[str, ...] | None = None) -> Any:
    resize = parse_size(args.resize) if args.resize else None
    return read_classification(args.format, args.data, split, resize, class_names)


def run_train_classifier(args: argparse.Namespace) -> int:
    config = from_mapping(ClassifierTrainConfig, {
        "epochs": args.epochs, "batch_size": args.batch_size, "learning_rate": args.lr, "seed": args.seed,
        "encoder": args.encoder, "features_dim": args.features_dim, "augment_shift_px": args.augment_shift_px,
    }, "classifier training config")
    if args.resize:
        parse_size(args.resize)
    if not 0.0 < args.val_fraction < 1.0:
        raise ConfigError(f"--val-fraction must be in (0, 1), got {args.val_fraction}")
    check_writable(args.out, folder=True)
    _set_threads(args.threads)
    train = _classification_data(args, "train")
    if args.format in ("imagefolder",) and not (Path(args.data) / "val").is_dir():
        train, val = split_dataset(train, args.val_fraction, args.seed)
    else:
        val = _classification_data(args, "val", train.class_names if train.multi_label else None)
    record = train_classifier(train, val, args.out, config, progress=not args.no_progress)
    _print_json({"out": args.out, "best_val_macro_f1": record["best_val_macro_f1"], "history": record["history"][-1]})
    return 0


def run_eval_classifier(args: argparse.Namespace) -> int:
    if args.resize:
        parse_size(args.resize)
    check_writable(args.out, folder=True)
    _set_threads(args.threads)
    model = load_classifier(args.checkpoint)
    data = _classification_data(args, args.split, model.config.class_names if model.config.multi_label else None)
    metrics = evaluate_classifier(model, data, args.out)
    print(metrics["report_text"])
    _print_json({"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"], "out": args.out})
    return 0


def run_train_detector(args: argparse.Namespace) -> int:
    config = from_mapping(DetectorTrainConfig, {
        "epochs": args.epochs, "batch_size": args.batch_size, "learning_rate": args.lr, "seed": args.seed,
        "output_stride": args.output_stride, "width_mult": args.width_mult, "eval_every": args.eval_every,
    }, "detector training config")
    check_writable(args.out, folder=True)
    _set_threads(args.threads)
    train = read_detection(args.data, "train")
    val = read_detection(args.val or args.data, "val")
    record = train_detector(train, val, args.out, config, progress=not args.no_progress)
    _print_json({"out": args.out, "best_val_AP": record["best_val_AP"], "history": record["history"]})
    return 0


def run_eval_detector(args: argparse.Namespace) -> int:
    check_writable(args.out, folder=True)
    _set_threads(args.threads)
    model = load_detector(args.checkpoint)
    metrics = evaluate_detector(model, read_detection(args.data, args.split), args.out)
    print(stats_table(metrics["stats"]))
    return 0


def _frames_from(path: Path, split: str, limit: int | None) -> tuple[np.ndarray, list[str]]:
    """(N, H, W, C) frames and their file names from an image, a folder of images or a dataset split."""
    if path.is_dir() and (path / f"{split}.json").exists() or path.suffix in (".json", ".yaml", ".yml"):
        files = [str(s.file_name) for s in read_detection(path, split).samples]
    elif path.is_dir():
        files = sorted(str(p) for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    else:
        files = [str(path)]
    files = files[:limit] if limit else files
    if not files:
        raise DatasetError(f"no images found under {path}")
    return stack_fixed_size([read_image(f) for f in files], files), files


def run_predict(args: argparse.Namespace) -> int:
    _at_least(args.limit, 1, "--limit")
    _at_least(args.fps, 1, "--fps")
    if not 0.0 <= args.score_threshold <= 1.0:
        raise ConfigError(f"--score-threshold must be in [0, 1], got {args.score_threshold}")
    video = Path(args.out).suffix.lower() == ".mp4"
    check_writable(args.out, folder=not video)
    _set_threads(args.threads)
    model = load_detector(args.checkpoint)
    images, files = _frames_from(Path(args.images), args.split, args.limit)
    if images.shape[3] != model.config.in_channels:
        raise DatasetError(
            f"{files[0]} has {images.shape[3]} channels; the detector expects {model.config.in_channels}"
        )
    written = write_overlays(model, images, args.out, files, args.score_threshold, args.fps)
    _print_json({"frames": len(images), "written": len(written), "out": args.out})
    return 0


def _load_any_model(path: str, kinds: tuple[str, ...] = ("classifier", "detector")) -> torch.nn.Module:
    from drivelab.perception.extractor import load_encoder  # SB3 only when an encoder is explained

    spec, _ = read_checkpoint(path, kinds=kinds)
    loaders = {"classifier": load_classifier, "detector": load_detector, "encoder": load_encoder}
    return loaders[spec["kind"]](path).eval()


def run_explain(args: argparse.Namespace) -> int:
    from drivelab.perception.explain import classifier_target, detector_target, explain_panel, feature_norm_target

    suffix = Path(args.out).suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise ConfigError(f"--out must be an image file ({', '.join(IMAGE_SUFFIXES)}), got {args.out}")
    check_writable(args.out)
    _set_threads(args.threads)
    model = _load_any_model(args.checkpoint, ("classifier", "detector", "encoder"))
    if isinstance(model, ConvEncoder):
        names, target_index, target = ("feature norm",), 0, feature_norm_target()
        in_channels = model.spec.in_channels
    else:
        names, in_channels = model.config.class_names, model.config.in_channels
        try:
            target_index = names.index(args.target) if args.target in names else int(args.target or 0)
        except ValueError as error:
            raise ConfigError(f"--target {args.target} is not a class of this model: {list(names)}") from error
        if not 0 <= target_index < len(names):
            raise ConfigError(f"--target {args.target} is not a class of this model: {list(names)}")
        target = classifier_target(target_index) if isinstance(model, Classifier) else detector_target(target_index)
    frame = read_image(args.image, in_channels)
    panel = explain_panel(model, frame, target)
    ok, encoded = cv2.imencode(suffix, panel)
    if not ok:
        raise DatasetError(f"OpenCV could not encode the panel as {suffix}")
    with atomic_output(args.out) as tmp:
        tmp.write_bytes(encoded.tobytes())
    _print_json({"out": args.out, "target": names[target_index], "panels": ["frame", "saliency", "grad-cam"]})
    return 0


def run_export(args: argparse.Namespace) -> int:
    from drivelab.perception.export import export_and_check

    _at_least(args.batch, 1, "--batch")
    if not args.atol >= 0:
        raise ConfigError(f"--atol must be >= 0, got {args.atol}")
    check_writable(args.out, folder=True)
    _set_threads(args.threads)
    quiet_onnxruntime_info()
    model = _load_any_model(args.checkpoint)
    cfg = model.config
    generator = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (args.batch, cfg.in_channels, cfg.height, cfg.width), dtype=torch.uint8,
                           generator=generator)
    report = export_and_check(model, frames, args.out, threads=args.threads, atol=args.atol)
    write_json_atomic(Path(args.out) / "export.json", report, sort_keys=True)
    _print_json(report)
    if not report["parity_ok"]:
        raise CheckpointError(f"onnxruntime outputs differ from torch by {report['max_abs_diff']} (> {args.atol})")
    return 0


# -- arguments ------------------------------------------------------------------------------------


def _threads(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")


def _progress(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _classification_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", required=True, choices=CLASSIFICATION_FORMATS, help="dataset format")
    parser.add_argument("--data", help="dataset path (make-dataset folder for 'affordance'; unused for 'digits')")
    parser.add_argument("--resize", help="resize images to HxW, e.g. 32x32 (digits: 32x32 works well)")


def add_make_dataset(parser: argparse.ArgumentParser) -> None:
    defaults = DatasetConfig()
    parser.add_argument("--env", default=defaults.env_id, help="scenario id")
    parser.add_argument("--camera",
                        help="camera settings, e.g. width=128,height=64,metres_per_pixel=0.5,color=grayscale")
    parser.add_argument("--frames", type=int, default=defaults.frames,
                        help="total frames over train/val/test, split 80/10/10")
    parser.add_argument("--out", required=True, help="output folder (an interrupted run there resumes)")
    parser.add_argument("--num-envs", type=int, default=defaults.num_envs,
                        help="environments stepped together")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="offsets every scene seed")
    parser.add_argument("--backend", default=defaults.backend,
                        help="simulator backend: auto, envpool or highway-env")
    parser.add_argument("--frame-every", type=int, default=defaults.frame_every,
                        help="record every k-th step")
    parser.add_argument("--random-action-prob", type=float, default=defaults.random_action_prob,
                        help="chance per step of a random action instead of the IDM/MOBIL driver's, in [0, 1]")
    parser.add_argument("--yolo", action="store_true", help="also write YOLO txt labels and data.yaml")
    _progress(parser)


def add_train_classifier(parser: argparse.ArgumentParser) -> None:
    defaults = ClassifierTrainConfig()
    _classification_args(parser)
    parser.add_argument("--out", required=True, help="run folder (checkpoints, tb/, run.json)")
    parser.add_argument("--epochs", type=int, default=defaults.epochs, help="passes over the data")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size, help="images per step")
    parser.add_argument("--lr", type=float, default=defaults.learning_rate,
                        help="peak AdamW learning rate")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seeds weights and shuffling")
    parser.add_argument("--encoder", default=defaults.encoder, choices=TRUNK_NAMES,
                        help="CNN trunk")
    parser.add_argument("--features-dim", type=int, default=defaults.features_dim,
                        help="encoder output size")
    parser.add_argument("--augment-shift-px", type=int, default=defaults.augment_shift_px,
                        help="random-shift augmentation in px, 0 = off")
    parser.add_argument("--val-fraction", type=float, default=0.2,
                        help="share held out for validation when there is no val split")
    _threads(parser)
    _progress(parser)


def add_eval_classifier(parser: argparse.ArgumentParser) -> None:
    _classification_args(parser)
    parser.add_argument("--checkpoint", required=True, help="classifier checkpoint (.safetensors)")
    parser.add_argument("--split", default="test", help="split to evaluate")
    parser.add_argument("--out", required=True, help="folder for metrics.json, report.txt, confusion_matrix.png")
    _threads(parser)


def add_train_detector(parser: argparse.ArgumentParser) -> None:
    defaults = DetectorTrainConfig()
    parser.add_argument("--data", required=True, help="make-dataset folder, COCO json or YOLO data.yaml")
    parser.add_argument("--val", help="validation COCO json when --data is a json")
    parser.add_argument("--out", required=True, help="run folder (checkpoints, tb/, run.json)")
    parser.add_argument("--epochs", type=int, default=defaults.epochs, help="passes over the data")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size, help="images per step")
    parser.add_argument("--lr", type=float, default=defaults.learning_rate,
                        help="peak AdamW learning rate")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seeds weights and shuffling")
    parser.add_argument("--output-stride", type=int, default=defaults.output_stride, choices=(2, 4),
                        help="heatmap stride in px")
    parser.add_argument("--width-mult", type=int, default=defaults.width_mult,
                        help="backbone width")
    parser.add_argument("--eval-every", type=int, default=defaults.eval_every,
                        help="validate every N epochs")
    _threads(parser)
    _progress(parser)


def add_eval_detector(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="detector checkpoint (.safetensors)")
    parser.add_argument("--data", required=True, help="make-dataset folder, COCO json or YOLO data.yaml")
    parser.add_argument("--split", default="test", help="split to evaluate")
    parser.add_argument("--out", required=True, help="folder for metrics.json and pr_curve.png")
    _threads(parser)


def add_predict(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="detector checkpoint (.safetensors)")
    parser.add_argument("--images", required=True, help="image file, image folder, or dataset (with --split)")
    parser.add_argument("--split", default="test", help="dataset split to read")
    parser.add_argument("--limit", type=int, help="first N frames only (N >= 1)")
    parser.add_argument("--out", required=True, help="output folder for PNGs, or a .mp4 file")
    parser.add_argument("--score-threshold", type=float, default=0.3,
                        help="draw detections scoring at least this, in [0, 1]")
    parser.add_argument("--fps", type=int, default=10, help="frames per second of an .mp4")
    _threads(parser)


def add_explain(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="classifier, detector or encoder checkpoint")
    parser.add_argument("--image", required=True, help="image to explain")
    parser.add_argument("--target", help="class name or index (default 0); encoders explain their feature norm")
    parser.add_argument("--out", required=True, help="PNG: frame | saliency | Grad-CAM")
    _threads(parser)


def add_export(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="classifier or detector checkpoint")
    parser.add_argument("--out", required=True, help="folder for model.onnx, model.int8.onnx, export.json")
    parser.add_argument("--batch", type=int, default=256, help="frames per timed batch")
    parser.add_argument("--atol", type=float, default=1e-4,
                        help="largest accepted |torch - onnxruntime| of the float model")
    parser.add_argument("--threads", type=int, default=1, help="torch and onnxruntime CPU threads")


COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {
    "make-dataset": (add_make_dataset, run_make_dataset),
    "train-classifier": (add_train_classifier, run_train_classifier),
    "eval-classifier": (add_eval_classifier, run_eval_classifier),
    "train-detector": (add_train_detector, run_train_detector),
    "eval-detector": (add_eval_detector, run_eval_detector),
    "predict": (add_predict, run_predict),
    "explain": (add_explain, run_explain),
    "export": (add_export, run_export),
}


def configure(parser: argparse.ArgumentParser, command: str) -> None:
    """Add the arguments of ``command`` (e.g. ``"perception make-dataset"``) and its run function."""
    add_arguments, run = COMMANDS[command.split()[-1]]
    parser.epilog = EPILOG
    parser.formatter_class = HelpFormatter
    add_arguments(parser)
    parser.set_defaults(func=run)
