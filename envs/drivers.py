"""The rule-based driver: car-following (IDM) and lane-change (MOBIL) rules on batched vehicle states.

It lives in the envs layer, beside the states it reads, so every layer drives with the same
rules: the perception track's dataset generator, the env demo, and ``drivelab.agents``'
``IDMMobilPolicy`` (the same driver behind the ``Policy`` interface).

The constants are highway-env's ``IDMVehicle`` values, so the rule-based driver reasons like the
traffic around it. Every function works on whole batches: arrays are (B,) per environment or
(B, V) per vehicle slot (slot 0 is the ego vehicle), as in ``drivelab.envs.VehicleBatch``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from drivelab.envs.actions import FASTER, IDLE, LANE_LEFT, LANE_RIGHT, SLOWER
from drivelab.envs.states import VehicleBatch

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


class IDMMobilDriver:
    """Rule-based driver: IDM picks the target speed, MOBIL picks lane changes.

    Reads vehicle states (slot 0 = ego), not camera frames, and keeps one target-speed index
    per env; ``reset(mask)`` forgets it for envs that start a new episode. The target speed
    is the fastest of ``target_speeds`` whose IDM desired gap to the leader is available; a lane
    change is taken when it is safe for the new follower (its braking stays above
    ``safe_braking``) and improves the ego's IDM acceleration by ``lane_change_gain`` (the right
    lane by ``lane_change_gain - keep_right_bias``, as in highway-env's reward for the right lane).

    Args:
        target_speeds: the DiscreteMetaAction target speeds [m/s] (highway-env MDPVehicle).
        lane_change_gain: MOBIL threshold [m/s^2].
        keep_right_bias: MOBIL asymmetry towards the right lane [m/s^2].
        safe_braking: largest deceleration imposed on the new follower [m/s^2].
        gap_margin: factor on the IDM desired gap before speeding up (> 1 = cautious).
        escape_at_floor: at the slowest target speed, a safe lane change wins over braking when
            the leader forces a hard deceleration (SLOWER cannot slow the ego further there, so
            behind a slower car it only waits for the crash); False keeps braking first always.
    """

    def __init__(
        self,
        target_speeds: tuple[float, ...] = (20.0, 25.0, 30.0),
        lane_change_gain: float = 0.3,
        keep_right_bias: float = 0.4,
        safe_braking: float = 1.0,
        gap_margin: float = 1.0,
        escape_at_floor: bool = True,
    ) -> None:
        self.escape_at_floor = escape_at_floor
        self.target_speeds = np.asarray(target_speeds, dtype=float)  # (S,)
        self.lane_change_gain = lane_change_gain
        self.keep_right_bias = keep_right_bias
        self.safe_braking = safe_braking
        self.gap_margin = gap_margin
        self._target_index = np.zeros(0, dtype=np.int64)  # (B,); -1 = unknown, read from speed
        self._index_before = np.zeros(0, dtype=np.int64)  # (B,): the target index the last act started from

    def reset(self, mask: np.ndarray | None = None) -> None:
        if mask is not None and len(mask) != len(self._target_index):
            self._target_index = np.full(len(mask), -1, dtype=np.int64)
        elif mask is None:
            self._target_index[:] = -1
        else:
            self._target_index[np.asarray(mask, bool)] = -1

    def act(self, s: VehicleBatch) -> np.ndarray:
        """DiscreteMetaActions ``(B,)`` for the vehicle states ``s`` of B envs."""
        batch = s.x.shape[0]
        if self._target_index.shape != (batch,):
            self._target_index = np.full(batch, -1, dtype=np.int64)
        speed, lane = s.speed[:, 0], s.lane_index[:, 0]  # (B,)
        unknown = self._target_index < 0
        nearest = np.abs(speed[:, None] - self.target_speeds[None, :]).argmin(axis=1)
        self._target_index[unknown] = nearest[unknown]

        def neighbours(target_lane: np.ndarray) -> LaneNeighbours:
            return lane_neighbours(s.x, s.y, s.speed, s.length, s.present, s.lane_index, target_lane)

        top_speed = self.target_speeds[-1]
        current = neighbours(lane)
        accel_here = idm_acceleration(speed, current.lead_speed, current.lead_gap_m, top_speed)  # (B,)
        actions = self._speed_actions(speed, current)

        settled = np.abs(s.heading[:, 0]) < 0.02  # not in the middle of a lane change
        best_gain = np.full(batch, -np.inf)
        for action, step, bias in ((LANE_LEFT, -1, 0.0), (LANE_RIGHT, 1, self.keep_right_bias)):
            target = lane + step
            exists = (target >= 0) & (target < s.lanes_count) & (lane >= 0)
            other = neighbours(np.clip(target, 0, None))
            accel_there = idm_acceleration(speed, other.lead_speed, other.lead_gap_m, top_speed)
            follower_accel = idm_acceleration(other.rear_speed, speed, other.rear_gap_m, top_speed)
            safe = (
                (follower_accel >= -self.safe_braking)
                & (other.rear_gap_m > DISTANCE_WANTED_M)
                & (other.lead_gap_m > DISTANCE_WANTED_M + speed * 0.5)
            )
            gain = accel_there - accel_here + bias
            take = exists & settled & safe & (gain > self.lane_change_gain) & (gain > best_gain)
            actions = np.where(take, action, actions)
            best_gain = np.where(take, gain, best_gain)

        emergency = accel_here < COMFORT_ACC_MIN  # harder than comfortable braking: brake first,
        if self.escape_at_floor:  # unless braking cannot slow the ego (the floor) and a lane is safe
            emergency &= ~((self._target_index == 0) & np.isfinite(best_gain))
        actions = np.where(emergency, SLOWER, actions)
        self._index_before = self._target_index.copy()
        self._target_index = self._stepped(self._index_before, actions)
        return actions.astype(np.int64)

    def drove(self, actions: np.ndarray) -> None:
        """The actions the envs were stepped with after the last ``act`` (another driver's, under
        DAgger): keep the target speed index those set, not the one this driver chose."""
        actions = np.asarray(actions, np.int64)
        if len(actions) == len(self._index_before) == len(self._target_index):
            self._target_index = self._stepped(self._index_before, actions)

    def _stepped(self, index: np.ndarray, actions: np.ndarray) -> np.ndarray:
        step = np.where(actions == FASTER, 1, np.where(actions == SLOWER, -1, 0))
        return np.clip(index + step, 0, len(self.target_speeds) - 1)

    def _speed_actions(self, speed: np.ndarray, current: LaneNeighbours) -> np.ndarray:
        """FASTER/IDLE/SLOWER towards the fastest target speed whose desired gap is free."""
        # Desired gap at each candidate target speed (IDM s*): (B, S)
        candidate = self.target_speeds[None, :]
        closing = candidate - current.lead_speed[:, None]
        wanted_gap = DISTANCE_WANTED_M + np.maximum(
            0.0, candidate * TIME_WANTED_S + candidate * closing / (2.0 * np.sqrt(COMFORT_ACC_MAX * -COMFORT_ACC_MIN))
        )
        fits = current.lead_gap_m[:, None] >= self.gap_margin * wanted_gap  # (B, S)
        fits[:, 0] = True  # the slowest target speed is the floor
        desired = np.where(fits, np.arange(len(self.target_speeds))[None, :], 0).max(axis=1)  # (B,)
        return np.where(
            desired > self._target_index, FASTER, np.where(desired < self._target_index, SLOWER, IDLE)
        )
