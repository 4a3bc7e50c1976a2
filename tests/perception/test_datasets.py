"""Datasets from the simulator: labels from ground truth, files, reproducibility, resuming."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

import drivelab.envs as de
from drivelab.core.errors import ConfigError, DrivelabError
from drivelab.perception import datasets
from drivelab.perception.datasets import DatasetConfig, affordance_labels, make_dataset, mix_random_actions
from drivelab.perception.readers import read_coco, read_label_csv, read_yolo

TINY = DatasetConfig(frames=24, num_envs=4, chunk_steps=8, frame_every=2, warmup_steps=2, yolo=True, seed=5)


def test_affordance_labels_closed_form() -> None:
    states = de.VehicleBatch.empty(3, 4)
    states.present[:] = True
    states.lanes_count[:] = 3
    # env 0: ego lane 1 at x=100; lead in lane 1 at +15 m; car in lane 0 at -5 m; lane 2 empty near ego.
    states.x[0], states.lane_index[0] = [100, 115, 95, 160], [1, 1, 0, 2]
    # env 1: ego lane 0 (no left lane); lead at +30 m; car in lane 1 at +40 m (beyond the free window).
    states.x[1], states.lane_index[1] = [0, 30, 40, -50], [0, 0, 1, 1]
    # env 2: ego lane 2 of 3 (no right lane); car behind in lane 2; lane 1 car at +14 m.
    states.x[2], states.lane_index[2] = [50, 20, 64, 500], [2, 2, 1, 0]
    states.present[2, 3] = False
    expected = [[1, 1, 0, 1, 1], [0, 1, 0, 1, 0], [0, 0, 0, 0, 2]]
    np.testing.assert_array_equal(affordance_labels(states), expected)


def _file_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "dataset.json"}


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny") / "data"
    make_dataset(TINY, out, progress=False)
    return out


def test_files_and_ground_truth(tiny_dataset: Path) -> None:
    summary = json.loads((tiny_dataset / "dataset.json").read_text())
    assert summary["counts"] == {"train": 19, "val": 2, "test": 3}
    seeds = {}
    for split in ("train", "val", "test"):
        coco = read_coco(tiny_dataset / f"{split}.json")
        assert len(coco) == summary["counts"][split]
        images = coco.load_images()
        assert images.shape[1:] == (64, 128, 1)
        for sample, image in zip(coco.samples, images):
            assert (sample.classes == 1).sum() == 1  # the ego is in every frame
            x1, y1, x2, y2 = sample.boxes[sample.classes == 1][0].astype(int)
            assert image[y1:y2, x1:x2].mean() > image.mean()  # the box covers the drawn ego
        yolo = read_yolo(tiny_dataset / "data.yaml", split)
        for a, b in zip(sorted(coco.samples, key=lambda s: str(s.file_name)), yolo.samples):
            np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-3)
        labels = read_label_csv(tiny_dataset / f"{split}_labels.csv")
        assert labels.images.shape[0] == len(coco)
        seeds[split] = {image["seed"] for image in json.loads((tiny_dataset / f"{split}.json").read_text())["images"]}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not seeds[a] & seeds[b]
    assert not (tiny_dataset / ".parts").exists()


def test_random_actions_mix_with_the_drivers() -> None:
    driver_actions = np.full(1000, 1)
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(mix_random_actions(driver_actions, rng, 0.0), driver_actions)
    mixed = mix_random_actions(driver_actions, rng, 0.5)
    assert 0.33 < np.mean(mixed != 1) < 0.47  # 0.5 random x 4/5 of random actions differ from the driver's
    random = mix_random_actions(driver_actions, np.random.default_rng(1), 1.0)
    assert set(np.unique(random)) == {0, 1, 2, 3, 4}


def test_reproducible_and_resumable(tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    render = datasets._render_chunk
    calls = []

    def interrupted(*args, **kwargs):
        if len(calls) == 1:
            raise KeyboardInterrupt
        calls.append(args)
        return render(*args, **kwargs)

    monkeypatch.setattr(datasets, "_render_chunk", interrupted)
    with pytest.raises(KeyboardInterrupt):
        make_dataset(TINY, tmp_path / "data", progress=False)
    assert not (tmp_path / "data" / "train.json").exists() and not (tmp_path / "data" / "dataset.json").exists()
    monkeypatch.setattr(datasets, "_render_chunk", render)
    make_dataset(TINY, tmp_path / "data", progress=False)
    # Same config twice (here: once straight, once interrupted and resumed) -> the same files and labels.
    assert _file_bytes(tmp_path / "data") == _file_bytes(tiny_dataset)
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(read_label_csv(tmp_path / "data" / f"{split}_labels.csv").labels,
                                      read_label_csv(tiny_dataset / f"{split}_labels.csv").labels)
    with pytest.raises(ConfigError, match="other settings"):
        make_dataset(DatasetConfig(frames=30), tmp_path / "data", progress=False)


@pytest.mark.parametrize("bad", [
    {"env_id": "drivelab/highway-fats-v0"}, {"color": "rbg"}, {"width": 4}, {"backend": "nope"},
    {"num_envs": 0}, {"random_action_prob": 2.0},
])
def test_refused_settings_leave_nothing_behind(tmp_path: Path, bad: dict) -> None:
    settings = {**dataclasses.asdict(TINY), **bad}
    settings["split_fractions"] = tuple(settings["split_fractions"])
    with pytest.raises(DrivelabError):
        make_dataset(DatasetConfig(**settings), tmp_path / "data", progress=False)
    assert not (tmp_path / "data").exists()  # so the corrected command is not refused as "other settings"
