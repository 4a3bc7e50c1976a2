"""Expert demonstrations: (observation, expert action) pairs recorded on the batched backend.

A data set is a folder of chunks plus ``manifest.json``::

    manifest.json        format, the recording settings (env, expert, seed, camera, ...), and per
                         complete chunk its file, sample count, env seed and SHA-256
    chunk_00000.npz      observations (N, ...), actions (N,) or (N, A), rewards (N,),
                         terminated / truncated (N,), final_observations (D, ...) of the D
                         rows that ended an episode, tail_observations (B, ...) after the last step

Observations are what the run trains on: camera frame stacks (C, H, W) uint8, or the scenario's
native vector (e.g. highway-env's kinematics rows) as float32.

Rows are time-major: row ``t * B + i`` is env ``i`` at step ``t`` of the chunk, so the next
observation of a row is row ``(t + 1) * B + i`` (or its final observation where it ended an
episode): the chunks hold whole transitions, which is what pre-fills DQN's replay buffer.

Every chunk starts from a fresh reset whose env seeds are a function of (seed, round, chunk
index) only, and training seeds (< ``TRAIN_SEED_LIMIT``) only. A chunk file is written
atomically, then the manifest; a rerun after a kill skips the chunks the manifest lists and
records the rest, so the data equal an uninterrupted run's byte for byte.

With a ``learner`` (DAgger, Ross et al. 2011) the learner drives: each env step takes the
expert's action with probability ``beta``, else the learner's, and every row is labelled with
the expert's action on the state actually visited. The expert reads the simulator state through
the ``env`` argument of ``Policy.act``.
"""

from __future__ import annotations

import io
import json
import logging
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import drivelab.envs as de
from drivelab.agents.errors import CheckpointError, ConfigError
from drivelab.agents.policies import Policy
from drivelab.agents.protocol import TRAIN_SEED_LIMIT
from drivelab.core.files import atomic_output, ensure_dir, sha256_file, write_json_atomic

log = logging.getLogger("drivelab.agents")

DATA_FORMAT, DATA_VERSION = "drivelab-expert-data", 1
MANIFEST = "manifest.json"
ARRAYS = ("observations", "actions", "rewards", "terminated", "truncated", "final_observations",
          "tail_observations", "crashed")
ROW_ARRAYS = ("observations", "actions", "rewards", "terminated", "truncated")  # one row per sample


@dataclass(frozen=True)
class RecordingSpec:
    """What a recording is: two runs with equal specs write the same bytes."""

    env_id: str
    expert: str  # the expert's load_policy label (what labels every row)
    seed: int  # training seed the chunks' env seeds derive from
    samples: int  # at least this many rows (whole vector steps, so up to B - 1 more)
    num_envs: int
    chunk_size: int
    backend: str = "auto"
    camera: dict[str, Any] = field(default_factory=dict)
    env_config: dict[str, Any] = field(default_factory=dict)
    round: int = 0  # 0: the expert drives; r >= 1: DAgger round r (the learner drives part of the time)
    beta: float = 1.0  # probability that the expert's action is the one driven
    observation: str = "camera"  # "camera" frame stacks or the scenario's "native" vector

    @property
    def steps_per_chunk(self) -> int:
        # a recording smaller than one chunk is one chunk of its own size, not ``chunk_size`` rows
        return math.ceil(min(self.chunk_size, self.samples) / self.num_envs)

    @property
    def num_chunks(self) -> int:
        return math.ceil(self.samples / (self.steps_per_chunk * self.num_envs))

    def check(self) -> None:
        """Refuse settings that would record from seeds outside the training range."""
        if not 0 <= self.seed < TRAIN_SEED_LIMIT:
            raise ConfigError(f"expert data seed must be a training seed in [0, {TRAIN_SEED_LIMIT}), got {self.seed}")
        if not 0.0 <= self.beta <= 1.0:
            raise ConfigError(f"beta must be in [0, 1], got {self.beta}")
        if self.round == 0 and self.beta != 1.0:
            raise ConfigError("round 0 is the expert driving alone (beta 1); DAgger rounds start at 1")


def chunk_env_seed(spec: RecordingSpec, chunk: int) -> int:
    """Env seed of a chunk's reset (env i gets it + i): a hash of (seed, round, chunk), in the training range."""
    mixed = np.random.SeedSequence([spec.seed, spec.round, chunk]).generate_state(1, np.uint64)[0]
    return int(mixed % np.uint64(TRAIN_SEED_LIMIT - spec.num_envs))


def _read_manifest(folder: Path) -> dict[str, Any] | None:
    path = folder / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise CheckpointError(
            f"expert data manifest {path} is corrupt ({error}); delete {folder} and record again"
        ) from None
    if not isinstance(manifest, dict) or manifest.get("format") != DATA_FORMAT:
        raise CheckpointError(f"{path} is not a drivelab expert data manifest; give another folder")
    return manifest


def _verified_chunks(folder: Path, manifest: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The manifest's chunks whose files are intact, in order, up to the first missing or damaged one."""
    intact = []
    for index, chunk in enumerate(manifest.get("chunks", [])):
        path = folder / str(chunk.get("file", ""))
        if chunk.get("index") != index or not path.is_file() or sha256_file(path) != chunk.get("sha256"):
            log.warning("expert data chunk %d in %s is missing or damaged; recording it again", index, folder)
            break
        intact.append(chunk)
    return intact


def _record_chunk(
    vec: Any, spec: RecordingSpec, chunk: int, expert: Policy, learner: Policy | None
) -> dict[str, np.ndarray]:
    """One chunk: reset every env with the chunk's seeds, drive ``steps_per_chunk`` vector steps."""
    env_seed = chunk_env_seed(spec, chunk)
    observation, _ = vec.reset(seed=env_seed)
    expert.reset()
    if learner is not None:
        learner.reset()
    mixing = np.random.default_rng(env_seed)  # which envs follow the expert at each step
    rows: dict[str, list[np.ndarray]] = {name: [] for name in (*ROW_ARRAYS, "crashed")}
    final: list[np.ndarray] = []
    for _ in range(spec.steps_per_chunk):
        labels = np.asarray(expert.act(observation, env=vec))  # (B,) or (B, A)
        driven = labels
        if learner is not None:
            follow_expert = mixing.random(vec.num_envs) < spec.beta  # (B,)
            learned = np.asarray(learner.act(observation, env=vec, deterministic=True))
            driven = np.where(follow_expert.reshape(-1, *[1] * (labels.ndim - 1)), labels, learned)
            expert.drove(driven)  # its remembered target speeds follow the vehicles, not its own labels
        next_observation, rewards, terminated, truncated, infos = vec.step(driven)
        rows["observations"].append(observation)
        rows["actions"].append(labels)
        rows["rewards"].append(np.asarray(rewards, np.float32))
        rows["terminated"].append(np.asarray(terminated, bool))
        rows["truncated"].append(np.asarray(truncated, bool))
        done = np.asarray(terminated, bool) | np.asarray(truncated, bool)
        crashed = np.asarray(infos["driving"]["crashed"], bool) & done if done.any() else np.zeros_like(done)
        rows["crashed"].append(crashed)  # the step on which the ego crashed (other scenarios end otherwise too)
        final.extend(infos["final_obs"][i] for i in np.flatnonzero(done))
        if done.any():
            expert.reset(done)
            if learner is not None:
                learner.reset(done)
        observation = next_observation
    arrays = {name: np.concatenate(values) for name, values in rows.items()}
    shape = arrays["observations"].shape[1:]
    arrays["final_observations"] = np.stack(final) if final else np.zeros((0, *shape), arrays["observations"].dtype)
    arrays["tail_observations"] = np.asarray(observation)
    return arrays


def record(
    folder: Path | str,
    spec: RecordingSpec,
    expert: Policy,
    learner: Policy | None = None,
    max_new_chunks: int | None = None,
) -> dict[str, Any]:
    """Record (or finish recording) a data set into ``folder``; returns its manifest.

    Args:
        folder: where the chunks and the manifest go; a folder holding a complete recording
            of the same spec is returned as it is.
        spec: what to record.
        expert: the policy that labels every row (``load_policy(spec.expert, env_id)``).
        learner: for DAgger rounds, the policy that drives with probability ``1 - beta``.
        max_new_chunks: stop after recording this many chunks (a time budget; the next call
            continues).

    Raises:
        ConfigError: seeds outside the training range, or the folder holds another recording.
    """
    spec.check()
    folder = ensure_dir(folder)
    header = {"format": DATA_FORMAT, "format_version": DATA_VERSION, "spec": asdict(spec)}
    manifest = _read_manifest(folder)
    recorded = manifest.get("spec") if manifest is not None else None
    if isinstance(recorded, dict):  # recordings from before the observation field are of camera frames
        recorded = {"observation": "camera", **recorded}
    if manifest is not None and recorded != header["spec"]:
        raise ConfigError(
            f"{folder} holds expert data recorded with other settings ({manifest.get('spec')}); "
            "give another folder or delete it"
        )
    chunks = _verified_chunks(folder, manifest) if manifest is not None else []
    if len(chunks) >= spec.num_chunks:
        return {**header, "chunks": chunks, "samples": sum(c["samples"] for c in chunks), "complete": True}
    vec = de.make_vec(spec.env_id, num_envs=spec.num_envs, backend=spec.backend, observation=spec.observation,
                      camera=(dict(spec.camera) or None) if spec.observation == "camera" else None,
                      config=dict(spec.env_config) or None)
    try:
        expert.check_env(vec)
        if learner is not None:
            learner.check_env(vec)
        first = len(chunks)
        for index in range(first, spec.num_chunks):
            if max_new_chunks is not None and index - first >= max_new_chunks:
                break
            arrays = _record_chunk(vec, spec, index, expert, learner)
            path = folder / f"chunk_{index:05d}.npz"
            with atomic_output(path) as tmp:
                buffer = io.BytesIO()
                np.savez_compressed(buffer, **arrays)
                tmp.write_bytes(buffer.getvalue())
            chunks.append({"index": index, "file": path.name, "samples": int(len(arrays["actions"])),
                           "env_seed": chunk_env_seed(spec, index), "sha256": sha256_file(path)})
            manifest = {**header, "chunks": chunks, "samples": sum(c["samples"] for c in chunks),
                        "complete": len(chunks) == spec.num_chunks}
            write_json_atomic(folder / MANIFEST, manifest)
    finally:
        vec.close()
    return {**header, "chunks": chunks, "samples": sum(c["samples"] for c in chunks),
            "complete": len(chunks) >= spec.num_chunks}


@dataclass
class ExpertData:
    """Recorded rows of one or more data sets, concatenated; ``next_observation`` rebuilds transitions."""

    observations: np.ndarray  # (N, C, H, W) uint8 camera frames, or (N, ...) float32 native vectors
    actions: np.ndarray  # (N,) int64 or (N, A) float32: the expert's labels
    rewards: np.ndarray  # (N,) float32, the env's own reward
    terminated: np.ndarray  # (N,) bool
    truncated: np.ndarray  # (N,) bool
    next_observations: np.ndarray | None = None  # (N, ...) as observations, only with transitions=True
    window_end: np.ndarray | None = None  # (N,) bool: rows of a chunk's last step (episodes continue unseen)
    num_envs: int = 1  # B: row t * B + i is env i at step t; 0: sets of several env counts (no time-major rows)
    crashed: np.ndarray | None = None  # (N,) bool: the ego crashed on this step (None: recorded without it)

    def __len__(self) -> int:
        return len(self.actions)


def _chunk_arrays(path: Path, num_envs: int, transitions: bool) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as loaded:  # "crashed": absent from chunks recorded before it was
        arrays = {name: loaded[name] for name in ARRAYS if name in loaded and (transitions or name in ROW_ARRAYS)}
    if transitions:  # next row of the same env, or its episode's final frame, or the tail
        observations = arrays["observations"]
        following = np.concatenate([observations[num_envs:], arrays["tail_observations"]])
        done = np.flatnonzero(arrays["terminated"] | arrays["truncated"])
        following[done] = arrays["final_observations"]
        arrays["next_observations"] = following
    arrays["window_end"] = np.zeros(len(arrays["actions"]), bool)
    arrays["window_end"][-num_envs:] = True
    return arrays


def load(folders: list[Path | str] | Path | str, transitions: bool = False) -> ExpertData:
    """Read every complete chunk of one or more data sets, checking each chunk's SHA-256.

    Raises:
        CheckpointError: a missing manifest, a chunk that is missing or does not match it, or
            transitions asked of sets recorded with different env counts.
    """
    folders = [folders] if isinstance(folders, (str, Path)) else folders
    parts: dict[str, list[np.ndarray]] = {}
    num_envs = set()
    for folder in map(Path, folders):
        manifest = _read_manifest(folder)
        if manifest is None:
            raise CheckpointError(f"no expert data in {folder} (no {MANIFEST}); record it first")
        chunks = manifest.get("chunks", [])
        if len(_verified_chunks(folder, manifest)) != len(chunks):
            raise CheckpointError(f"expert data in {folder} has missing or damaged chunks; record it again")
        num_envs.add(int(manifest["spec"]["num_envs"]))
        for chunk in chunks:
            arrays = _chunk_arrays(folder / chunk["file"], manifest["spec"]["num_envs"], transitions)
            for name, values in arrays.items():
                parts.setdefault(name, []).append(values)
    if not parts:
        raise CheckpointError(f"expert data in {', '.join(map(str, folders))} holds no chunks")
    if len(num_envs) != 1 and transitions:  # rows of sets with other env counts interleave differently
        raise CheckpointError(f"expert data sets recorded with different env counts {sorted(num_envs)}; record alike")
    chunks = len(parts["actions"])
    merged = {name: np.concatenate(values) for name, values in parts.items() if len(values) == chunks}
    return ExpertData(
        merged["observations"], merged["actions"], merged["rewards"], merged["terminated"], merged["truncated"],
        merged.get("next_observations"), merged["window_end"], num_envs.pop() if len(num_envs) == 1 else 0,
        merged.get("crashed"),
    )
