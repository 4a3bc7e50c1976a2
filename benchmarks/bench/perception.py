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
    python -m drivelab.benchmarks.bench_perception ...     # the same
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import torch

from drivelab.core.files import write_json_atomic
from drivelab.core.provenance import machine_info
from drivelab.perception.classify import ClassifierTrainConfig, evaluate_classifier, load_classifier, train_classifier
from drivelab.perception.datasets import DatasetConfig, make_dataset
from drivelab.perception.detect import load_detector
from drivelab.perception.detection import DetectorTrainConfig, evaluate_detector, train_detector
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


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run every step; returns the JSON record."""
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    data_config = DatasetConfig(frames=args.frames, seed=args.seed)
    summary = make_dataset(data_config, work / "data", progress=not args.no_progress)
    timings["make_dataset_s"] = time.perf_counter() - start

    start = time.perf_counter()
    det_config = DetectorTrainConfig(epochs=args.detector_epochs, eval_every=max(1, args.detector_epochs // 4),
                                     num_threads=args.threads, seed=args.seed)
    train_detector(read_detection(work / "data", "train"), read_detection(work / "data", "val"), work / "detector",
                   det_config, progress=not args.no_progress)
    timings["train_detector_s"] = time.perf_counter() - start
    detector = load_detector(work / "detector" / "best.safetensors")
    detection = evaluate_detector(detector, read_detection(work / "data", "test"), work / "detector" / "test")

    start = time.perf_counter()
    cls_config = ClassifierTrainConfig(epochs=args.classifier_epochs, num_threads=args.threads, seed=args.seed)
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
        "machine": {**machine_info(), "torch": torch.__version__, "torch_threads": torch.get_num_threads()},
    }
    write_json_atomic(args.out, record)
    return record


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The benchmark's options (shared by ``python -m`` and ``drivelab bench perception``)."""
    parser.add_argument("--frames", type=int, default=6000, help="frames over train/val/test (80/10/10)")
    parser.add_argument("--detector-epochs", type=int, default=20)
    parser.add_argument("--classifier-epochs", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default="runs/bench_perception", help="dataset and run folders")
    parser.add_argument("--out", default="benchmarks/results/perception.json")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (not a result)")
    parser.add_argument("--no-progress", action="store_true")


def run_from_args(args: argparse.Namespace) -> int:
    """Run with parsed options, print the headline numbers; returns the exit status."""
    if args.quick:
        args.frames, args.detector_epochs, args.classifier_epochs = 300, 2, 2
        args.work = args.work + "_quick"
    record = run(args)
    print(json.dumps({"results": record["results"], "met": record["met"], "timings_s": record["timings_s"]}, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    logging.basicConfig(level=logging.INFO)
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
