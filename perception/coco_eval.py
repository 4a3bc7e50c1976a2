"""COCO box metrics: our own implementation and a wrapper around pycocotools.

:func:`evaluate_coco` re-implements pycocotools' ``COCOeval`` for ``iouType="bbox"`` (greedy
matching by score, 101-point interpolated precision, area ranges, max-detection limits), so
the numbers can be produced without it and checked against it: the tests build ground truth and
detections by hand and require equal statistics. :func:`evaluate_with_pycocotools` runs the
reference. Both accept zero detections (AP 0 where there is ground truth, not a crash).

Inputs are plain COCO dicts: ground truth ``{"images", "annotations", "categories"}`` (every
annotation with ``id`` >= 1, ``bbox`` [x, y, w, h], ``area``, optional ``iscrowd``) and
detections ``[{"image_id", "category_id", "bbox", "score"}, ...]``.
"""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from drivelab.core.files import atomic_output
from drivelab.perception.errors import DatasetError

STAT_NAMES = (
    "AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large",
    "AR1", "AR10", "AR100", "AR_small", "AR_medium", "AR_large",
)
IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
RECALL_THRESHOLDS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
MAX_DETECTIONS = (1, 10, 100)
AREA_RANGES = ((0.0, 1e5**2), (0.0, 32.0**2), (32.0**2, 96.0**2), (96.0**2, 1e5**2))  # all, S, M, L [px^2]


@dataclass
class CocoEvaluation:
    """COCO statistics plus the arrays they summarise.

    Attributes:
        stats: ``STAT_NAMES`` -> value (-1 where undefined, as pycocotools reports).
        precision: (T, R, K, A, M) interpolated precision; -1 where a category has no ground truth.
        recall: (T, K, A, M) final recall.
    """

    stats: dict[str, float]
    precision: np.ndarray
    recall: np.ndarray


def box_iou_xywh(detections: np.ndarray, ground_truth: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """IoU (D, G) of [x, y, w, h] boxes; for crowd ground truth the union is the detection's area."""
    if len(detections) == 0 or len(ground_truth) == 0:
        return np.zeros((len(detections), len(ground_truth)))
    d, g = detections[:, None, :], ground_truth[None, :, :]
    inter_w = np.minimum(d[..., 0] + d[..., 2], g[..., 0] + g[..., 2]) - np.maximum(d[..., 0], g[..., 0])
    inter_h = np.minimum(d[..., 1] + d[..., 3], g[..., 1] + g[..., 3]) - np.maximum(d[..., 1], g[..., 1])
    inter = np.where((inter_w > 0) & (inter_h > 0), inter_w * inter_h, 0.0)
    area_d, area_g = d[..., 2] * d[..., 3], g[..., 2] * g[..., 3]
    union = np.where(crowd[None, :].astype(bool), area_d, area_d + area_g - inter)
    return np.where(inter > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def _match_image(gts: list[dict], dts: list[dict], area: tuple[float, float], max_det: int) -> dict | None:
    """Greedy matching of one image and category (pycocotools' ``evaluateImg``)."""
    if not gts and not dts:
        return None
    ignore = np.array([1 if (g["ignore"] or g["area"] < area[0] or g["area"] > area[1]) else 0 for g in gts])
    gt_order = np.argsort(ignore, kind="mergesort")
    gts = [gts[i] for i in gt_order]
    gt_ignore = ignore[gt_order]
    dt_order = np.argsort([-d["score"] for d in dts], kind="mergesort")
    dts = [dts[i] for i in dt_order[:max_det]]
    crowd = np.array([int(g.get("iscrowd", 0)) for g in gts])
    ious = box_iou_xywh(np.array([d["bbox"] for d in dts], float).reshape(-1, 4),
                        np.array([g["bbox"] for g in gts], float).reshape(-1, 4), crowd)
    num_t = len(IOU_THRESHOLDS)
    gt_matched = np.zeros((num_t, len(gts)))
    dt_matched = np.zeros((num_t, len(dts)))
    dt_ignore = np.zeros((num_t, len(dts)))
    for t_index, threshold in enumerate(IOU_THRESHOLDS):
        for d_index, det in enumerate(dts):
            best_iou, best = min(threshold, 1 - 1e-10), -1
            for g_index in range(len(gts)):
                if gt_matched[t_index, g_index] > 0 and not crowd[g_index]:
                    continue  # already taken
                if best > -1 and gt_ignore[best] == 0 and gt_ignore[g_index] == 1:
                    break  # ignored ground truth sorts last: a real match wins
                if ious[d_index, g_index] < best_iou:
                    continue
                best_iou, best = ious[d_index, g_index], g_index
            if best == -1:
                continue
            dt_ignore[t_index, d_index] = gt_ignore[best]
            dt_matched[t_index, d_index] = gts[best]["id"]
            gt_matched[t_index, best] = det["id"]
    outside = np.array([d["area"] < area[0] or d["area"] > area[1] for d in dts]).reshape(1, len(dts))
    dt_ignore = np.logical_or(dt_ignore, np.logical_and(dt_matched == 0, np.repeat(outside, num_t, 0)))
    return {"scores": np.array([d["score"] for d in dts], float), "dt_matched": dt_matched,
            "dt_ignore": dt_ignore, "gt_ignore": gt_ignore}


def _interpolated_precision(tp: np.ndarray, fp: np.ndarray, num_gt: int) -> tuple[np.ndarray, float]:
    """101-point precision (R,) and final recall from cumulative true/false positives."""
    recall = tp / num_gt
    precision = (tp / (fp + tp + np.spacing(1))).tolist()
    for i in range(len(tp) - 1, 0, -1):  # make precision monotone from the right
        if precision[i] > precision[i - 1]:
            precision[i - 1] = precision[i]
    sampled = np.zeros(len(RECALL_THRESHOLDS))
    for r_index, p_index in enumerate(np.searchsorted(recall, RECALL_THRESHOLDS, side="left")):
        if p_index >= len(precision):
            break
        sampled[r_index] = precision[p_index]
    return sampled, (float(recall[-1]) if len(tp) else 0.0)


def _prepare(ground_truth: dict, detections: list[dict]) -> tuple[list[int], list[int], dict, dict]:
    image_ids = sorted({image["id"] for image in ground_truth["images"]})
    category_ids = sorted({category["id"] for category in ground_truth["categories"]})
    known = set(image_ids)
    gts: dict[tuple[int, int], list[dict]] = {}
    for ann in ground_truth["annotations"]:
        entry = dict(ann, ignore=int(ann.get("iscrowd", 0)))
        gts.setdefault((ann["image_id"], ann["category_id"]), []).append(entry)
    dts: dict[tuple[int, int], list[dict]] = {}
    for index, det in enumerate(detections, start=1):
        if det["image_id"] not in known:
            raise DatasetError(f"detection {index} refers to image_id {det['image_id']}, which has no ground truth")
        x, y, w, h = det["bbox"]
        entry = {"id": index, "bbox": [x, y, w, h], "area": w * h, "score": det["score"], "iscrowd": 0}
        dts.setdefault((det["image_id"], det["category_id"]), []).append(entry)
    return image_ids, category_ids, gts, dts


def evaluate_coco(ground_truth: dict, detections: list[dict]) -> CocoEvaluation:
    """COCO bbox evaluation, numerically equal to pycocotools' ``COCOeval``.

    Args:
        ground_truth: COCO dict with ``images``, ``annotations``, ``categories``.
        detections: COCO results list.
    """
    image_ids, category_ids, gts, dts = _prepare(ground_truth, detections)
    shape_p = (len(IOU_THRESHOLDS), len(RECALL_THRESHOLDS), len(category_ids), len(AREA_RANGES), len(MAX_DETECTIONS))
    precision = -np.ones(shape_p)
    recall = -np.ones((shape_p[0], *shape_p[2:]))
    for k, category in enumerate(category_ids):
        for a, area in enumerate(AREA_RANGES):
            # Each image keeps its top-100 detections; smaller limits cut that list further.
            per_image = [_match_image(gts.get((i, category), []), dts.get((i, category), []), area, MAX_DETECTIONS[-1])
                         for i in image_ids]
            per_image = [e for e in per_image if e is not None]
            if not per_image:
                continue
            gt_ignore = np.concatenate([e["gt_ignore"] for e in per_image])
            num_gt = int(np.count_nonzero(gt_ignore == 0))
            if num_gt == 0:
                continue
            for m, max_det in enumerate(MAX_DETECTIONS):
                scores = np.concatenate([e["scores"][:max_det] for e in per_image])
                order = np.argsort(-scores, kind="mergesort")
                matched = np.concatenate([e["dt_matched"][:, :max_det] for e in per_image], axis=1)[:, order]
                ignored = np.concatenate([e["dt_ignore"][:, :max_det] for e in per_image], axis=1)[:, order]
                tps = np.cumsum(np.logical_and(matched, ~ignored), axis=1).astype(float)
                fps = np.cumsum(np.logical_and(~matched.astype(bool), ~ignored), axis=1).astype(float)
                for t in range(len(IOU_THRESHOLDS)):
                    precision[t, :, k, a, m], recall[t, k, a, m] = _interpolated_precision(tps[t], fps[t], num_gt)
    return CocoEvaluation(summarize(precision, recall), precision, recall)


def summarize(precision: np.ndarray, recall: np.ndarray) -> dict[str, float]:
    """The twelve COCO statistics from precision (T, R, K, A, M) and recall (T, K, A, M)."""

    def mean_defined(values: np.ndarray) -> float:
        defined = values[values > -1]
        return float(np.mean(defined)) if defined.size else -1.0

    def ap(iou: float | None = None, area: int = 0, max_det: int = 2) -> float:
        s = precision if iou is None else precision[np.where(iou == IOU_THRESHOLDS)[0]]
        return mean_defined(s[:, :, :, area, max_det])

    def ar(area: int = 0, max_det: int = 2) -> float:
        return mean_defined(recall[:, :, area, max_det])

    values = (ap(), ap(0.5), ap(0.75), ap(area=1), ap(area=2), ap(area=3),
              ar(max_det=0), ar(max_det=1), ar(), ar(1), ar(2), ar(3))
    return dict(zip(STAT_NAMES, values))


def evaluate_with_pycocotools(ground_truth: dict, detections: list[dict]) -> CocoEvaluation:
    """Run pycocotools' ``COCOeval`` (bbox) quietly; zero detections give AP 0, not a crash."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = {key: list(ground_truth[key]) for key in ("images", "annotations", "categories")}
        coco_gt.createIndex()
        if detections:
            coco_dt = coco_gt.loadRes([dict(det) for det in detections])
        else:  # loadRes indexes anns[0]; an empty result set is built directly
            coco_dt = COCO()
            coco_dt.dataset = {"images": list(ground_truth["images"]), "categories": list(ground_truth["categories"]),
                               "annotations": []}
            coco_dt.createIndex()
        evaluator = COCOeval(coco_gt, coco_dt, iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return CocoEvaluation(dict(zip(STAT_NAMES, map(float, evaluator.stats))),
                          evaluator.eval["precision"], evaluator.eval["recall"])


def save_pr_curve(evaluation: CocoEvaluation, path: str | os.PathLike, class_names: tuple[str, ...] = ()) -> Path:
    """Plot precision against recall at IoU 0.5 and 0.75 (all areas, 100 detections) to a PNG."""
    from matplotlib.figure import Figure  # no pyplot: the process's matplotlib backend stays as it is

    figure = Figure(figsize=(5, 4))
    ax = figure.subplots()
    for t_index, style in ((0, "-"), (5, "--")):
        for k in range(evaluation.precision.shape[2]):
            curve = evaluation.precision[t_index, :, k, 0, 2]
            if np.all(curve < 0):
                continue  # no ground truth for this class
            name = class_names[k] if k < len(class_names) else f"class {k}"
            ax.plot(RECALL_THRESHOLDS, np.clip(curve, 0, None), style,
                    label=f"{name} IoU {IOU_THRESHOLDS[t_index]:.2f}")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title(f"AP {evaluation.stats['AP']:.3f}  AP50 {evaluation.stats['AP50']:.3f}")
    ax.legend(fontsize=7, loc="lower left")
    figure.tight_layout()
    with atomic_output(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    return Path(path)


def stats_table(stats: dict[str, Any]) -> str:
    """One line per statistic, as pycocotools prints them."""
    return "\n".join(f"{name:>10s} {stats[name]:.4f}" for name in STAT_NAMES)
