"""Lines and polygons drawn on a camera's frame, given as fractions of its width and height
(`--line gate=0,0.75,1,0.75`, `--roi ...`): parsed and checked before any work starts; and the
square a vehicle's crop is cut to (the vehicles job, recog crops, the report)."""

from __future__ import annotations

import math

import numpy as np

from recog.errors import ConfigError


def parse_points(text: str, what: str, min_points: int) -> np.ndarray:
    """'x1,y1,x2,y2,...' (fractions of the frame) -> (N, 2) points, checked."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise ConfigError(f"{what} {text!r}: expected numbers x1,y1,x2,y2,... (fractions of the frame)") from None
    if len(values) % 2 or len(values) < 2 * min_points:
        raise ConfigError(f"{what} {text!r}: needs at least {min_points} points as x,y pairs, got {len(values) / 2:g}")
    if not all(0 <= v <= 1 for v in values):
        raise ConfigError(f"{what} {text!r}: coordinates are fractions of the frame's width and height, from 0 to 1")
    return np.array(values, np.float64).reshape(-1, 2)


def parse_polygon(text: str, what: str = "--roi") -> np.ndarray:
    """'x1,y1,x2,y2,x3,y3,...' -> (N, 2) points of a polygon with an area (one of none would
    quietly find nothing in the whole video)."""
    points = parse_points(text, what, 3)
    x, y = points[:, 0], points[:, 1]
    area = 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))
    if area < 1e-4:
        raise ConfigError(f"{what} {text!r}: the polygon encloses no area (its points are on one line); "
                          f"give its corners in order, e.g. 0,0.5,1,0.5,1,1,0,1 for the lower half")
    return points


def parse_line(spec: str) -> tuple[str, tuple[float, float, float, float]]:
    """'gate=0,0.75,1,0.75' -> ('gate', (0, 0.75, 1, 0.75)): a named line between two points given
    as fractions of the frame's width and height."""
    name, eq, coords = spec.partition("=")
    if not eq or not name.strip():
        raise ConfigError(f"--line {spec!r}: expected NAME=x1,y1,x2,y2 (fractions of the frame), e.g. gate=0,0.75,1,0.75")
    points = parse_points(coords, f"--line {name}", 2)
    if len(points) != 2:
        raise ConfigError(f"--line {spec!r}: a line is two points, x1,y1,x2,y2")
    if np.allclose(points[0], points[1]):
        raise ConfigError(f"--line {spec!r}: the two points are the same")
    return name.strip(), tuple(float(v) for v in points.reshape(-1))


def square_box(box, size: tuple[int, int], margin: float = 0.1) -> list[int]:
    """The box grown to a square with a margin, as the classifier's training crops are, kept inside the frame."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    side = max(box[2] - box[0], box[3] - box[1]) * (1 + 2 * margin)
    side = min(side, size[0], size[1])
    x0 = min(max(0.0, cx - side / 2), size[0] - side)
    y0 = min(max(0.0, cy - side / 2), size[1] - side)
    return [int(x0), int(y0), int(math.ceil(x0 + side)), int(math.ceil(y0 + side))]
