"""``load_policy``: the one way to load a policy, with the safety checks done first.

A policy label is ``baseline:NAME`` or a path: an export folder, ``policy.json``,
``policy.safetensors``, a run folder (its ``best/`` export, else ``final/``), or a
Stable-Baselines3 ``.zip`` checkpoint (only with ``trust_pickle``). Before anything is built:

1. the file that identifies the policy (the export's weights, or the file itself) is
   classified, and one that needs unpickling (which can run code) is refused unless trusted;
2. an export's spec is read and every field type-checked and bounded (``drivelab.agents.spec``).

The returned policy carries ``.source`` (a ``PolicySource``: label, SHA-256, file format,
spec, training run config) — what a leaderboard entry records about it.

Example:
    >>> policy = load_policy("runs/highway-fast_ppo_s0/best")  # doctest: +SKIP
    >>> policy.source.sha256  # doctest: +SKIP
"""

from __future__ import annotations

import json
import pickle
import pickletools
import re
import struct
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from stable_baselines3.common.save_util import load_from_zip_file
from stable_baselines3.dqn.policies import DQNPolicy
from stable_baselines3.sac.policies import SACPolicy

from drivelab.agents import zoo
from drivelab.agents.checkpoints import ACT_ONLY_SAC, ALGORITHMS
from drivelab.agents.configs import EncoderConfig
from drivelab.agents.errors import CheckpointError, PolicyLoadError, UnsafePolicyFileError
from drivelab.agents.export import load_weights
from drivelab.agents.networks import policy_class, policy_kwargs
from drivelab.agents.policies import BASELINES, Policy, PolicySource, TrainedPolicy, make_baseline
from drivelab.agents.spec import read_spec, space_from_dict
from drivelab.core.files import sha256_bytes, sha256_file

__all__ = [
    "BASELINE_PREFIX", "PolicyLoadError", "PolicySource", "UnsafePolicyFileError", "env_kwargs_from_spec",
    "find_run_config", "load_policy", "policy_file_format",
]

BASELINE_PREFIX = "baseline:"
# Keys of a training run's config.json that describe the env a bare checkpoint acts in.
RUN_CONFIG_KEYS = ("env_id", "algo", "seed", "observation", "camera", "env_config")


# --- Classifying files without executing them --------------------------------------------------


def _is_safetensors(path: Path) -> bool:
    # 8-byte little-endian header length, then a JSON object of that length.
    with open(path, "rb") as handle:
        head = handle.read(9)
    if len(head) < 9 or head[8:9] != b"{":
        return False
    return 0 < struct.unpack("<Q", head[:8])[0] <= path.stat().st_size - 8


def _refuse(path: Path, reason: str) -> UnsafePolicyFileError:
    return UnsafePolicyFileError(
        f"{path} needs unpickling to load ({reason}); unpickling can run arbitrary code. "
        "Export the policy weights-only (safetensors or a torch state dict) with a JSON spec, "
        "or pass --trust-pickle (trust_pickle=True) if you trust where the file came from"
    )


def _torch_refusal_reason(error: Exception, default: str) -> str:
    match = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(error))
    if match:
        return f"it stores the Python object {match.group(1)}, not just tensors"
    return default


def _numpy_format(path: Path, trust_pickle: bool) -> str:
    try:
        with np.load(path, allow_pickle=False) as loaded:  # npz: touch every array
            for name in loaded.files:
                loaded[name]
    except AttributeError:  # a plain .npy loads as an array, not a context manager
        pass
    except ValueError as error:
        if "pickle" not in str(error) or not trust_pickle:
            raise _refuse(path, "it holds numpy object arrays") from error
        return "pickle"
    return "numpy"


def _is_pickle_stream(path: Path) -> bool:
    """Whether the file parses as pickle opcodes up to STOP (parsing runs nothing)."""
    try:
        with open(path, "rb") as handle:
            for opcode, _, _ in pickletools.genops(handle):
                if opcode.name == "STOP":
                    return True
    except Exception:  # genops raises ValueError and others on bytes that are not opcodes
        return False
    return False


def _pickle_reason(path: Path) -> str | None:
    """Why the file needs unpickling, or None when it is no pickle at all."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            data = archive.read("data").decode("utf-8", "replace") if "data" in names else ""
            if ":serialized:" in data:
                return "it is a Stable-Baselines3 zip whose 'data' holds cloudpickled objects"
            if any(name.endswith(".pkl") for name in names):
                return "its zip archive holds pickle files"
        return None
    if _is_pickle_stream(path):
        return "it is a pickle file"
    return None


def policy_file_format(path: str | Path, trust_pickle: bool = False) -> str:
    """Classify a policy file, refusing one that needs unpickling unless ``trust_pickle``.

    Weights-only formats: safetensors, JSON, numpy without object arrays, and torch files that
    ``torch.load(weights_only=True)`` reads (its restricted unpickler runs no code). Anything
    else that is a pickle (a ``torch.save``'d module, a plain pickle, a Stable-Baselines3 zip
    whose ``data`` holds cloudpickled objects) is refused with the reason.

    Returns:
        ``"safetensors"``, ``"json"``, ``"numpy"``, ``"torch-weights"``, or ``"pickle"`` (only
        when ``trust_pickle``).

    Raises:
        PolicyLoadError: the file is missing or of an unknown format.
        UnsafePolicyFileError: the file needs unpickling and ``trust_pickle`` is False.
    """
    path = Path(path)
    if not path.is_file():
        raise PolicyLoadError(f"policy file {path} does not exist; give a policy file or one of {_baseline_labels()}")
    if path.suffix == ".json":
        return "json"
    if _is_safetensors(path):
        return "safetensors"
    with open(path, "rb") as handle:
        head = handle.read(8)
    if head.startswith(b"\x93NUMPY") or path.suffix == ".npz":
        return _numpy_format(path, trust_pickle)
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols it then refuses
            warnings.simplefilter("ignore")
            torch.load(path, map_location="cpu", weights_only=True)
        return "torch-weights"
    except Exception as error:  # a pickle torch refuses, a Stable-Baselines3 zip, junk
        reason = _pickle_reason(path)
        if reason is not None and isinstance(error, pickle.UnpicklingError):
            reason = _torch_refusal_reason(error, reason)
        if reason is None:
            raise PolicyLoadError(
                f"{path} is not a policy file drivelab can read (safetensors, torch state dict, "
                f"numpy or JSON spec): {type(error).__name__}"
            ) from error
    if not trust_pickle:
        raise _refuse(path, reason)
    return "pickle"


# --- Where a policy came from ------------------------------------------------------------------


def find_run_config(path: str | Path) -> dict[str, Any]:
    """The ``config.json`` of the training run a policy file or export lies in (``{}`` if none).

    A run folder holds ``run.json`` and ``config.json``; exports sit in ``run/final`` or
    ``run/best`` and checkpoints in ``run/checkpoints/step_*``.
    """
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    for candidate in (folder, *list(folder.parents)[:3]):
        if (candidate / "run.json").is_file() and (candidate / "config.json").is_file():
            try:
                config = json.loads((candidate / "config.json").read_text())
            except (OSError, UnicodeDecodeError, ValueError, RecursionError) as error:
                raise PolicyLoadError(f"run config {candidate / 'config.json'} is corrupt: {error}") from None
            return config if isinstance(config, dict) else {}
    return {}


def env_kwargs_from_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """``drivelab.envs.make_vec`` arguments that rebuild the env a policy was trained in."""
    kwargs: dict[str, Any] = {}
    if "observation" in spec:
        kwargs["observation"] = spec["observation"]
        if spec["observation"] == "camera" and spec.get("camera"):
            kwargs["camera"] = dict(spec["camera"])
    if spec.get("env_config"):
        kwargs["config"] = dict(spec["env_config"])
    return kwargs


def _baseline_labels() -> str:
    return ", ".join(BASELINE_PREFIX + name for name in BASELINES)


# --- Building policies -------------------------------------------------------------------------


def _load_exported(spec: dict[str, Any], spec_file: Path, device: str) -> TrainedPolicy:
    """Rebuild the network of a checked spec and fill in its weights (nothing is unpickled)."""
    weights_path = spec_file.parent / spec["weights"]
    algo, policy_net = spec["algo"], spec["policy_net"]
    observation_space = space_from_dict(spec["observation_space"], "observation_space")
    action_space = space_from_dict(spec["action_space"], "action_space")
    encoder = None
    if spec.get("encoder"):
        fields = dict(spec["encoder"])
        if spec.get("encoder_file"):
            fields["name"] = str(spec_file.parent / spec["encoder_file"])
        encoder = EncoderConfig(**fields)
    if not weights_path.is_file():
        raise CheckpointError(f"weights {weights_path} named by {spec_file} do not exist")
    if sha256_file(weights_path) != spec["weights_sha256"]:
        raise CheckpointError(
            f"weights {weights_path} do not match the SHA-256 in {spec_file} (truncated or replaced file)"
        )
    kwargs = policy_kwargs(algo, policy_net, spec["net_arch"], encoder, load_encoder_weights=False)
    try:
        network = policy_class(algo, policy_net)(observation_space, action_space, lambda _: 0.0, **kwargs)
        load_weights(network, weights_path)
    except (SafetensorError, RuntimeError, OSError, KeyError, ValueError, TypeError) as error:
        raise CheckpointError(f"weights {weights_path} do not fit the network in {spec_file}: {error}") from error
    for name, tensor in network.state_dict().items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise CheckpointError(f"weights {weights_path} hold NaN or infinite values (tensor {name})")
    network.to(device).set_training_mode(False)
    name = spec_file.parent.name if spec_file.stem == "policy" else spec_file.stem
    return TrainedPolicy(network, spec, name=name)


def _load_sb3_zip(path: Path, device: str) -> TrainedPolicy:
    try:
        data, _, _ = load_from_zip_file(path, device=device)
        policy = data["policy_class"]
        algo = "dqn" if issubclass(policy, DQNPolicy) else "sac" if issubclass(policy, SACPolicy) else "ppo"
        model = ALGORITHMS[algo].load(path, device=device, custom_objects=ACT_ONLY_SAC if algo == "sac" else None)
    except (zipfile.BadZipFile, ValueError, RuntimeError, EOFError, KeyError, OSError, TypeError) as error:
        raise CheckpointError(f"SB3 checkpoint {path} is corrupt or truncated: {error}") from error
    model.policy.set_training_mode(False)
    return TrainedPolicy(model.policy, {"algo": algo}, name=path.stem)


def _load_baseline(label: str, env_id: str | None) -> Policy:
    name = label[len(BASELINE_PREFIX) :]
    if name not in BASELINES:
        raise PolicyLoadError(f"unknown baseline {name!r}; valid: {_baseline_labels()}")
    policy = make_baseline(name, env_id)
    policy.source = PolicySource(label, sha256_bytes(label.encode()), "baseline", {"algo": name})
    return policy


def load_policy(
    label: str | Path, env_id: str | None = None, *, trust_pickle: bool = False, device: str = "cpu"
) -> Policy:
    """Load ``baseline:NAME`` or a policy export, checking it is safe and valid first.

    Args:
        label: ``baseline:NAME`` (``random``, ``idle``, ``idm``), ``zoo:ALGO/SCENARIO`` (a trained
            agent shipped with drivelab, see ``drivelab.agents.zoo``), or a path: an export folder,
            ``policy.json``, ``policy.safetensors``, a run folder (its ``best/`` export, else
            ``final/``), or an SB3 ``.zip`` checkpoint (only with ``trust_pickle``).
        env_id: the scenario the policy will drive (baselines are built for it).
        trust_pickle: allow files that need unpickling (only for files you made yourself).
        device: torch device for the network.

    Returns:
        The policy, with ``.source`` set. A trained policy's ``spec`` says which env id,
        observation and camera config to build the env with (``env_kwargs_from_spec``).

    Raises:
        PolicyLoadError: a missing path or an unknown baseline or file format.
        UnsafePolicyFileError: a file that needs unpickling, without ``trust_pickle`` (refused
            before any loader runs).
        PolicySpecError: a spec field of the wrong type or out of range.
        CheckpointError: corrupt, truncated or non-finite weights.
    """
    if not isinstance(label, (str, Path)):
        raise PolicyLoadError(f"a policy is a path or one of {_baseline_labels()}, got {label!r}")
    if isinstance(label, str) and label.startswith(BASELINE_PREFIX):
        return _load_baseline(label, env_id)
    path = zoo.resolve(label) if isinstance(label, str) and label.startswith(zoo.ZOO_PREFIX) else Path(label)
    if not path.exists():
        raise PolicyLoadError(f"policy {path} does not exist; give a policy export or one of {_baseline_labels()}")
    spec: dict[str, Any] = {}
    spec_file = None
    if path.is_dir() or path.suffix in (".json", ".safetensors"):
        spec, spec_file = read_spec(path)  # every field checked before anything is built
        identifying_file = spec_file.parent / spec["weights"]
    else:
        identifying_file = path
    file_format = policy_file_format(identifying_file, trust_pickle=trust_pickle)  # refuses pickles
    if spec_file is not None:
        policy = _load_exported(spec, spec_file, device)
    elif file_format == "pickle" and zipfile.is_zipfile(path):
        policy = _load_sb3_zip(path, device)
    else:
        raise PolicyLoadError(
            f"{path} holds bare weights without a spec; give its export folder or policy.json instead"
        )
    run_config = find_run_config(path)
    # The export's spec wins; a bare checkpoint borrows env settings and seed from its run.
    merged = {**{key: run_config[key] for key in RUN_CONFIG_KEYS if key in run_config}, **(spec or policy.spec)}
    policy.source = PolicySource(str(label), sha256_file(identifying_file), file_format, merged, run_config)
    return policy

