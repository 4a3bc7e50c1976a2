"""The policy spec (``policy.json``): its format, reading it, and checking every field.

An export is a folder with ``policy.safetensors`` (tensors only) and ``policy.json``, the
spec: algorithm, network, observation and action spaces, env id, observation, camera and env
config, training seed, and the SHA-256 of the weights. A spec comes from anyone who submits a
policy, so every field is type-checked and bounded here, before any env or network is built
(``PolicySpecError``); a spec that is not JSON at all is a ``CheckpointError``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np

import drivelab.envs as de
from drivelab.agents.configs import BUILTIN_ENCODERS, MAX_LAYERS, MAX_WIDTH, EncoderConfig, check_env_settings
from drivelab.agents.errors import CheckpointError, PolicySpecError
from drivelab.core.config import bounded, from_mapping
from drivelab.core.errors import DrivelabError

SPEC_FORMAT = "drivelab-policy"
SPEC_VERSION = 1
SPEC_FILE, WEIGHTS_FILE = "policy.json", "policy.safetensors"
MAX_SPEC_BYTES = 16 << 20  # a spec is a few KiB; anything near this is not one
MAX_SPACE_DIMS = 4
MAX_SPACE_SIDE = 4096
MAX_SPACE_ELEMENTS = 1 << 26  # per observation; a 48 x 2048 x 2048 camera stack is past any policy here
MAX_ACTIONS = 1 << 20
SPACE_DTYPES = ("uint8", "int8", "int16", "int32", "int64", "float16", "float32", "float64", "bool")
MAX_DICT_KEYS = 16
_HEX64 = re.compile(r"[0-9a-f]{64}")
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def space_to_dict(space: gym.Space) -> dict[str, Any]:
    """JSON description of a Box or Discrete space, or a Dict of Boxes (parking's goal observation)."""
    if isinstance(space, gym.spaces.Dict) and all(isinstance(sub, gym.spaces.Box) for sub in space.spaces.values()):
        return {"type": "dict", "spaces": {key: space_to_dict(sub) for key, sub in space.spaces.items()}}
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


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def space_from_dict(description: Any, what: str = "space") -> gym.Space:
    """Inverse of ``space_to_dict``, checking every field and size first.

    Raises:
        PolicySpecError: not a mapping, an unknown type, or a shape, dtype, bound or size
            that is ill-typed or out of range.
    """
    if not isinstance(description, Mapping):
        raise PolicySpecError(f"{what} must be a mapping with a 'type' (box or discrete), got {description!r}")
    kind = description.get("type")
    if kind == "dict":
        parts = description.get("spaces")
        if not (isinstance(parts, Mapping) and 1 <= len(parts) <= MAX_DICT_KEYS
                and all(isinstance(key, str) and _KEY.fullmatch(key) for key in parts)):
            raise PolicySpecError(
                f"{what}: a dict space needs 'spaces', 1 to {MAX_DICT_KEYS} parts named by identifiers, got {parts!r}"
            )
        boxes = {key: space_from_dict(sub, f"{what}[{key!r}]") for key, sub in parts.items()}
        if not all(isinstance(box, gym.spaces.Box) for box in boxes.values()):
            raise PolicySpecError(f"{what}: every part of a dict space must be a box")
        return gym.spaces.Dict(boxes)
    if kind == "discrete":
        n, start = description.get("n"), description.get("start", 0)
        if not (_is_int(n) and 1 <= n <= MAX_ACTIONS and _is_int(start) and abs(start) <= 2**31):
            raise PolicySpecError(f"{what}: discrete n must be an integer in [1, {MAX_ACTIONS}], got {n!r}")
        return gym.spaces.Discrete(n, start=start)
    if kind != "box":
        raise PolicySpecError(f"unknown {what} type {kind!r}; valid: box, discrete, dict")
    shape, dtype = description.get("shape"), description.get("dtype")
    if not (
        isinstance(shape, list) and 1 <= len(shape) <= MAX_SPACE_DIMS
        and all(_is_int(side) and 1 <= side <= MAX_SPACE_SIDE for side in shape)
    ):
        raise PolicySpecError(
            f"{what} shape must be 1 to {MAX_SPACE_DIMS} integers in [1, {MAX_SPACE_SIDE}], got {shape!r}"
        )
    size = math.prod(shape)
    if size > MAX_SPACE_ELEMENTS:
        raise PolicySpecError(f"{what} shape {shape} has {size} elements; at most {MAX_SPACE_ELEMENTS}")
    if dtype not in SPACE_DTYPES:
        raise PolicySpecError(f"{what} dtype must be one of {', '.join(SPACE_DTYPES)}, got {dtype!r}")

    def bound(name: str) -> np.ndarray:
        value = description.get(name)
        values = value if isinstance(value, list) else [value]
        if len(values) not in (1, size) or not all(
            (isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v)) or v in ("inf", "-inf")
            for v in values
        ):
            raise PolicySpecError(f"{what} {name} must be a number, 'inf', '-inf' or {size} of them")
        array = np.asarray(values, dtype=np.float64)
        return np.broadcast_to(array.reshape(shape) if array.size > 1 else array, shape).astype(dtype)

    low, high = bound("low"), bound("high")
    if np.any(low > high):
        raise PolicySpecError(f"{what} low must not exceed high")
    return gym.spaces.Box(low, high, tuple(shape), np.dtype(dtype))


def _file_name(value: Any, key: str) -> str:
    if not (isinstance(value, str) and value and Path(value).name == value and value not in (".", "..")):
        raise PolicySpecError(f"{key} must be a file name beside the spec, got {value!r}")
    return value


@dataclass(frozen=True)
class PolicySpec:
    """The typed, bounded fields of a ``policy.json`` (extra keys, such as ``eval``, pass)."""

    algo: Literal["ppo", "dqn", "bc", "sac"]  # bc: behaviour cloning into PPO's actor-critic network
    policy_net: Literal["cnn", "mlp"]
    env_id: str
    observation: Literal["camera", "native"]
    observation_space: dict[str, Any]
    action_space: dict[str, Any]
    weights: str
    weights_sha256: str
    net_arch: tuple[int, ...] = bounded((), low=1, high=MAX_WIDTH)
    encoder: EncoderConfig | None = None
    seed: int | None = bounded(None, low=0)  # the training seed (checked disjoint from evaluation seeds)
    camera: dict[str, Any] = field(default_factory=dict)
    env_config: dict[str, Any] = field(default_factory=dict)
    encoder_file: str | None = None
    num_timesteps: int = bounded(0, low=0)
    format: Literal["drivelab-policy"] = SPEC_FORMAT
    format_version: Literal[1] = SPEC_VERSION

    def __post_init__(self) -> None:
        if len(self.net_arch) > MAX_LAYERS:
            raise PolicySpecError(f"net_arch has {len(self.net_arch)} layers; at most {MAX_LAYERS}")
        if (self.policy_net == "cnn") != (self.encoder is not None):
            raise PolicySpecError("a cnn policy needs an encoder, an mlp policy has none")
        _file_name(self.weights, "weights")
        if self.encoder_file is not None:
            _file_name(self.encoder_file, "encoder_file")
        elif self.encoder is not None and self.encoder.name not in BUILTIN_ENCODERS:
            raise PolicySpecError(
                f"encoder name must be one of {', '.join(BUILTIN_ENCODERS)} "
                f"(or the encoder travels as encoder_file), got {self.encoder.name!r}"
            )
        if not _HEX64.fullmatch(self.weights_sha256):
            raise PolicySpecError(f"weights_sha256 must be 64 hex digits, got {self.weights_sha256!r}")
        observation_space = space_from_dict(self.observation_space, "observation_space")
        space_from_dict(self.action_space, "action_space")
        check_env_settings(self.env_id, self.observation, self.camera, self.env_config, "policy spec")
        if self.observation == "camera":
            camera_shape = from_mapping(de.CameraConfig, self.camera, "policy spec camera").observation_shape
            if tuple(observation_space.shape) != camera_shape:
                raise PolicySpecError(
                    f"observation_space shape {list(observation_space.shape)} does not match "
                    f"its camera's {list(camera_shape)}"
                )


def check_spec(spec: Any, where: str | Path) -> PolicySpec:
    """Type-check and bound every field of a spec mapping before anything is built from it.

    Raises:
        PolicySpecError: naming the file and the field.
    """
    if not isinstance(spec, Mapping):
        raise PolicySpecError(f"{where} must hold a JSON object, got {type(spec).__name__}")
    fields = PolicySpec.__dataclass_fields__
    known = {key: spec[key] for key in fields if key in spec}
    try:
        return from_mapping(PolicySpec, known, "policy spec")
    except PolicySpecError as error:
        raise PolicySpecError(f"{where}: {error}") from None
    except DrivelabError as error:
        raise PolicySpecError(f"{where}: {error}") from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in a policy spec")


def spec_path(path: Path) -> Path:
    """The spec file of an export folder, a run folder (its best, else final export) or a weights file."""
    if path.is_dir():
        for candidate in (path / SPEC_FILE, path / "best" / SPEC_FILE, path / "final" / SPEC_FILE):
            if candidate.is_file():
                return candidate
        raise CheckpointError(f"no exported policy ({SPEC_FILE}) in {path}")
    if path.suffix == ".safetensors":
        return path.with_suffix(".json")
    return path


def read_spec(path: Path | str) -> tuple[dict[str, Any], Path]:
    """Read an export's JSON spec and check every field; returns it and its path.

    Raises:
        CheckpointError: no spec, or one that is unreadable or not JSON.
        PolicySpecError: a spec of another format or version, or a field of the wrong type or
            out of range.
    """
    found = spec_path(Path(path))
    if not found.is_file():
        raise CheckpointError(f"exported policy spec {found} does not exist")
    if found.stat().st_size > MAX_SPEC_BYTES:
        raise PolicySpecError(f"{found} is {found.stat().st_size} bytes; a policy spec is at most {MAX_SPEC_BYTES}")
    try:
        spec = json.loads(found.read_text(), parse_constant=_reject_constant)
    except RecursionError:
        raise PolicySpecError(f"{found} nests too deeply to be a policy spec") from None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise CheckpointError(f"exported policy spec {found} is unreadable or corrupt: {error}") from error
    if not isinstance(spec, dict) or spec.get("format") != SPEC_FORMAT:
        raise PolicySpecError(f"{found} is not a drivelab policy spec (format {SPEC_FORMAT!r})")
    if spec.get("format_version") != SPEC_VERSION:
        raise PolicySpecError(
            f"{found} has spec version {spec.get('format_version')!r}; this drivelab reads {SPEC_VERSION}"
        )
    check_spec(spec, found)
    return spec, found
