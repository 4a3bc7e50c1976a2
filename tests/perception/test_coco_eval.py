"""Our COCO metrics against pycocotools, on hand-built cases and seeded random ones."""

from __future__ import annotations

import numpy as np
import pytest

from drivelab.perception.coco_eval import (
    STAT_NAMES,
    evaluate_coco,
    evaluate_with_pycocotools,
    save_pr_curve,
)

GT_BOXES = [  # image id, category, [x, y, w, h]
    (1, 1, [10, 10, 10, 4]), (1, 1, [40, 20, 10, 4]), (1, 2, [30, 30, 10, 4]),
    (2, 1, [5, 5, 12, 6]), (2, 1, [60, 40, 50, 40]), (3, 2, [0, 0, 120, 110]),
]


def ground_truth() -> dict:
    annotations = [{"id": i + 1, "image_id": img, "category_id": cat, "bbox": box, "area": box[2] * box[3],
                    "iscrowd": 0} for i, (img, cat, box) in enumerate(GT_BOXES)]
    images = [{"id": i, "width": 200, "height": 200, "file_name": f"{i}.png"} for i in (1, 2, 3, 4)]
    return {"images": images, "annotations": annotations,
            "categories": [{"id": 1, "name": "car"}, {"id": 2, "name": "ego"}]}


def detections(kind: str) -> list[dict]:
    out = []
    for index, (img, cat, box) in enumerate(GT_BOXES):
        score = 0.9 - 0.1 * index
        x, y, w, h = box
        if kind == "perfect":
            out.append({"image_id": img, "category_id": cat, "bbox": box, "score": score})
        elif kind == "shifted":  # 1 px shift: IoU 9/11 = 0.82 for a 10-wide box
            out.append({"image_id": img, "category_id": cat, "bbox": [x + 1, y, w, h], "score": score})
        elif kind == "missing" and index % 2 == 0:
            out.append({"image_id": img, "category_id": cat, "bbox": box, "score": score})
        elif kind == "duplicated":
            out.append({"image_id": img, "category_id": cat, "bbox": box, "score": score})
            out.append({"image_id": img, "category_id": cat, "bbox": [x + 0.5, y, w, h], "score": score + 0.05})
    return out


def assert_same(ours, reference) -> None:
    for name in STAT_NAMES:
        assert ours.stats[name] == pytest.approx(reference.stats[name], abs=1e-12), name
    np.testing.assert_allclose(ours.precision, reference.precision, atol=1e-12)
    np.testing.assert_allclose(ours.recall, reference.recall, atol=1e-12)


@pytest.mark.parametrize("kind", ["perfect", "shifted", "missing", "duplicated"])
def test_hand_built_cases_match_pycocotools(kind: str) -> None:
    ours = evaluate_coco(ground_truth(), detections(kind))
    assert_same(ours, evaluate_with_pycocotools(ground_truth(), detections(kind)))
    if kind == "perfect":
        assert ours.stats["AP"] == pytest.approx(1.0)
        assert ours.stats["AR100"] == pytest.approx(1.0)
    if kind == "missing":  # half the boxes of each class found exactly: recall 1/2, precision 1
        assert ours.stats["AR100"] == pytest.approx(0.5)
        assert ours.stats["AP"] == pytest.approx(0.5, abs=0.01)
    if kind == "shifted":
        assert ours.stats["AP50"] == pytest.approx(1.0)
        assert ours.stats["AP"] < 1.0


def test_zero_detections_give_zero_ap_in_both() -> None:
    ours, reference = evaluate_coco(ground_truth(), []), evaluate_with_pycocotools(ground_truth(), [])
    assert ours.stats["AP"] == 0.0 and reference.stats["AP"] == 0.0
    assert_same(ours, reference)


def test_seeded_random_scenes_match_pycocotools() -> None:
    rng = np.random.default_rng(7)
    for _ in range(4):
        images = [{"id": i, "width": 300, "height": 300, "file_name": f"{i}.png"} for i in range(1, 7)]
        annotations, dets = [], []
        for image in images:
            for _ in range(int(rng.integers(0, 7))):
                x, y = rng.uniform(0, 200, 2)
                w, h = rng.uniform(2, 120, 2)
                cat = int(rng.integers(1, 3))
                annotations.append({"id": len(annotations) + 1, "image_id": image["id"], "category_id": cat,
                                    "bbox": [x, y, w, h], "area": w * h, "iscrowd": int(rng.random() < 0.1)})
                for _ in range(int(rng.integers(0, 3))):
                    dets.append({"image_id": image["id"], "category_id": cat, "score": float(rng.random()),
                                 "bbox": [x + rng.normal(0, 4), y + rng.normal(0, 4), w * rng.uniform(0.8, 1.2),
                                          h * rng.uniform(0.8, 1.2)]})
            for _ in range(int(rng.integers(0, 3))):  # false positives
                dets.append({"image_id": image["id"], "category_id": int(rng.integers(1, 3)),
                             "bbox": list(rng.uniform(0, 150, 4)), "score": float(rng.random())})
        categories = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
        gt = {"images": images, "annotations": annotations, "categories": categories}
        assert_same(evaluate_coco(gt, dets), evaluate_with_pycocotools(gt, dets))


def test_pr_curve_png(tmp_path) -> None:
    path = save_pr_curve(evaluate_coco(ground_truth(), detections("duplicated")), tmp_path / "pr.png", ("car", "ego"))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
