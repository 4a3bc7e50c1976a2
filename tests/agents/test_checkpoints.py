"""Checkpoints survive crashes: an interrupted save never replaces the last good checkpoint."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from drivelab.agents import CheckpointError, TrainResult
from drivelab.agents.checkpoints import find_last_checkpoint, load_checkpoint, save_checkpoint


def test_crash_mid_checkpoint_keeps_the_previous_one(dqn_run: TrainResult, tmp_path: Path, monkeypatch) -> None:
    previous = find_last_checkpoint(dqn_run.run_dir / "checkpoints")
    model = load_checkpoint(previous, env=None, device="cpu")
    folder = tmp_path / "checkpoints"
    first = save_checkpoint(model, "dqn", folder)
    model.num_timesteps += 100

    def die_half_way(handle) -> None:  # write part of the buffer, then "lose power"
        handle.write(b"\x80\x04partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(model, "save_replay_buffer", die_half_way)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(model, "dqn", folder)
    survivor = find_last_checkpoint(folder)
    assert survivor.step == first.step
    assert load_checkpoint(survivor, env=None, device="cpu").num_timesteps == first.step
    assert sorted(p.name for p in folder.glob("step_*")) == [first.folder.name]  # no half-written one


def test_damaged_pointer_falls_back_to_newest_intact(dqn_run: TrainResult, tmp_path: Path, caplog) -> None:
    model = load_checkpoint(find_last_checkpoint(dqn_run.run_dir / "checkpoints"), env=None, device="cpu")
    folder = tmp_path / "checkpoints"
    older = save_checkpoint(model, "dqn", folder)
    model.num_timesteps += 64
    newer = save_checkpoint(model, "dqn", folder)
    (folder / "last.json").write_text('{"step": 12')  # torn write of the pointer
    assert find_last_checkpoint(folder).step == newer.step
    (newer.folder / "model.zip").write_bytes(b"PK\x03\x04")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="drivelab.agents"):
        assert find_last_checkpoint(folder).step == older.step
    (line,) = [r.getMessage() for r in caplog.records if "damaged" in r.getMessage()]  # said, in one line
    assert "model.zip" in line and older.folder.name in line
    (older.folder / "manifest.json").unlink()
    with pytest.raises(CheckpointError, match="no intact checkpoint"):
        find_last_checkpoint(folder)


def test_same_size_corrupt_replay_buffer_is_caught_by_its_hash(dqn_run: TrainResult, tmp_path: Path) -> None:
    model = load_checkpoint(find_last_checkpoint(dqn_run.run_dir / "checkpoints"), env=None, device="cpu")
    folder = tmp_path / "checkpoints"
    older = save_checkpoint(model, "dqn", folder)
    model.num_timesteps += 64
    newer = save_checkpoint(model, "dqn", folder)
    buffer = newer.folder / "replay_buffer.pkl"
    data = bytearray(buffer.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(b ^ 0xFF for b in data[middle : middle + 64])  # same size, other bytes
    buffer.write_bytes(bytes(data))
    assert find_last_checkpoint(folder).step == older.step  # falls back instead of a traceback on load
    (older.folder / "replay_buffer.pkl").write_bytes(b"\x80\x04garbage" + bytes(10))
    with pytest.raises(CheckpointError, match="no intact checkpoint"):
        find_last_checkpoint(folder)


SAVE_FOREVER = textwrap.dedent(
    """
    import sys
    from drivelab.agents.checkpoints import find_last_checkpoint, load_checkpoint, save_checkpoint
    model = load_checkpoint(find_last_checkpoint(sys.argv[1]), env=None, device="cpu")
    while True:
        model.num_timesteps += 1
        save_checkpoint(model, "ppo", sys.argv[2])
    """
)


def test_sigkill_while_checkpointing_leaves_a_loadable_checkpoint(ppo_run: TrainResult, tmp_path: Path) -> None:
    folder = tmp_path / "checkpoints"
    process = subprocess.Popen(
        [sys.executable, "-c", SAVE_FOREVER, str(ppo_run.run_dir / "checkpoints"), str(folder)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while not (folder / "last.json").exists():  # wait for the first complete checkpoint
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.7)  # let it be in the middle of later saves
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    info = find_last_checkpoint(folder)
    model = load_checkpoint(info, env=None, device="cpu")
    assert model.num_timesteps == info.step > ppo_run.num_timesteps
