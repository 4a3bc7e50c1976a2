"""Labelled datasets rendered by the simulator's camera.

``make_dataset`` drives seeded vector envs with the rule-based IDM/MOBIL driver
(``drivelab.envs.drivers``) mixed with random actions and
records frames with exact ground truth: COCO json (and optionally YOLO txt) boxes for the
detector and affordance labels for the classifier. Splits use disjoint seed ranges. Work is
cut into chunks whose content depends only on their seed: a finished chunk is recorded
atomically, so an interrupted run resumes where it stopped and gives the same files as an
uninterrupted one; the split files appear only when every chunk is done.

Layout of ``out``::

    dataset.json                  settings, counts, class names (written last)
    data.yaml                     YOLO dataset file (with --yolo)
    {split}.json                  COCO annotations, file names relative to ``out``
    {split}_labels.csv            affordance labels (see AFFORDANCE_COLUMNS)
    images/{split}/*.png          frames (newest frame of each observation)
    labels/{split}/*.txt          YOLO labels (with --yolo)
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

import drivelab.envs as de
from drivelab.core.config import bounded, from_mapping, to_plain
from drivelab.core.errors import ConfigError
from drivelab.core.files import check_writable, ensure_dir, write_bytes_atomic, write_json_atomic, write_text_atomic
from drivelab.core.provenance import machine_info
from drivelab.envs.actions import META_ACTION_NAMES
from drivelab.envs.drivers import IDMMobilDriver
from drivelab.envs.make import MAX_NUM_ENVS
from drivelab.perception.errors import DatasetError

SPLITS = ("train", "val", "test")
SPLIT_SEED_STRIDE = 1_000_000  # split s draws scene seeds from [s * stride, (s + 1) * stride)
AFFORDANCE_COLUMNS = ("lead_in_lane_20m", "lead_in_lane_40m", "left_lane_free", "right_lane_free", "ego_lane_index")
CAMERA_KEYS = ("width", "height", "metres_per_pixel", "color")  # the DatasetConfig fields that set the camera


@dataclass(frozen=True)
class DatasetConfig:
    """Settings of a generated dataset.

    Attributes:
        env_id: Scenario id.
        frames: Total frames over all splits.
        split_fractions: Share of train, val and test.
        width: Camera width [px].
        height: Camera height [px].
        metres_per_pixel: Camera resolution [m/px].
        color: ``"grayscale"`` or ``"rgb"``.
        num_envs: Environments stepped together.
        chunk_steps: Steps per chunk (each chunk starts from freshly seeded scenes).
        frame_every: Record every this many steps (consecutive frames are near duplicates).
        warmup_steps: Steps before the first recorded frame of a chunk.
        random_action_prob: Chance per step of a uniformly random action instead of the driver's.
        seed: Offsets every scene seed and the drivers' random streams.
        backend: Simulator backend (``auto``, ``envpool`` or ``highway-env``).
        yolo: Also write YOLO txt labels and ``data.yaml``.
        lead_near_m: Distance for ``lead_in_lane_20m`` [m, centre to centre].
        lead_far_m: Distance for ``lead_in_lane_40m`` [m].
        free_behind_m: A neighbour lane is free if no vehicle is within this distance behind ...
        free_ahead_m: ... or this distance ahead of the ego [m].
    """

    env_id: str = "drivelab/highway-fast-v0"
    frames: int = bounded(1000, low=len(SPLITS), high=10_000_000)
    split_fractions: tuple[float, float, float] = bounded((0.8, 0.1, 0.1), low=0, high=1)
    width: int = 128
    height: int = 64
    metres_per_pixel: float = 0.5
    color: Literal["grayscale", "rgb"] = "grayscale"
    num_envs: int = bounded(16, low=1, high=MAX_NUM_ENVS)
    chunk_steps: int = bounded(40, low=1, high=100_000)
    frame_every: int = bounded(4, low=1, high=100_000)
    warmup_steps: int = bounded(2, low=0, high=100_000)
    random_action_prob: float = bounded(0.3, low=0, high=1)
    seed: int = bounded(0, low=0, high=SPLIT_SEED_STRIDE - 1)
    backend: Literal["auto", "envpool", "highway-env"] = "auto"
    yolo: bool = False
    lead_near_m: float = bounded(20.0, low=0, low_open=True, high=10_000)
    lead_far_m: float = bounded(40.0, low=0, low_open=True, high=10_000)
    free_behind_m: float = bounded(10.0, low=0, high=10_000)
    free_ahead_m: float = bounded(15.0, low=0, high=10_000)

    def __post_init__(self) -> None:
        if self.frames < len(SPLITS):
            raise ConfigError(f"frames must be at least {len(SPLITS)}, got {self.frames}")
        if len(self.split_fractions) != 3 or abs(sum(self.split_fractions) - 1.0) > 1e-6:
            raise ConfigError(f"split_fractions must be three shares summing to 1, got {self.split_fractions}")
        if self.chunk_steps <= self.warmup_steps or self.frame_every < 1:
            raise ConfigError("chunk_steps must exceed warmup_steps and frame_every must be >= 1")
        if not 0.0 <= self.random_action_prob <= 1.0:
            raise ConfigError(f"random_action_prob must be in [0, 1], got {self.random_action_prob}")
        if self.num_envs < 1:
            raise ConfigError(f"num_envs must be >= 1, got {self.num_envs}")
        for split, size in self.split_sizes().items():
            chunks = -(-size // self.frames_per_chunk())
            if self.seed + chunks * self.num_envs > SPLIT_SEED_STRIDE:
                raise ConfigError(
                    f"split {split} needs {chunks * self.num_envs} scene seeds from seed {self.seed}, more than its "
                    f"range of {SPLIT_SEED_STRIDE}; use fewer frames, a smaller seed or a larger frame_every"
                )

    def camera(self) -> dict[str, Any]:
        """The camera settings of the rendered frames (single frames with ground truth)."""
        return {**{key: getattr(self, key) for key in CAMERA_KEYS}, "stack": 1, "ground_truth": True}

    def check_simulator(self) -> None:
        """Check the scenario id, camera settings and backend without starting a simulator.

        Raises:
            DrivelabError: An unknown scenario (with the closest id), bad camera settings, or a
                backend that cannot run the scenario.
        """
        de.get_scenario(self.env_id)
        from_mapping(de.CameraConfig, self.camera(), "camera config")
        if self.backend != "auto":  # "auto" always finds one (and would log its choice twice)
            de.choose_backend(self.env_id, self.backend)

    def split_sizes(self) -> dict[str, int]:
        train = int(round(self.frames * self.split_fractions[0]))
        val = int(round(self.frames * self.split_fractions[1]))
        return {"train": train, "val": val, "test": self.frames - train - val}

    def frames_per_chunk(self) -> int:
        return self.num_envs * len(range(self.warmup_steps, self.chunk_steps, self.frame_every))


def affordance_labels(states: de.VehicleBatch, config: DatasetConfig = DatasetConfig()) -> np.ndarray:
    """Affordance labels (B, 5) per ``AFFORDANCE_COLUMNS`` from the vehicles' ground truth.

    Lanes are numbered from the left (highway-env's lane 0); distances are longitudinal,
    centre to centre, along the road's x axis.
    """
    ego_x, ego_lane = states.x[:, :1], states.lane_index[:, :1]  # (B, 1)
    dx = states.x - ego_x  # (B, V) [m]
    others = states.present.copy()
    others[:, 0] = False
    same_lane = others & (states.lane_index == ego_lane)
    ahead = same_lane & (dx > 0)
    near = (ahead & (dx <= config.lead_near_m)).any(axis=1)
    far = (ahead & (dx <= config.lead_far_m)).any(axis=1)

    def lane_free(lane: np.ndarray) -> np.ndarray:
        exists = (lane >= 0) & (lane < states.lanes_count[:, None])
        blocking = others & (states.lane_index == lane) & (dx >= -config.free_behind_m) & (dx <= config.free_ahead_m)
        return exists[:, 0] & ~blocking.any(axis=1)

    return np.stack([near, far, lane_free(ego_lane - 1), lane_free(ego_lane + 1),
                     np.maximum(ego_lane[:, 0], 0)], axis=1).astype(np.int64)


def mix_random_actions(actions: np.ndarray, rng: np.random.Generator, random_action_prob: float) -> np.ndarray:
    """Replace each env's action by a uniformly random meta-action with probability ``random_action_prob``."""
    num_envs = len(actions)
    random_mask = rng.random(num_envs) < random_action_prob
    return np.where(random_mask, rng.integers(0, len(META_ACTION_NAMES), num_envs), actions).astype(np.int64)


def _encode_png(frame_chw: np.ndarray) -> bytes:
    image = frame_chw[0] if frame_chw.shape[0] == 1 else cv2.cvtColor(frame_chw.transpose(1, 2, 0), cv2.COLOR_RGB2BGR)
    ok, buffer = cv2.imencode(".png", image)
    if not ok:
        raise DatasetError(f"PNG encoding failed for a {frame_chw.shape} frame")
    return buffer.tobytes()


def _render_chunk(config: DatasetConfig, split: str, chunk: int, count: int, out: Path) -> list[dict[str, Any]]:
    """Run one seeded chunk and write its first ``count`` frames; returns their records."""
    split_index = SPLITS.index(split)
    first_seed = split_index * SPLIT_SEED_STRIDE + config.seed + chunk * config.num_envs
    vec = de.make_vec(config.env_id, num_envs=config.num_envs, backend=config.backend, observation="camera",
                      camera=config.camera(), seed=first_seed)
    rng = np.random.default_rng([config.seed, split_index, chunk])
    driver = IDMMobilDriver()
    records: list[dict[str, Any]] = []
    try:
        obs, infos = vec.reset(seed=first_seed)
        driver.reset(np.ones(config.num_envs, bool))
        for step in range(config.chunk_steps):
            states = vec.vehicle_states()
            labels = affordance_labels(states, config)
            if step >= config.warmup_steps and (step - config.warmup_steps) % config.frame_every == 0:
                for env in range(config.num_envs):
                    if len(records) == count:
                        break
                    name = f"images/{split}/{split}_{chunk:05d}_{env:02d}_{step:03d}.png"
                    truth = infos["ground_truth"][env]
                    write_bytes_atomic(out / name, _encode_png(obs[env]))
                    records.append({"file_name": name, "seed": first_seed + env, "step": step,
                                    "boxes": truth["boxes"].tolist(), "classes": truth["classes"].tolist(),
                                    "track_ids": truth["track_ids"].tolist(),
                                    "distances_m": truth["distances_m"].tolist(), "labels": labels[env].tolist()})
            if len(records) == count:
                break
            actions = mix_random_actions(driver.act(states), rng, config.random_action_prob)
            obs, _, terminated, truncated, infos = vec.step(actions)
            driver.reset(terminated | truncated)  # same-step autoreset: those envs start a new episode
    finally:
        vec.close()
    return records


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DatasetError(f"{path} is unreadable or corrupt ({error}); delete it to start over") from error


def _coco_json(records: list[dict[str, Any]], config: DatasetConfig) -> dict[str, Any]:
    images, annotations = [], []
    for image_id, record in enumerate(records, start=1):
        images.append({"id": image_id, "file_name": record["file_name"], "width": config.width, "height": config.height,
                       "seed": record["seed"], "step": record["step"]})
        columns = (record["boxes"], record["classes"], record["track_ids"], record["distances_m"])
        for box, cls, track, distance in zip(*columns):
            x1, y1, x2, y2 = box
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": int(cls) + 1,
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0,
                                "track_id": track, "distance_m": distance})
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(de.CLASS_NAMES)]
    return {"info": {"description": f"drivelab {config.env_id}"}, "images": images,
            "annotations": annotations, "categories": categories}


def _labels_csv(records: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["file_name", *AFFORDANCE_COLUMNS])
    for record in records:
        writer.writerow([record["file_name"], *record["labels"]])
    return buffer.getvalue()


def _yolo_txt(record: dict[str, Any], config: DatasetConfig) -> str:
    lines = []
    for (x1, y1, x2, y2), cls in zip(record["boxes"], record["classes"]):
        cx, cy = (x1 + x2) / 2 / config.width, (y1 + y2) / 2 / config.height
        lines.append(f"{cls} {cx:.6f} {cy:.6f} {(x2 - x1) / config.width:.6f} {(y2 - y1) / config.height:.6f}")
    return "\n".join(lines) + ("\n" if lines else "")


def make_dataset(config: DatasetConfig, out: str | os.PathLike, progress: bool = True) -> dict[str, Any]:
    """Render, label and write a dataset (resuming an interrupted run in ``out``).

    Returns:
        The contents of ``dataset.json``.

    Every setting (scenario id, camera, backend, sizes, the output folder) is checked before
    anything is written, so a refused call leaves nothing behind.

    Raises:
        ConfigError: A bad setting, or ``out`` holds a dataset or a partial run made with other settings.
        OutputPathError: ``out`` cannot be written.
    """
    from tqdm import tqdm

    config = from_mapping(DatasetConfig, to_plain(config), "dataset config")  # bounds hold
    config.check_simulator()
    out = check_writable(out, folder=True)
    parts = out / ".parts"
    settings = to_plain(config)
    if (out / "dataset.json").exists():
        existing = _read_json(out / "dataset.json")
        if not isinstance(existing, dict) or existing.get("config") != settings:
            raise ConfigError(f"{out} already holds a dataset made with other settings; choose another --out")
        return existing
    if (parts / "config.json").exists():
        if _read_json(parts / "config.json") != settings:
            raise ConfigError(f"{out} holds an interrupted run with other settings; delete it or choose another --out")
    else:
        ensure_dir(out)
        write_json_atomic(parts / "config.json", settings, sort_keys=True)
    sizes, per_chunk = config.split_sizes(), config.frames_per_chunk()
    bar = tqdm(total=config.frames, desc="make-dataset", unit="frame", disable=not progress)
    split_records: dict[str, list[dict[str, Any]]] = {}
    for split in SPLITS:
        split_records[split] = []
        for chunk in range(-(-sizes[split] // per_chunk)):
            part = parts / f"{split}_{chunk:05d}.json"
            count = min(per_chunk, sizes[split] - chunk * per_chunk)
            if part.exists():
                records = _read_json(part)
            else:
                records = _render_chunk(config, split, chunk, count, out)
                write_json_atomic(part, records, sort_keys=True)
            split_records[split] += records
            bar.update(len(records))
    bar.close()
    for split, records in split_records.items():
        write_json_atomic(out / f"{split}.json", _coco_json(records, config), sort_keys=True)
        write_text_atomic(out / f"{split}_labels.csv", _labels_csv(records))
        if config.yolo:
            for record in records:
                label = out / record["file_name"].replace("images/", "labels/", 1)
                write_text_atomic(label.with_suffix(".txt"), _yolo_txt(record, config))
    if config.yolo:
        names = "\n".join(f"  {i}: {name}" for i, name in enumerate(de.CLASS_NAMES))
        yaml_text = "path: .\ntrain: images/train\nval: images/val\ntest: images/test\nnames:\n" + names + "\n"
        write_text_atomic(out / "data.yaml", yaml_text)
    summary = {
        "config": settings,
        "class_names": list(de.CLASS_NAMES),
        "affordance_columns": list(AFFORDANCE_COLUMNS),
        "counts": {split: len(records) for split, records in split_records.items()},
        "objects": {split: sum(len(r["boxes"]) for r in records) for split, records in split_records.items()},
        "label_rates": {split: np.mean([r["labels"] for r in records], axis=0).round(4).tolist() if records else []
                        for split, records in split_records.items()},
        "seed_ranges": {split: [i * SPLIT_SEED_STRIDE, (i + 1) * SPLIT_SEED_STRIDE] for i, split in enumerate(SPLITS)},
        "machine": machine_info(),
    }
    write_json_atomic(out / "dataset.json", summary, sort_keys=True)  # marks the dataset complete
    shutil.rmtree(parts, ignore_errors=True)
    return summary
