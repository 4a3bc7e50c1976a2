"""Fixtures of the perception tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from perception_helpers import draw_frames, write_coco_dataset


@pytest.fixture(scope="session")
def synthetic_coco(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with train.json (320 frames) and val.json (64 frames) of synthetic frames."""
    root = tmp_path_factory.mktemp("synthetic_coco")
    for name, count, seed in (("train", 320, 0), ("val", 64, 1)):
        write_coco_dataset(root, name, *draw_frames(count, seed))
    return root
