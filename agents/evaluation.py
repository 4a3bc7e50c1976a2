"""The one episode runner: a policy on fixed seeds, one ``EpisodeRecord`` per episode.

``evaluate`` runs a policy on a vector env in *waves*: the ``num_envs`` envs are reset
together, env ``i`` with its own episode seed, and each env's first finished episode is
recorded (later auto-reset episodes in the same wave are ignored). Each recorded episode
thus depends only on its seed and the policy, not on ``num_envs`` or on the other envs, so
evaluating with the same seeds gives the same numbers every time.

Protocol evaluation (the protocol's held-out seeds), best-model selection during training
(the selection seeds), ``bench eval``, failure replays and watching all run through it.

Example:
    >>> from drivelab.agents import IdlePolicy
    >>> result = evaluate(IdlePolicy(), "drivelab/highway-fast-v0", episodes=2)  # doctest: +SKIP
    >>> result.mean_return  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm import tqdm

import drivelab.envs as de
from drivelab.agents.policies import Policy
from drivelab.agents.protocol import DEFAULT_PROTOCOL, EvalProtocol, load_protocol
from drivelab.core.errors import ConfigError

DEFAULT_NUM_ENVS = 8
MAX_STEPS_PER_WAVE = 100_000  # guards against an env that never ends an episode


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


def _record_from_info(index: int, seed: int, driving: Mapping[str, np.ndarray], env: int) -> EpisodeRecord:
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

    @property
    def mean_return(self) -> float:
        return float(self.metric("episode_return").mean())

    @property
    def crash_rate(self) -> float:
        return float(self.metric("crashed").mean())

    def summary(self) -> dict[str, Any]:
        """JSON-able means (what training logs and best-model selection compares)."""
        returns = self.metric("episode_return")
        return {
            "episodes": len(self.episodes),
            "first_seed": int(self.seeds[0]),
            "mean_return": float(returns.mean()),
            "std_return": float(returns.std()),
            "crash_rate": self.crash_rate,
            "mean_length": float(self.metric("length").mean()),
            "mean_speed": float(self.metric("mean_speed").mean()),
        }


MakeEnv = Callable[[int], Any]  # num_envs -> a drivelab vector env
OnStep = Callable[[Any, np.ndarray, np.ndarray, Mapping[str, Any]], None]  # (vec, observation, actions, infos)


def _run_wave(
    policy: Policy,
    vec: Any,
    wave_seeds: Sequence[int],
    first_index: int,
    deterministic: bool,
    on_step: OnStep | None,
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
        actions = np.asarray(policy.act(observation, env=vec, deterministic=deterministic))
        observation, _, terminated, truncated, infos = vec.step(actions)
        if on_step is not None:
            on_step(vec, observation, actions, infos)
        done = np.asarray(terminated, dtype=bool) | np.asarray(truncated, dtype=bool)  # (B,)
        finished = np.flatnonzero(done & pending)
        if finished.size and ("driving" not in infos or not np.all(infos["_driving"][finished])):
            raise RuntimeError("the env ended an episode without infos['driving'] metrics")
        for env in finished:
            records[env] = _record_from_info(first_index + env, reset_seeds[env], infos["driving"], env)
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
    deterministic: bool | None = None,
    on_step: OnStep | None = None,
) -> EvaluationResult:
    """Evaluate a policy on fixed seeds (the protocol's held-out ones by default).

    Args:
        policy: any ``Policy``.
        env_id: scenario id, e.g. ``"drivelab/highway-fast-v0"``.
        episodes: number of episodes (default: the protocol's, or all ``seeds``); the first
            ``episodes`` seeds are used.
        seeds: explicit episode seeds instead of the protocol's (best-model selection uses
            its own held-out range; not for leaderboard entries).
        backend: ``"highway-env"`` (the protocol's reference, default) or ``"envpool"``;
            with ``make_env`` and no backend, the env's own backend is recorded.
        num_envs: envs stepped together; does not change any episode's result.
        protocol: protocol version or object.
        env_kwargs: extra ``drivelab.envs.make_vec`` arguments the policy needs (observation,
            camera, config).
        make_env: builds the vector env from ``num_envs`` instead of ``drivelab.envs.make_vec``
            (the env is closed at the end either way).
        progress: show a progress bar.
        deterministic: act greedily (default: the protocol's ``deterministic_actions``).
        on_step: called as ``on_step(vec, observation, actions, infos)`` after every
            ``vec.step`` (viewers draw or record frames here).

    Returns:
        The ``EvaluationResult`` with one ``EpisodeRecord`` per seed, in seed-list order.

    Raises:
        ConfigError, ProtocolError: a backend, seed list or episode count the protocol refuses.
    """
    spec = load_protocol(protocol) if isinstance(protocol, str) else protocol
    if backend is not None or make_env is None:
        backend = spec.check_backend(backend or spec.reference_backend)
    if seeds is None:
        seeds = spec.seeds_for(env_id, episodes)
    elif episodes is not None:
        seeds = tuple(seeds)[:episodes]
    seeds = tuple(int(s) for s in seeds)
    if not seeds:
        raise ConfigError("evaluation needs at least one episode seed")
    if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
        raise ConfigError(f"num_envs must be a positive integer, got {num_envs!r}")
    num_envs = min(num_envs, len(seeds))
    deterministic = spec.deterministic_actions if deterministic is None else bool(deterministic)
    if make_env is None:
        vec = de.make_vec(env_id, num_envs=num_envs, backend=backend, seed=seeds[0], **dict(env_kwargs or {}))
    else:
        vec = make_env(num_envs)
    records: list[EpisodeRecord] = []
    try:
        policy.check_env(vec)
        with tqdm(total=len(seeds), unit="episode", disable=not progress, desc=env_id) as bar:
            for start in range(0, len(seeds), num_envs):
                wave = seeds[start : start + num_envs]
                records.extend(_run_wave(policy, vec, wave, start, deterministic, on_step))
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
