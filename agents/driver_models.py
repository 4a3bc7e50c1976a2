"""Car-following (IDM) and lane-change (MOBIL) rules on batched vehicle states.

The constants are highway-env's ``IDMVehicle`` values, so the rule-based driver reasons like the
traffic around it. Every function works on whole batches: arrays are (B,) per environment or
(B, V) per vehicle slot (slot 0 is the ego vehicle), as in ``drivelab.envs.VehicleBatch``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

COMFORT_ACC_MAX = 3.0  # [m/s^2] highway-env IDMVehicle.COMFORT_ACC_MAX
COMFORT_ACC_MIN = -5.0  # [m/s^2] highway-env IDMVehicle.COMFORT_ACC_MIN
DISTANCE_WANTED_M = 5.0  # jam distance s0 [m] (highway-env adds the vehicle length)
TIME_WANTED_S = 1.5  # desired time headway T [s]
DELTA = 4.0  # IDM acceleration exponent
LANE_WIDTH_M = 4.0  # highway-env StraightLane.DEFAULT_WIDTH
FREE_GAP_M = 1e4  # gap used when no vehicle is ahead/behind


def idm_acceleration(
    speed: np.ndarray, lead_speed: np.ndarray, gap_m: np.ndarray, desired_speed: np.ndarray | float
) -> np.ndarray:
    """Intelligent Driver Model acceleration [m/s^2] (Treiber et al., 2000).

    Args:
        speed: follower speed [m/s], any shape.
        lead_speed: leader speed [m/s], same shape (ignored where the gap is free).
        gap_m: bumper-to-bumper gap to the leader [m], same shape; ``FREE_GAP_M`` for none.
        desired_speed: free-road speed v0 [m/s].

    Returns:
        a = a_max [1 - (v / v0)^delta - (s* / s)^2], s* = s0 + v T + v dv / (2 sqrt(a_max b)).
    """
    speed = np.maximum(speed, 0.0)
    closing = speed - lead_speed
    wanted_gap = DISTANCE_WANTED_M + np.maximum(
        0.0, speed * TIME_WANTED_S + speed * closing / (2.0 * np.sqrt(COMFORT_ACC_MAX * -COMFORT_ACC_MIN))
    )
    gap = np.maximum(gap_m, 0.1)
    interaction = np.where(gap_m >= FREE_GAP_M, 0.0, (wanted_gap / gap) ** 2)
    return COMFORT_ACC_MAX * (1.0 - (speed / desired_speed) ** DELTA - interaction)


@dataclass(frozen=True)
class LaneNeighbours:
    """The nearest vehicle ahead of and behind the ego in one lane of each environment; (B,) arrays."""

    lead_gap_m: np.ndarray  # bumper-to-bumper; FREE_GAP_M when the lane ahead is empty
    lead_speed: np.ndarray  # [m/s]; the ego's speed when there is no leader
    rear_gap_m: np.ndarray
    rear_speed: np.ndarray  # [m/s]; 0 when there is no follower


def lane_neighbours(
    x: np.ndarray,
    y: np.ndarray,
    speed: np.ndarray,
    length: np.ndarray,
    present: np.ndarray,
    lane_index: np.ndarray,
    target_lane: np.ndarray,
) -> LaneNeighbours:
    """Find the ego's leader and follower in a given lane of each environment.

    A vehicle is in the lane when its lane index says so or when its centre lies within half a
    lane width of the lane centre (a vehicle half-way through a lane change occupies both).

    Args:
        x, y, speed, length, present, lane_index: (B, V) vehicle states, slot 0 = ego.
        target_lane: (B,) lane index to look at.

    Returns:
        The neighbours in ``target_lane``.
    """
    ego_x, ego_y, ego_speed = x[:, :1], y[:, :1], speed[:, 0]  # (B, 1), (B, 1), (B,)
    lane_centre_y = ego_y + (target_lane - lane_index[:, 0])[:, None] * LANE_WIDTH_M  # (B, 1)
    in_lane = (lane_index == target_lane[:, None]) | (np.abs(y - lane_centre_y) < LANE_WIDTH_M / 2)
    others = present.copy()
    others[:, 0] = False
    in_lane &= others  # (B, V)
    bumper_gap = np.abs(x - ego_x) - (length + length[:, :1]) / 2.0  # (B, V)
    ahead = in_lane & (x > ego_x)
    behind = in_lane & (x <= ego_x)
    lead_gaps = np.where(ahead, bumper_gap, np.inf)
    rear_gaps = np.where(behind, bumper_gap, np.inf)
    lead_slot, rear_slot = lead_gaps.argmin(axis=1), rear_gaps.argmin(axis=1)  # (B,)
    rows = np.arange(x.shape[0])
    has_lead, has_rear = ahead.any(axis=1), behind.any(axis=1)
    return LaneNeighbours(
        lead_gap_m=np.where(has_lead, lead_gaps[rows, lead_slot], FREE_GAP_M),
        lead_speed=np.where(has_lead, speed[rows, lead_slot], ego_speed),
        rear_gap_m=np.where(has_rear, rear_gaps[rows, rear_slot], FREE_GAP_M),
        rear_speed=np.where(has_rear, speed[rows, rear_slot], 0.0),
    )
