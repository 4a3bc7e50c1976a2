"""highway-env's closest-lane search, vectorised over a road's lanes, with the same answers.

Every vehicle asks ``RoadNetwork.get_closest_lane_index`` at every simulation step, and
highway-env answers it lane by lane in Python: on roundabout, intersection and racetrack
(dozens of lanes) that is about half of a step's time. ``closest_lane_index`` computes the same
weighted distance (``AbstractLane.distance_with_heading``) for all lanes of a network in a few
array operations, operation for operation as the lane classes do, so the floats, and therefore
the lane chosen, are identical (``tests/envs/test_lane_lookup.py`` compares whole episodes with
highway-env's own search). Lanes of other classes (poly lanes, user classes) are asked one by
one, as highway-env would.

``fast_lane_lookup()`` installs it for the duration of a simulator's work and restores
highway-env's method afterwards, so highway-env envs a user builds elsewhere are untouched.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

_CACHE_ATTR = "_drivelab_lane_arrays"


class _LaneArrays:
    """One network's lanes as arrays, grouped by class, each group with its places in the full list."""

    def __init__(self, network: Any, count: int) -> None:
        from highway_env.road.lane import CircularLane, SineLane, StraightLane

        self.count = count
        self.indexes: list[tuple] = []
        straight, sine, circular, other = [], [], [], []
        groups = {StraightLane: straight, SineLane: sine, CircularLane: circular}  # exact classes only
        for _from, to_dict in network.graph.items():
            for _to, lanes in to_dict.items():
                for _id, lane in enumerate(lanes):
                    groups.get(type(lane), other).append((len(self.indexes), lane))
                    self.indexes.append((_from, _to, _id))
        self.other = other
        lines = {"start": "start", "direction": "direction", "lateral": "direction_lateral", "heading": "heading",
                 "length": "length"}
        self.straight = _columns(straight, **lines)
        self.sine = _columns(sine, **lines, amplitude="amplitude", pulsation="pulsation", phase="phase")
        self.circular = _columns(circular, center="center", radius="radius", start_phase="start_phase",
                                 direction="direction", length="length")


def _columns(members: list, **attributes: str) -> dict | None:
    """(place, lane) pairs as arrays: their places, and each named lane attribute stacked."""
    if not members:
        return None
    lanes = [lane for _, lane in members]
    columns = {name: np.array([getattr(lane, attribute) for lane in lanes], float)
               for name, attribute in attributes.items()}
    return {"places": np.array([place for place, _ in members]), **columns}


def _wrap_to_pi(x: np.ndarray) -> np.ndarray:
    return ((x + np.pi) % (2 * np.pi)) - np.pi  # highway_env.utils.wrap_to_pi


def _distance(s: np.ndarray, r: np.ndarray, length: np.ndarray, angle: np.ndarray | None) -> np.ndarray:
    """``AbstractLane.distance_with_heading`` (``distance`` without a heading), summed in its order."""
    d = np.abs(r) + np.maximum(s - length, 0) + np.maximum(0 - s, 0)
    return d if angle is None else d + 1.0 * angle


def _straight_coordinates(lines: dict, position: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    delta = position - lines["start"]  # (L, 2)
    s = delta[:, 0] * lines["direction"][:, 0] + delta[:, 1] * lines["direction"][:, 1]
    r = delta[:, 0] * lines["lateral"][:, 0] + delta[:, 1] * lines["lateral"][:, 1]
    return s, r


def _fill_straight(out: np.ndarray, lines: dict | None, position: np.ndarray, heading: float | None) -> None:
    if lines is None:
        return
    s, r = _straight_coordinates(lines, position)
    angle = None if heading is None else np.abs(_wrap_to_pi(heading - lines["heading"]))
    out[lines["places"]] = _distance(s, r, lines["length"], angle)


def _fill_sine(out: np.ndarray, lines: dict | None, position: np.ndarray, heading: float | None) -> None:
    if lines is None:
        return
    s, r = _straight_coordinates(lines, position)
    a, w, phase = lines["amplitude"], lines["pulsation"], lines["phase"]
    r = r - a * np.sin(w * s + phase)
    angle = None
    if heading is not None:
        lane_heading = lines["heading"] + np.arctan(a * w * np.cos(w * s + phase))
        angle = np.abs(_wrap_to_pi(heading - lane_heading))
    out[lines["places"]] = _distance(s, r, lines["length"], angle)


def _fill_circular(out: np.ndarray, arcs: dict | None, position: np.ndarray, heading: float | None) -> None:
    if arcs is None:
        return
    delta = position - arcs["center"]
    start, direction, radius = arcs["start_phase"], arcs["direction"], arcs["radius"]
    phi = np.arctan2(delta[:, 1], delta[:, 0])
    phi = start + _wrap_to_pi(phi - start)
    distance_to_center = np.sqrt(delta[:, 0] * delta[:, 0] + delta[:, 1] * delta[:, 1])
    s = direction * (phi - start) * radius
    r = direction * (radius - distance_to_center)
    angle = None
    if heading is not None:
        lane_heading = (direction * s / radius + start) + np.pi / 2 * direction
        angle = np.abs(_wrap_to_pi(heading - lane_heading))
    out[arcs["places"]] = _distance(s, r, arcs["length"], angle)


def _lane_count(network: Any) -> int:
    return sum(len(lanes) for to_dict in network.graph.values() for lanes in to_dict.values())


def closest_lane_index(network: Any, position: np.ndarray, heading: float | None = None) -> tuple:
    """``RoadNetwork.get_closest_lane_index``: the index of the lane closest to a world position
    (and heading), the first of equals as ``np.argmin`` picks it."""
    count = _lane_count(network)
    arrays = getattr(network, _CACHE_ATTR, None)
    if arrays is None or arrays.count != count:  # built once per network; rebuilt if lanes were added
        arrays = _LaneArrays(network, count)
        setattr(network, _CACHE_ATTR, arrays)
    position = np.asarray(position, float)
    distances = np.empty(count)
    _fill_straight(distances, arrays.straight, position, heading)
    _fill_sine(distances, arrays.sine, position, heading)
    _fill_circular(distances, arrays.circular, position, heading)
    for place, lane in arrays.other:
        distances[place] = lane.distance_with_heading(position, heading)
    return arrays.indexes[int(np.argmin(distances))]


@contextlib.contextmanager
def fast_lane_lookup() -> Iterator[None]:
    """``RoadNetwork.get_closest_lane_index`` answered by ``closest_lane_index`` inside the block."""
    from highway_env.road.road import RoadNetwork

    saved = RoadNetwork.__dict__["get_closest_lane_index"]
    RoadNetwork.get_closest_lane_index = closest_lane_index
    try:
        yield
    finally:
        RoadNetwork.get_closest_lane_index = saved
