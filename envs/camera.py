"""The batched bird's-eye camera: frames and exact ground truth from vehicle states.

The same renderer serves both backends: it only reads a ``VehicleBatch`` and a road raster,
so the same states give the same frame whichever simulator produced them. The view is
world-aligned (like highway-env's GrayscaleObservation) and follows the ego vehicle, which
sits at ``ego_position`` (fractions of width and height) snapped to the road raster's grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from drivelab.envs.errors import ConfigError
from drivelab.envs.raster import render_frames, render_frames_rotated
from drivelab.envs.road import OFFROAD_RGB, RoadRaster, to_gray
from drivelab.envs.states import VehicleBatch

EGO_RGB = (255, 230, 0)  # yellow: stands out from the blue cars in grayscale too
CAR_RGB = (100, 200, 255)  # highway-env's vehicle blue
CRASHED_RGB = (255, 100, 100)
OBSTACLE_RGB = (200, 140, 60)  # obstacles and walls: ochre, apart from road grey and markings
GOAL_RGB = (60, 220, 60)  # parking's goal spot
MAX_FRAME_SIDE_PX = 2048  # frames are per env and per step: larger ones only exhaust memory
MAX_STACK = 16
MAX_VEHICLE_HALF_DIAGONAL_M = 5.0  # covers highway-env's cars (5 x 2 m) and trucks (up to ~10 m long)
HUD_ROWS = 2  # rows of the speed bar under the view (``hud``)
HUD_FULL_SPEED_MPS = 40.0  # a full-width bar: highway-env's Vehicle.MAX_SPEED


@dataclass(frozen=True)
class CameraConfig:
    """Camera settings.

    Attributes:
        width, height: frame size [px]; 128x64 like highway-env's GrayscaleObservation.
        metres_per_pixel: ground resolution [m/px]; 0.5 makes a car about 10x4 px.
        color: ``"grayscale"`` (1 channel) or ``"rgb"`` (3 channels).
        stack: frames per observation, oldest first.
        ego_position: where the ego sits, as fractions of (width, height); 0.3 shows more road
            ahead than behind, as highway-env's default centering does.
        ground_truth: also return per-frame boxes, classes, track ids and distances.
        align: ``"world"`` (the frame's x axis is the world's: highway-env's view) or
            ``"heading"`` (the frame turns with the ego, which always points right: for roads
            that curve or cross, where a world-aligned view shows mostly off-road). ``"auto"``
            takes the scenario's default (``drivelab.envs.Scenario.camera_align``).
        hud: add ``HUD_ROWS`` rows under the view with a white bar as long as the ego's speed
            (the full width at 40 m/s; from the left driving forward, from the right in
            reverse), as Gymnasium's CarRacing shows its speed. The view follows the ego, so
            without it a camera policy cannot see its own speed (lane stripes alias at 20-30
            m/s per policy step). Ground truth covers the view rows only.
    """

    width: int = 128
    height: int = 64
    metres_per_pixel: float = 0.5
    color: str = "grayscale"
    stack: int = 4
    ego_position: tuple[float, float] = (0.3, 0.5)
    ground_truth: bool = False
    align: Literal["auto", "world", "heading"] = "auto"
    hud: bool = False

    def __post_init__(self) -> None:
        if not (8 <= self.width <= MAX_FRAME_SIDE_PX and 8 <= self.height <= MAX_FRAME_SIDE_PX):
            raise ConfigError(
                f"camera width and height must be in [8, {MAX_FRAME_SIDE_PX}] px, got {self.width}x{self.height}"
            )
        if not self.metres_per_pixel > 0:
            raise ConfigError(f"camera metres_per_pixel must be > 0, got {self.metres_per_pixel}")
        if self.color not in ("grayscale", "rgb"):
            raise ConfigError(f"camera color must be 'grayscale' or 'rgb', got {self.color!r}")
        if not 1 <= self.stack <= MAX_STACK:
            raise ConfigError(f"camera stack must be in [1, {MAX_STACK}], got {self.stack}")
        if len(self.ego_position) != 2 or not all(0 <= p <= 1 for p in self.ego_position):
            raise ConfigError(f"camera ego_position must be two fractions in [0, 1], got {self.ego_position}")
        if self.align not in ("auto", "world", "heading"):
            raise ConfigError(f"camera align must be 'auto', 'world' or 'heading', got {self.align!r}")
        if not isinstance(self.hud, bool):
            raise ConfigError(f"camera hud must be true or false, got {self.hud!r}")

    @property
    def channels(self) -> int:
        return 3 if self.color == "rgb" else 1

    @property
    def view_reach_m(self) -> float:
        """Farthest a vehicle centre can be from the ego along x and still touch the frame [m]."""
        across = max(self.ego_position[0], 1.0 - self.ego_position[0]) * self.width
        if self.align == "heading":  # any direction: the farthest frame corner
            down = max(self.ego_position[1], 1.0 - self.ego_position[1]) * self.height
            across = float(np.hypot(across, down))
        return across * self.metres_per_pixel + MAX_VEHICLE_HALF_DIAGONAL_M + self.metres_per_pixel

    @property
    def observation_shape(self) -> tuple[int, int, int]:
        """(stack * channels, height (+ ``HUD_ROWS`` with ``hud``), width)."""
        return (self.stack * self.channels, self.height + (HUD_ROWS if self.hud else 0), self.width)


class BatchedCamera:
    """Renders B frame stacks at once; keeps the stacks between steps."""

    def __init__(self, config: CameraConfig, num_envs: int) -> None:
        self.config = config
        c = config
        rows = c.height + (HUD_ROWS if c.hud else 0)
        self.stack = np.zeros((num_envs, c.stack, c.channels, rows, c.width), np.uint8)
        self.boxes = np.full((num_envs, 1, 4), -1, np.int32)  # (B, V, 4), resized on demand
        self.corners_px = np.zeros((num_envs, 1, 4, 2))  # (B, V, 4, 2), kept with ground truth only
        palette = np.array([CAR_RGB, EGO_RGB, CRASHED_RGB, OFFROAD_RGB, OBSTACLE_RGB, GOAL_RGB], np.uint8)
        self._palette = palette if c.channels == 3 else to_gray(palette)

    def render(
        self,
        states: VehicleBatch,
        rasters: list[RoadRaster],
        reset: np.ndarray,
        env_ids: np.ndarray | None = None,
        objects: VehicleBatch | None = None,
    ) -> None:
        """Draw the newest frame of some envs and shift their stacks.

        Args:
            states: vehicle states of the rendered envs, (N, V) arrays.
            rasters: the road raster of each rendered env (shared objects for a shared road).
            reset: (N,) bool, envs whose stack restarts (older frames zeroed).
            env_ids: (N,) which envs of the batch these are; None for all of them.
            objects: road objects of the same envs, (N, O) (obstacles, walls, parking's goal),
                drawn under the vehicles; they get no ground-truth boxes.
        """
        num_envs = self.stack.shape[0]
        if objects is not None and objects.x.shape[1]:
            states = _with_objects(states, objects)
        drawn_slots = states.x.shape[1]
        if self.boxes.shape[1] < drawn_slots:  # grow, keeping other envs' boxes
            grown = np.full((num_envs, drawn_slots, 4), -1, np.int32)
            grown[:, : self.boxes.shape[1]] = self.boxes
            self.boxes = grown
            corners = np.zeros((num_envs, drawn_slots, 4, 2))
            corners[:, : self.corners_px.shape[1]] = self.corners_px
            self.corners_px = corners
        groups: dict[int, list[int]] = {}
        for position, raster in enumerate(rasters):
            groups.setdefault(id(raster), []).append(position)
        for positions in groups.values():
            raster = rasters[positions[0]]
            if env_ids is None and len(positions) == num_envs:
                self._render_group(states, raster, reset, self.stack, self.boxes)
                if self.config.ground_truth:
                    self.corners_px[:, :drawn_slots] = self.corners(states, raster)
                continue
            pos = np.asarray(positions)
            idx = pos if env_ids is None else np.asarray(env_ids)[pos]
            stack, boxes = self.stack[idx], self.boxes[idx]
            group = states.select(pos)
            self._render_group(group, raster, np.asarray(reset)[pos], stack, boxes)
            self.stack[idx], self.boxes[idx] = stack, boxes
            if self.config.ground_truth:
                self.corners_px[idx, :drawn_slots] = self.corners(group, raster)

    def _render_group(self, states, raster, reset, stack, boxes) -> None:
        c = self.config
        mpp = raster.metres_per_pixel
        half_size = np.stack([states.length, states.width], -1) / (2.0 * mpp)
        boxes[:] = -1  # slots beyond this frame's vehicles hold no box
        kind = states.class_id  # car 0, ego 1, obstacle 2, goal 3 -> palette car, ego, obstacle, goal
        colour_index = np.where(kind >= 2, kind + 2, np.where(states.crashed, 2, np.where(kind == 1, 1, 0)))
        colours = self._palette[colour_index]
        reset = np.ascontiguousarray(reset, dtype=np.bool_)
        if c.hud:
            _draw_hud(stack, states.speed[:, 0], reset, c.height)
            stack = stack[:, :, :, : c.height]  # the view: the kernels shift and draw these rows
        centre, axes = self._pose_px(states, raster)
        if c.align == "heading":
            ego_raster = np.stack([(states.x[:, 0] - raster.x0) / mpp, (states.y[:, 0] - raster.y0) / mpp], -1)
            ego_frame = np.array([c.ego_position[0] * c.width, c.ego_position[1] * c.height])
            rotation = np.stack([np.cos(states.heading[:, 0]), np.sin(states.heading[:, 0])], -1)
            render_frames_rotated(
                raster.planes(c.channels), ego_raster, ego_frame, rotation, self._palette[3],
                centre, axes, half_size, colours, states.present, reset, stack, boxes,
            )
            return
        origin_col, origin_row = self._world_origin(states, raster)
        render_frames(
            raster.planes(c.channels), origin_row, origin_col, self._palette[3],
            centre, axes, half_size, colours, states.present, reset, stack, boxes,
        )

    def _world_origin(self, states: VehicleBatch, raster: RoadRaster) -> tuple[np.ndarray, np.ndarray]:
        """Raster column and row of each world-aligned frame's top-left pixel ``(B,)``."""
        c, mpp = self.config, raster.metres_per_pixel
        # Snap the camera to the raster grid: the road is then an exact crop.
        ego_col = (states.x[:, 0] - raster.x0) / mpp - c.ego_position[0] * c.width
        ego_row = (states.y[:, 0] - raster.y0) / mpp - c.ego_position[1] * c.height
        return np.rint(ego_col).astype(np.int64), np.rint(ego_row).astype(np.int64)

    def _pose_px(self, states: VehicleBatch, raster: RoadRaster) -> tuple[np.ndarray, np.ndarray]:
        """Vehicle centres in frame pixels ``(B, V, 2)`` (col, row) and heading axes ``(B, V, 2)``."""
        c, mpp = self.config, raster.metres_per_pixel
        if c.align == "heading":
            ego_heading = states.heading[:, :1]
            cos_h, sin_h = np.cos(ego_heading), np.sin(ego_heading)
            dx, dy = (states.x - states.x[:, :1]) / mpp, (states.y - states.y[:, :1]) / mpp
            centre = np.stack([c.ego_position[0] * c.width + dx * cos_h + dy * sin_h,
                               c.ego_position[1] * c.height - dx * sin_h + dy * cos_h], -1)
            relative = states.heading - ego_heading
            return centre, np.stack([np.cos(relative), np.sin(relative)], -1)
        origin_col, origin_row = self._world_origin(states, raster)
        cam_x0 = raster.x0 + origin_col * mpp  # (B,) world x of the frame's left edge [m]
        cam_y0 = raster.y0 + origin_row * mpp
        centre = np.stack([(states.x - cam_x0[:, None]) / mpp, (states.y - cam_y0[:, None]) / mpp], -1)
        return centre, np.stack([np.cos(states.heading), np.sin(states.heading)], -1)

    def corners(self, states: VehicleBatch, raster: RoadRaster) -> np.ndarray:
        """Each vehicle's oriented rectangle in frame pixels ``(B, V, 4, 2)`` (col, row).

        Corners go front-left, front-right, rear-right, rear-left; they may lie outside the frame.
        """
        centre, axes = self._pose_px(states, raster)
        half = np.stack([states.length, states.width], -1) / (2.0 * raster.metres_per_pixel)
        along = axes * half[..., :1]  # (B, V, 2) front direction x half length
        across = np.stack([-axes[..., 1], axes[..., 0]], -1) * half[..., 1:]
        signs = np.array([[1, -1], [1, 1], [-1, 1], [-1, -1]], float)  # (4, 2) along, across
        front, side = signs[None, None, :, :1], signs[None, None, :, 1:]  # (1, 1, 4, 1)
        return centre[:, :, None, :] + front * along[:, :, None] + side * across[:, :, None]

    def observation(self, env: int | None = None) -> np.ndarray:
        """A copy of the stacks as (B, stack * C, H, W) uint8, oldest frame first (one env: no B)."""
        b, s, ch, h, w = self.stack.shape
        if env is not None:
            return self.stack[env].reshape(s * ch, h, w).copy()
        return self.stack.reshape(b, s * ch, h, w).copy()

    def ground_truth(self, states: VehicleBatch) -> list[dict[str, np.ndarray]]:
        """Per env, the vehicles drawn in the newest frame (``states``: those the frame shows).

        Returns:
            One dict per env: ``boxes`` int32 (N, 4) x1, y1, x2, y2 in pixels with x2, y2
            exclusive, exactly enclosing the pixels drawn for the vehicle (clipped to the frame);
            ``classes`` int64 (N,); ``track_ids`` int64 (N,); ``distances_m`` float64 (N,),
            centre to centre distance to the ego; ``corners`` float64 (N, 4, 2), the vehicle's
            oriented rectangle in pixels (col, row: front-left, front-right, rear-right,
            rear-left; unclipped), whose drawn pixels the box encloses.
        """
        distance = np.hypot(states.x - states.x[:, :1], states.y - states.y[:, :1])
        boxes = self.boxes[:, : states.x.shape[1]]
        visible = boxes[..., 0] >= 0
        out = []
        for b in range(states.num_envs):
            keep = visible[b]
            out.append(
                {
                    "boxes": boxes[b, keep].copy(),
                    "classes": states.class_id[b, keep].astype(np.int64),
                    "track_ids": states.track_id[b, keep].astype(np.int64),
                    "distances_m": distance[b, keep],
                    "corners": self.corners_px[b, : states.x.shape[1]][keep].copy(),
                }
            )
        return out


def _draw_hud(stack: np.ndarray, speed: np.ndarray, reset: np.ndarray, view_rows: int) -> None:
    """Shift the speed-bar rows of each stack and draw the newest: ``speed`` (B,) [m/s]."""
    hud = stack[:, :, :, view_rows:]  # (B, S, C, HUD_ROWS, W)
    hud[:, :-1] = hud[:, 1:].copy()
    hud[reset, :-1] = 0
    width = hud.shape[-1]
    length = np.clip(np.rint(np.abs(speed) / HUD_FULL_SPEED_MPS * width), 0, width)[:, None]  # (B, 1)
    cols = np.arange(width)[None, :]
    bar = np.where(speed[:, None] >= 0, cols < length, cols >= width - length)  # (B, W)
    hud[:, -1] = np.where(bar, np.uint8(255), np.uint8(0))[:, None, None, :]


def _with_objects(vehicles: VehicleBatch, objects: VehicleBatch) -> VehicleBatch:
    """Vehicles then objects along the slot axis ``(B, V + O)``, to draw in one pass."""
    return VehicleBatch(**{
        name: array if array.ndim == 1 else np.concatenate([array, getattr(objects, name)], axis=1)
        for name, array in vars(vehicles).items()
    })
