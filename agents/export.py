"""Export trained policies weights-only: ``policy.safetensors`` + ``policy.json`` (the spec).

Loading rebuilds the network from the spec and fills in the tensors, so nothing is unpickled
(``drivelab.agents.loading``). An encoder given as a checkpoint path travels with the export as
``policy.encoder.safetensors`` (its architecture; the weights are in the policy file).

Example:
    >>> export_policy(model, config, "runs/highway-fast_ppo_s0/final")  # doctest: +SKIP
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from stable_baselines3.common.base_class import BaseAlgorithm
from torch import nn

from drivelab.agents.configs import BUILTIN_ENCODERS, EncoderConfig, TrainConfig
from drivelab.agents.spec import SPEC_FILE, SPEC_FORMAT, SPEC_VERSION, WEIGHTS_FILE, space_to_dict
from drivelab.core.files import atomic_output, ensure_dir, sha256_file, write_bytes_atomic, write_json_atomic

ENCODER_FILE = "policy.encoder.safetensors"


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


def export_policy(
    model: BaseAlgorithm | Any, config: TrainConfig, folder: Path | str, extra: dict[str, Any] | None = None
) -> Path:
    """Write ``policy.safetensors`` + ``policy.json`` for a trained model into a folder.

    Args:
        model: a trained SB3 PPO or DQN, or anything with their ``policy``, ``observation_space``,
            ``action_space`` and ``num_timesteps`` (``drivelab.agents.imitation.ClonedModel``).
        config: the run's config (env id, observation and camera config, encoder).
        folder: where the files go (created if needed; existing exports are replaced).
        extra: more JSON-able facts for the spec (e.g. steps trained, evaluation result).

    Returns:
        The spec (JSON) path; the weights are written first, so a spec always names
        complete weights.
    """
    folder = ensure_dir(folder)
    weights_path = folder / WEIGHTS_FILE
    encoder = config.encoder
    encoder_file = None
    if config.policy == "cnn" and encoder.name not in BUILTIN_ENCODERS:
        encoder_file = write_bytes_atomic(folder / ENCODER_FILE, Path(encoder.name).read_bytes())
        encoder = EncoderConfig(encoder_file.name, encoder.features_dim, encoder.freeze, 0)
    with atomic_output(weights_path) as tmp:
        save_weights(model.policy, tmp, metadata={"format": SPEC_FORMAT})
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
        "weights_sha256": sha256_file(weights_path),
        "encoder_file": encoder_file.name if encoder_file else None,
        "num_timesteps": int(model.num_timesteps),
        **(extra or {}),
    }
    return write_json_atomic(folder / SPEC_FILE, spec, sort_keys=True)
