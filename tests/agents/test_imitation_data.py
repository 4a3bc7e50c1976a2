"""Expert data: same seed -> same bytes, a killed recording resumes to an uninterrupted run's bytes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from drivelab.agents import TRAIN_SEED_LIMIT, ConfigError, load_policy
from drivelab.agents.expert_data import ExpertData, RecordingSpec, chunk_env_seed, load, record
from drivelab.agents.policies import IdlePolicy, IDMMobilPolicy
from drivelab.agents.warm_start import _with_crash_penalty, discounted_returns

ENV_ID = "drivelab/highway-fast-v0"
CAMERA = {"width": 64, "height": 32, "metres_per_pixel": 1.0, "stack": 2}
SPEC = RecordingSpec(ENV_ID, "baseline:idm", seed=3, samples=3 * 32, num_envs=8, chunk_size=32, camera=CAMERA)


class KilledExpert(IDMMobilPolicy):
    """The rule-based expert, until the process 'dies' after a number of decisions."""

    def __init__(self, calls_before_kill: int) -> None:
        super().__init__()
        self.calls_left = calls_before_kill

    def act(self, observation, env=None, deterministic=True):
        self.calls_left -= 1
        if self.calls_left < 0:
            raise KeyboardInterrupt("killed")
        return super().act(observation, env, deterministic)


def _files(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("data") / "full"
    manifest = record(folder, SPEC, load_policy("baseline:idm", ENV_ID))
    assert manifest["complete"] and manifest["samples"] == 3 * 32
    return folder


def test_recording_resumes_after_a_kill_to_the_same_bytes(uninterrupted: Path, tmp_path: Path) -> None:
    folder = tmp_path / "killed"
    partial = record(folder, SPEC, load_policy("baseline:idm", ENV_ID), max_new_chunks=1)
    assert not partial["complete"] and len(partial["chunks"]) == 1
    with pytest.raises(KeyboardInterrupt):  # dies half-way through chunk 1 (4 steps per chunk)
        record(folder, SPEC, KilledExpert(calls_before_kill=2))
    assert sorted(p.name for p in folder.iterdir()) == ["chunk_00000.npz", "manifest.json"]  # nothing half-written
    resumed = record(folder, SPEC, load_policy("baseline:idm", ENV_ID))
    assert resumed["complete"]
    assert _files(folder) == _files(uninterrupted)


def test_same_seed_same_data_other_seed_other_data(uninterrupted: Path, tmp_path: Path) -> None:
    again = record(tmp_path / "again", SPEC, load_policy("baseline:idm", ENV_ID))
    original = json.loads((uninterrupted / "manifest.json").read_text())
    assert [c["sha256"] for c in again["chunks"]] == [c["sha256"] for c in original["chunks"]]
    other = RecordingSpec(**{**SPEC.__dict__, "seed": 4, "samples": 32})
    assert record(tmp_path / "other", other, load_policy("baseline:idm", ENV_ID))["chunks"][0]["sha256"] not in {
        c["sha256"] for c in original["chunks"]}


def test_a_recording_smaller_than_a_chunk_records_only_what_was_asked(tmp_path: Path) -> None:
    """10 samples on 8 envs are 2 vector steps (16 rows), not a whole 32-row chunk (the doc's "up to B - 1 more")."""
    spec = RecordingSpec(**{**SPEC.__dict__, "samples": 10})
    manifest = record(tmp_path / "small", spec, load_policy("baseline:idm", ENV_ID))
    assert manifest["complete"] and manifest["samples"] == 16 and len(manifest["chunks"]) == 1


def test_crashes_are_recorded_apart_from_other_endings_and_only_they_are_charged(tmp_path: Path) -> None:
    """On merge an episode also ends by reaching the end of the road: a DQN started from the expert's
    data is charged crash_penalty on the crash steps only, as the CrashPenalty wrapper charges it."""
    spec = RecordingSpec("drivelab/merge-v0", "baseline:idm", seed=5, samples=8 * 60, num_envs=8, chunk_size=480,
                         camera=CAMERA)
    record(tmp_path / "merge", spec, load_policy("baseline:idm", "drivelab/merge-v0"))
    data = load(tmp_path / "merge", transitions=True)
    assert data.crashed is not None and data.crashed.dtype == bool
    assert not np.any(data.crashed & ~data.terminated)  # a crash ends its episode
    assert data.crashed.sum() >= 1 and (data.terminated & ~data.crashed).sum() >= 1  # crashes and arrivals
    rewards = data.rewards.copy()
    charged = _with_crash_penalty(data, 5.0).rewards
    np.testing.assert_allclose(rewards - charged, 5.0 * data.crashed)


def test_rows_are_expert_labelled_transitions_from_training_seeds(uninterrupted: Path) -> None:
    data = load(uninterrupted, transitions=True)
    assert data.observations.dtype == np.uint8 and data.observations.shape == (96, 2, 32, 64)
    assert set(np.unique(data.actions)) <= set(range(5)) and len(np.unique(data.actions)) >= 2
    # next observation of a row: the same env one step later (unless its episode or its chunk ended)
    alive = ~(data.terminated | data.truncated | data.window_end)[:-8]
    assert data.window_end.sum() == 3 * 8 and alive.sum() > 50
    np.testing.assert_array_equal(data.next_observations[:-8][alive], data.observations[8:][alive])
    assert data.rewards.dtype == np.float32 and np.all((data.rewards >= 0) & (data.rewards <= 1))
    seeds = [chunk_env_seed(SPEC, chunk) for chunk in range(3)]
    assert len(set(seeds)) == 3 and all(0 <= s and s + SPEC.num_envs <= TRAIN_SEED_LIMIT for s in seeds)
    manifest = json.loads((uninterrupted / "manifest.json").read_text())
    assert [c["env_seed"] for c in manifest["chunks"]] == seeds
    assert manifest["spec"]["expert"] == "baseline:idm" and manifest["spec"]["seed"] == 3


def test_a_damaged_chunk_is_recorded_again_and_another_spec_is_refused(uninterrupted: Path, tmp_path: Path) -> None:
    folder = tmp_path / "copy"
    folder.mkdir()
    for name, payload in _files(uninterrupted).items():
        (folder / name).write_bytes(payload)
    (folder / "chunk_00001.npz").write_bytes(b"truncated")
    record(folder, SPEC, load_policy("baseline:idm", ENV_ID))
    assert _files(folder) == _files(uninterrupted)
    with pytest.raises(ConfigError, match="other settings"):
        record(folder, RecordingSpec(**{**SPEC.__dict__, "seed": 9}), load_policy("baseline:idm", ENV_ID))
    with pytest.raises(ConfigError, match="training seed"):
        RecordingSpec(**{**SPEC.__dict__, "seed": TRAIN_SEED_LIMIT}).check()


def test_dagger_recording_is_labelled_by_the_expert_and_reproducible(tmp_path: Path) -> None:
    """A DAgger round: an always-idle learner drives half the time, the expert labels every row."""
    spec = RecordingSpec(**{**SPEC.__dict__, "samples": 32, "round": 1, "beta": 0.5})
    first = record(tmp_path / "a", spec, load_policy("baseline:idm", ENV_ID), learner=IdlePolicy())
    again = record(tmp_path / "b", spec, load_policy("baseline:idm", ENV_ID), learner=IdlePolicy())
    assert first["chunks"][0]["sha256"] == again["chunks"][0]["sha256"]
    assert first["chunks"][0]["env_seed"] != chunk_env_seed(SPEC, 0)  # rounds draw other training seeds
    labels = load(tmp_path / "a").actions
    assert set(np.unique(labels)) != {1}  # the expert's labels, not the idle learner's actions
    with pytest.raises(ConfigError, match="round 0"):
        RecordingSpec(**{**SPEC.__dict__, "beta": 0.5}).check()


def test_discounted_returns_match_the_closed_form() -> None:
    """Two envs, time-major rows; env 0 ends at step 1, env 1 runs to the window's end."""
    rewards = np.array([1.0, 2.0, 1.0, 2.0, 1.0, 2.0], np.float32)  # (T=3, B=2) flattened
    ended = np.array([False, False, True, False, False, False])
    window_end = np.array([False, False, False, False, True, True])
    data = ExpertData(np.zeros((6, 1, 1, 1), np.uint8), np.zeros(6, np.int64), rewards, ended,
                      np.zeros(6, bool), window_end=window_end, num_envs=2)
    gamma = 0.5
    expected = [1 + gamma * 1, 2 + gamma * 2 + gamma**2 * 2, 1, 2 + gamma * 2, 1, 2]
    np.testing.assert_allclose(discounted_returns(data, gamma), expected)


def test_a_recording_made_before_the_observation_field_resumes_as_camera_frames(uninterrupted: Path,
                                                                                 tmp_path: Path) -> None:
    """Manifests written before ``RecordingSpec.observation`` existed hold camera recordings: a run
    resumed on them keeps its chunks; asked for the native vector, the folder is refused."""
    folder = tmp_path / "old"
    folder.mkdir()
    for name, payload in _files(uninterrupted).items():
        (folder / name).write_bytes(payload)
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["spec"]["observation"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert record(folder, SPEC, load_policy("baseline:idm", ENV_ID))["complete"]
    assert {n: p for n, p in _files(folder).items() if n != "manifest.json"} == {
        n: p for n, p in _files(uninterrupted).items() if n != "manifest.json"}
    with pytest.raises(ConfigError, match="other settings"):
        record(folder, RecordingSpec(**{**SPEC.__dict__, "observation": "native", "camera": {}}),
               load_policy("baseline:idm", ENV_ID))
