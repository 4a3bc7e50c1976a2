"""Baseline policies: seeded random, idle, and the rule-based driver of every scenario.

``baseline:NAME`` labels resolve here. ``random`` and ``idle`` fit every action space and batch
size (idle = keep going: the IDLE meta-action where actions are discrete, zeros where they are
continuous). The rule-based drivers live in ``drivelab.envs`` (numpy, no torch) and read the
vehicle states of a drivelab vector env; each fits some scenarios (``DRIVERS``), and
``rules`` is the scenario's own driver (what a leaderboard and behaviour cloning use).

Example:
    >>> import numpy as np
    >>> make_baseline("idle").act(np.zeros((3, 4, 64, 128), np.uint8)).tolist()
    [1, 1, 1]
    >>> scenario_driver("drivelab/parking-v0")
    'parker'
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from drivelab.agents.errors import ConfigError, PolicySpecError
from drivelab.agents.policies import Policy
from drivelab.envs.actions import IDLE, META_ACTION_NAMES
from drivelab.envs.driver_lanes import lane_table
from drivelab.envs.drivers import IDMMobilDriver
from drivelab.envs.drivers_continuous import ParkingDriver, PurePursuitDriver
from drivelab.envs.drivers_scenarios import steering_range, yield_config
from drivelab.envs.drivers_yield import YieldingDriver
from drivelab.envs.scenarios import SCENARIOS, get_scenario

# Scenario family -> the rule-based drivers that fit it; the first is the scenario's "rules" driver.
DRIVERS: dict[str, tuple[str, ...]] = {
    "highway": ("idm",),
    "merge": ("idm",),
    "roundabout": ("idm",),
    "exit": ("idm",),
    "two": ("idm",),  # two-way-v0
    "u": ("idm",),  # u-turn-v0
    "intersection": ("gap",),
    "racetrack": ("pursuit",),
    "lane": ("pursuit",),  # lane-keeping-v0
    "parking": ("parker",),
}


def _batch_size(observation: Any, env: Any) -> int:
    """B of a batch of observations (dict observations: of their first entry), or of the env."""
    if env is not None and getattr(env, "num_envs", None) is not None:
        return int(env.num_envs)
    if isinstance(observation, dict):
        return len(next(iter(observation.values())))
    return len(observation)


def _action_space(env: Any) -> gym.Space | None:
    return getattr(env, "single_action_space", None)


class RandomPolicy(Policy):
    """Uniformly random actions from a seeded generator (same seed -> same actions)."""

    name = "random"

    def __init__(self, seed: int = 0, action_space: gym.Space | None = None) -> None:
        self.seed = seed
        self.action_space = action_space
        self._rng = np.random.default_rng(seed)

    def act(self, observation: Any, env: Any = None, deterministic: bool = True) -> np.ndarray:
        space = self.action_space or _action_space(env) or gym.spaces.Discrete(len(META_ACTION_NAMES))
        batch = _batch_size(observation, env)
        if isinstance(space, gym.spaces.Discrete):
            return space.start + self._rng.integers(space.n, size=batch)  # (B,)
        if isinstance(space, gym.spaces.Box):
            low, high = np.broadcast_to(space.low, space.shape), np.broadcast_to(space.high, space.shape)
            return self._rng.uniform(low, high, size=(batch, *space.shape)).astype(space.dtype)  # (B, A)
        raise PolicySpecError(f"random policy supports Discrete and Box action spaces, not {space}")

    def check_env(self, env: Any) -> None:
        space = self.action_space or _action_space(env)
        if space is not None and not isinstance(space, (gym.spaces.Discrete, gym.spaces.Box)):
            raise PolicySpecError(f"random policy supports Discrete and Box action spaces, not {space}")


class IdlePolicy(Policy):
    """Keep going: the IDLE meta-action (keep lane and target speed), zeros for continuous actions.

    On intersection's longitudinal-only ``Discrete(3)`` (SLOWER, IDLE, FASTER) IDLE is index 1,
    as in the 5 meta-actions; zero continuous actions mean no acceleration and straight wheels.
    """

    name = "idle"

    def act(self, observation: Any, env: Any = None, deterministic: bool = True) -> np.ndarray:
        space = _action_space(env)
        batch = _batch_size(observation, env)
        if isinstance(space, gym.spaces.Box):
            return np.zeros((batch, *space.shape), space.dtype)  # (B, A)
        return np.full(batch, IDLE, dtype=np.int64)  # (B,); IDLE = 1 in Discrete(5) and Discrete(3)

    def check_env(self, env: Any) -> None:
        space = _action_space(env)
        if space is None or isinstance(space, gym.spaces.Box):
            return
        if not (isinstance(space, gym.spaces.Discrete) and space.n in (3, len(META_ACTION_NAMES))):
            raise PolicySpecError(f"the idle policy drives DiscreteMetaActions or continuous actions, not {space}")


class RuleDriverPolicy(Policy):
    """A rule-based driver of ``drivelab.envs`` behind the ``Policy`` interface.

    Reads ``env.vehicle_states()`` instead of the observation. The driver is built for the
    scenario of the env it first acts in (its road, action space and policy period), and rebuilt
    when it meets another scenario.
    """

    def __init__(self, name: str, **driver_options: Any) -> None:
        self.name = name
        self.driver_options = driver_options  # for the highway IDM/MOBIL driver
        self.driver: Any = None
        self._env_key: tuple | None = None

    def reset(self, mask: np.ndarray | None = None) -> None:
        if self.driver is not None:
            self.driver.reset(mask)

    def drove(self, actions: np.ndarray) -> None:
        if self.driver is not None and hasattr(self.driver, "drove"):
            self.driver.drove(actions)

    def check_env(self, env: Any) -> None:
        if env is None or not hasattr(env, "vehicle_states"):
            raise PolicySpecError(f"the {self.name} policy reads vehicle states: pass a drivelab vector env")
        scenario = getattr(env, "scenario", None)
        if scenario is not None:
            check_fits(self.name, scenario.env_id)

    def act(self, observation: Any, env: Any = None, deterministic: bool = True) -> np.ndarray:
        scenario = getattr(env, "scenario", None)
        key = (id(env), getattr(scenario, "env_id", None))
        if key != self._env_key:
            self.check_env(env)
            self.driver = self._build(env)
            self._env_key = key
        states = env.vehicle_states()
        if self.name == "parker":
            return self.driver.act(states, env.road_objects())
        return self.driver.act(states)

    def _build(self, env: Any) -> Any:
        scenario = getattr(env, "scenario", None)
        if self.name == "idm" and (scenario is None or scenario.family == "highway"):
            return IDMMobilDriver(**self.driver_options)
        space = env.single_action_space
        if self.name in ("idm", "gap"):
            return YieldingDriver(yield_config(scenario.env_id), lane_table(scenario.highway_env_id), env.dt)
        if self.name == "pursuit":
            return PurePursuitDriver(
                lane_table(scenario.highway_env_id), space.shape[0], env.dt, steering_range(scenario.env_id)
            )
        return ParkingDriver(env.dt)


def fitting_drivers(env_id: str) -> tuple[str, ...]:
    """The rule-based drivers (baseline names) that drive ``env_id``."""
    scenario = get_scenario(env_id)
    drivers = DRIVERS.get(scenario.highway_env_id.split("-")[0], ())
    if scenario.env_id == "drivelab/intersection-v1":
        return ()  # continuous intersection: no rule-based driver yet
    return drivers


def scenario_driver(env_id: str) -> str:
    """The name of a scenario's rule-based driver (what ``baseline:rules`` drives)."""
    drivers = fitting_drivers(env_id)
    if not drivers:
        raise ConfigError(f"no rule-based driver drives {env_id} yet; use baseline:random or baseline:idle there")
    return drivers[0]


def check_fits(name: str, env_id: str) -> None:
    """Raise ``ConfigError`` naming the drivers that fit when driver ``name`` does not drive ``env_id``."""
    if name in ("random", "idle", "rules"):
        return
    fits = fitting_drivers(env_id)
    if name not in fits:
        valid = ", ".join(f"baseline:{n}" for n in ("rules", *fits)) if fits else "none"
        raise ConfigError(
            f"baseline:{name} does not drive {env_id}; rule-based drivers that fit it: {valid} "
            "(baseline:random and baseline:idle fit every scenario)"
        )


class IDMMobilPolicy(RuleDriverPolicy):
    """IDM/MOBIL: ``drivelab.envs.drivers.IDMMobilDriver`` on highways (keyword arguments go to
    it), the route-following yielding driver on merge, roundabout, exit, two-way and u-turn."""

    def __init__(self, **driver_options: Any) -> None:
        super().__init__("idm", **driver_options)


BASELINES: dict[str, Callable[..., Policy]] = {
    "random": RandomPolicy,
    "idle": IdlePolicy,
    "idm": IDMMobilPolicy,
    "gap": lambda: RuleDriverPolicy("gap"),
    "pursuit": lambda: RuleDriverPolicy("pursuit"),
    "parker": lambda: RuleDriverPolicy("parker"),
    "rules": lambda: RuleDriverPolicy("rules"),
}


def make_baseline(name: str, env_id: str | None = None, seed: int = 0) -> Policy:
    """Build a baseline policy by name.

    Args:
        name: ``random``, ``idle``, a rule-based driver (``idm``, ``gap``, ``pursuit``,
            ``parker``) or ``rules`` (the scenario's own driver; needs ``env_id``, or resolves
            from the env it first acts in).
        env_id: the scenario it will drive: checked now, so a driver that does not fit is
            refused before any env is built.
        seed: seed of ``random``.

    Raises:
        ConfigError: unknown name (naming the valid ones), or a driver that does not fit ``env_id``
            (naming the ones that do).
    """
    if name not in BASELINES:
        raise ConfigError(f"unknown baseline policy {name!r}. Valid baselines: {', '.join(BASELINES)}")
    if env_id is not None:
        if env_id not in SCENARIOS:
            get_scenario(env_id)  # raises, naming the valid ids
        check_fits(name, env_id)
        if name == "rules":
            name = scenario_driver(env_id)
    if name == "random":
        return RandomPolicy(seed=seed)
    if name == "rules":
        return _ScenarioRules()
    return BASELINES[name]()


class _ScenarioRules(RuleDriverPolicy):
    """``rules`` without a known scenario: becomes the scenario's driver at the first env it meets."""

    def __init__(self) -> None:
        super().__init__("rules")

    def check_env(self, env: Any) -> None:
        scenario = getattr(env, "scenario", None)
        if scenario is None:
            raise PolicySpecError("baseline:rules reads the env's scenario: pass a drivelab vector env")
        self.name = scenario_driver(scenario.env_id)
        super().check_env(env)
