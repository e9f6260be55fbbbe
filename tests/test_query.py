"""SQL over results: committed runs only, partition pruning, output formats; and, on the real
chain, `recog query/summary/report` over S3 with the report checked in headless Chromium."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pytest

from recog import query, sink
from recog.config import InferConfig
from recog.pipeline import run_inference
from recog.query import QueryError, Results
from recog.storage import StorageOptions
from tests.conftest import REPO
from tests.imagedata import jpeg, tar_shard
from tests.videodata import encode_video

DAY = dt.datetime(2026, 11, 3, 22, 30, tzinfo=dt.timezone.utc)


def labeled(unit: str, n: int, camera, start: dt.datetime | None, labels=("car", "truck", "bus")) -> pa.Table:
    """Rows as the predictor emits them for one unit of n inputs (plus its end record), a frame a minute."""
    rows = [{"unit_id": unit, "record": i, "end": False, "source_uri": f"s3://b/{unit}.tar", "shard": f"{unit}.tar",
             "key": f"{unit}-{i}", "member": f"{unit}-{i}.jpg", "width": 64, "height": 48, "cls": None, "meta": None,
             "error": "cannot decode image: broken" if i == 0 else None, "label": None if i == 0 else labels[i % len(labels)],
             "score": 0.1 * (i % 10), "topk_labels": ["cab"], "topk_scores": [0.5], "model": "m", "model_version": "v1",
             "processed_at": DAY, "camera": camera, "frame_index": None, "pts_s": None,
             "wall_time": start + dt.timedelta(minutes=i) if start else None} for i in range(n)]
    rows.append({**rows[0], "record": n, "end": True, "error": None})
    return pa.Table.from_pylist(rows)


def write_run(output: str, units: list[pa.Table], commit: bool = True) -> dict | None:
    w = sink.UnitWriter(output, sink.new_run_id(), StorageOptions())
    for u in units:
        w.add(u)
    return json.loads(Path(w.commit({"job": "infer", "status": "committed", "model": {"name": "m", "version": "v1"}})).read_text()) if commit else None


@pytest.fixture
def results_dir(tmp_path) -> str:
    """Two committed runs over 3 cameras x 2 days (one unit crosses midnight), and a run that crashed."""
    out = str(tmp_path / "results")
    write_run(out, [labeled("u1", 120, "gate-1", DAY), labeled("u2", 30, "gate-2", DAY)])
    write_run(out, [labeled("u3", 40, "lobby", None), labeled("u4", 10, None, DAY + dt.timedelta(days=1))])
    write_run(out, [labeled("u5", 999, "gate-1", DAY)], commit=False)  # files written, never committed
    return out


class CountingFS(pafs.FileSystemHandler):
    """A filesystem that records which files are opened (to see what a query really reads)."""

    def __init__(self, fs: pafs.FileSystem):
        self.fs, self.opened = fs, []

    def __eq__(self, other):
        return self is other

    def __ne__(self, other):
        return self is not other

    def get_type_name(self):
        return "counting"

    def normalize_path(self, path):
        return self.fs.normalize_path(path)

    def get_file_info(self, paths):
        return self.fs.get_file_info(paths)

    def get_file_info_selector(self, selector):
        return self.fs.get_file_info(selector)

    def open_input_file(self, path):
        self.opened.append(path)
        return self.fs.open_input_file(path)

    def open_input_stream(self, path):
        self.opened.append(path)
        return self.fs.open_input_stream(path)

    def _read_only(self, *args, **kwargs):
        raise OSError("read-only")

    create_dir = delete_dir = delete_dir_contents = delete_root_dir_contents = delete_file = _read_only
    move = copy_file = open_output_stream = open_append_stream = _read_only


def test_only_committed_runs_are_visible_and_counts_match(results_dir):
    r = Results(results_dir, StorageOptions())
    assert len(r.runs) == 2
    total, errors = r.sql("SELECT count(*), count(error) FROM results").to_pylist()[0].values()
    assert (total, errors) == (120 + 30 + 40 + 10, 4)  # nothing of the crashed run's 999
    per_camera = {row["camera"]: row["n"] for row in r.sql("SELECT camera, count(*) AS n FROM results GROUP BY ALL").to_pylist()}
    assert per_camera == {"gate-1": 120, "gate-2": 30, "lobby": 40, None: 10}
    days = r.sql("SELECT date, count(*) AS n FROM results WHERE camera = 'gate-1' GROUP BY ALL ORDER BY date").to_pylist()
    assert [(str(d["date"]), d["n"]) for d in days] == [("2026-11-03", 90), ("2026-11-04", 30)]  # crossed midnight
    assert r.sql("SELECT count(*) AS n FROM runs").to_pylist() == [{"n": 2}]


def test_a_query_for_one_camera_day_opens_only_that_partition(results_dir):
    counting = CountingFS(pafs.LocalFileSystem())
    r = Results(results_dir, StorageOptions(), filesystem=pafs.PyFileSystem(counting))
    all_files = len(r.dataset.files)
    assert all_files == 5  # gate-1 x 2 days, gate-2, lobby, no camera

    assert r.sql("SELECT count(*) AS n FROM results").to_pylist() == [{"n": 200}]
    assert len(set(counting.opened)) == all_files
    counting.opened.clear()
    one = r.sql("SELECT label, count(*) AS n FROM results WHERE camera = 'gate-1' AND date = DATE '2026-11-04' "
                "GROUP BY ALL").to_pylist()
    assert sum(x["n"] for x in one) == 30
    assert [Path(p).parts[-3:-1] for p in set(counting.opened)] == [("camera=gate-1", "date=2026-11-04")]


def test_output_formats(results_dir, capsys):
    r = Results(results_dir, StorageOptions())
    table = r.sql("SELECT camera, label, count(*) AS n, min(wall_time) AS first FROM results "
                  "WHERE camera = 'gate-2' GROUP BY ALL ORDER BY label NULLS FIRST")
    query.write(table, "csv")
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(x["label"], int(x["n"])) for x in rows] == [("", 1), ("bus", 10), ("car", 9), ("truck", 10)]
    query.write(table, "json")
    parsed = json.loads(capsys.readouterr().out)
    assert parsed[1] == {"camera": "gate-2", "label": "bus", "n": 10, "first": "2026-11-03T22:32:00+00:00"}
    query.write(table, "table", max_rows=2)
    text = capsys.readouterr().out
    assert text.splitlines()[0].split() == ["camera", "label", "n", "first"] and "2 more row(s)" in text


def test_summary_and_mistakes_say_what_is_wrong(results_dir, capsys):
    r = Results(results_dir, StorageOptions())
    query.summarize(r, ["camera", "label"])
    out = capsys.readouterr().out
    assert "2 committed run(s)" in out and "200 rows visible, 4 error(s)" in out
    assert re.search(r"gate-1\s+car\s+39\s+0", out) and re.search(r"cannot decode image\s+4", out)
    with pytest.raises(QueryError, match="not a dimension"):
        query.summary_sql(["weather"])
    with pytest.raises(QueryError, match="nope"):
        r.sql("SELECT nope FROM results")


def test_no_runs_is_a_clear_error(tmp_path):
    from recog.storage import StorageError

    with pytest.raises(StorageError, match="no committed runs"):
        Results(str(tmp_path), StorageOptions())


# ---- the real chain: jobs -> S3 -> recog query / summary / report ---------------------------------

def chromium() -> str | None:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found and os.environ.get("RECOG_REQUIRE_BROWSER"):
        pytest.fail("RECOG_REQUIRE_BROWSER is set but there is no chromium (apt-get install chromium)")
    return found


def recog(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "recog.cli", *args], cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.mark.integration
def test_query_summary_and_report_over_s3(bucket, opts, ray_local, tmp_path):
    members = []
    for i in range(12):
        camera, hour = ("gate-3", 1 + i % 3) if i < 8 else ("lobby", 14)
        members += [(f"{i:03d}.jpg", jpeg(120, 90, (20 * i, 120, 200 - 10 * i))),
                    (f"{i:03d}.json", json.dumps({"camera": camera, "timestamp": f"2026-11-0{3 + i % 2}T0{hour % 10}:15:00Z"}).encode())]
    members.append(("broken.jpg", b"\xff\xd8 not a jpeg"))
    from recog import storage

    storage.write_bytes(f"{bucket}/in/shard-000.tar", tar_shard(members), opts)
    video = encode_video(tmp_path / "cam-9_20261103T020000.mp4", frames=75, fps=25, size=(96, 64))
    storage.write_bytes(f"{bucket}/footage/{video.name}", video.read_bytes(), opts)
    run_inference(InferConfig(input=f"{bucket}/in/", output=f"{bucket}/results"))
    run_inference(InferConfig(input=f"{bucket}/footage/", output=f"{bucket}/results", media="video", fps=1.0,
                              name_pattern="{camera}_{start:%Y%m%dT%H%M%S}.mp4"))

    counted = recog("query", f"{bucket}/results", "SELECT camera, count(*) AS n FROM results GROUP BY ALL ORDER BY camera",
                    "--format", "csv")
    assert counted.returncode == 0, counted.stderr
    assert list(csv.reader(io.StringIO(counted.stdout))) == [["camera", "n"], ["cam-9", "3"], ["gate-3", "8"],
                                                            ["lobby", "4"], ["", "1"]]
    day = recog("query", f"{bucket}/results", "SELECT key FROM results WHERE camera = 'gate-3' AND date = '2026-11-03' "
                "ORDER BY key", "--format", "json")
    assert [r["key"] for r in json.loads(day.stdout)] == ["000", "002", "004", "006"]

    summary = recog("summary", f"{bucket}/results", "--by", "camera,hour")
    assert summary.returncode == 0 and "2 committed run(s)" in summary.stdout and "16 rows visible, 1 error(s)" in summary.stdout

    bad = recog("query", f"{bucket}/results", "SELEC 1")
    assert bad.returncode == 2 and "syntax error" in bad.stderr.lower() and "Traceback" not in bad.stderr

    report = tmp_path / "report.html"
    made = recog("report", f"{bucket}/results", "--out", str(report), "--thumbs", "20")
    assert made.returncode == 0, made.stderr
    browser = chromium()
    if not browser:
        pytest.skip("no chromium to render the report in (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=browser, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                                             "--disable-component-update", "--disable-sync", "--no-first-run"])
        page = b.new_page(viewport={"width": 1000, "height": 1200})
        problems = []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.goto(report.as_uri())
        images = page.evaluate("Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.alt])")
        charts = page.evaluate("document.querySelectorAll('svg.chart rect').length")
        headings = page.evaluate("Array.from(document.querySelectorAll('h3')).map(h => h.textContent)")
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        b.close()
    assert len(images) == 15 and all(ok and width > 0 for ok, width, _ in images)  # every labeled row, thumbnailed
    assert sum(1 for *_, alt in images if alt) == 15 and set(headings) == {alt for *_, alt in images}
    assert charts > 0 and not problems
