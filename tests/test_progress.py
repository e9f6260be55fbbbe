"""Progress lines: units, rows, rate, errors and an ETA, not too often."""

from __future__ import annotations

import io

from recog.progress import Progress, fmt_duration


def test_progress_prints_at_most_every_few_seconds_and_at_the_end():
    out = io.StringIO()
    p = Progress(4, label="frames", every=3600, stream=out)
    p.update(units=1, rows=10, errors=1)
    p.update(units=2, rows=20)
    assert out.getvalue() == ""  # not yet: less than `every` seconds, not the last unit
    p.update(units=1, rows=5)
    line = out.getvalue().strip()
    assert line.startswith("[recog] units 4/4 (100%)  35 frames") and "errors 1" in line and "ETA 0:00:00" in line


def test_eta_is_unknown_before_the_first_unit_and_durations_read_as_clock_times():
    p = Progress(10, stream=io.StringIO())
    assert "ETA ?" in p.line()
    assert fmt_duration(3725) == "1:02:05" and fmt_duration(-3) == "0:00:00"
