"""Rule-based drivers for continuous actions: a pure-pursuit lane follower and a parking controller.

Both steer highway-env's kinematic bicycle (``Vehicle.step``): the slip angle is
``beta = atan(tan(delta) / 2)`` and the heading rate ``v sin(beta) / (L / 2)``, so a wanted path
curvature ``kappa`` needs ``sin(beta) = kappa L / 2`` and ``delta = atan(2 tan(beta))`` (exact
for that model; lane-keeping's dynamic bicycle follows it closely at its low speed). Actions are
highway-env's ``ContinuousAction`` scaled to [-1, 1]: ``[steering]`` where only lateral control is
enabled (racetrack, lane-keeping), ``[acceleration, steering]`` otherwise (parking).
"""

from __future__ import annotations

import numpy as np

from drivelab.envs.driver_lanes import LaneTable, _wrap
from drivelab.envs.states import GOAL, VehicleBatch

ACCELERATION_RANGE = 5.0  # [m/s^2] highway-env ContinuousAction.ACCELERATION_RANGE
STEERING_RANGE_RAD = np.pi / 4  # highway-env ContinuousAction.STEERING_RANGE


def steering_for_curvature(curvature: np.ndarray, length_m: np.ndarray | float) -> np.ndarray:
    """Front-wheel angle [rad] that makes highway-env's kinematic bicycle follow ``curvature`` [1/m]."""
    beta = np.arcsin(np.clip(curvature * np.asarray(length_m) / 2.0, -1.0, 1.0))
    return np.arctan(2.0 * np.tan(beta))


class PurePursuitDriver:
    """Pure pursuit on the lane centre, with a lane choice that passes slower vehicles (racetrack).

    Args:
        lanes: the scenario's road.
        action_size: 1 (steering only) or 2 (acceleration, steering).
        period_s: seconds per policy step (look-ahead grows with the distance driven per step).
        steering_range_rad: the scenario's steering range (action 1 = this angle).
        target_speed: cruise speed of the speed loop [m/s] (two-dimensional actions only).
        lookahead_s, min_lookahead_m: look-ahead distance = max(min, speed * lookahead_s).
    """

    def __init__(
        self,
        lanes: LaneTable,
        action_size: int,
        period_s: float,
        steering_range_rad: float = STEERING_RANGE_RAD,
        target_speed: float = 8.0,
        lookahead_s: float = 0.9,
        min_lookahead_m: float = 5.0,
        speed_gain: float = 1.0,
    ) -> None:
        self.lanes = lanes
        self.action_size = action_size
        self.period_s = period_s
        self.steering_range_rad = steering_range_rad
        self.target_speed = target_speed
        self.lookahead_s = lookahead_s
        self.min_lookahead_m = min_lookahead_m
        self.speed_gain = speed_gain

    def reset(self, mask: np.ndarray | None = None) -> None:
        """Stateless: every decision reads the current states."""

    def _lane_to_follow(self, s: VehicleBatch, proj) -> np.ndarray:
        """The ego's lane, or its neighbour when a vehicle blocks the ego's lane ahead and the
        neighbour is clear around the ego (the ego cannot brake where only steering is controlled)."""
        ego_lane = proj.lane[:, 0]
        chosen = ego_lane.copy()
        others = s.present.copy()
        others[:, 0] = False

        def blocked(lane: np.ndarray, behind_m: float, ahead_m: np.ndarray) -> np.ndarray:
            s_rel = self.lanes.local(s.x, s.y, np.broadcast_to(lane[:, None], s.x.shape))
            along, across = s_rel[0] - proj.s[:, :1], s_rel[1]
            near = others & (np.abs(across) < 2.5) & (along > -behind_m) & (along < ahead_m[:, None])
            return near.any(axis=1)

        ahead = blocked(ego_lane, 0.0, 8.0 + 2.0 * s.speed[:, 0])
        for shift in (-1, 1):
            side = self.lanes.neighbour(ego_lane, shift)
            ok = (side >= 0) & ahead & (chosen == ego_lane)
            if ok.any():
                free = ~blocked(np.where(side >= 0, side, ego_lane), 8.0, 8.0 + 2.0 * s.speed[:, 0])
                chosen = np.where(ok & free, side, chosen)
        return chosen

    def act(self, s: VehicleBatch) -> np.ndarray:
        """Actions (B, action_size) in [-1, 1] for the vehicle states of B envs."""
        x, y, heading, speed = s.x[:, 0], s.y[:, 0], s.heading[:, 0], s.speed[:, 0]
        proj = self.lanes.project(s.x, s.y, s.heading)
        lane = self._lane_to_follow(s, proj)
        along, _ = self.lanes.local(x, y, lane)
        lookahead = np.maximum(self.min_lookahead_m, np.abs(speed) * self.lookahead_s)
        lane_ahead, s_ahead = self.lanes.ahead(lane, along, lookahead)
        tx, ty = self.lanes.position(lane_ahead, s_ahead)
        dx, dy = tx - x, ty - y
        alpha = _wrap(np.arctan2(dy, dx) - heading)
        distance = np.maximum(np.hypot(dx, dy), 1e-3)
        curvature = 2.0 * np.sin(alpha) / distance
        steering = steering_for_curvature(curvature, s.length[:, 0]) / self.steering_range_rad
        steering = np.clip(steering, -1.0, 1.0)
        if self.action_size == 1:
            return steering[:, None].astype(np.float32)
        accel = np.clip(self.speed_gain * (self.target_speed - speed) / ACCELERATION_RANGE, -1.0, 1.0)
        return np.stack([accel, steering], axis=1).astype(np.float32)


class ParkingDriver:
    """Drives forwards into the goal spot along its axis and stops on the goal (parking).

    Pure pursuit on the spot's axis: the line through the goal along the goal heading, followed
    in that direction, so the car enters the spot facing the way the goal pose asks. The look-ahead
    point is ``lookahead_m`` beyond the car's projection on the axis, never past the goal; where it
    lies behind the car, the car turns at full lock (a U-turn in the aisle). Speed is proportional
    to the distance left along the axis (a P loop on the acceleration), so the car stops on the
    goal. The goal is the ``GOAL`` road object of each env.
    """

    def __init__(
        self,
        period_s: float,
        lookahead_m: float = 6.0,
        max_speed: float = 3.0,
        speed_per_m: float = 0.6,
        speed_gain: float = 2.0,
        turn_speed: float = 2.5,
        entry_m: float = 5.0,
        retry_m: float = 12.0,
    ) -> None:
        self.entry_m = entry_m  # [m] before the goal: where the spot's entrance is
        self.retry_m = retry_m  # [m] before the goal: how far to back out to try again
        self.period_s = period_s
        self.lookahead_m = lookahead_m
        self.max_speed = max_speed
        self.speed_per_m = speed_per_m  # [1/s] target speed per metre left
        self.speed_gain = speed_gain
        self.turn_speed = turn_speed

    def reset(self, mask: np.ndarray | None = None) -> None:
        if mask is None or len(mask) != len(self._backing):
            self._backing = np.zeros(0, bool)
        else:
            self._backing[np.asarray(mask, bool)] = False

    _backing = np.zeros(0, bool)  # (B,) backing out along the axis to try the approach again

    def act(self, s: VehicleBatch, objects: VehicleBatch) -> np.ndarray:
        """Actions (B, 2) = (acceleration, steering) in [-1, 1]."""
        batch = s.num_envs
        if self._backing.shape != (batch,):
            self._backing = np.zeros(batch, bool)
        is_goal = objects.present & (objects.class_id == GOAL)
        slot = is_goal.argmax(axis=1)
        rows = np.arange(batch)
        gx, gy, gh = objects.x[rows, slot], objects.y[rows, slot], objects.heading[rows, slot]
        x, y, heading, speed = s.x[:, 0], s.y[:, 0], s.heading[:, 0], s.speed[:, 0]
        ux, uy = np.cos(gh), np.sin(gh)
        to_goal = (gx - x) * ux + (gy - y) * uy  # [m] left along the axis
        across = -(gx - x) * uy + (gy - y) * ux
        aligned = (np.abs(across) < 0.8) & (np.abs(_wrap(heading - gh)) < 0.3)
        # Too deep to line up before the goal: back out along the axis, then come in again.
        self._backing = (self._backing | (~aligned & (to_goal < self.entry_m))) & (to_goal < self.retry_m)
        # Not lined up yet: aim no deeper than the spot's entrance.
        deepest = np.where(aligned, 0.0, self.entry_m)
        point = np.maximum(to_goal - self.lookahead_m, deepest)  # distance of the aim point from the goal
        point = np.where(self._backing, self.retry_m + self.lookahead_m, point)
        tx, ty = gx - point * ux, gy - point * uy  # on the axis
        dx, dy = tx - x, ty - y
        distance = np.hypot(dx, dy)
        alpha = _wrap(np.arctan2(dy, dx) - heading - np.where(self._backing, np.pi, 0.0))
        curvature = 2.0 * np.sin(alpha) / np.maximum(distance, 1.0)
        behind = (np.abs(alpha) > np.pi / 2) & ~self._backing
        curvature = np.where(behind, np.sign(alpha) * 1e3, curvature)  # full lock towards it
        steering = steering_for_curvature(curvature, s.length[:, 0]) / STEERING_RANGE_RAD
        target_speed = np.clip(self.speed_per_m * to_goal, 0.0, self.max_speed)
        target_speed = np.where(to_goal > 0.3, np.maximum(target_speed, 0.4), target_speed)  # no crawling
        target_speed = np.where(behind, self.turn_speed, target_speed)
        overshot = to_goal < -0.3  # past the goal on its axis: back up straight
        target_speed = np.where(overshot, -0.5, target_speed)
        steering = np.where(overshot, 0.0, steering)
        target_speed = np.where(self._backing, -self.turn_speed, target_speed)
        steering = np.where(self._backing, -steering, steering)  # reversing turns the other way
        accel = self.speed_gain * (target_speed - speed) / ACCELERATION_RANGE
        actions = np.stack([np.clip(accel, -1, 1), np.clip(steering, -1, 1)], axis=1)
        return actions.astype(np.float32)
