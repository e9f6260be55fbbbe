"""The benchmark scripts run (on tiny inputs, so they cannot rot); no speed is asserted."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO


def test_query_benchmark_runs_and_both_sides_agree(tmp_path):
    out = tmp_path / "figures.json"
    done = subprocess.run([sys.executable, "bench/query.py", "--rows", "1200", "--repeat", "1", "--data", str(tmp_path),
                           "--json", str(out)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["rows"] == 1200 and figures["files"] == 600
    assert all(q["same_answer"] for q in figures["queries"].values())


def test_throughput_benchmark_runs_on_a_tiny_input(tmp_path, shared_data):
    out = tmp_path / "figures.json"
    done = subprocess.run([sys.executable, "bench/throughput.py", "--count", "24", "--repeat", "1", "--per-shard", "8",
                           "--scale", "1", "--scale-base", "16", "--video", str(shared_data / "videos" / "intel_car-detection.mp4"),
                           "--json", str(out)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert {"model_only", "plain_loop", "recog", "decode_only", "bound"} <= set(figures["images_per_s"])
    assert all(v > 0 for v in figures["images_per_s"].values()) and set(figures["ratios"]) == {"recog_vs_model_only", "recog_vs_plain_loop"}
    assert set(figures["actors"]) == {"1", "2"} and figures["scaling"]["1"]["images"] == 16
    assert figures["footage"]["frames"] == 377 and figures["footage"]["job_fps"] > 0


def test_cores_benchmark_accounts_for_the_job(tmp_path, shared_data):
    out = tmp_path / "cores.json"
    done = subprocess.run([sys.executable, "bench/cores.py", "--images", "photos", "--count", "48", "--per-shard", "16",
                           "--json", str(out)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["rows"] == 48
    assert {"predictor actors", "decode tasks", "driver", "object store (weed)"} <= set(figures["core_s"])
    assert figures["core_s"]["predictor actors"] > 0 and figures["core_s"]["decode tasks"] > 0
