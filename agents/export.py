"""Export trained policies weights-only (safetensors + JSON spec) and load any policy back.

An export is a folder with ``policy.safetensors`` (tensors only) and ``policy.json``
(the spec: algorithm, network, observation and action spaces, env id, observation and camera
config, and the SHA-256 of the weights). Loading rebuilds the network from the spec and fills
in the tensors, so nothing is unpickled. An encoder given as a checkpoint path travels with the
export as ``policy.encoder.safetensors`` (its architecture; the weights are in the policy file).

Example:
    >>> policy = load_policy("runs/highway-fast_ppo_s0/best")  # doctest: +SKIP
    >>> actions = policy.act(observations, env)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn
from stable_baselines3 import DQN, PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.save_util import load_from_zip_file
from stable_baselines3.dqn.policies import DQNPolicy

from drivelab.agents.configs import BUILTIN_ENCODERS, EncoderConfig, TrainConfig
from drivelab.agents.errors import CheckpointError, PolicySpecError
from drivelab.agents.networks import policy_class, policy_kwargs
from drivelab.agents.policies import Policy, TrainedPolicy

SPEC_FORMAT = "drivelab-policy"
SPEC_VERSION = 1
ALGORITHMS: dict[str, type[BaseAlgorithm]] = {"ppo": PPO, "dqn": DQN}


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_atomic(path: Path, data: bytes) -> None:
    """Write bytes to ``path`` through a temp file in the same folder and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as tmp:
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, path)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)


def save_weights(module: nn.Module, path: Path, metadata: dict[str, str]) -> None:
    """Write a module's state dict as safetensors; tensors shared under several names are stored once.

    (PPO's policy shares one encoder as ``features_extractor``, ``pi_features_extractor`` and
    ``vf_features_extractor``; the aliases go into the metadata.)
    """
    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    owners: dict[tuple, str] = {}
    for name, tensor in module.state_dict().items():
        identity = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape), tensor.dtype)
        if identity in owners:
            aliases[name] = owners[identity]
            continue
        owners[identity] = name
        # contiguous clone: safetensors takes plain row-major tensors (encoders run channels-last)
        tensors[name] = tensor.detach().cpu().contiguous().clone()
    save_file(tensors, str(path), metadata={**metadata, "aliases": json.dumps(aliases)})


def load_weights(module: nn.Module, path: Path) -> None:
    """Fill a module from ``save_weights`` output; any missing, extra or misshapen tensor raises."""
    with safe_open(str(path), framework="pt") as handle:
        aliases = json.loads((handle.metadata() or {}).get("aliases", "{}"))
    state = load_file(str(path))
    for alias, owner in aliases.items():
        state[alias] = state[owner]
    module.load_state_dict(state, strict=True)


def space_to_dict(space: gym.Space) -> dict[str, Any]:
    """JSON description of a Box or Discrete space."""
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, gym.spaces.Box):
        def bound(values: np.ndarray) -> Any:
            flat = np.unique(values)
            return _json_number(flat[0]) if flat.size == 1 else [_json_number(v) for v in values.ravel()]

        return {
            "type": "box", "shape": list(space.shape), "dtype": str(space.dtype),
            "low": bound(space.low), "high": bound(space.high),
        }
    raise PolicySpecError(f"cannot export a policy for the space {space}")


def _json_number(value: Any) -> Any:
    value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return "inf" if value > 0 else "-inf"
    return value


def space_from_dict(description: dict[str, Any]) -> gym.Space:
    """Inverse of ``space_to_dict``."""
    kind = description.get("type")
    if kind == "discrete":
        return gym.spaces.Discrete(int(description["n"]), start=int(description.get("start", 0)))
    if kind == "box":
        shape, dtype = tuple(description["shape"]), np.dtype(description["dtype"])

        def bound(value: Any) -> np.ndarray:
            values = np.asarray(value if isinstance(value, list) else [value], dtype=np.float64)
            return np.broadcast_to(values.reshape(shape) if values.size > 1 else values, shape).astype(dtype)

        return gym.spaces.Box(bound(description["low"]), bound(description["high"]), shape, dtype)
    raise PolicySpecError(f"unknown space type {kind!r} in policy spec")


def export_policy(
    model: BaseAlgorithm, config: TrainConfig, folder: Path | str, extra: dict[str, Any] | None = None
) -> Path:
    """Write ``policy.safetensors`` + ``policy.json`` for a trained model into a folder.

    Args:
        model: a trained SB3 PPO or DQN.
        config: the run's config (env id, observation and camera config, encoder).
        folder: where the files go (created if needed; existing exports are replaced).
        extra: more JSON-able facts for the spec (e.g. steps trained, evaluation result).

    Returns:
        The spec (JSON) path; the weights are written first, so a spec always names
        complete weights.
    """
    stem = Path(folder) / "policy"
    stem.parent.mkdir(parents=True, exist_ok=True)
    weights_path = stem.with_name(stem.name + ".safetensors")
    encoder = config.encoder
    encoder_file = None
    if config.policy == "cnn" and encoder.name not in BUILTIN_ENCODERS:
        encoder_file = stem.with_name(stem.name + ".encoder.safetensors")
        write_atomic(encoder_file, Path(encoder.name).read_bytes())
        encoder = EncoderConfig(encoder_file.name, encoder.features_dim, encoder.freeze, 0)

    handle, tmp_name = tempfile.mkstemp(dir=stem.parent, prefix=f".{weights_path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        save_weights(model.policy, Path(tmp_name), metadata={"format": SPEC_FORMAT})
        os.replace(tmp_name, weights_path)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)

    spec = {
        "format": SPEC_FORMAT,
        "format_version": SPEC_VERSION,
        "algo": config.algo,
        "policy_net": config.policy,
        "net_arch": list(config.algo_config.net_arch),
        "encoder": {
            "name": encoder.name, "features_dim": encoder.features_dim, "freeze": encoder.freeze,
            "augment_shift_px": 0,  # augmentation is a training-time transform only
        } if config.policy == "cnn" else None,
        "env_id": config.env_id,
        "seed": config.seed,  # training seed: the leaderboard checks it is disjoint from evaluation seeds
        "observation": config.observation,
        "camera": dict(config.camera),
        "env_config": dict(config.env_config),
        "observation_space": space_to_dict(model.observation_space),
        "action_space": space_to_dict(model.action_space),
        "weights": weights_path.name,
        "weights_sha256": sha256_of(weights_path),
        "encoder_file": encoder_file.name if encoder_file else None,
        "num_timesteps": int(model.num_timesteps),
        **(extra or {}),
    }
    spec_path = stem.with_name(stem.name + ".json")
    write_atomic(spec_path, json.dumps(spec, indent=2, sort_keys=True).encode())
    return spec_path


def _spec_path(path: Path) -> Path:
    if path.is_dir():
        for candidate in (path / "policy.json", path / "best" / "policy.json", path / "final" / "policy.json"):
            if candidate.is_file():
                return candidate
        raise CheckpointError(f"no exported policy (policy.json) in {path}")
    if path.suffix == ".safetensors":
        return path.with_suffix(".json")
    return path


def read_spec(path: Path | str) -> tuple[dict[str, Any], Path]:
    """Read and check an export's JSON spec; returns it and its path."""
    spec_path = _spec_path(Path(path))
    if not spec_path.is_file():
        raise CheckpointError(f"exported policy spec {spec_path} does not exist")
    try:
        spec = json.loads(spec_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"exported policy spec {spec_path} is unreadable or corrupt: {error}") from error
    if not isinstance(spec, dict) or spec.get("format") != SPEC_FORMAT:
        raise CheckpointError(f"{spec_path} is not a drivelab policy spec (format {SPEC_FORMAT!r})")
    if spec.get("format_version") != SPEC_VERSION:
        raise CheckpointError(
            f"{spec_path} has spec version {spec.get('format_version')}; this drivelab reads {SPEC_VERSION}"
        )
    return spec, spec_path


def _load_exported(path: Path, device: str) -> TrainedPolicy:
    spec, spec_path = read_spec(path)
    try:
        weights_path = spec_path.parent / spec["weights"]
        algo, policy_net = spec["algo"], spec["policy_net"]
        observation_space = space_from_dict(spec["observation_space"])
        action_space = space_from_dict(spec["action_space"])
        encoder = None
        if spec.get("encoder"):
            fields = dict(spec["encoder"])
            if spec.get("encoder_file"):
                fields["name"] = str(spec_path.parent / spec["encoder_file"])
            encoder = EncoderConfig(**fields)
        kwargs = policy_kwargs(algo, policy_net, spec["net_arch"], encoder, load_encoder_weights=False)
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"exported policy spec {spec_path} is incomplete: {error!r}") from error
    if not weights_path.is_file():
        raise CheckpointError(f"weights {weights_path} named by {spec_path} do not exist")
    if sha256_of(weights_path) != spec.get("weights_sha256"):
        raise CheckpointError(
            f"weights {weights_path} do not match the SHA-256 in {spec_path} (truncated or replaced file)"
        )
    network = policy_class(algo, policy_net)(observation_space, action_space, lambda _: 0.0, **kwargs)
    try:
        load_weights(network, weights_path)
    except (SafetensorError, RuntimeError, OSError, KeyError, ValueError) as error:
        raise CheckpointError(f"weights {weights_path} do not fit the network in {spec_path}: {error}") from error
    network.to(device).set_training_mode(False)
    return TrainedPolicy(network, spec, name=str(spec_path.parent.name if spec_path.stem == "policy" else spec_path.stem))


def _load_sb3_zip(path: Path, device: str) -> TrainedPolicy:
    try:
        data, _, _ = load_from_zip_file(path, device=device)
    except (zipfile.BadZipFile, ValueError, RuntimeError, EOFError, KeyError, OSError) as error:
        raise CheckpointError(f"SB3 checkpoint {path} is corrupt or truncated: {error}") from error
    algo = "dqn" if issubclass(data["policy_class"], DQNPolicy) else "ppo"
    model = ALGORITHMS[algo].load(path, device=device)
    model.policy.set_training_mode(False)
    return TrainedPolicy(model.policy, {"algo": algo}, name=path.stem)


def load_policy(path: Path | str, trust_pickle: bool = False, device: str = "cpu") -> Policy:
    """Load a policy for acting: an export (folder, ``.json`` or ``.safetensors``) or a run folder.

    Args:
        path: an export folder or file, or a run directory (its ``best/`` export, else ``final/``).
        trust_pickle: also accept SB3 ``.zip`` checkpoints, which unpickle Python objects; only
            for files you made yourself.
        device: torch device for the network.

    Returns:
        A ``TrainedPolicy``; its ``spec`` says which env id, observation and camera config to
        build the env with. Acting in an env whose spaces differ raises ``PolicySpecError``.

    Raises:
        CheckpointError: missing, corrupt or truncated files, or a pickled checkpoint without
            ``trust_pickle``.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"policy {path} does not exist")
    if path.suffix == ".zip":
        if not trust_pickle:
            raise CheckpointError(
                f"{path} is a Stable-Baselines3 checkpoint, which unpickles code when loaded. Use the "
                "weights-only export next to it (policy.json + policy.safetensors), or pass "
                "trust_pickle=True for a file you made yourself"
            )
        return _load_sb3_zip(path, device)
    return _load_exported(path, device)
