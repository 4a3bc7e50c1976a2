"""Road layer of the camera: lanes rasterised once per road network, then cropped per frame.

The raster is drawn in world-aligned pixels (x -> columns, y -> rows) with OpenCV: the road
surface of every lane, continuous lines, and stripes placed like highway-env's LaneGraphics
(3 m stripes every 4.33 m along the lane). A camera frame is a crop of this raster at an
integer offset, so road pixels are exact copies and cost one memory copy per frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# Colours (RGB). Grayscale uses highway-env's GrayscaleObservation weights.
OFFROAD_RGB = (0, 0, 0)
ROAD_RGB = (100, 100, 100)
MARKING_RGB = (255, 255, 255)
GRAY_WEIGHTS = np.array([0.2989, 0.5870, 0.1140])

STRIPE_SPACING_M = 4.33  # highway-env LaneGraphics
STRIPE_LENGTH_M = 3.0
CURVE_STEP_M = 0.5  # sampling step along curved lanes

# highway-env LineType values
_NONE, _STRIPED, _CONTINUOUS, _CONTINUOUS_LINE = 0, 1, 2, 3


def to_gray(rgb: np.ndarray) -> np.ndarray:
    """RGB uint8 (..., 3) -> gray uint8 (..., 1) with highway-env's weights."""
    gray = np.rint(rgb.astype(np.float64) @ GRAY_WEIGHTS)
    return np.clip(gray, 0, 255).astype(np.uint8)[..., None]


@dataclass
class RoadRaster:
    """A rasterised road network.

    Attributes:
        rgb: (Hr, Wr, 3) uint8 image of the road.
        gray: (Hr, Wr, 1) uint8 grayscale version.
        x0, y0: world position [m] of the raster's top-left pixel corner.
        metres_per_pixel: [m/px].
    """

    rgb: np.ndarray
    gray: np.ndarray
    x0: float
    y0: float
    metres_per_pixel: float

    def __post_init__(self) -> None:
        # Channel-first copies: the camera kernel copies whole raster rows per channel.
        self._planes = {
            3: np.ascontiguousarray(self.rgb.transpose(2, 0, 1)),
            1: np.ascontiguousarray(self.gray.transpose(2, 0, 1)),
        }

    def planes(self, channels: int) -> np.ndarray:
        """The raster as (channels, Hr, Wr) uint8."""
        return self._planes[channels]


def _sample_positions(lane, lateral_fraction: float) -> np.ndarray:
    """World points (N, 2) along a lane at lateral offset ``lateral_fraction * width``."""
    straight = type(lane).__name__ == "StraightLane"
    steps = 2 if straight else max(2, int(np.ceil(lane.length / CURVE_STEP_M)) + 1)
    s_values = np.linspace(0.0, lane.length, steps)
    return np.array([lane.position(s, lateral_fraction * lane.width_at(s)) for s in s_values])


def _stripe_segments(lane, side: int) -> list[np.ndarray]:
    """Polylines of the stripes on one side (0 left, 1 right) of a lane."""
    segments = []
    lateral = side - 0.5
    for start in np.arange(0.0, lane.length, STRIPE_SPACING_M):
        end = min(start + STRIPE_LENGTH_M, lane.length)
        steps = max(2, int(np.ceil((end - start) / CURVE_STEP_M)) + 1)
        s_values = np.linspace(start, end, steps)
        segments.append(np.array([lane.position(s, lateral * lane.width_at(s)) for s in s_values]))
    return segments


def network_signature(network) -> tuple:
    """A hashable summary of a road network's geometry, to reuse rasters across resets."""
    signature = []
    for _from, tos in network.graph.items():
        for _to, lanes in tos.items():
            for lane in lanes:
                signature.append(
                    (
                        type(lane).__name__,
                        tuple(np.round(lane.position(0, 0), 3)),
                        tuple(np.round(lane.position(lane.length, 0), 3)),
                        round(float(lane.length), 3),
                        round(float(lane.width_at(0)), 3),
                        tuple(int(t) for t in lane.line_types),
                    )
                )
    return tuple(signature)


def rasterize_network(network, metres_per_pixel: float) -> RoadRaster:
    """Draw a highway-env ``RoadNetwork`` into a world-aligned raster."""
    lanes = [lane for tos in network.graph.values() for ls in tos.values() for lane in ls]
    outlines = [(_sample_positions(lane, -0.5), _sample_positions(lane, 0.5)) for lane in lanes]
    points = np.concatenate([np.concatenate(o) for o in outlines]) if outlines else np.zeros((1, 2))
    margin_m = 2.0
    x0, y0 = points.min(0) - margin_m
    x1, y1 = points.max(0) + margin_m
    width_px = int(np.ceil((x1 - x0) / metres_per_pixel))
    height_px = int(np.ceil((y1 - y0) / metres_per_pixel))
    rgb = np.empty((height_px, width_px, 3), np.uint8)
    rgb[:] = OFFROAD_RGB

    shift = 4  # OpenCV fixed-point bits: sub-pixel precise polygons

    def to_px(world: np.ndarray) -> np.ndarray:
        # pixel c covers [x0 + c*mpp, x0 + (c+1)*mpp); OpenCV's integer point c is its centre
        pixel = (world - (x0, y0)) / metres_per_pixel - 0.5
        return np.rint(pixel * (1 << shift)).astype(np.int32)

    for left, right in outlines:
        polygon = np.concatenate([left, right[::-1]])
        cv2.fillPoly(rgb, [to_px(polygon)], ROAD_RGB, lineType=cv2.LINE_8, shift=shift)
    for lane, (left, right) in zip(lanes, outlines):
        for side, boundary in ((0, left), (1, right)):
            kind = int(lane.line_types[side])
            if kind in (_CONTINUOUS, _CONTINUOUS_LINE):
                polylines = [boundary]
            elif kind == _STRIPED:
                polylines = _stripe_segments(lane, side)
            else:
                continue
            cv2.polylines(rgb, [to_px(p) for p in polylines], False, MARKING_RGB, 1, cv2.LINE_8, shift)
    return RoadRaster(rgb=rgb, gray=to_gray(rgb), x0=float(x0), y0=float(y0), metres_per_pixel=metres_per_pixel)
