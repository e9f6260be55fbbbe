"""Progress lines for long jobs, counted in input units (shards, image groups, video segments)."""

from __future__ import annotations

import sys
import time


def fmt_duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class Progress:
    """Prints `units done/total, rows, rows/s, errors, ETA` at most every `every` seconds."""

    def __init__(self, total_units: int, label: str = "images", every: float = 5.0, stream=None):
        self.total, self.label, self.every, self.stream = total_units, label, every, stream or sys.stdout
        self.start = self.last_print = time.monotonic()
        self.units = self.rows = self.errors = 0

    def update(self, units: int = 0, rows: int = 0, errors: int = 0) -> None:
        self.units += units
        self.rows += rows
        self.errors += errors
        now = time.monotonic()
        if now - self.last_print >= self.every or self.units == self.total:
            self.last_print = now
            self.stream.write(self.line() + "\n")
            self.stream.flush()

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def rate(self) -> float:
        return self.rows / max(self.elapsed(), 1e-9)

    def line(self) -> str:
        elapsed = self.elapsed()
        eta = elapsed / self.units * (self.total - self.units) if self.units else float("nan")
        eta_text = fmt_duration(eta) if self.units else "?"
        pct = 100.0 * self.units / max(self.total, 1)
        return (f"[recog] units {self.units}/{self.total} ({pct:.0f}%)  {self.rows} {self.label}  "
                f"{self.rate():.1f} {self.label}/s  errors {self.errors}  elapsed {fmt_duration(elapsed)}  ETA {eta_text}")
