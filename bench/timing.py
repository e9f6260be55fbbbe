"""The one timer the benchmark scripts share."""

from __future__ import annotations

import statistics
import time


def timed(fn, repeat: int = 1) -> tuple[object, float]:
    """Call `fn` `repeat` times; its last result and the median wall time in seconds."""
    runs, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        runs.append(time.perf_counter() - t0)
    return result, statistics.median(runs)
