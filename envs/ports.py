"""Reading EnvPool's non-highway ports (merge, roundabout, intersection, parking, racetrack).

Their ``debug_states()`` is the only API that exposes every vehicle, one pybind object per
vehicle and attribute read. Reading them costs ~0.2 us per attribute, so everything here reads
each attribute of each vehicle once, in one flat pass (``np.fromiter`` over an ``attrgetter``),
and places the values with numpy; the road's lanes are read once per pool, not per step.
"""

from __future__ import annotations

import collections
import operator
from itertools import chain
from typing import Any

import numpy as np

from drivelab.envs.states import EGO, GOAL, OBSTACLE, VehicleBatch

MERGE_END_X_M = 370.0  # highway-env MergeEnv: the ego has merged past x = 370 m
INTERSECTION_EXIT_DISTANCE_M = 25.0  # highway-env IntersectionEnv.has_arrived's exit_distance

_FIELDS = ("x", "y", "heading", "speed", "crashed", "lane_index", "on_road")
_read_fields = operator.attrgetter(*_FIELDS)
_read_segment = operator.attrgetter("lane_from", "lane_to")
_OBJECT_FIELDS = ("x", "y", "heading", "length", "width", "kind")
_read_object = operator.attrgetter(*_OBJECT_FIELDS)


def _flat_read(rows: list, getter: operator.attrgetter, fields: int) -> tuple[VehicleBatch, np.ndarray, tuple]:
    """Read ``getter``'s ``fields`` attributes of every item of a ragged batch in one flat pass.

    Returns an empty ``(B, max items)`` batch with the items marked present, the values
    ``(items, fields)`` and each item's (env, slot) index.
    """
    counts = np.fromiter(map(len, rows), np.int64, len(rows))
    total = int(counts.sum())
    flat = chain.from_iterable(map(getter, chain.from_iterable(rows)))
    values = np.fromiter(flat, np.float64, total * fields).reshape(total, fields)
    env = np.repeat(np.arange(len(counts)), counts)
    slot = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    batch = VehicleBatch.empty(len(rows), int(counts.max(initial=0)))
    batch.present[env, slot] = True
    return batch, values, (env, slot)


class PortReader:
    """Vehicle states and road objects of one EnvPool pool of a non-highway port.

    Track ids are vehicle slots: the port's vehicles carry no id of their own. The number of
    lanes of each road segment is counted once, from the first debug state read (a pool's road
    never changes).
    """

    def __init__(self) -> None:
        self._lanes: dict[tuple[str, str], int] | None = None

    def _lanes_of(self, state: Any) -> dict[tuple[str, str], int]:
        if self._lanes is None:
            self._lanes = dict(collections.Counter((getattr(lane, "from"), lane.to) for lane in state.road_lanes))
        return self._lanes

    def states(self, debug: list, ego_only: bool) -> VehicleBatch:
        """Every field of every vehicle (the ego alone with ``ego_only``), lanes as the port computes them."""
        vehicles = [d.vehicles for d in debug]  # each access converts every vehicle: once per env
        rows = [v[:1] for v in vehicles] if ego_only else vehicles
        batch, values, at = _flat_read(rows, _read_fields, len(_FIELDS))
        for k, name in enumerate(("x", "y", "heading", "speed")):
            getattr(batch, name)[at] = values[:, k]
        batch.crashed[at] = values[:, 4] > 0.5
        batch.lane_index[at] = values[:, 5].astype(np.int64)
        batch.on_road[at] = values[:, 6] > 0.5
        lanes = self._lanes_of(debug[0]) if debug else {}
        batch.lanes_count[:] = [lanes.get(segment, 1) for segment in map(_read_segment, (r[0] for r in rows))]
        batch.track_id[:] = np.arange(batch.x.shape[1])
        batch.class_id[:, 0] = EGO
        return batch

    @staticmethod
    def objects(debug: list) -> VehicleBatch:
        """Road objects (merge's obstacle, parking's walls and goal): EnvPool kind 1 is the goal landmark."""
        batch, values, at = _flat_read([d.road_objects for d in debug], _read_object, len(_OBJECT_FIELDS))
        for k, name in enumerate(("x", "y", "heading", "length", "width")):
            getattr(batch, name)[at] = values[:, k]
        batch.class_id[at] = np.where(values[:, 5] == 1, GOAL, OBSTACLE)
        return batch


def arrived(family: str, debug: Any) -> bool:
    """highway-env's "arrived" for merge and intersection, from an EnvPool debug state."""
    ego = debug.vehicles[0]
    if ego.crashed:
        return False
    if family == "merge":
        return ego.x > MERGE_END_X_M
    if family == "intersection":
        if "il" not in ego.lane_from or "o" not in ego.lane_to:
            return False
        for lane in debug.road_lanes:  # exit lanes are straight: longitudinal = projection
            if (getattr(lane, "from"), lane.to, lane.index) == (ego.lane_from, ego.lane_to, ego.lane_index):
                direction = np.array([lane.end_x - lane.start_x, lane.end_y - lane.start_y])
                along = np.dot([ego.x - lane.start_x, ego.y - lane.start_y], direction) / np.linalg.norm(direction)
                return bool(along >= INTERSECTION_EXIT_DISTANCE_M)
    return False
