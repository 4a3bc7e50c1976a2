"""Perception benchmark: detector and classifiers trained and scored on held-out data, plus
batched CPU inference throughput, in one invocation.

Steps (each result lands in one JSON with machine info under ``benchmarks/results/``):

1. ``make-dataset`` on highway-fast-v0 with the default camera (128x64, 0.5 m/px); reused when
   the work folder already holds it.
2. Detector trained from scratch on ``train``, scored on ``test`` (COCO AP through our
   implementation and pycocotools). Targets: AP50 >= 0.95, AP@[.5:.95] >= 0.70.
3. Affordance classifier (multi-label) on the same frames. Target: test macro-F1 >= 0.95.
4. scikit-learn digits classifier. Target: accuracy >= 0.98.
5. Inference throughput at batch 256 with ``--threads`` CPU threads: torch, onnxruntime and
   onnxruntime int8 for the affordance classifier and the detector, with the ratio against
   batch-1 torch in the same process. Target: >= 2000 frames/s.

Usage::

    drivelab bench perception --threads 2                  # full (~20-30 min on 2 cores)
    drivelab bench perception --quick --out /tmp/p.json    # smoke run (~1 min)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from drivelab.benchmarks.cli.perception import HelpFormatter, quiet_onnxruntime_info
from drivelab.core.config import from_mapping
from drivelab.core.errors import ConfigError
from drivelab.core.files import check_writable, write_json_atomic
from drivelab.core.provenance import machine_info
from drivelab.perception.centernet import load_detector
from drivelab.perception.classify import ClassifierTrainConfig, evaluate_classifier, load_classifier, train_classifier
from drivelab.perception.datasets import DatasetConfig, make_dataset
from drivelab.perception.detector_pipeline import DetectorTrainConfig, evaluate_detector, train_detector
from drivelab.perception.export import export_and_check, frames_per_second
from drivelab.perception.readers import read_classification, read_detection

TARGETS = {"detector_AP50": 0.95, "detector_AP": 0.70, "affordance_macro_f1": 0.95, "digits_accuracy": 0.98,
           "classifier_frames_per_s": 2000.0}


def _throughput(
    model: torch.nn.Module, shape: tuple[int, int, int], out_dir: Path, threads: int, batch: int
) -> dict[str, Any]:
    frames = torch.randint(0, 256, (batch, *shape), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    report = export_and_check(model, frames, out_dir, threads=threads)
    with torch.no_grad():
        single = frames_per_second(lambda: model(frames[:1]), 1, repeats=50)
    report["frames_per_s"]["torch_batch1"] = single
    report["speedup_vs_torch_batch1"] = {key: value / single for key, value in report["frames_per_s"].items()}
    return report


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Run every step (with the process's torch threads); returns the JSON record."""
    data_config = from_mapping(DatasetConfig, {"frames": args.frames, "seed": args.seed}, "dataset config")
    det_config = from_mapping(DetectorTrainConfig, {
        "epochs": args.detector_epochs, "eval_every": max(1, args.detector_epochs // 4), "seed": args.seed,
    }, "detector training config")
    cls_config = from_mapping(ClassifierTrainConfig, {"epochs": args.classifier_epochs, "seed": args.seed},
                              "classifier training config")
    if args.batch < 1:
        raise ConfigError(f"--batch must be >= 1, got {args.batch}")
    work = check_writable(args.work, folder=True)
    check_writable(args.out)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    summary = make_dataset(data_config, work / "data", progress=not args.no_progress)
    timings["make_dataset_s"] = time.perf_counter() - start

    start = time.perf_counter()
    train_detector(read_detection(work / "data", "train"), read_detection(work / "data", "val"), work / "detector",
                   det_config, progress=not args.no_progress)
    timings["train_detector_s"] = time.perf_counter() - start
    detector = load_detector(work / "detector" / "best.safetensors")
    detection = evaluate_detector(detector, read_detection(work / "data", "test"), work / "detector" / "test")

    start = time.perf_counter()
    affordance_train = read_classification("affordance", work / "data", "train")
    affordance_val = read_classification("affordance", work / "data", "val", class_names=affordance_train.class_names)
    train_classifier(affordance_train, affordance_val, work / "affordance", cls_config, progress=not args.no_progress)
    timings["train_affordance_s"] = time.perf_counter() - start
    affordance_model = load_classifier(work / "affordance" / "best.safetensors")
    affordance_test = read_classification("affordance", work / "data", "test", class_names=affordance_train.class_names)
    affordance = evaluate_classifier(affordance_model, affordance_test, work / "affordance" / "test")

    start = time.perf_counter()
    digits_train = read_classification("digits", None, "train", resize_hw=(32, 32))
    digits_val = read_classification("digits", None, "val", resize_hw=(32, 32))
    train_classifier(digits_train, digits_val, work / "digits", cls_config, progress=not args.no_progress)
    timings["train_digits_s"] = time.perf_counter() - start
    digits_model = load_classifier(work / "digits" / "best.safetensors")
    digits = evaluate_classifier(digits_model, digits_val, work / "digits" / "eval")

    shape = (1, data_config.height, data_config.width)
    speed = {"affordance_classifier": _throughput(affordance_model, shape, work / "export_cls", args.threads,
                                                  args.batch),
             "detector": _throughput(detector, shape, work / "export_det", args.threads, args.batch)}
    best_classifier_fps = max(speed["affordance_classifier"]["frames_per_s"].values())
    results = {
        "detector_AP": detection["stats"]["AP"], "detector_AP50": detection["stats"]["AP50"],
        "detector_AP75": detection["stats"]["AP75"], "detector_AR100": detection["stats"]["AR100"],
        "detector_pycocotools": detection["pycocotools"],
        "affordance_macro_f1": affordance["macro_f1"], "affordance_exact_match": affordance["accuracy"],
        "digits_accuracy": digits["accuracy"], "classifier_frames_per_s": best_classifier_fps,
    }
    record = {
        "benchmark": "perception",
        "settings": {"frames": args.frames, "detector_epochs": args.detector_epochs,
                     "classifier_epochs": args.classifier_epochs, "threads": args.threads, "batch": args.batch,
                     "seed": args.seed, "quick": args.quick},
        "dataset": {"counts": summary["counts"], "objects": summary["objects"]},
        "results": results,
        "targets": TARGETS,
        "met": {key: results[key] >= target for key, target in TARGETS.items()},
        "throughput": speed,
        "timings_s": timings,
        "machine": {**machine_info(), "torch": torch.__version__},
    }
    write_json_atomic(args.out, record)
    return record


def configure(parser: argparse.ArgumentParser, command: str) -> None:
    """Add the options of ``bench perception`` and its run function."""
    parser.description = __doc__
    parser.formatter_class = HelpFormatter
    parser.add_argument("--frames", type=int, default=6000, help="frames over train/val/test, 80/10/10")
    parser.add_argument("--detector-epochs", type=int, default=20, help="detector training epochs")
    parser.add_argument("--classifier-epochs", type=int, default=15,
                        help="affordance and digits classifier epochs")
    parser.add_argument("--threads", type=int, default=2, help="torch and onnxruntime CPU threads")
    parser.add_argument("--batch", type=int, default=256, help="frames per batch in the throughput runs")
    parser.add_argument("--seed", type=int, default=0, help="dataset and training seed")
    parser.add_argument("--work", default="runs/bench_perception", help="dataset and run folders")
    parser.add_argument("--out", default="benchmarks/results/perception.json", help="result JSON")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (not a result)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run with parsed options, print the headline numbers; returns the exit status."""
    if not 1 <= args.threads <= 1024:
        raise ConfigError(f"--threads must be in [1, 1024], got {args.threads}")
    if args.quick:
        args.frames, args.detector_epochs, args.classifier_epochs = 300, 2, 2
        args.work = args.work + "_quick"
    torch.set_num_threads(args.threads)  # the process's thread count: set here, in the command, only
    quiet_onnxruntime_info()
    record = run_benchmark(args)
    print(json.dumps({"results": record["results"], "met": record["met"], "timings_s": record["timings_s"]}, indent=2))
    return 0
