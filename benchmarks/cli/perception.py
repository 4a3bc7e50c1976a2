"""`drivelab perception ...`: datasets, classifiers, detectors, explanations and export."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from drivelab.benchmarks import bench_perception
from drivelab.perception.errors import CheckpointError, ConfigError, DatasetError

EPILOG = """examples:
  drivelab perception make-dataset --env drivelab/highway-fast-v0 --frames 6000 --out data/highway
  drivelab perception train-detector --data data/highway --out runs/detector
  drivelab perception eval-detector --checkpoint runs/detector/best.safetensors --data data/highway \
      --split test --out runs/detector/test
  drivelab perception train-classifier --format affordance --data data/highway --out runs/affordance
  drivelab perception train-classifier --format digits --resize 32x32 --out runs/digits
"""


def _size(text: str) -> tuple[int, int]:
    """'HxW' -> (H, W)."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected HxW, e.g. 32x32, got {text!r}") from error
    return height, width


def _key_values(text: str) -> dict[str, Any]:
    """'width=128,height=64,color=rgb' -> dict, numbers parsed."""
    out: dict[str, Any] = {}
    for item in filter(None, text.split(",")):
        if "=" not in item:
            raise argparse.ArgumentTypeError(f"expected key=value pairs separated by commas, got {item!r}")
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


# -- handlers -----------------------------------------------------------------------------------


def make_dataset_command(args: argparse.Namespace) -> int:
    from drivelab.perception.datasets import DatasetConfig, make_dataset

    camera = dict(args.camera or {})
    valid_camera = {"width", "height", "metres_per_pixel", "color"}
    if set(camera) - valid_camera:
        raise ConfigError(
            f"unknown --camera key(s) {sorted(set(camera) - valid_camera)}; valid: {sorted(valid_camera)}"
        )
    config = DatasetConfig(env_id=args.env, frames=args.frames, num_envs=args.num_envs, seed=args.seed,
                           backend=args.backend, yolo=args.yolo, frame_every=args.frame_every,
                           random_action_prob=args.random_action_prob, **camera)
    summary = make_dataset(config, args.out, progress=not args.no_progress)
    _print_json({"out": args.out, "counts": summary["counts"], "objects": summary["objects"],
                 "label_rates": summary["label_rates"]})
    return 0


def _classification_data(args: argparse.Namespace, split: str, class_names: tuple[str, ...] | None = None) -> Any:
    from drivelab.perception.readers import read_classification

    return read_classification(args.format, args.data, split, args.resize, class_names)


def train_classifier_command(args: argparse.Namespace) -> int:
    from drivelab.perception.classify import ClassifierTrainConfig, split_dataset, train_classifier
    from drivelab.perception.configs import config_from_dict

    config = config_from_dict(ClassifierTrainConfig, {
        "epochs": args.epochs, "batch_size": args.batch_size, "learning_rate": args.lr, "seed": args.seed,
        "encoder": args.encoder, "features_dim": args.features_dim, "num_threads": args.threads,
        "augment_shift_px": args.augment_shift_px,
    })
    train = _classification_data(args, "train")
    if args.format in ("imagefolder",) and not (Path(args.data) / "val").is_dir():
        train, val = split_dataset(train, args.val_fraction, args.seed)
    else:
        val = _classification_data(args, "val", train.class_names if train.multi_label else None)
    record = train_classifier(train, val, args.out, config, progress=not args.no_progress)
    _print_json({"out": args.out, "best_val_macro_f1": record["best_val_macro_f1"], "history": record["history"][-1]})
    return 0


def eval_classifier_command(args: argparse.Namespace) -> int:
    from drivelab.perception.classify import evaluate_classifier, load_classifier

    model = load_classifier(args.checkpoint)
    data = _classification_data(args, args.split, model.config.class_names if model.config.multi_label else None)
    metrics = evaluate_classifier(model, data, args.out)
    print(metrics["report_text"])
    _print_json({"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"], "out": args.out})
    return 0


def train_detector_command(args: argparse.Namespace) -> int:
    from drivelab.perception.configs import config_from_dict
    from drivelab.perception.detection import DetectorTrainConfig, train_detector
    from drivelab.perception.readers import read_detection

    config = config_from_dict(DetectorTrainConfig, {
        "epochs": args.epochs, "batch_size": args.batch_size, "learning_rate": args.lr, "seed": args.seed,
        "num_threads": args.threads, "output_stride": args.output_stride, "width_mult": args.width_mult,
        "eval_every": args.eval_every,
    })
    train = read_detection(args.data, "train")
    val = read_detection(args.val or args.data, "val")
    record = train_detector(train, val, args.out, config, progress=not args.no_progress)
    _print_json({"out": args.out, "best_val_AP": record["best_val_AP"], "history": record["history"]})
    return 0


def eval_detector_command(args: argparse.Namespace) -> int:
    from drivelab.perception.coco_eval import stats_table
    from drivelab.perception.detect import load_detector
    from drivelab.perception.detection import evaluate_detector
    from drivelab.perception.readers import read_detection

    torch.set_num_threads(args.threads)
    model = load_detector(args.checkpoint)
    metrics = evaluate_detector(model, read_detection(args.data, args.split), args.out)
    print(stats_table(metrics["stats"]))
    return 0


def _frames_from(path: Path, split: str, limit: int | None) -> tuple[np.ndarray, list[str], int | None]:
    from drivelab.perception.readers import IMAGE_SUFFIXES, read_detection, read_image, stack_fixed_size

    if path.is_dir() and (path / f"{split}.json").exists() or path.suffix in (".json", ".yaml", ".yml"):
        files = [str(s.file_name) for s in read_detection(path, split).samples]
    elif path.is_dir():
        files = sorted(str(p) for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    else:
        files = [str(path)]
    files = files[:limit] if limit else files
    if not files:
        raise DatasetError(f"no images found under {path}")
    return stack_fixed_size([read_image(f) for f in files], files), files, None


def predict_command(args: argparse.Namespace) -> int:
    from drivelab.perception.detect import load_detector
    from drivelab.perception.detection import write_overlays

    model = load_detector(args.checkpoint)
    images, files, _ = _frames_from(Path(args.images), args.split, args.limit)
    if images.shape[3] != model.config.in_channels:
        raise DatasetError(
            f"{files[0]} has {images.shape[3]} channels; the detector expects {model.config.in_channels}"
        )
    written = write_overlays(model, images, args.out, files, args.score_threshold, args.fps)
    _print_json({"frames": len(images), "written": len(written), "out": args.out})
    return 0


def _load_any_model(path: str, kinds: tuple[str, ...] = ("classifier", "detector")) -> torch.nn.Module:
    from drivelab.perception.checkpoints import read_checkpoint
    from drivelab.perception.classify import load_classifier
    from drivelab.perception.detect import load_detector
    from drivelab.perception.extractor import load_encoder

    spec, _ = read_checkpoint(path, kinds=kinds)
    loaders = {"classifier": load_classifier, "detector": load_detector, "encoder": load_encoder}
    return loaders[spec["kind"]](path).eval()


def explain_command(args: argparse.Namespace) -> int:
    import cv2

    from drivelab.perception.classify import Classifier
    from drivelab.perception.encoders import ConvEncoder
    from drivelab.perception.explain import classifier_target, detector_target, explain_panel, feature_norm_target
    from drivelab.perception.readers import read_image
    from drivelab.perception.records import atomic_output

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
    with atomic_output(args.out) as tmp:
        if not cv2.imwrite(str(tmp), panel):
            raise DatasetError(f"could not write {args.out}")
    _print_json({"out": args.out, "target": names[target_index], "panels": ["frame", "saliency", "grad-cam"]})
    return 0


def export_command(args: argparse.Namespace) -> int:
    from drivelab.perception.export import export_and_check
    from drivelab.perception.records import write_json

    model = _load_any_model(args.checkpoint)
    cfg = model.config
    generator = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (args.batch, cfg.in_channels, cfg.height, cfg.width), dtype=torch.uint8,
                           generator=generator)
    report = export_and_check(model, frames, args.out, threads=args.threads, atol=args.atol)
    write_json(Path(args.out) / "export.json", report)
    _print_json(report)
    if not report["parity_ok"]:
        raise CheckpointError(f"onnxruntime outputs differ from torch by {report['max_abs_diff']} (> {args.atol})")
    return 0


# -- parsers ------------------------------------------------------------------------------------


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _classification_args(parser: argparse.ArgumentParser) -> None:
    from drivelab.perception.readers import CLASSIFICATION_FORMATS

    parser.add_argument("--format", required=True, choices=CLASSIFICATION_FORMATS, help="dataset format")
    parser.add_argument("--data", help="dataset path (make-dataset folder for 'affordance'; unused for 'digits')")
    parser.add_argument("--resize", type=_size, help="resize images to HxW (digits: 32x32 works well)")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``perception`` and its sub-commands."""
    parser = subparsers.add_parser("perception", help="supervised perception: datasets, classifiers, detectors",
                                   description=__doc__, epilog=EPILOG,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="perception_command", required=True)

    make = commands.add_parser("make-dataset", help="render labelled frames from the simulator")
    make.add_argument("--env", default="drivelab/highway-fast-v0", help="scenario id")
    make.add_argument("--camera", type=_key_values,
                      help="camera settings, e.g. width=128,height=64,metres_per_pixel=0.5,color=grayscale")
    make.add_argument("--frames", type=int, default=1000, help="total frames over train/val/test (80/10/10)")
    make.add_argument("--out", required=True, help="output folder (an interrupted run there resumes)")
    make.add_argument("--num-envs", type=int, default=16)
    make.add_argument("--seed", type=int, default=0)
    make.add_argument("--backend", default="auto", choices=("auto", "envpool", "highway-env"))
    make.add_argument("--frame-every", type=int, default=4, help="record every k-th step")
    make.add_argument("--random-action-prob", type=float, default=0.3)
    make.add_argument("--yolo", action="store_true", help="also write YOLO txt labels and data.yaml")
    make.add_argument("--no-progress", action="store_true")
    make.set_defaults(func=make_dataset_command)

    train_cls = commands.add_parser("train-classifier", help="train a single- or multi-label classifier")
    _classification_args(train_cls)
    train_cls.add_argument("--out", required=True, help="run folder (checkpoints, tb/, run.json)")
    train_cls.add_argument("--epochs", type=int, default=15)
    train_cls.add_argument("--batch-size", type=int, default=64)
    train_cls.add_argument("--lr", type=float, default=2e-3)
    train_cls.add_argument("--seed", type=int, default=0)
    train_cls.add_argument("--encoder", default="fast", choices=("fast", "nature", "centernet"))
    train_cls.add_argument("--features-dim", type=int, default=256)
    train_cls.add_argument("--augment-shift-px", type=int, default=0)
    train_cls.add_argument("--val-fraction", type=float, default=0.2, help="held out when there is no val split")
    _common(train_cls)
    train_cls.set_defaults(func=train_classifier_command)

    eval_cls = commands.add_parser("eval-classifier", help="accuracy, classification report, confusion matrix PNG")
    _classification_args(eval_cls)
    eval_cls.add_argument("--checkpoint", required=True)
    eval_cls.add_argument("--split", default="test")
    eval_cls.add_argument("--out", required=True, help="folder for metrics.json, report.txt, confusion_matrix.png")
    _common(eval_cls)
    eval_cls.set_defaults(func=eval_classifier_command)

    train_det = commands.add_parser("train-detector", help="train the CenterNet-style detector from scratch")
    train_det.add_argument("--data", required=True, help="make-dataset folder, COCO json or YOLO data.yaml")
    train_det.add_argument("--val", help="validation COCO json when --data is a json")
    train_det.add_argument("--out", required=True)
    train_det.add_argument("--epochs", type=int, default=20)
    train_det.add_argument("--batch-size", type=int, default=32)
    train_det.add_argument("--lr", type=float, default=3e-3)
    train_det.add_argument("--seed", type=int, default=0)
    train_det.add_argument("--output-stride", type=int, default=4, choices=(2, 4))
    train_det.add_argument("--width-mult", type=int, default=16)
    train_det.add_argument("--eval-every", type=int, default=5)
    _common(train_det)
    train_det.set_defaults(func=train_detector_command)

    eval_det = commands.add_parser("eval-detector", help="COCO AP/AR (ours and pycocotools) and a PR-curve PNG")
    eval_det.add_argument("--checkpoint", required=True)
    eval_det.add_argument("--data", required=True, help="make-dataset folder, COCO json or YOLO data.yaml")
    eval_det.add_argument("--split", default="test")
    eval_det.add_argument("--out", required=True, help="folder for metrics.json and pr_curve.png")
    _common(eval_det)
    eval_det.set_defaults(func=eval_detector_command)

    predict = commands.add_parser("predict", help="draw detections on frames (PNG folder or .mp4)")
    predict.add_argument("--checkpoint", required=True)
    predict.add_argument("--images", required=True, help="image file, image folder, or dataset (with --split)")
    predict.add_argument("--split", default="test")
    predict.add_argument("--limit", type=int, help="first N frames only")
    predict.add_argument("--out", required=True, help="output folder for PNGs, or a .mp4 file")
    predict.add_argument("--score-threshold", type=float, default=0.3)
    predict.add_argument("--fps", type=int, default=10)
    predict.set_defaults(func=predict_command)

    explain = commands.add_parser("explain",
                                  help="saliency and Grad-CAM overlays for a classifier, detector or encoder")
    explain.add_argument("--checkpoint", required=True)
    explain.add_argument("--image", required=True)
    explain.add_argument("--target", help="class name or index (default 0); encoders explain their feature norm")
    explain.add_argument("--out", required=True, help="PNG: frame | saliency | Grad-CAM")
    explain.set_defaults(func=explain_command)

    export = commands.add_parser("export", help="ONNX export, onnxruntime parity check, int8 quantization, speed")
    export.add_argument("--checkpoint", required=True)
    export.add_argument("--out", required=True, help="folder for model.onnx, model.int8.onnx, export.json")
    export.add_argument("--batch", type=int, default=256)
    export.add_argument("--atol", type=float, default=1e-4)
    export.add_argument("--threads", type=int, default=1)
    export.set_defaults(func=export_command)


def register_bench(bench: argparse._SubParsersAction) -> None:
    """Add ``bench perception`` (detector, classifiers and inference speed against the issue's targets)."""
    parser = bench.add_parser("perception", help="perception: detector AP, classifier F1/accuracy, inference frames/s")
    bench_perception.add_arguments(parser)
    parser.set_defaults(func=bench_perception.run_from_args)
