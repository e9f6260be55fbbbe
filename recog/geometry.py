"""Lines and polygons drawn on a camera's frame, given as fractions of its width and height
(`--line gate=0,0.75,1,0.75`, `--roi ...`): parsed and checked before any work starts."""

from __future__ import annotations

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
