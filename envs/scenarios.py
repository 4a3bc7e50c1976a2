"""The scenario table: every drivelab id, the highway-env id behind it, and what success means."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from drivelab.envs.errors import UnknownEnvError

NAMESPACE = "drivelab"


@dataclass(frozen=True)
class Scenario:
    """One driving scenario.

    Attributes:
        name: short name, e.g. ``"highway-fast"``.
        highway_env_id: the gymnasium id registered by highway-env 1.12.1.
        envpool_id: EnvPool's task id when our envpool backend supports the scenario, else None
            (EnvPool 1.2.5 does not port it, or its port ignores the seed: see ``ENVPOOL_DIFFERENCES``).
        success: ``"survive"`` (time limit reached without a crash), ``"arrive"`` (the scenario's
            goal reached: intersection exit, end of the merge, exit ramp) or ``"is_success"``
            (the env's own ``info["is_success"]``, parking).
        version: the id's version, ``drivelab/<name>-v<version>``.
        envpool_auto: whether backend ``"auto"`` picks EnvPool's port. False where the port
            exists but does not simulate the same scenario (``ENVPOOL_DIFFERENCES`` says how);
            ``backend="envpool"`` still runs it, with a warning.
        camera_align: the camera's view where the config says ``align: auto``: ``"world"``
            (straight roads, the parking lot) or ``"heading"`` (roundabout, intersection,
            racetrack, u-turn: roads that curve or cross).
    """

    name: str
    highway_env_id: str
    envpool_id: str | None
    success: str
    version: int = 0
    envpool_auto: bool = True  # backend "auto" may pick the port (False: it is not equivalent)
    camera_align: str = "world"  # the camera's default view: "heading" where roads curve or cross

    @property
    def env_id(self) -> str:
        return f"{NAMESPACE}/{self.name}-v{self.version}"

    @property
    def family(self) -> str:
        """The scenario family its rules come from, e.g. ``"racetrack"`` for racetrack-oval."""
        return self.highway_env_id.split("-")[0]


SCENARIOS: dict[str, Scenario] = {
    s.env_id: s
    for s in (
        Scenario("highway", "highway-v0", "highway-v0", "survive"),
        Scenario("highway-fast", "highway-fast-v0", "highway-fast-v0", "survive"),
        Scenario("merge", "merge-v0", "merge-v0", "arrive"),
        Scenario("roundabout", "roundabout-v0", "roundabout-v0", "survive", envpool_auto=False, camera_align="heading"),
        Scenario("intersection", "intersection-v0", "intersection-v0", "arrive", envpool_auto=False,
                 camera_align="heading"),
        Scenario("parking", "parking-v0", "parking-v0", "is_success"),
        Scenario("racetrack", "racetrack-v0", "racetrack-v0", "survive", envpool_auto=False, camera_align="heading"),
        Scenario("exit", "exit-v0", None, "arrive"),
        Scenario("two-way", "two-way-v0", None, "survive"),
        Scenario("u-turn", "u-turn-v0", None, "survive", camera_align="heading"),
        Scenario("lane-keeping", "lane-keeping-v0", None, "survive"),
        # Variants EnvPool also registers.
        Scenario("intersection", "intersection-v1", "intersection-v1", "arrive", version=1, envpool_auto=False,
                 camera_align="heading"),  # continuous
        Scenario("parking-parked", "parking-parked-v0", "parking-parked-v0", "is_success"),
        Scenario("racetrack-large", "racetrack-large-v0", None, "survive", camera_align="heading"),
        Scenario("racetrack-oval", "racetrack-oval-v0", None, "survive", camera_align="heading"),
    )
}
# What EnvPool 1.2.5's ports do differently from highway-env 1.12.1 (found by comparing road
# geometry and episode statistics; see tests/envs/test_equivalence.py).
ENVPOOL_DIFFERENCES: dict[str, str] = {
    "roundabout": "EnvPool's port ignores the seed: every episode starts with the same traffic",
    "intersection": "EnvPool's port ignores the seed: every episode has the same traffic "
                    "(5 other vehicles; highway-env spawns 7-11 at random)",
    "racetrack": "EnvPool's port ignores the seed and places no other vehicle on the track",
    "racetrack-large": "EnvPool builds 6 of highway-env's 27 lanes (the first two segments only)",
    "racetrack-oval": "EnvPool builds 6 of highway-env's 24 lanes (the first two segments only)",
    "merge": "EnvPool ends an episode after 200 steps (highway-env's merge has no time limit), and a "
             "scripted policy's return is ~13% lower (its episodes ~1 step shorter)",
    "parking": "EnvPool's time limit is one step shorter (highway-env's float clock passes "
               "`duration` one step late)",
    # Registered by EnvPool 1.2.5 too (Exit-v0, TwoWay-v0, UTurn-v0, LaneKeeping-v0), but every
    # seed gives the same episode, so drivelab runs them on highway-env in worker processes.
    "exit": "EnvPool's Exit-v0 ignores the seed: every episode starts with the same traffic",
    "two-way": "EnvPool's TwoWay-v0 ignores the seed: every episode starts with the same traffic",
    "u-turn": "EnvPool's UTurn-v0 ignores the seed: every episode starts with the same traffic",
    "lane-keeping": "EnvPool's LaneKeeping-v0 ignores the seed: every episode starts from the same "
                    "perturbed pose",
}
ENV_IDS: tuple[str, ...] = tuple(SCENARIOS)


def get_scenario(env_id: str) -> Scenario:
    """Look up a scenario by its drivelab id.

    Raises:
        UnknownEnvError: naming the valid ids and the closest match.
    """
    if env_id in SCENARIOS:
        return SCENARIOS[env_id]
    candidates = list(ENV_IDS) + [s.highway_env_id for s in SCENARIOS.values()]
    close = difflib.get_close_matches(str(env_id), candidates, n=1, cutoff=0.0)
    hint = ""
    if close:
        match = close[0] if close[0] in SCENARIOS else f"{NAMESPACE}/{close[0]}"
        hint = f" Did you mean {match!r}?"
    raise UnknownEnvError(
        f"unknown environment id {env_id!r}.{hint} Valid ids: {', '.join(ENV_IDS)}"
    )
