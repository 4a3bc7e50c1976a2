"""Vehicle states of a batch of environments as padded numpy arrays, ego first."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CLASS_NAMES: tuple[str, ...] = ("car", "ego")
CAR, EGO = 0, 1
# Road objects (drawn, but not vehicles: no ground-truth boxes) use their own class ids.
OBSTACLE, GOAL = 2, 3

VEHICLE_LENGTH_M = 5.0  # highway-env Vehicle.LENGTH
VEHICLE_WIDTH_M = 2.0  # highway-env Vehicle.WIDTH


@dataclass
class VehicleBatch:
    """Every vehicle of B environments, padded to V slots; slot 0 is the ego vehicle.

    All arrays are (B, V); slots with ``present == False`` are padding.

    Attributes:
        x, y: centre position [m], highway-env world frame (y grows to the right of the road).
        heading: [rad], 0 along +x.
        speed: [m/s].
        length, width: body size [m].
        present: the slot holds a vehicle.
        crashed: the vehicle has collided.
        track_id: stable id of the vehicle within its episode.
        class_id: index into ``CLASS_NAMES``.
        lane_index: index of the lane the vehicle is on within its road segment (-1 unknown).
        on_road: the vehicle is on a lane.
        lanes_count: (B,) number of lanes of the ego's road segment.
    """

    x: np.ndarray
    y: np.ndarray
    heading: np.ndarray
    speed: np.ndarray
    length: np.ndarray
    width: np.ndarray
    present: np.ndarray
    crashed: np.ndarray
    track_id: np.ndarray
    class_id: np.ndarray
    lane_index: np.ndarray
    on_road: np.ndarray
    lanes_count: np.ndarray

    @classmethod
    def empty(cls, num_envs: int, num_slots: int) -> VehicleBatch:
        """All-padding batch of the given size."""
        shape = (num_envs, num_slots)
        return cls(
            x=np.zeros(shape), y=np.zeros(shape), heading=np.zeros(shape), speed=np.zeros(shape),
            length=np.full(shape, VEHICLE_LENGTH_M), width=np.full(shape, VEHICLE_WIDTH_M),
            present=np.zeros(shape, bool), crashed=np.zeros(shape, bool),
            track_id=np.full(shape, -1, np.int64), class_id=np.zeros(shape, np.int64),
            lane_index=np.full(shape, -1, np.int64), on_road=np.ones(shape, bool),
            lanes_count=np.ones(num_envs, np.int64),
        )

    @property
    def num_envs(self) -> int:
        return self.x.shape[0]

    def select(self, env_ids: np.ndarray) -> VehicleBatch:
        """The rows of some environments."""
        return VehicleBatch(**{k: v[env_ids] for k, v in vars(self).items()})


def from_highway_env(unwrapped_envs: list, num_slots: int | None = None) -> VehicleBatch:
    """Read vehicle states from highway-env environments (the reference backend).

    Track ids are attached to the vehicle objects the first time they are seen, so a vehicle
    keeps its id for its whole life even when others spawn or leave (merge, intersection).
    """
    rows = []
    for env in unwrapped_envs:
        ego = env.vehicle
        others = [v for v in env.road.vehicles if v is not ego]
        rows.append([ego, *others])
    slots = num_slots or max(len(r) for r in rows)
    batch = VehicleBatch.empty(len(rows), slots)
    for b, (env, vehicles) in enumerate(zip(unwrapped_envs, rows)):
        counter = getattr(env, "_drivelab_next_track_id", 0)
        for v_idx, vehicle in enumerate(vehicles[:slots]):
            if getattr(vehicle, "_drivelab_track_id", None) is None:
                vehicle._drivelab_track_id = counter
                counter += 1
            batch.x[b, v_idx], batch.y[b, v_idx] = vehicle.position
            batch.heading[b, v_idx] = vehicle.heading
            batch.speed[b, v_idx] = vehicle.speed
            batch.length[b, v_idx] = getattr(vehicle, "LENGTH", VEHICLE_LENGTH_M)
            batch.width[b, v_idx] = getattr(vehicle, "WIDTH", VEHICLE_WIDTH_M)
            batch.present[b, v_idx] = True
            batch.crashed[b, v_idx] = bool(vehicle.crashed)
            batch.track_id[b, v_idx] = vehicle._drivelab_track_id
            batch.class_id[b, v_idx] = EGO if v_idx == 0 else CAR
            lane_index = getattr(vehicle, "lane_index", None)
            batch.lane_index[b, v_idx] = lane_index[2] if lane_index else -1
            batch.on_road[b, v_idx] = bool(getattr(vehicle, "on_road", True))
        env._drivelab_next_track_id = counter
        ego_lane = getattr(vehicles[0], "lane_index", None)
        if ego_lane:
            batch.lanes_count[b] = len(env.road.network.graph[ego_lane[0]][ego_lane[1]])
    return batch


def objects_from_highway_env(unwrapped_envs: list) -> VehicleBatch:
    """Road objects (obstacles, walls, parking's goal landmark) as a batch with class ids
    ``OBSTACLE``/``GOAL``; ``(B, 0)`` where a scenario has none."""
    rows = [list(env.road.objects) for env in unwrapped_envs]
    batch = VehicleBatch.empty(len(rows), max((len(r) for r in rows), default=0))
    for b, objects in enumerate(rows):
        for k, obj in enumerate(objects):
            batch.x[b, k], batch.y[b, k] = obj.position
            batch.heading[b, k] = obj.heading
            batch.length[b, k], batch.width[b, k] = obj.LENGTH, obj.WIDTH
            batch.present[b, k] = True
            batch.class_id[b, k] = GOAL if type(obj).__name__ == "Landmark" else OBSTACLE
    return batch


def replace_rows(full: VehicleBatch, env_ids: np.ndarray, rows: VehicleBatch) -> VehicleBatch:
    """``full`` with the rows ``env_ids`` replaced by ``rows``, padding slots where they differ."""
    slots = max(full.x.shape[1], rows.x.shape[1])
    full, rows = _pad(full, slots), _pad(rows, slots)
    for name, array in vars(full).items():
        array[env_ids] = getattr(rows, name)
    return full


def _pad(batch: VehicleBatch, slots: int) -> VehicleBatch:
    if batch.x.shape[1] == slots:
        return batch
    padded = VehicleBatch.empty(batch.num_envs, slots)
    width = batch.x.shape[1]
    for name, array in vars(batch).items():
        target = getattr(padded, name)
        if array.ndim == 1:
            target[:] = array
        else:
            target[:, :width] = array
    return padded
