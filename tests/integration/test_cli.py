"""Every command through the `recog` entry point, in a subprocess, on small data: as a user runs them.

The results cover the shapes that broke before: no recording times and no cameras (plain images),
a single row, and footage with cameras and times. (`recog train`/`eval` run in test_training.py,
`recog submit`/`jobs` in test_cluster.py.)
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from recog import storage
from recog.objectstore import free_ports
from tests.conftest import REPO
from tests.imagedata import jpeg, tar_shard
from tests.traindata import disc_folder
from tests.videodata import encode_video


def recog(*args: str, env_update: dict | None = None, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """`recog ARGS` in a subprocess (`env`: joined_env, to join the session's Ray)."""
    return subprocess.run([sys.executable, "-m", "recog.cli", *args], cwd=REPO, env={**(env or os.environ), **(env_update or {})},
                          capture_output=True, text=True, timeout=timeout)


def chromium() -> str | None:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found and os.environ.get("RECOG_REQUIRE_BROWSER"):
        pytest.fail("RECOG_REQUIRE_BROWSER is set but there is no chromium (apt-get install chromium)")
    return found


def assert_quiet(done: subprocess.CompletedProcess) -> None:
    """recog's own lines only: Ray's warnings and core-worker lines went to the log file it names."""
    text = done.stdout + done.stderr
    assert "Ray's own messages go to" in done.stdout
    assert "core_worker.cc" not in text and " WARNING " not in text and "Progress bars" not in text, text[-2000:]


def test_results_without_times_or_cameras_and_with_one_row(bucket, opts, tmp_path, joined_env):
    for i in range(3):
        storage.write_bytes(f"{bucket}/plain/img{i}.jpg", jpeg(80 + i, 60, (40 * i, 90, 200)), opts)
    storage.write_bytes(f"{bucket}/one/only.jpg", jpeg(), opts)
    done = recog("infer", "--input", f"{bucket}/plain/", "--output", f"{bucket}/plain-out", env=joined_env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "3 rows in 1 file(s), 0 error(s)" in done.stdout
    assert_quiet(done)
    assert recog("infer", "--input", f"{bucket}/one/", "--output", f"{bucket}/one-out", env=joined_env).returncode == 0

    for out, rows in ((f"{bucket}/plain-out", 3), (f"{bucket}/one-out", 1)):
        counted = recog("query", out, "SELECT count(*) AS n, count(camera) AS cameras, count(wall_time) AS times FROM results",
                        "--format", "json")
        assert counted.returncode == 0, counted.stderr
        assert json.loads(counted.stdout) == [{"n": rows, "cameras": 0, "times": 0}]
        summary = recog("summary", out, "--by", "camera,hour,label")
        assert summary.returncode == 0, summary.stderr
        assert f"{rows} rows visible, 0 error(s), 0 camera(s)" in summary.stdout
        page = tmp_path / f"report-{rows}.html"
        made = recog("report", out, "--output", str(page))
        assert made.returncode == 0, made.stderr
        html = page.read_text()
        assert "by processing time (no recording times known)" in html and html.count("<img ") == rows


def test_footage_with_cameras_and_times_then_query_summary_and_report(bucket, opts, tmp_path, joined_env):
    members = []
    for i in range(12):
        camera, hour = ("gate-3", 1 + i % 3) if i < 8 else ("lobby", 14)
        members += [(f"{i:03d}.jpg", jpeg(120, 90, (20 * i, 120, 200 - 10 * i))),
                    (f"{i:03d}.json", json.dumps({"camera": camera, "timestamp": f"2026-11-0{3 + i % 2}T0{hour % 10}:15:00Z"}).encode())]
    members.append(("broken.jpg", b"\xff\xd8 not a jpeg"))
    storage.write_bytes(f"{bucket}/in/shard-000.tar", tar_shard(members), opts)
    video = encode_video(tmp_path / "cam-9_20261103T020000.mp4", frames=75, fps=25, size=(96, 64))
    storage.write_bytes(f"{bucket}/footage/{video.name}", video.read_bytes(), opts)
    assert recog("infer", "--input", f"{bucket}/in/", "--output", f"{bucket}/results", env=joined_env).returncode == 0
    footage = recog("footage", "--input", f"{bucket}/footage/", "--output", f"{bucket}/results", "--fps", "1",
                    "--name-pattern", "{camera}_{start:%Y%m%dT%H%M%S}.mp4", env=joined_env)
    assert footage.returncode == 0, footage.stderr[-3000:]
    assert "1 video(s) -> 1 segment(s)" in footage.stdout and "3 rows in 1 file(s)" in footage.stdout

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
    made = recog("report", f"{bucket}/results", "--output", str(report), "--thumbs", "20")
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


def test_wrong_credentials_fail_before_any_cluster_work(bucket, opts):
    storage.write_bytes(f"{bucket}/in/a.jpg", jpeg(), opts)
    proc = recog("infer", "--input", f"{bucket}/in/", "--output", f"{bucket}/out",
                 env_update={"AWS_SECRET_ACCESS_KEY": "wrong-secret"})
    assert proc.returncode == 2
    assert "the secret key was rejected: check AWS_SECRET_ACCESS_KEY" in proc.stderr
    assert "Traceback" not in proc.stderr and "[recog] cluster" not in proc.stdout  # Ray never started
    assert "wrong-secret" not in proc.stdout + proc.stderr


def test_shards_then_infer_reads_them(tmp_path):
    disc_folder(tmp_path / "photos", per_class=3, seed=0)
    made = recog("shards", "--from", str(tmp_path / "photos"), "--to", str(tmp_path / "ds" / "train"), "--per-shard", "4")
    assert made.returncode == 0, made.stderr
    assert "wrote 3 shard(s)" in made.stdout and "classes blue, green, red" in made.stdout
    assert sorted(p.name for p in (tmp_path / "ds").iterdir()) == ["train-000000.tar", "train-000001.tar", "train-000002.tar"]
    missing = recog("shards", "--from", str(tmp_path / "nothing-here"), "--to", str(tmp_path / "x"))
    assert missing.returncode == 2 and "Traceback" not in missing.stderr


def test_store_serve_runs_until_stopped(tmp_path):
    port = free_ports(1)[0]
    proc = subprocess.Popen([sys.executable, "-m", "recog.cli", "store", "serve", "--dir", str(tmp_path / "store"),
                             "--port", str(port)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        assert first.startswith(f"S3 endpoint http://127.0.0.1:{port}")
        assert (tmp_path / "store" / "credentials.env").exists()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    time.sleep(0.5)
    again = recog("store", "serve", "--dir", str(tmp_path / "store"), "--port", "0")
    assert again.returncode == 2 and "must be at least 1" in again.stderr


def test_readme_demo_command_runs(tmp_path):
    """As on a user's machine without ../shared/data: pictures and a clip drawn on the spot."""
    proc = recog("demo", "--drawn", "--workdir", str(tmp_path / "recog-data"), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "345 rows read back from 5 Parquet file(s); 1 error(s)" in proc.stdout
    assert "error row: s3://recog-demo/inputs/photos/broken.jpg" in proc.stdout
    assert "footage: 10 frames at 1 fps from 1 video(s)" in proc.stdout
    # the drawn clip's four boxes are tracked, and typed as what they are: no vehicles, so nothing is counted
    assert "vehicles: 0 vehicle(s) tracked in every frame, 0 crossing(s) of gate=0.6,0.5,0.6,1.0; 4 track(s) of background, not counted" in proc.stdout
    assert "demo-cam" in proc.stdout.split("recog query")[1]  # the query over both runs
    assert (tmp_path / "recog-data" / "report.html").stat().st_size > 10_000
    assert (tmp_path / "recog-data" / "store" / "credentials.env").exists()


def test_errors_retry_errors_and_purge(bucket, opts, ray_local, joined_env):
    """`recog errors` lists error rows, `--retry-errors` redoes only the units holding them (replacing
    their rows), `recog purge` deletes old days of a camera from the table and the store. (The reruns
    run in this process, on the session's Ray: their flag is the parser's, tested without a job.)"""
    from recog.config import InferConfig
    from recog.pipeline import run_inference
    from recog.query import Results

    for name, day in (("old", "2026-01-02"), ("new", "2026-01-05")):
        storage.write_bytes(f"{bucket}/ret/{name}.jpg", jpeg(), opts)
        storage.write_bytes(f"{bucket}/ret/{name}.json", json.dumps({"camera": "gate-1", "timestamp": f"{day}T10:00:00Z"}).encode(), opts)
    storage.write_bytes(f"{bucket}/ret/zbad.jpg", b"\xff\xd8 not a jpeg", opts)
    out = f"{bucket}/ret-out"
    args = ["infer", "--input", f"{bucket}/ret/", "--output", out, "--images-per-unit", "1"]
    first = recog(*args, "--batch-size", "auto", env=joined_env)  # each predictor probes its device for a batch size
    assert first.returncode == 0, first.stderr[-3000:]
    assert re.search(r"\[recog\] batch \d+ on cpu \(\d actor\(s\); tried 4, ", first.stdout), first.stdout
    record = json.loads(storage.read_bytes(first.stdout.split("run record: ")[1].split()[0], opts))
    assert record["predictors"] and {p["device"] for p in record["predictors"]} == {"cpu"}
    assert all(p["tried"] and p["model_s"] > 0 for p in record["predictors"])
    # where the start-up went, and (--decode auto, the default) where JPEGs were decoded and why
    startup, decoding = record["startup"], record["decoding"]
    assert f"start-up: first results at {startup['first_results_s']:g} s" in first.stdout
    assert startup["prepare_s"] <= startup["ray_up_s"] <= startup["predictors_ready_s"] <= startup["first_results_s"]
    assert "[recog] --decode auto: " in first.stdout and decoding["cpu_decode_images_per_s"] > 0
    assert decoding["model_images_per_s"] > 0 and 2 <= sum(decoding["images"].values()) <= 3  # the broken file stays on CPU

    errors = recog("errors", out)
    assert errors.returncode == 0, errors.stderr
    assert "results: 1 error row(s) by kind" in errors.stdout and "not a recognised image format" in errors.stdout
    assert "--retry-errors" in errors.stdout

    def runs_per_key():
        rows = Results(out, opts).con.sql("SELECT key, run_id FROM results ORDER BY key").fetchall()
        assert len(rows) == len(dict(rows)), rows  # never two rows of one input
        return dict(rows)

    def retry_errors() -> str:
        said = io.StringIO()
        run_inference(InferConfig(input=f"{bucket}/ret/", output=out, images_per_unit=1, retry_errors=True), said)
        return said.getvalue()

    before = runs_per_key()
    assert "--retry-errors: 1 committed unit(s) hold error rows; 1 to do" in retry_errors()
    after = runs_per_key()
    assert set(after) == {"old", "new", "zbad"}  # one row each: replaced, not added
    assert after["zbad"] != before["zbad"] and after["old"] == before["old"] and after["new"] == before["new"]

    storage.write_bytes(f"{bucket}/ret/zbad.jpg", jpeg(), opts)  # the user mends the input: its unit's id changes
    assert "1 unit(s) hold inputs added or rewritten since an earlier run" in retry_errors()
    assert set(runs_per_key()) == {"old", "new", "zbad"}
    assert "results: 0 error row(s)" in recog("errors", out).stdout

    dry = recog("purge", out, "--before", "2026-01-03", "--camera", "gate-1", "--dry-run")
    assert dry.returncode == 0 and "would delete 1 rows of days before 2026-01-03 of camera 'gate-1'" in dry.stdout
    assert set(runs_per_key()) == {"old", "new", "zbad"}
    done = recog("purge", out, "--before", "2026-01-03", "--camera", "gate-1")
    # The vacuum also deletes the files the two --retry-errors runs replaced (removed from the log before).
    assert done.returncode == 0 and "deleted 1 rows" in done.stdout and "3 file(s) removed from storage" in done.stdout
    assert set(runs_per_key()) == {"new", "zbad"}
    assert not [f for f in storage.list_files(f"{out}/results/", opts) if "date=2026-01-02" in f.uri]

    assert recog("purge", out, "--before", "yesterday").returncode == 2
    missing = recog("purge", f"{bucket}/nothing", "--before", "2026-01-03")
    assert missing.returncode == 2 and "no recog tables here" in missing.stderr and "Traceback" not in missing.stderr
    assert recog("errors", "--help").returncode == 0 and recog("purge", "--help").returncode == 0
