"""Route-following, yielding driver for DiscreteMetaAction scenarios on real lane geometry.

highway-env's controlled vehicle follows its route by itself; a meta-action only picks the target
speed (FASTER / IDLE / SLOWER) and, where lateral actions exist, a lane change. This driver picks
them by checking plans against a short prediction, the way a gap-acceptance driver does:

1. every vehicle is projected onto its nearest real lane (``driver_lanes.LaneTable``), so gaps
   on rings, ramps and turns are measured along the lanes, not as differences of x;
2. every other vehicle is predicted at constant speed along its lane and that lane's successors;
3. each candidate action (a target speed, or a lane change) is followed by a continuation
   (brake, hold or speed up, one meta-action per policy period) and the ego's motion is
   predicted with highway-env's speed controller (first-order lag, ``TAU_ACC`` = 0.6 s);
4. a candidate is safe when one of its continuations keeps the ego's box clear of every other
   box (with margins) over the horizon. Vehicles behind the ego in its own lane are left out:
   they follow the ego (IDM) and brake for it;
5. the driver takes the safe candidate it prefers (faster, then its preferred lane); when none
   is safe, the one whose first conflict comes latest.

This yields at a roundabout's entry to vehicles in the ring (their predicted path crosses the
entry), stops before an intersection's conflict zone while a crossing vehicle's time to it is
within the horizon, and does not cut in front of merging or oncoming vehicles.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from drivelab.envs.actions import FASTER, IDLE, LANE_LEFT, LANE_RIGHT, SLOWER
from drivelab.envs.driver_lanes import LaneTable, _wrap
from drivelab.envs.states import VehicleBatch

TAU_ACC_S = 0.6  # highway-env ControlledVehicle.TAU_ACC: speed tracking time constant
TAU_LANE_CHANGE_S = 1.0  # lateral convergence onto a new lane (ControlledVehicle's lateral loop)
SAMPLE_S = 0.1  # prediction time step [s]
# Action layouts: index of (SLOWER, IDLE, FASTER, LANE_LEFT, LANE_RIGHT); -1 = not available.
META_LAYOUT = (SLOWER, IDLE, FASTER, LANE_LEFT, LANE_RIGHT)
LONGITUDINAL_LAYOUT = (0, 1, 2, -1, -1)  # intersection: SLOWER, IDLE, FASTER
_CONTINUATIONS = (-1, 0, 1)  # per later period: SLOWER, IDLE, FASTER


@dataclass(frozen=True)
class YieldConfig:
    """How the yielding driver drives one scenario.

    Attributes:
        target_speeds: the scenario's DiscreteMetaAction target speeds [m/s].
        layout: action indices of (SLOWER, IDLE, FASTER, LANE_LEFT, LANE_RIGHT), -1 when absent.
        horizon_s: how far ahead plans are checked [s].
        margin_long_m, margin_lat_m: clearance kept around the ego's box [m].
        headway_s: extra longitudinal clearance per m/s of ego speed [s].
        lane_changes: whether to change lanes at all (a roundabout's ring: no).
        preferred_lane: lane index to head for (-1 rightmost, 0 leftmost, None: no preference).
        keep_lane_until_x: ``(x, lane)``: hold ``lane`` or lanes left of it before x [m] (merge:
            keep clear of the merging lane until the merge ends).
        conflict_box: ``(x_min, x_max, y_min, y_max)`` [m] of a zone crossing traffic shares
            (intersection): the ego enters it only when no crossing vehicle's occupancy of it
            overlaps the ego's; None: no such zone.
        box_margin_s: time kept between the ego's and another vehicle's occupancy of the zone [s].
        stop_line_m: the ego's occupancy starts this far before the zone's edge [m], so it
            waits where turning vehicles, whose arcs start outside the zone, do not sweep.
    """

    target_speeds: tuple[float, ...]
    layout: tuple[int, int, int, int, int] = META_LAYOUT
    horizon_s: float = 4.0
    margin_long_m: float = 1.0
    margin_lat_m: float = 0.4
    headway_s: float = 0.3
    lane_changes: bool = True
    preferred_lane: int | None = None
    keep_lane_until_x: tuple[float, int] | None = None
    conflict_box: tuple[float, float, float, float] | None = None
    box_margin_s: float = 1.0
    stop_line_m: float = 0.0


def box_distances(x, y, heading, box: tuple[float, float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Distances [m] along the heading at which a ray from (x, y) enters and leaves an axis-aligned
    box ``(x_min, x_max, y_min, y_max)`` (slab method); (inf, inf) where it misses, entry 0 inside."""
    ux, uy = np.cos(heading), np.sin(heading)
    with np.errstate(divide="ignore", invalid="ignore"):
        tx1, tx2 = (box[0] - x) / ux, (box[1] - x) / ux
        ty1, ty2 = (box[2] - y) / uy, (box[3] - y) / uy
    inside_x = (x >= box[0]) & (x <= box[1])
    inside_y = (y >= box[2]) & (y <= box[3])
    tx_lo = np.where(np.abs(ux) < 1e-9, np.where(inside_x, -np.inf, np.inf), np.minimum(tx1, tx2))
    tx_hi = np.where(np.abs(ux) < 1e-9, np.where(inside_x, np.inf, -np.inf), np.maximum(tx1, tx2))
    ty_lo = np.where(np.abs(uy) < 1e-9, np.where(inside_y, -np.inf, np.inf), np.minimum(ty1, ty2))
    ty_hi = np.where(np.abs(uy) < 1e-9, np.where(inside_y, np.inf, -np.inf), np.maximum(ty1, ty2))
    enter, leave = np.maximum(tx_lo, ty_lo), np.minimum(tx_hi, ty_hi)
    miss = (leave < np.maximum(enter, 0.0))
    return np.where(miss, np.inf, np.maximum(enter, 0.0)), np.where(miss, np.inf, leave)


def speed_index(speed: np.ndarray, target_speeds: np.ndarray) -> np.ndarray:
    """highway-env ``MDPVehicle.speed_to_index``: the nearest target speed on a uniform grid."""
    x = (speed - target_speeds[0]) / max(target_speeds[-1] - target_speeds[0], 1e-9)
    return np.clip(np.rint(x * (len(target_speeds) - 1)), 0, len(target_speeds) - 1).astype(np.int64)


class YieldingDriver:
    """Picks DiscreteMetaActions for B envs from their vehicle states; see the module docstring.

    Keeps each env's target-speed index (what IDLE keeps); ``reset(mask)`` forgets it.
    """

    def __init__(self, config: YieldConfig, lanes: LaneTable, period_s: float) -> None:
        self.config = config
        self.lanes = lanes
        self.period_s = float(period_s)
        self.speeds = np.asarray(config.target_speeds, float)
        self.steps = max(1, int(round(config.horizon_s / SAMPLE_S)))
        self.times = SAMPLE_S * np.arange(1, self.steps + 1)  # (K,)
        self._target = np.zeros(0, np.int64)  # (B,); -1 unknown
        self._target_after = np.zeros((0, 0), np.int64)  # (B, actions): the target each action of the last act leaves

    def reset(self, mask: np.ndarray | None = None) -> None:
        if mask is None or len(mask) != len(self._target):
            self._target = np.full(0 if mask is None else len(mask), -1, np.int64)
        else:
            self._target[np.asarray(mask, bool)] = -1

    def drove(self, actions: np.ndarray) -> None:
        """The actions the envs were stepped with after the last ``act`` (another driver's, under
        DAgger): keep the target speed those set, as highway-env's vehicle does, not the one
        this driver chose."""
        actions = np.asarray(actions, np.int64)
        if self._target_after.shape[0] == len(actions) == len(self._target):
            self._target = self._target_after[np.arange(len(actions)), actions]

    # -- prediction ---------------------------------------------------------------------------

    def _ego_distance(self, speed: np.ndarray, first: np.ndarray, continuation: int) -> np.ndarray:
        """Distance travelled (B, K) by a plan that
        sets target index ``first`` (B,) now and then applies ``continuation`` every period."""
        n = len(speed)
        distance = np.zeros((n, self.steps))
        v, travelled, index = speed.astype(float), np.zeros(n), first
        start = 0.0
        while start < self.times[-1]:
            target = self.speeds[index]
            t = np.clip(self.times - start, 0.0, self.period_s)  # (K,) time spent in this period
            decay = np.exp(-t / TAU_ACC_S)
            inside = (self.times > start)[None, :]
            step = target[:, None] * t + (v - target)[:, None] * TAU_ACC_S * (1 - decay)  # (B, K)
            distance = np.where(inside, travelled[:, None] + step, distance)
            end_decay = np.exp(-self.period_s / TAU_ACC_S)
            travelled = travelled + target * self.period_s + (v - target) * TAU_ACC_S * (1 - end_decay)
            v = target + (v - target) * end_decay
            index = np.clip(speed_index(v, self.speeds) + continuation, 0, len(self.speeds) - 1)
            if continuation == 0:
                index = np.clip(first, 0, len(self.speeds) - 1)
            start += self.period_s
        return distance

    def _path(self, lane: np.ndarray, s: np.ndarray, r0: np.ndarray, distance: np.ndarray, tau: float):
        """World poses (x, y, heading) along lanes for distances (..., K); r decays from r0."""
        lane_k, s_k = self.lanes.ahead(np.broadcast_to(lane[..., None], distance.shape), s[..., None], distance)
        r_k = r0[..., None] * np.exp(-self.times / tau) if tau > 0 else np.broadcast_to(r0[..., None], distance.shape)
        x, y = self.lanes.position(lane_k, s_k, r_k)
        heading, _ = self.lanes.heading_curvature(lane_k, s_k, r_k)
        return x, y, heading

    def _first_conflict(self, ego_pose, other_pose, ego_size, other_size, margin_long, relevant) -> np.ndarray:
        """First predicted step (B, P) at which an ego plan's box meets another's; K = none.

        ego_pose: 3 arrays (B, P, K); other_pose: 3 arrays (B, V, K); relevant: (B, V).
        """
        ex, ey, eh = (a[:, :, None, :] for a in ego_pose)  # (B, P, 1, K)
        ox, oy, oh = (a[:, None, :, :] for a in other_pose)  # (B, 1, V, K)
        dx, dy = ox - ex, oy - ey
        cos, sin = np.cos(eh), np.sin(eh)
        along, across = dx * cos + dy * sin, -dx * sin + dy * cos
        rel = oh - eh
        half_l, half_w = (x[:, None, :, None] / 2 for x in other_size)  # (B, 1, V, 1)
        ext_along = half_l * np.abs(np.cos(rel)) + half_w * np.abs(np.sin(rel))
        ext_across = half_l * np.abs(np.sin(rel)) + half_w * np.abs(np.cos(rel))
        ego_l, ego_w = (x[:, None, None, None] / 2 for x in ego_size)
        hit = (np.abs(along) < ego_l + ext_along + margin_long[:, None, None, None]) & (
            np.abs(across) < ego_w + ext_across + self.config.margin_lat_m
        )
        hit &= relevant[:, None, :, None]
        any_hit = hit.any(axis=2)  # (B, P, K)
        return np.where(any_hit.any(axis=-1), any_hit.argmax(axis=-1), self.steps)

    def _box_times(self, s: VehicleBatch):
        """The ego's entry and exit distances of the conflict box (B,), and the other vehicles'
        occupancy intervals of it [s] (B, V) at constant speed and heading."""
        box = self.config.conflict_box
        size = max(box[1] - box[0], box[3] - box[2])
        enter, leave = box_distances(s.x, s.y, s.heading, box)
        half = s.length / 2
        ego_in = enter[:, 0] - half[:, 0] - self.config.stop_line_m
        ego_out = np.maximum(leave[:, 0], enter[:, 0] + size) + half[:, 0]  # a turn crosses about the box size
        speed = np.maximum(s.speed, 0.0)
        moving = speed > 0.5
        t_in = np.where(moving, (enter - half) / np.maximum(speed, 0.5), np.where(enter <= 0, 0.0, np.inf))
        t_out = np.where(moving, (leave + half) / np.maximum(speed, 0.5), np.where(enter <= 0, np.inf, np.inf))
        return (ego_in, ego_out), (np.maximum(t_in, 0.0), t_out)

    def _box_conflict(self, distance: np.ndarray, ego_box, other_box, relevant: np.ndarray) -> np.ndarray:
        """First step (B,) at which the ego, driving ``distance`` (B, K), occupies the conflict box
        within ``box_margin_s`` of another vehicle's occupancy; K = none."""
        ego_in, ego_out = ego_box
        t_in, t_out = other_box  # (B, V)
        k = self.steps
        occupied = (distance >= ego_in[:, None]) & (distance <= ego_out[:, None])  # (B, K)
        entered = occupied.any(axis=1)
        first = np.where(entered, occupied.argmax(axis=1), k)
        reached_exit = distance >= ego_out[:, None]
        # Not out by the horizon's end: out after the rest of the zone at the plan's last speed.
        end_speed = np.maximum(np.diff(distance, axis=1, prepend=0.0)[:, -1] / SAMPLE_S, 0.5)  # (B,) [m/s]
        beyond = k + (ego_out - distance[:, -1]) / (end_speed * SAMPLE_S)
        last = np.where(reached_exit.any(axis=1), reached_exit.argmax(axis=1), beyond)
        ego_t_in = (first + 1) * SAMPLE_S - self.config.box_margin_s
        ego_t_out = (last + 1) * SAMPLE_S + self.config.box_margin_s
        overlap = relevant & (t_in < ego_t_out[:, None]) & (t_out > ego_t_in[:, None])  # (B, V)
        return np.where(entered & overlap.any(axis=1), first, k)

    # -- decision -----------------------------------------------------------------------------

    def act(self, s: VehicleBatch) -> np.ndarray:
        """Meta-action indices ``(B,)`` for the vehicle states of B envs (slot 0 = ego)."""
        cfg, lanes = self.config, self.lanes
        batch = s.num_envs
        if self._target.shape != (batch,):
            self._target = np.full(batch, -1, np.int64)
        speed = s.speed[:, 0]
        unknown = self._target < 0
        self._target[unknown] = speed_index(speed[unknown], self.speeds)
        proj = lanes.project(s.x, s.y, s.heading)  # (B, V)
        ego_lane, ego_s, ego_r = proj.lane[:, 0], proj.s[:, 0], proj.r[:, 0]

        # Others: constant speed along their lanes. Vehicles behind the ego in its lane are left out.
        others = s.present.copy()
        others[:, 0] = False
        cos0, sin0 = np.cos(s.heading[:, :1]), np.sin(s.heading[:, :1])
        dx, dy = s.x - s.x[:, :1], s.y - s.y[:, :1]
        along, across = dx * cos0 + dy * sin0, -dx * sin0 + dy * cos0
        same_way = np.abs(_wrap(s.heading - s.heading[:, :1])) < 0.6
        follower = (along < 0) & (np.abs(across) < 2.0) & same_way
        other_distance = np.maximum(s.speed, 0.0)[..., None] * self.times  # (B, V, K)
        other_pose = self._path(proj.lane, proj.s, proj.r, other_distance, tau=0.0)
        margin_long = cfg.margin_long_m + cfg.headway_s * speed  # (B,)

        if cfg.conflict_box is not None:
            ego_box, other_box = self._box_times(s)
        # Candidates: (action, first target index, lane to drive on, lateral start offset on it).
        top = len(self.speeds) - 1
        nearest = speed_index(speed, self.speeds)
        rows = np.arange(batch)
        candidates = [
            (FASTER, np.clip(nearest + 1, 0, top), ego_lane, ego_r),
            (IDLE, self._target, ego_lane, ego_r),
            (SLOWER, np.clip(nearest - 1, 0, top), ego_lane, ego_r),
        ]
        side = {}
        if cfg.lane_changes and cfg.layout[3] >= 0:
            for action, shift in ((LANE_LEFT, -1), (LANE_RIGHT, 1)):
                target_lane = lanes.neighbour(ego_lane, shift)
                valid = target_lane >= 0
                lane_used = np.where(valid, target_lane, ego_lane)
                _, r_there = lanes.local(s.x[:, 0], s.y[:, 0], lane_used)
                candidates.append((action, self._target, lane_used, r_there))
                side[action] = valid
        first = np.full((batch, len(candidates)), self.steps)
        for p, (action, index, lane, r0) in enumerate(candidates):
            relevant = others & ~(follower & (lane == ego_lane)[:, None])
            # Not the ego's leaders and followers, nor oncoming traffic (it crosses only a left turn's path).
            oncoming = np.abs(_wrap(s.heading - s.heading[:, :1])) > 2.6
            box_relevant = others & ~(same_way & (np.abs(across) < 2.0)) & ~oncoming
            best = np.zeros(batch, np.int64)
            for continuation in _CONTINUATIONS:
                distance = self._ego_distance(speed, index, continuation)
                pose = self._path(lane, ego_s, r0, distance, TAU_LANE_CHANGE_S)
                conflict = self._first_conflict(
                    tuple(a[:, None] for a in pose), other_pose, (s.length[:, 0], s.width[:, 0]),
                    (s.length, s.width), margin_long, relevant,
                )[:, 0]
                if cfg.conflict_box is not None:
                    conflict = np.minimum(conflict, self._box_conflict(distance, ego_box, other_box, box_relevant))
                best = np.maximum(best, conflict)
            first[:, p] = best
            if action in side:
                first[~side[action], p] = -1  # no such lane
        preference = self._preference(s, proj, candidates, side)  # (B, P)
        safe = first >= self.steps
        score = np.where(safe, 1000.0 + preference, first.astype(float) + 0.01 * preference)
        choice = score.argmax(axis=1)
        actions = np.array([candidates[c][0] for c in range(len(candidates))])[choice]
        targets = np.stack([np.broadcast_to(c[1], (batch,)) for c in candidates], axis=1).astype(np.int64)
        lookup = np.zeros(5, np.int64)  # meta-action -> this scenario's action index
        lookup[[SLOWER, IDLE, FASTER, LANE_LEFT, LANE_RIGHT]] = cfg.layout
        # the target each of the scenario's actions would leave (a lane change keeps it), for ``drove``
        self._target_after = np.repeat(self._target[:, None], max(cfg.layout) + 1, axis=1)
        for p, candidate in enumerate(candidates):
            self._target_after[:, lookup[candidate[0]]] = targets[:, p]
        self._target = targets[rows, choice]
        return lookup[actions]

    def _preference(self, s: VehicleBatch, proj, candidates, side) -> np.ndarray:
        """How much the driver likes each candidate (B, P): speed first, then its lane wishes."""
        cfg = self.config
        batch = s.num_envs
        pref = np.zeros((batch, len(candidates)))
        for p, (_action, index, _, _) in enumerate(candidates):
            pref[:, p] = self.speeds[np.broadcast_to(index, (batch,))] / max(self.speeds[-1], 1.0)
        lane_index = s.lane_index[:, 0]
        count = s.lanes_count
        wanted = None
        if cfg.preferred_lane is not None:
            wanted = np.where(np.full(batch, cfg.preferred_lane) < 0, count - 1, cfg.preferred_lane)
        if cfg.keep_lane_until_x is not None:
            x_end, keep = cfg.keep_lane_until_x
            before = s.x[:, 0] < x_end
            wanted = np.where(before, np.minimum(keep, count - 1), wanted if wanted is not None else lane_index)
        for p, (action, *_rest) in enumerate(candidates):
            if action in side:
                step = -1 if action == LANE_LEFT else 1
                if wanted is None:
                    pref[:, p] -= 10.0  # no lane wish: change lanes only to escape a conflict
                else:
                    closer = np.abs(lane_index + step - wanted) < np.abs(lane_index - wanted)
                    pref[:, p] += np.where(closer, 2.0, -10.0)
        return pref
