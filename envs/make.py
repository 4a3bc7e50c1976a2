"""``make_vec``: a batch of driving envs on the backend that fits the scenario and options."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from drivelab.core.config import from_mapping
from drivelab.envs.backends import HighwayEnvSimulator
from drivelab.envs.camera import CameraConfig
from drivelab.envs.config import validate_env_config
from drivelab.envs.envpool_sim import EnvPoolSimulator, envpool_unsupported
from drivelab.envs.errors import BackendUnavailableError, ConfigError, simulator_errors
from drivelab.envs.scenarios import ENVPOOL_DIFFERENCES, get_scenario
from drivelab.envs.sharded import ShardedVectorEnv
from drivelab.envs.vector import DrivingVectorEnv
from drivelab.envs.workers import WorkerSimulator, resolve_num_workers

log = logging.getLogger("drivelab.envs")

BACKENDS = ("auto", "envpool", "highway-env")
OBSERVATIONS = ("native", "camera")
MAX_NUM_ENVS = 4096  # one process; more envs than this only exhausts memory


def choose_backend(
    env_id: str, backend: str = "auto", config: Mapping[str, Any] | None = None, render_mode: str | None = None
) -> str:
    """Resolve ``backend`` for a scenario, config and render mode: ``"envpool"`` or ``"highway-env"``.

    Raises:
        ConfigError: an unknown backend name.
        BackendUnavailableError: ``"envpool"`` asked for where it cannot run.
    """
    scenario = get_scenario(env_id)
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "highway-env":
        return backend
    reason = envpool_unsupported(scenario, dict(config or {}))
    if render_mode is not None and not reason:
        reason = "rendering the scene (render_mode) needs highway-env's renderer"
    if backend == "envpool":
        if reason:
            raise BackendUnavailableError(
                f"backend 'envpool' cannot run {env_id}: {reason}; use 'highway-env' or 'auto'"
            )
        if not scenario.envpool_auto:
            log.warning("backend envpool: %s differs from highway-env's %s: %s", env_id, scenario.highway_env_id,
                        ENVPOOL_DIFFERENCES[scenario.family])
        return backend
    if not reason and not scenario.envpool_auto:
        reason = f"not equivalent: {ENVPOOL_DIFFERENCES[scenario.family]}"
    if reason:
        log.info("backend auto: using highway-env for %s (%s)", env_id, reason)
        return "highway-env"
    log.info("backend auto: using envpool for %s", env_id)
    return "envpool"


def make_vec(
    env_id: str,
    num_envs: int = 1,
    backend: str = "auto",
    observation: str = "native",
    config: Mapping[str, Any] | None = None,
    camera: Mapping[str, Any] | CameraConfig | None = None,
    seed: int | None = None,
    render_mode: str | None = None,
    num_workers: int | None = None,
) -> DrivingVectorEnv | ShardedVectorEnv:
    """Make a batch of driving envs.

    Args:
        env_id: a drivelab id, e.g. ``"drivelab/highway-fast-v0"`` (see ``ENV_IDS``).
        num_envs: batch size B.
        backend: ``"auto"`` (EnvPool where it supports the scenario and config, else
            highway-env; the choice is logged and kept in ``env.backend``), ``"envpool"`` or
            ``"highway-env"``.
        observation: ``"native"`` (the scenario's own, e.g. kinematics) or ``"camera"``.
        config: highway-env config overrides, checked against the scenario's defaults.
        camera: ``CameraConfig`` fields (observation ``"camera"`` only).
        seed: seed of the first reset; env i gets ``seed + i``.
        render_mode: highway-env's ``"rgb_array"`` or ``"human"`` scene rendering (reference
            backend only; ``env.sim.envs[i].render()`` draws env i).
        num_workers: worker processes that step the highway-env backend's envs (same results
            as one process, faster with more cores). 0 or 1: this process. None: one per
            usable core, at most ``num_envs`` and 16, where highway-env runs in place of EnvPool (a
            scenario EnvPool does not port, or ``"auto"`` falling back); this process for an
            explicit ``"highway-env"`` on a scenario EnvPool ports (the reference), one env, or
            ``render_mode``. See ``drivelab.envs.workers``. On EnvPool: None, 0 and 1 mean one
            process (EnvPool's threads step the envs, this process reads states and draws
            frames); 2 or more split the envs over that many processes, each with its own
            EnvPool and camera (``drivelab.envs.sharded``; faster camera frames with more cores).

    Returns:
        A gymnasium ``VectorEnv`` with same-step autoreset.

    Example:
        >>> env = make_vec("drivelab/highway-fast-v0", num_envs=4, observation="camera", seed=0)
        >>> obs, info = env.reset()
        >>> obs.shape
        (4, 4, 64, 128)
    """
    scenario = get_scenario(env_id)
    overrides = validate_env_config(scenario, config)
    if not isinstance(num_envs, int) or isinstance(num_envs, bool) or not 1 <= num_envs <= MAX_NUM_ENVS:
        raise ConfigError(f"num_envs must be an integer in [1, {MAX_NUM_ENVS}], got {num_envs!r}")
    if observation not in OBSERVATIONS:
        raise ConfigError(f"unknown observation {observation!r}; choose one of {', '.join(OBSERVATIONS)}")
    if observation != "camera" and camera is not None:
        raise ConfigError("camera settings were given but observation is not 'camera'")
    camera_config = from_mapping(CameraConfig, camera, "camera config") if observation == "camera" else None
    chosen = choose_backend(env_id, backend, overrides, render_mode)
    workers = resolve_num_workers(num_workers, scenario, num_envs, backend, render_mode)
    if chosen == "envpool" and num_workers is not None and workers:
        return ShardedVectorEnv(scenario, num_envs, workers, observation, overrides, camera_config, seed=seed)
    native = observation == "native"
    with simulator_errors(chosen, env_id, overrides):
        if chosen == "envpool":
            simulator = EnvPoolSimulator(scenario, num_envs, overrides, seed=seed or 0)
        elif workers:
            simulator = WorkerSimulator(scenario, num_envs, overrides, num_workers=workers, native_observations=native)
        else:
            simulator = HighwayEnvSimulator(
                scenario, num_envs, overrides, render_mode=render_mode, native_observations=native
            )
    return DrivingVectorEnv(simulator, scenario, observation, camera_config, seed=seed)


def vector_entry_point(num_envs: int = 1, **kwargs: Any) -> DrivingVectorEnv:
    """Entry point for ``gymnasium.make_vec("drivelab/...-v0", num_envs=N, ...)``; takes ``make_vec``'s
    keyword arguments (``num_workers`` too)."""
    kwargs.pop("max_episode_steps", None)  # the scenario's own duration decides
    return make_vec(num_envs=num_envs, **kwargs)
