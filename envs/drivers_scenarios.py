"""Per-scenario settings of the rule-based drivers: one table, read by ``drivelab.agents.baselines``."""

from __future__ import annotations

import numpy as np

from drivelab.envs.drivers_yield import LONGITUDINAL_LAYOUT, YieldConfig
from drivelab.envs.errors import UnknownEnvError
from drivelab.envs.scenarios import get_scenario

# highway-env 1.12.1's DiscreteMetaAction target speeds per scenario [m/s]
_DEFAULT_SPEEDS = (20.0, 25.0, 30.0)  # MDPVehicle.DEFAULT_TARGET_SPEEDS
MERGE_END_X_M = 310.0  # the merging lane ends at node "c" (150 + 80 + 80 m)

YIELD_CONFIGS: dict[str, YieldConfig] = {
    # Keep the left lane until the merge ends: the merging vehicles get the right lane.
    "merge": YieldConfig(_DEFAULT_SPEEDS, horizon_s=3.0, keep_lane_until_x=(MERGE_END_X_M + 10.0, 0),
                         preferred_lane=-1),
    # Stay on the route's lane (no lane changes in the ring); yield at the entry.
    "roundabout": YieldConfig((0.0, 8.0, 16.0), horizon_s=4.0, lane_changes=False),
    # Longitudinal actions only: stop before the conflict zone while a crossing vehicle is due.
    "intersection": YieldConfig((0.0, 4.5, 9.0), layout=LONGITUDINAL_LAYOUT, horizon_s=4.0, lane_changes=False,
                                conflict_box=(-5.0, 5.0, -5.0, 5.0), box_margin_s=0.0, stop_line_m=4.0),
    # Head right for the exit lane.
    "exit": YieldConfig((18.0, 24.0, 30.0), horizon_s=3.0, preferred_lane=-1),
    # Slower leaders cannot be followed (20 m/s is the slowest target speed): pass them in the
    # oncoming lane only while the plan there stays clear of oncoming traffic, and go back right.
    "two-way": YieldConfig(_DEFAULT_SPEEDS, horizon_s=5.0, preferred_lane=1),
    # The left lane pays: keep it where safe.
    "u-turn": YieldConfig((8.0, 16.0, 24.0), horizon_s=4.0, preferred_lane=0),
}

# Continuous-action scenarios: steering range [rad] of their ContinuousAction.
STEERING_RANGES: dict[str, float] = {"racetrack": np.pi / 4, "lane-keeping": np.pi / 3}


def _family(env_id: str) -> str:
    scenario = get_scenario(env_id)
    return "two-way" if scenario.name == "two-way" else "u-turn" if scenario.name == "u-turn" else (
        "lane-keeping" if scenario.name == "lane-keeping" else scenario.family)


def yield_config(env_id: str) -> YieldConfig:
    """The yielding driver's settings for a scenario."""
    family = _family(env_id)
    if family not in YIELD_CONFIGS:
        raise UnknownEnvError(f"the yielding driver has no settings for {env_id}; it drives {', '.join(YIELD_CONFIGS)}")
    return YIELD_CONFIGS[family]


def steering_range(env_id: str) -> float:
    """The steering angle [rad] a continuous action of 1 means in a scenario."""
    return STEERING_RANGES.get(_family(env_id), np.pi / 4)
