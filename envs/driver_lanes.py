"""Lane geometry for the rule-based drivers: a road network as arrays, and batched projection onto it.

highway-env's lanes are straight, circular or sine-shaped. Gaps measured as differences of x
(what a straight highway allows) are meaningless on a ring or a curved ramp; the drivers instead
project every vehicle onto its nearest real lane (longitudinal ``s``, lateral ``r``, the lane's
heading and curvature there) and follow lanes into their successors. ``LaneTable`` holds one
scenario's network as (L,) arrays so that projecting a (B, V) batch of vehicles is a few numpy
operations, not a Python loop over highway-env lane objects.

The formulas are highway-env 1.12.1's ``StraightLane``/``CircularLane``/``SineLane``
``local_coordinates`` and ``position``, so a projection here equals the simulator's lane frame
(checked against highway-env in tests/envs/test_drivers_lanes.py).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

STRAIGHT, CIRCULAR, SINE = 0, 1, 2
HEADING_WEIGHT_M = 4.0  # [m/rad] cost of heading mismatch when picking the nearest lane
_JOIN_TOLERANCE_M = 1.0  # a lane continues another when its start lies this close to the other's end
_MAX_HOPS = 6  # lanes crossed by one look-ahead (the shortest lanes are a few metres long)


def _wrap(angle: np.ndarray) -> np.ndarray:
    return (angle + np.pi) % (2 * np.pi) - np.pi


@dataclass(frozen=True)
class LaneProjection:
    """Where vehicles are in lane coordinates; every array has the shape of the query points."""

    lane: np.ndarray  # index into the LaneTable
    s: np.ndarray  # longitudinal position along that lane [m]
    r: np.ndarray  # lateral offset from its centre [m], positive to the right (highway-env)
    heading: np.ndarray  # lane heading at s [rad]
    curvature: np.ndarray  # lane curvature at s [1/m], positive when the lane turns towards +heading


class LaneTable:
    """A highway-env ``RoadNetwork`` as arrays of lane parameters, ``L`` lanes.

    Attributes:
        keys: (from, to, index) of each lane.
        kind, length, width: (L,) lane type, length [m], width [m].
        successor: (L,) index of the lane that continues each lane (-1: none); where a lane
            forks, the successor keeps the same lane index when it can.
    """

    def __init__(self, network) -> None:
        lanes = [
            (f, t, i, lane) for f, tos in network.graph.items() for t, ls in tos.items() for i, lane in enumerate(ls)
        ]
        n = len(lanes)
        self.keys: tuple[tuple[str, str, int], ...] = tuple((f, t, i) for f, t, i, _ in lanes)
        self.kind = np.zeros(n, np.int64)
        self.start = np.zeros((n, 2))
        self.direction = np.zeros((n, 2))  # straight and sine base direction (unit)
        self.length = np.zeros(n)
        self.width = np.zeros(n)
        self.centre = np.zeros((n, 2))  # circular
        self.radius = np.ones(n)
        self.start_phase = np.zeros(n)
        self.turn = np.ones(n)  # circular: +1 clockwise (heading grows), -1 counter-clockwise
        self.amplitude = np.zeros(n)  # sine
        self.pulsation = np.zeros(n)
        self.phase = np.zeros(n)
        for k, (_, _, _, lane) in enumerate(lanes):
            self.length[k] = lane.length
            self.width[k] = lane.width_at(0)
            name = type(lane).__name__
            if name == "CircularLane":
                self.kind[k] = CIRCULAR
                self.centre[k] = lane.center
                self.radius[k] = lane.radius
                self.start_phase[k] = lane.start_phase
                self.turn[k] = lane.direction
            else:
                self.kind[k] = SINE if name == "SineLane" else STRAIGHT
                self.start[k] = lane.start
                self.direction[k] = lane.direction
                if name == "SineLane":
                    self.amplitude[k], self.pulsation[k], self.phase[k] = lane.amplitude, lane.pulsation, lane.phase
        begin = np.array([lane.position(0.0, 0.0) for *_, lane in lanes]).reshape(n, 2)
        end = np.array([lane.position(lane.length, 0.0) for *_, lane in lanes]).reshape(n, 2)
        self.successor = np.full(n, -1, np.int64)
        for k in range(n):
            joins = np.flatnonzero(np.linalg.norm(begin - end[k], axis=1) < _JOIN_TOLERANCE_M)
            joins = joins[joins != k]
            if len(joins):
                same_index = [j for j in joins if self.keys[j][2] == self.keys[k][2]]
                self.successor[k] = same_index[0] if same_index else joins[0]
        index_of = {key: k for k, key in enumerate(self.keys)}
        self._side = np.full((n, 2), -1, np.int64)  # (L, 2): lane to the left, to the right
        for k, (f, t, i) in enumerate(self.keys):
            self._side[k] = index_of.get((f, t, i - 1), -1), index_of.get((f, t, i + 1), -1)

    def neighbour(self, lane: np.ndarray, shift: int) -> np.ndarray:
        """The lane beside ``lane`` in the same road segment (``shift`` -1 left, +1 right); -1 if none."""
        return self._side[lane, 0 if shift < 0 else 1]

    @property
    def num_lanes(self) -> int:
        return len(self.length)

    def index(self, key: tuple[str, str, int]) -> int:
        return self.keys.index(key)

    def local(self, x: np.ndarray, y: np.ndarray, lane: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(s, r) of points in every lane ((..., L)) or, with ``lane`` of the points' shape, in that lane."""
        x, y = np.asarray(x, float), np.asarray(y, float)
        if lane is None:
            x, y, sel = x[..., None], y[..., None], slice(None)
        else:
            sel = lane
        kind = self.kind[sel]
        dx, dy = x - self.start[sel, 0], y - self.start[sel, 1]
        ux, uy = self.direction[sel, 0], self.direction[sel, 1]
        s_line = dx * ux + dy * uy
        r_line = -dx * uy + dy * ux
        r_sine = r_line - self.amplitude[sel] * np.sin(self.pulsation[sel] * s_line + self.phase[sel])
        cx, cy = x - self.centre[sel, 0], y - self.centre[sel, 1]
        phi = self.start_phase[sel] + _wrap(np.arctan2(cy, cx) - self.start_phase[sel])
        turn, radius = self.turn[sel], self.radius[sel]
        s_circle = turn * (phi - self.start_phase[sel]) * radius
        r_circle = turn * (radius - np.hypot(cx, cy))
        s = np.where(kind == CIRCULAR, s_circle, s_line)
        r = np.where(kind == CIRCULAR, r_circle, np.where(kind == SINE, r_sine, r_line))
        return s, r

    def heading_curvature(self, lane: np.ndarray, s: np.ndarray, r: np.ndarray | float = 0.0):
        """Lane heading [rad] and curvature [1/m] at ``s`` (and lateral offset ``r``) of ``lane``."""
        kind = self.kind[lane]
        base = np.arctan2(self.direction[lane, 1], self.direction[lane, 0])
        wave = self.pulsation[lane] * s + self.phase[lane]
        slope = self.amplitude[lane] * self.pulsation[lane] * np.cos(wave)
        sine_heading = base + np.arctan(slope)
        sine_curvature = -self.amplitude[lane] * self.pulsation[lane] ** 2 * np.sin(wave) / (1 + slope**2)
        turn, radius = self.turn[lane], self.radius[lane]
        phi = turn * s / radius + self.start_phase[lane]
        circle_heading = phi + np.pi / 2 * turn
        circle_curvature = turn / np.maximum(radius - r * turn, 1.0)
        heading = np.where(kind == CIRCULAR, circle_heading, np.where(kind == SINE, sine_heading, base))
        curvature = np.where(kind == CIRCULAR, circle_curvature, np.where(kind == SINE, sine_curvature, 0.0))
        return heading, curvature

    def position(self, lane: np.ndarray, s: np.ndarray, r: np.ndarray | float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """World (x, y) of lane coordinates (s, r) on ``lane`` (highway-env ``lane.position``)."""
        kind = self.kind[lane]
        ux, uy = self.direction[lane, 0], self.direction[lane, 1]
        wave = self.amplitude[lane] * np.sin(self.pulsation[lane] * s + self.phase[lane])
        offset = r + np.where(kind == SINE, wave, 0.0)
        line_x = self.start[lane, 0] + s * ux - offset * uy
        line_y = self.start[lane, 1] + s * uy + offset * ux
        turn, radius = self.turn[lane], self.radius[lane]
        phi = turn * s / radius + self.start_phase[lane]
        circle_x = self.centre[lane, 0] + (radius - r * turn) * np.cos(phi)
        circle_y = self.centre[lane, 1] + (radius - r * turn) * np.sin(phi)
        circular = kind == CIRCULAR
        return np.where(circular, circle_x, line_x), np.where(circular, circle_y, line_y)

    def project(self, x: np.ndarray, y: np.ndarray, heading: np.ndarray) -> LaneProjection:
        """The nearest lane of each point, by distance plus heading mismatch (highway-env's
        ``get_closest_lane_index`` with a heading term), and the point's coordinates there."""
        s, r = self.local(x, y)  # (..., L)
        outside = np.maximum(s - self.length, 0.0) + np.maximum(-s, 0.0)
        lane_heading, _ = self.heading_curvature(np.arange(self.num_lanes), np.clip(s, 0.0, self.length))
        mismatch = np.abs(_wrap(np.asarray(heading, float)[..., None] - lane_heading))
        cost = np.maximum(np.abs(r) - self.width / 2, 0.0) + outside + HEADING_WEIGHT_M * mismatch
        lane = cost.argmin(axis=-1)
        s_here = np.take_along_axis(s, lane[..., None], -1)[..., 0]
        r_here = np.take_along_axis(r, lane[..., None], -1)[..., 0]
        head, curve = self.heading_curvature(lane, s_here, r_here)
        return LaneProjection(lane=lane, s=s_here, r=r_here, heading=head, curvature=curve)

    def ahead(self, lane: np.ndarray, s: np.ndarray, distance: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """The (lane, s) reached by driving ``distance`` [m] along lanes and their successors.

        Where a lane has no successor, the point stays on it past its end (straight extrapolation
        for straight lanes), so a look-ahead never jumps.
        """
        lane = np.array(lane, np.int64, copy=True)
        target = np.asarray(s, float) + distance
        for _ in range(_MAX_HOPS):
            nxt = self.successor[lane]
            hop = (target > self.length[lane]) & (nxt >= 0)
            if not hop.any():
                break
            target = np.where(hop, target - self.length[lane], target)
            lane = np.where(hop, nxt, lane)
        return lane, target


@functools.lru_cache(maxsize=None)
def lane_table(highway_env_id: str) -> LaneTable:
    """The ``LaneTable`` of a scenario's fixed road (built once per process).

    Every scenario but the straight highways has one road whatever the seed, and EnvPool's ports
    build the same one, so the drivers read it from highway-env's reference network on either
    backend.
    """
    from drivelab.envs.backends import reference_network

    return LaneTable(reference_network(highway_env_id))
