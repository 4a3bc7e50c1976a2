"""The versioned evaluation protocol and the runner that evaluates a policy under it.

A protocol (``benchmarks/protocols/<version>.json``) publishes, per scenario, the held-out
evaluation seeds, the default episode count, the reference backend and the rule that keeps
evaluation seeds disjoint from training seeds (training uses seeds ``< training_seed_limit``;
every evaluation seed is ``>= evaluation_seed_floor``).

``evaluate`` runs a policy on a vector env in *waves*: the ``num_envs`` envs are reset
together, env ``i`` with its own episode seed, and each env's first finished episode is
recorded (later auto-reset episodes in the same wave are ignored). Each recorded episode
thus depends only on its seed and the policy, not on ``num_envs`` or on the other envs, so
evaluating with the same seeds gives the same numbers every time.

Policies are loaded without executing code: ``load_policy`` refuses a file that needs
unpickling unless the caller trusts it explicitly.

Example:
    >>> protocol = load_protocol("drivelab-eval-v1")
    >>> protocol.seeds_for("drivelab/highway-fast-v0", 3)
    (10000000, 10000001, 10000002)
    >>> protocol.is_training_seed_allowed(42)
    True
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import pickle
import pickletools
import re
import struct
import warnings
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

import drivelab.agents as agents
from drivelab.agents import Policy
import drivelab.envs as de
from drivelab.envs.errors import ConfigError, DrivelabError

DEFAULT_PROTOCOL = "drivelab-eval-v1"
DEFAULT_NUM_ENVS = 8
MAX_STEPS_PER_WAVE = 100_000  # guards against an env that never ends an episode


class ProtocolError(DrivelabError, ValueError):
    """An unknown protocol version, or seeds or settings that break the protocol."""


@dataclass(frozen=True)
class EvalProtocol:
    """A published evaluation protocol; see ``benchmarks/protocols/*.json``."""

    version: str
    description: str
    training_seed_limit: int  # training seeds lie in [0, training_seed_limit)
    evaluation_seed_floor: int  # every evaluation seed is >= this
    episodes: int  # default number of evaluation episodes per scenario
    deterministic_actions: bool
    reference_backend: str
    backends: tuple[str, ...]
    primary_metric: str
    confidence: float
    bootstrap_reps: int
    seeds: Mapping[str, tuple[int, ...]] = field(repr=False)

    def __post_init__(self) -> None:
        if self.evaluation_seed_floor < self.training_seed_limit:
            raise ProtocolError(f"{self.version}: evaluation seeds overlap the training range")
        for env_id, seeds in self.seeds.items():
            if len(set(seeds)) != len(seeds) or min(seeds) < self.evaluation_seed_floor:
                raise ProtocolError(
                    f"{self.version}: seeds of {env_id} must be distinct and "
                    f">= {self.evaluation_seed_floor}"
                )

    @property
    def env_ids(self) -> tuple[str, ...]:
        """Scenarios the protocol publishes seeds for."""
        return tuple(self.seeds)

    def seeds_for(self, env_id: str, episodes: int | None = None) -> tuple[int, ...]:
        """The first ``episodes`` (default: the protocol's count) evaluation seeds of a scenario."""
        if env_id not in self.seeds:
            raise ProtocolError(
                f"protocol {self.version} has no seeds for {env_id!r}; "
                f"valid: {', '.join(self.env_ids)}"
            )
        available = self.seeds[env_id]
        count = self.episodes if episodes is None else episodes
        if not 1 <= count <= len(available):
            raise ProtocolError(
                f"--episodes must be in [1, {len(available)}] under {self.version}, got {count}"
            )
        return available[:count]

    def is_training_seed_allowed(self, seed: int) -> bool:
        """Whether training may use ``seed`` (it can never collide with an evaluation seed)."""
        return 0 <= int(seed) < self.training_seed_limit

    def assert_disjoint(self, training_seeds: Iterable[int]) -> None:
        """Raise ``ProtocolError`` if any training seed is outside the training range."""
        bad = sorted({int(s) for s in training_seeds if not self.is_training_seed_allowed(s)})
        if bad:
            raise ProtocolError(
                f"training seeds {bad[:5]} are outside [0, {self.training_seed_limit}) required "
                f"by {self.version}; they could overlap its held-out evaluation seeds"
            )

    def check_backend(self, backend: str) -> str:
        """Return ``backend`` if the protocol allows it, else raise ``ConfigError``."""
        if backend not in self.backends:
            raise ConfigError(
                f"backend {backend!r} is not allowed by {self.version}; valid: {self.backends}"
            )
        return backend


def available_protocols() -> tuple[str, ...]:
    """Versions of the protocols shipped in ``drivelab.benchmarks/protocols``."""
    folder = resources.files("drivelab.benchmarks") / "protocols"
    names = (p.name for p in folder.iterdir() if p.name.endswith(".json"))
    return tuple(sorted(name[: -len(".json")] for name in names))


def load_protocol(version: str = DEFAULT_PROTOCOL) -> EvalProtocol:
    """Load a shipped protocol by version, e.g. ``"drivelab-eval-v1"``."""
    if version not in available_protocols():
        raise ProtocolError(
            f"unknown protocol {version!r}; valid: {', '.join(available_protocols())}"
        )
    text = (resources.files("drivelab.benchmarks") / "protocols" / f"{version}.json").read_text()
    raw = json.loads(text)
    valid = {f.name for f in dataclasses.fields(EvalProtocol)}
    unknown = sorted(set(raw) - valid)
    if unknown:
        raise ConfigError(f"protocol {version}: unknown keys {unknown}; valid: {sorted(valid)}")
    raw["backends"] = tuple(raw["backends"])
    raw["seeds"] = {env_id: tuple(int(s) for s in seeds) for env_id, seeds in raw["seeds"].items()}
    return EvalProtocol(**raw)


def is_training_seed_allowed(seed: int, protocol: str = DEFAULT_PROTOCOL) -> bool:
    """Whether training may use ``seed`` under the given protocol version."""
    return load_protocol(protocol).is_training_seed_allowed(seed)


def assert_disjoint(training_seeds: Iterable[int], protocol: str = DEFAULT_PROTOCOL) -> None:
    """Raise ``ProtocolError`` if a training seed could collide with an evaluation seed."""
    load_protocol(protocol).assert_disjoint(training_seeds)


@dataclass(frozen=True)
class EpisodeRecord:
    """The driving metrics of one evaluation episode, with the seed that replays it."""

    index: int  # position in the evaluation's seed list
    seed: int
    episode_return: float
    length: int  # [policy steps]
    crashed: bool
    success: bool
    mean_speed: float  # [m/s]
    distance_m: float
    lane_changes: int
    right_lane_share: float  # fraction of steps in the rightmost lane
    on_road_share: float  # fraction of steps on the road
    max_abs_jerk: float  # [m/s^3]
    video_path: str | None = None  # a recorded failure video, if any

    @property
    def failed(self) -> bool:
        """A failure worth replaying: the episode crashed or did not succeed."""
        return self.crashed or not self.success


# infos["driving"] key -> EpisodeRecord field and type
DRIVING_FIELDS: dict[str, tuple[str, type]] = {
    "return": ("episode_return", float),
    "length": ("length", int),
    "crashed": ("crashed", bool),
    "success": ("success", bool),
    "mean_speed": ("mean_speed", float),
    "distance_m": ("distance_m", float),
    "lane_changes": ("lane_changes", int),
    "right_lane_share": ("right_lane_share", float),
    "on_road_share": ("on_road_share", float),
    "max_abs_jerk": ("max_abs_jerk", float),
}


def _record_from_info(
    index: int, seed: int, driving: Mapping[str, np.ndarray], env: int
) -> EpisodeRecord:
    missing = sorted(set(DRIVING_FIELDS) - set(driving))
    if missing:
        raise RuntimeError(f"the env's infos['driving'] lacks {missing}")
    if "seed" in driving and int(driving["seed"][env]) != seed:
        raise RuntimeError(
            f"env {env} reports episode seed {int(driving['seed'][env])}, expected {seed}: "
            "the vector env did not honour per-env reset seeds"
        )
    values = {name: kind(driving[key][env]) for key, (name, kind) in DRIVING_FIELDS.items()}
    return EpisodeRecord(index=int(index), seed=int(seed), **values)


@dataclass(frozen=True)
class EvaluationResult:
    """Per-episode records of one evaluation, with what is needed to reproduce it."""

    env_id: str
    backend: str  # the backend that actually ran
    protocol_version: str
    seeds: tuple[int, ...]
    episodes: tuple[EpisodeRecord, ...]

    def metric(self, name: str) -> np.ndarray:
        """One field of every episode as an array ``(episodes,)``, e.g. ``"episode_return"``."""
        return np.array([getattr(e, name) for e in self.episodes])

    def as_run_arrays(self) -> dict[str, np.ndarray]:
        """The arrays ``stats.entry_stats`` takes for one run."""
        return {
            "return": self.metric("episode_return"),
            "crashed": self.metric("crashed"),
            "success": self.metric("success"),
            "distance_m": self.metric("distance_m"),
        }


MakeEnv = Callable[[int], Any]  # num_envs -> a drivelab vector env


def _act(policy: Policy, observation: np.ndarray, vec: Any, deterministic: bool) -> np.ndarray:
    # Policies that sample (PPO, random) take `deterministic`; fixed rules do not need it.
    if "deterministic" in inspect.signature(policy.act).parameters:
        return np.asarray(policy.act(observation, env=vec, deterministic=deterministic))
    return np.asarray(policy.act(observation, env=vec))


def _run_wave(
    policy: Policy, vec: Any, wave_seeds: Sequence[int], first_index: int, deterministic: bool
) -> list[EpisodeRecord]:
    """Reset every env with its seed; return the first finished episode of the real ones."""
    num_envs = int(vec.num_envs)
    num_real = len(wave_seeds)
    # Spare envs replay the last seed; their episodes are ignored.
    reset_seeds = list(wave_seeds) + [wave_seeds[-1]] * (num_envs - num_real)
    observation, _ = vec.reset(seed=reset_seeds)
    policy.reset(np.ones(num_envs, dtype=bool))
    pending = np.arange(num_envs) < num_real  # (B,) envs whose first episode is still running
    records: list[EpisodeRecord | None] = [None] * num_real
    for _ in range(MAX_STEPS_PER_WAVE):
        if not pending.any():
            return [r for r in records if r is not None]
        actions = _act(policy, observation, vec, deterministic)
        observation, _, terminated, truncated, infos = vec.step(actions)
        done = np.asarray(terminated, dtype=bool) | np.asarray(truncated, dtype=bool)  # (B,)
        finished = np.flatnonzero(done & pending)
        if finished.size and ("driving" not in infos or not np.all(infos["_driving"][finished])):
            raise RuntimeError("the env ended an episode without infos['driving'] metrics")
        for env in finished:
            seed = reset_seeds[env]
            records[env] = _record_from_info(first_index + env, seed, infos["driving"], env)
        pending &= ~done
        if done.any():
            policy.reset(done)
    raise RuntimeError(f"episodes did not end within {MAX_STEPS_PER_WAVE} steps")


def evaluate(
    policy: Policy,
    env_id: str,
    *,
    episodes: int | None = None,
    seeds: Sequence[int] | None = None,
    backend: str | None = None,
    num_envs: int = DEFAULT_NUM_ENVS,
    protocol: str | EvalProtocol = DEFAULT_PROTOCOL,
    env_kwargs: Mapping[str, Any] | None = None,
    make_env: MakeEnv | None = None,
    progress: bool = False,
) -> EvaluationResult:
    """Evaluate a policy on the protocol's held-out seeds, one record per episode.

    Args:
        policy: any ``Policy``; it acts deterministically if its ``act`` takes ``deterministic``.
        env_id: scenario id, e.g. ``"drivelab/highway-fast-v0"``.
        episodes: number of episodes (default: the protocol's); the first ``episodes`` seeds
            of the scenario are used.
        seeds: explicit episode seeds instead of the protocol's (not for leaderboard entries).
        backend: ``"highway-env"`` (the protocol's reference, default) or ``"envpool"``.
        num_envs: envs stepped together; does not change any episode's result.
        protocol: protocol version or object.
        env_kwargs: extra ``drivelab.envs.make`` arguments the policy needs (observation,
            camera, config).
        make_env: builds the vector env from ``num_envs`` instead of ``drivelab.envs.make``.
        progress: show a progress bar.

    Returns:
        The ``EvaluationResult`` with one ``EpisodeRecord`` per seed, in seed-list order.
    """
    spec = load_protocol(protocol) if isinstance(protocol, str) else protocol
    backend = spec.check_backend(backend or spec.reference_backend)
    if seeds is None:
        seeds = spec.seeds_for(env_id, episodes)
    elif episodes is not None:
        seeds = tuple(seeds)[:episodes]
    seeds = tuple(int(s) for s in seeds)
    if not seeds:
        raise ConfigError("evaluation needs at least one episode seed")
    num_envs = max(1, min(int(num_envs), len(seeds)))
    if make_env is None:
        kwargs = dict(env_kwargs or {})
        vec = de.make_vec(env_id, num_envs=num_envs, backend=backend, seed=seeds[0], **kwargs)
    else:
        vec = make_env(num_envs)
    records: list[EpisodeRecord] = []
    try:
        check_env = getattr(policy, "check_env", None)  # drivelab.agents policies check spaces
        if check_env is not None:
            check_env(vec)
        with tqdm(total=len(seeds), unit="episode", disable=not progress, desc=env_id) as bar:
            for start in range(0, len(seeds), num_envs):
                wave = seeds[start : start + num_envs]
                records.extend(_run_wave(policy, vec, wave, start, spec.deterministic_actions))
                bar.update(len(wave))
        actual_backend = str(getattr(vec, "backend", backend))
    finally:
        vec.close()
    return EvaluationResult(
        env_id=env_id,
        backend=actual_backend,
        protocol_version=spec.version,
        seeds=seeds,
        episodes=tuple(records),
    )


# --- Loading submissions without executing code -------------------------------------------

BASELINE_PREFIX = "baseline:"


class PolicyLoadError(DrivelabError, ValueError):
    """A policy path or baseline name that cannot be loaded."""


class UnsafePolicyFileError(PolicyLoadError):
    """A policy file that needs unpickling (which can run code) without ``--trust-pickle``."""


@dataclass(frozen=True)
class PolicySource:
    """Where a policy came from: what a leaderboard entry records about it."""

    label: str  # the path as given, or "baseline:NAME"
    sha256: str  # of the file's bytes; of the label for baselines
    file_format: str  # "baseline", "safetensors", "torch-weights", "numpy", "json", "pickle", ...
    spec: Mapping[str, Any]  # the policy's JSON spec ({} when there is none)
    run_config: Mapping[str, Any] = field(default_factory=dict)  # its training run's config.json


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
        "or pass --trust-pickle if you trust where the file came from"
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


def policy_file_format(path: str | Path, *, trust_pickle: bool = False) -> str:
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
        raise PolicyLoadError(
            f"policy file {path} does not exist; give a policy file or one of {_baseline_labels()}"
        )
    if path.suffix == ".json":
        return "json"
    if _is_safetensors(path):
        return "safetensors"
    with open(path, "rb") as handle:
        head = handle.read(8)
    if head.startswith(b"\x93NUMPY") or path.suffix == ".npz":
        return _numpy_format(path, trust_pickle)
    import torch  # heavy: only for files that are neither safetensors, JSON nor numpy

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


def _identifying_file(path: Path) -> tuple[Path, dict[str, Any]]:
    """The file whose bytes identify a policy, and its spec (``{}`` when it has none).

    A drivelab export (folder, run folder, ``policy.json`` or ``policy.safetensors``) is
    identified by its weights file; any other file (an SB3 zip, a torch file) by itself.
    """
    if path.is_dir() or path.suffix in (".json", ".safetensors"):
        spec, spec_path = agents.read_spec(path)
        return spec_path.parent / str(spec.get("weights", "")), spec
    return path, {}


RUN_CONFIG_KEYS = ("env_id", "algo", "seed", "observation", "camera", "env_config")


def find_run_config(path: Path) -> dict[str, Any]:
    """The ``config.json`` of the training run a policy file or export lies in (``{}`` if none).

    A run folder holds ``run.json`` and ``config.json``; exports sit in ``run/final`` or
    ``run/best`` and checkpoints in ``run/checkpoints/step_*``.
    """
    folder = path if path.is_dir() else path.parent
    for candidate in (folder, *list(folder.parents)[:3]):
        if (candidate / "run.json").is_file() and (candidate / "config.json").is_file():
            try:
                config = json.loads((candidate / "config.json").read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
                raise PolicyLoadError(f"run config {candidate / 'config.json'} is corrupt: {error}")
            return config if isinstance(config, dict) else {}
    return {}


def _baseline_labels() -> str:
    return ", ".join(BASELINE_PREFIX + name for name in agents.BASELINES)


def resolve_baseline(name: str, env_id: str) -> Policy:
    """Build a baseline policy by name (``random``, ``idle``, ``idm``) for a scenario."""
    if name not in agents.BASELINES:
        raise PolicyLoadError(f"unknown baseline {name!r}; valid: {_baseline_labels()}")
    return agents.make_baseline(name, env_id)


def load_policy(
    label: str, env_id: str, *, trust_pickle: bool = False
) -> tuple[Policy, PolicySource]:
    """Load ``baseline:NAME`` or a policy export (weights-only unless ``trust_pickle``).

    The files are classified here, and a pickle refused, before ``drivelab.agents.load_policy``
    builds the policy, so nothing in a refused file is ever executed.

    Args:
        label: ``baseline:NAME``, or a path ``drivelab.agents.load_policy`` accepts (an export
            folder, ``policy.json``, ``policy.safetensors``, a run folder; an SB3 ``.zip``
            only with ``trust_pickle``).
        env_id: the scenario the policy will drive.
        trust_pickle: allow files that need unpickling.

    Returns:
        The policy and its ``PolicySource``.
    """
    if label.startswith(BASELINE_PREFIX):
        name = label[len(BASELINE_PREFIX) :]
        policy = resolve_baseline(name, env_id)
        digest = sha256_bytes(label.encode())
        return policy, PolicySource(label, digest, "baseline", {"algo": name})
    path = Path(label)
    if not path.exists():
        raise PolicyLoadError(
            f"policy {path} does not exist; give a policy export or one of {_baseline_labels()}"
        )
    identifying_file, spec = _identifying_file(path)
    file_format = policy_file_format(identifying_file, trust_pickle=trust_pickle)
    policy = agents.load_policy(path, trust_pickle=trust_pickle)
    run_config = find_run_config(path)
    # The export's spec wins; a bare checkpoint borrows env settings and seed from its run.
    spec = {
        **{key: run_config[key] for key in RUN_CONFIG_KEYS if key in run_config},
        **(spec or getattr(policy, "spec", {}) or {}),
    }
    digest = sha256_file(identifying_file)
    return policy, PolicySource(label, digest, file_format, spec, run_config)


def env_kwargs_from_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """``drivelab.envs.make`` arguments that rebuild the env a policy was trained in."""
    kwargs: dict[str, Any] = {}
    if "observation" in spec:
        kwargs["observation"] = spec["observation"]
        if spec["observation"] == "camera" and spec.get("camera"):
            kwargs["camera"] = dict(spec["camera"])
    if spec.get("env_config"):
        kwargs["config"] = dict(spec["env_config"])
    return kwargs
