"""The HTML report over results of every shape: with and without recording times and cameras,
a single row, rows labeled within a second of each other. (Rendered in Chromium by
tests/integration/test_cli.py.)"""

from __future__ import annotations

import datetime as dt
import re

import pytest

from recog.query import Results
from recog.report import bucket_name, build_report, stacked_bars_svg, time_buckets
from recog.storage import StorageOptions
from tests.resultsdata import DAY, labeled, write_run

OPTS = StorageOptions()


def report(tmp_path, *units) -> tuple[str, Results]:
    out = str(tmp_path / "results")
    write_run(out, list(units))
    results = Results(out, OPTS)
    return build_report(results, "t", OPTS, thumbs_per_label=3), results


@pytest.mark.parametrize("units, rows, what", [
    ([labeled("u1", 6, None, None, processed_every=dt.timedelta(milliseconds=370))], 6, "processing time"),
    ([labeled("u1", 1, None, None)], 1, "processing time"),  # one row, and it is an error
    ([labeled("u1", 2, None, None)], 2, "processing time"),  # one labeled row
    ([labeled("u1", 90, "gate-1", DAY), labeled("u2", 5, None, DAY)], 95, "recording time"),
])
def test_a_report_for_results_of_every_shape(tmp_path, units, rows, what):
    page, results = report(tmp_path, *units)
    assert f"<p>{rows} rows (" in page and f"by {what}" in page
    labeled_rows = results.sql("SELECT count(label) AS n FROM results").to_pylist()[0]["n"]
    assert page.count("<figure>") == min(labeled_rows, 3 * len({r["label"] for r in results.sql(
        "SELECT DISTINCT label FROM results WHERE label IS NOT NULL").to_pylist()}))
    bars = re.findall(r"<title>([^<]*)</title></rect>", page.split("<h2>Per camera</h2>")[0])
    assert sum(int(b.rsplit(": ", 1)[1]) for b in bars) == labeled_rows  # every labeled row is in a bar, once


def test_time_buckets_cover_the_span_in_at_most_sixty_bars(tmp_path):
    _, results = report(tmp_path, labeled("u1", 200, "gate-1", DAY))
    column, size, _, buckets = time_buckets(results)
    assert column == "wall_time" and size == 600 and len(buckets) <= 60
    assert buckets[0] <= DAY and buckets[-1] + dt.timedelta(seconds=size) > DAY + dt.timedelta(minutes=199)
    assert bucket_name(DAY, 600) == "11-03 22:30" and bucket_name(DAY, 1) == "22:30:00"


def test_bars_stack_labels_and_name_them():
    svg = stacked_bars_svg(["a", "b"], {"car": [2, 0], "bus": [1, 3]}, ["car", "bus"])
    assert svg.count("<rect") == 3 and "b bus: 3" in svg and "a car: 2" in svg
