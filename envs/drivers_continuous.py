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

        def blocked(lane: np.ndarray, behind_m: float, ahead_m: float) -> np.ndarray:
            s_rel = self.lanes.local(s.x, s.y, np.broadcast_to(lane[:, None], s.x.shape))
            along, across = s_rel[0] - proj.s[:, :1], s_rel[1]
            near = others & (np.abs(across) < 2.5) & (along > -behind_m) & (along < ahead_m)
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
    """Drives to the goal spot and stops there, forwards or in reverse (parking).

    A pose controller in polar coordinates (Astolfi; Corke, *Robotics, Vision and Control*,
    "moving to a pose"): with rho the distance to the goal, alpha the bearing of the goal from
    the heading and beta the goal heading's angle to the line of sight, speed ``k_rho rho`` and
    turn rate ``k_alpha alpha + k_beta beta`` converge to the pose; where the goal lies behind,
    the same law runs in reverse. The goal is the ``GOAL`` road object of each env.
    """

    def __init__(
        self,
        period_s: float,
        k_rho: float = 0.5,
        k_alpha: float = 1.6,
        k_beta: float = -0.6,
        max_speed: float = 4.0,
        speed_gain: float = 1.5,
    ) -> None:
        self.period_s = period_s
        self.k_rho, self.k_alpha, self.k_beta = k_rho, k_alpha, k_beta
        self.max_speed = max_speed
        self.speed_gain = speed_gain
        self._reverse = np.zeros(0, bool)  # (B,) direction chosen at the start of each episode

    def reset(self, mask: np.ndarray | None = None) -> None:
        if mask is None or len(mask) != len(self._reverse):
            self._reverse = np.zeros(0, bool)
        else:
            self._reverse[np.asarray(mask, bool)] = False
            self._fresh[np.asarray(mask, bool)] = True

    def act(self, s: VehicleBatch, objects: VehicleBatch) -> np.ndarray:
        """Actions (B, 2) = (acceleration, steering) in [-1, 1]."""
        batch = s.num_envs
        if self._reverse.shape != (batch,):
            self._reverse = np.zeros(batch, bool)
            self._fresh = np.ones(batch, bool)
        is_goal = objects.present & (objects.class_id == GOAL)
        slot = is_goal.argmax(axis=1)
        rows = np.arange(batch)
        gx, gy, gh = objects.x[rows, slot], objects.y[rows, slot], objects.heading[rows, slot]
        x, y, heading, speed = s.x[:, 0], s.y[:, 0], s.heading[:, 0], s.speed[:, 0]
        dx, dy = gx - x, gy - y
        rho = np.hypot(dx, dy)
        bearing = np.arctan2(dy, dx)
        alpha = _wrap(bearing - heading)
        # Forwards or backwards, fixed per episode by where the goal lies at its start.
        self._reverse = np.where(self._fresh, np.abs(alpha) > np.pi / 2, self._reverse)
        self._fresh[:] = False
        sign = np.where(self._reverse, -1.0, 1.0)
        alpha = np.where(self._reverse, _wrap(alpha + np.pi), alpha)
        beta = _wrap(gh - heading - alpha)  # reversing: both headings turn by pi, which cancels
        target_speed = sign * np.minimum(self.k_rho * rho, self.max_speed)
        turn_rate = self.k_alpha * alpha + self.k_beta * beta
        curvature = turn_rate / np.maximum(np.abs(target_speed), 0.5) * sign
        steering = steering_for_curvature(curvature, s.length[:, 0]) / STEERING_RANGE_RAD
        accel = self.speed_gain * (target_speed - speed) / ACCELERATION_RANGE
        actions = np.stack([np.clip(accel, -1, 1), np.clip(steering, -1, 1)], axis=1)
        return actions.astype(np.float32)
