"""load_policy, the one loader: pickles refused before any loader runs, every spec field checked."""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import drivelab.agents as agents
from drivelab.agents import (
    CheckpointError,
    PolicyLoadError,
    PolicySpecError,
    TrainResult,
    UnsafePolicyFileError,
    load_policy,
    loading,
    policy_file_format,
)
from drivelab.agents.checkpoints import find_last_checkpoint
from drivelab.core.files import sha256_file

ENV_ID = "drivelab/highway-fast-v0"


class TinyNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(3, 2)


def test_full_torch_module_file_is_refused_unless_trusted(tmp_path):
    path = tmp_path / "policy.pt"
    torch.save(TinyNet(), path)
    with pytest.raises(UnsafePolicyFileError, match="unpickling") as refusal:
        policy_file_format(path)
    assert "TinyNet" in str(refusal.value) and "--trust-pickle" in str(refusal.value)
    assert policy_file_format(path, trust_pickle=True) == "pickle"


def test_plain_pickle_numpy_objects_and_sb3_zip_are_refused(tmp_path):
    plain = tmp_path / "policy.pkl"
    plain.write_bytes(pickle.dumps({"weights": np.zeros(3)}, protocol=4))
    objects = tmp_path / "policy.npy"
    np.save(objects, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    sb3 = tmp_path / "ppo.zip"  # the layout Stable-Baselines3's save() writes
    with zipfile.ZipFile(sb3, "w") as archive:
        archive.writestr("data", json.dumps({"policy_class": {":type:": "<class 'type'>",
                                                              ":serialized:": "gAWVOwAAAAAAAACMHg=="}}))
        archive.writestr("policy.pth", b"")
    for path, reason in ((plain, "pickle"), (objects, "object arrays"), (sb3, "Stable-Baselines3")):
        with pytest.raises(UnsafePolicyFileError, match=reason):
            policy_file_format(path)


def test_weights_only_files_are_accepted(tmp_path):
    state = TinyNet().state_dict()
    torch.save(state, tmp_path / "state.pt")
    save_file(state, tmp_path / "state.safetensors")
    np.savez(tmp_path / "state.npz", weight=np.zeros((2, 3)))
    assert policy_file_format(tmp_path / "state.pt") == "torch-weights"
    assert policy_file_format(tmp_path / "state.safetensors") == "safetensors"
    assert policy_file_format(tmp_path / "state.npz") == "numpy"
    (tmp_path / "junk.bin").write_bytes(b"not a policy at all")
    with pytest.raises(PolicyLoadError, match="not a policy file"):
        policy_file_format(tmp_path / "junk.bin")


def test_load_policy_refuses_before_any_loader_runs(tmp_path, monkeypatch, ppo_run: TrainResult):
    calls = []
    for name in ("_load_exported", "_load_sb3_zip"):
        monkeypatch.setattr(loading, name, lambda *a, **k: calls.append(a))
    path = tmp_path / "policy.pt"
    torch.save(TinyNet(), path)
    with pytest.raises(UnsafePolicyFileError):
        load_policy(str(path), ENV_ID)
    checkpoint = find_last_checkpoint(ppo_run.run_dir / "checkpoints").folder / "model.zip"
    with pytest.raises(UnsafePolicyFileError, match="Stable-Baselines3"):
        load_policy(checkpoint)
    assert calls == []
    with pytest.raises(PolicyLoadError, match="does not exist"):
        load_policy(str(tmp_path / "missing.safetensors"), ENV_ID)


def test_baselines_come_from_drivelab_agents():
    policy = load_policy("baseline:idle", ENV_ID)
    assert isinstance(policy, agents.IdlePolicy)
    assert policy.source.sha256 == hashlib.sha256(b"baseline:idle").hexdigest()
    assert policy.source.file_format == "baseline" and policy.source.spec == {"algo": "idle"}
    with pytest.raises(PolicyLoadError, match="baseline:idm"):
        load_policy("baseline:teleport", ENV_ID)


def test_trained_export_source_names_its_weights_and_run(ppo_run: TrainResult):
    policy = load_policy(ppo_run.run_dir / "final")
    source = policy.source
    assert source.sha256 == sha256_file(ppo_run.run_dir / "final" / "policy.safetensors")
    assert source.file_format == "safetensors" and source.label == str(ppo_run.run_dir / "final")
    assert source.spec == policy.spec and source.spec["seed"] == 0
    assert source.run_config["total_steps"] == 192
    assert agents.env_kwargs_from_spec(source.spec) == {"observation": "camera", "camera": source.spec["camera"]}


def test_sb3_checkpoint_loads_only_when_trusted(ppo_run: TrainResult):
    checkpoint = find_last_checkpoint(ppo_run.run_dir / "checkpoints")
    policy = load_policy(checkpoint.folder / "model.zip", trust_pickle=True)
    assert policy.source.file_format == "pickle"
    assert policy.source.spec["seed"] == 0 and policy.source.spec["env_id"] == ENV_ID  # from the run's config


# --- Every spec field is checked before anything is built ----------------------------------------


def _deep_json(depth: int) -> str:
    return "[" * depth + "]" * depth


SPEC_CASES = {
    "action_space null": ({"action_space": None}, "action_space"),
    "camera a string": ({"camera": "abc"}, "camera"),
    "huge observation shape": ({"observation_space": {"type": "box", "shape": [4, 100000, 100000],
                                                      "dtype": "uint8", "low": 0, "high": 255}}, "shape"),
    "float observation side": ({"observation_space": {"type": "box", "shape": [4, 1e5, 1e5],
                                                      "dtype": "uint8", "low": 0, "high": 255}}, "shape"),
    "net_arch 1e10": ({"net_arch": [10_000_000_000]}, "net_arch"),
    "net_arch -5": ({"net_arch": [-5]}, "net_arch"),
    "net_arch a string": ({"net_arch": "abc"}, "net_arch"),
    "vehicles_count 1e9": ({"env_config": {"vehicles_count": 1e9}}, "vehicles_count"),
    "seed a string": ({"seed": "abc"}, "seed"),
    "negative seed": ({"seed": -3}, "seed"),
    "object dtype": ({"observation_space": {"type": "box", "shape": [2, 32, 64], "dtype": "O",
                                            "low": 0, "high": 255}}, "dtype"),
    "weights outside the folder": ({"weights": "../../etc/passwd"}, "file name"),
    "encoder from any path": ({"encoder": {"name": "/etc/passwd", "features_dim": 32}}, "encoder name"),
    "unknown algorithm": ({"algo": "a2c"}, "algo"),
    "camera past 2048 px": ({"camera": {"width": 100000, "height": 32, "stack": 2}}, "2048"),
    "shape not the camera's": ({"observation_space": {"type": "box", "shape": [2, 32, 32], "dtype": "uint8",
                                                      "low": 0, "high": 255}}, "does not match"),
}


@pytest.fixture
def export_copy(ppo_run: TrainResult, tmp_path: Path) -> Path:
    folder = tmp_path / "export"
    shutil.copytree(ppo_run.run_dir / "final", folder)
    return folder


@pytest.mark.parametrize("case", list(SPEC_CASES))
def test_bad_spec_fields_are_one_clear_error(case: str, export_copy: Path, monkeypatch):
    changes, message = SPEC_CASES[case]
    built = []
    monkeypatch.setattr(loading, "policy_class", lambda *a: built.append(a))
    spec_file = export_copy / "policy.json"
    spec = json.loads(spec_file.read_text())
    spec_file.write_text(json.dumps({**spec, **changes}))
    with pytest.raises(PolicySpecError, match=message):
        load_policy(export_copy)
    assert built == []  # nothing was built from the bad spec


def test_deep_or_non_standard_json_is_refused(export_copy: Path):
    spec_file = export_copy / "policy.json"
    spec_file.write_text(_deep_json(100_000))
    with pytest.raises(PolicySpecError, match="nests too deeply"):
        load_policy(export_copy)
    spec_file.write_text('{"format": "drivelab-policy", "format_version": 1, "seed": NaN}')
    with pytest.raises(CheckpointError, match="NaN"):
        load_policy(export_copy)


def test_nan_weights_are_refused(export_copy: Path):
    weights = export_copy / "policy.safetensors"
    tensors = load_file(str(weights))
    name = next(iter(tensors))
    tensors[name] = torch.full_like(tensors[name], float("nan"))
    with safe_open(str(weights), framework="pt") as handle:
        metadata = handle.metadata()
    save_file(tensors, str(weights), metadata=metadata)
    spec_file = export_copy / "policy.json"
    spec = json.loads(spec_file.read_text())
    spec_file.write_text(json.dumps({**spec, "weights_sha256": sha256_file(weights)}))
    with pytest.raises(CheckpointError, match="NaN"):
        load_policy(export_copy)
