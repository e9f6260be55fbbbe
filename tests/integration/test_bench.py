"""The benchmark scripts run (on tiny inputs, so they cannot rot); no speed is asserted."""

from __future__ import annotations

import json
import subprocess
import sys

from recog import models
from tests.conftest import REPO


def test_query_benchmark_runs_and_both_sides_agree(tmp_path):
    out = tmp_path / "figures.json"
    done = subprocess.run([sys.executable, "bench/query.py", "--rows", "1200", "--repeat", "1", "--data", str(tmp_path),
                           "--json", str(out)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["rows"] == 1200 and figures["files"] == 600
    assert all(q["same_answer"] for q in figures["queries"].values())


def test_throughput_benchmark_runs_on_a_tiny_input(tmp_path):
    out = tmp_path / "figures.json"
    # --no-footage: its footage figure is one footage job beside a PyAV decode, and CI runs the
    # footage job in bench/gpu.py's test below and in tests/integration/test_footage.py
    done = subprocess.run([sys.executable, "bench/throughput.py", "--count", "24", "--repeat", "1", "--per-shard", "8",
                           "--scale", "1", "--scale-base", "16", "--no-footage",
                           "--json", str(out)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert {"model_only", "plain_loop", "recog", "decode_only", "bound"} <= set(figures["images_per_s"])
    assert all(v > 0 for v in figures["images_per_s"].values())
    assert figures["input_size"] == models.resolve(figures["model"]).preprocessing.input_size  # the model's own, not 224
    assert set(figures["ratios"]) == {"recog_vs_model_only", "recog_vs_plain_loop"}
    assert set(figures["actors"]) == {"1", "2"} and figures["scaling"]["1"]["images"] == 16


def test_cores_benchmark_accounts_for_the_job(tmp_path, shared_data):
    out = tmp_path / "cores.json"
    done = subprocess.run([sys.executable, "bench/cores.py", "--images", "photos", "--count", "48", "--per-shard", "16",
                           "--json", str(out)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["rows"] == 48
    assert {"predictor actors", "decode tasks", "driver", "object store (weed)"} <= set(figures["core_s"])
    assert figures["core_s"]["predictor actors"] > 0 and figures["core_s"]["decode tasks"] > 0


def test_vehicles_benchmark_runs_on_a_shared_clip(tmp_path, shared_data):
    out = tmp_path / "vehicles.json"
    done = subprocess.run([sys.executable, "bench/vehicles.py", "--clip", str(shared_data / "videos" / "intel_car-detection.mp4"),
                           "--line", "mid=0,0.5,1,0.5", "--sizes", "320x240", "--seconds", "4", "--clips", str(tmp_path),
                           "--analyze-fps", "6", "--json", str(out)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    row = rows["320x240 after"]
    assert row["frames"] == 100 and row["segments"] == 1
    assert row["decode_fps_cpu"] > 0 and row["track_fps_cpu"] > 0 and row["job_fps_cpu"] > 0 and row["core_days_a_camera_month"] > 0
    assert len(row["stages_s"]) == 8 and row["stages_s"]["background subtraction"] > 0
    assert row["job_ms_per_frame"]["tracking tasks"] > 0 and row["job_ms_per_frame"]["classifier"] > 0
    # --analyze-fps: this checkout again, analysing every other frame of the 12.5 fps clip
    fewer = rows["320x240 after@6"]
    assert fewer["frames"] == 100 and fewer["job_fps_cpu"] > 0
    assert 0 < fewer["stages_s"]["background subtraction"] < row["stages_s"]["background subtraction"]


def test_models_benchmark_runs(tmp_path):
    out = tmp_path / "models.json"
    done = subprocess.run([sys.executable, "bench/models.py", "--count", "16", "--repeat", "1", "--json", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert set(figures["images_per_s"]) == {"efficientnet_lite0", "vehicle-types"} and all(v > 0 for v in figures["images_per_s"].values())
    assert figures["input_size"]["efficientnet_lite0"] == 224


def test_gpu_benchmark_runs_on_a_cpu_with_a_tiny_input(tmp_path):
    """bench/gpu.py's every path (model-only with the batch probe, decoding, the image job end to end,
    the footage and vehicles jobs) on a CPU."""
    out = tmp_path / "gpu.json"
    done = subprocess.run([sys.executable, "bench/gpu.py", "--device", "cpu", "--tiny", "--no-compile", "--json", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert {r["arch"] for r in figures["model_only"]} == {"efficientnet_lite0", "resnet50"}
    assert sum("probe" in r for r in figures["model_only"]) == 2  # the probe's findings, once per architecture
    assert set(figures["decode"]) == {"photos", "1080p"} and all(d["pil_all_cores"] > 0 for d in figures["decode"].values())
    assert set(figures["recog"]) == {"photos/auto", "1080p/predictor"} and set(figures["ratios"]) == set(figures["recog"])
    assert figures["recog"]["photos/auto"]["decoding"]["images"]["cpu"] > 0  # auto measured the CPUs' decoding first
    assert all(r["startup"]["first_results_s"] > 0 for r in figures["recog"].values())
    assert set(figures["footage"]) == {"footage", "vehicles"} and all(r["per_s"] > 0 for r in figures["footage"].values())
    assert figures["scheduling"]["units_per_s"] > 0 and figures["scheduling"]["images_per_unit"] == 256


def test_commit_benchmark_runs_on_a_tiny_input(tmp_path):
    out = tmp_path / "commit.json"
    done = subprocess.run([sys.executable, "bench/commit.py", "--units", "20", "--commit-units", "200", "--written", "4",
                           "--files", "500", "--json", str(out)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["before"]["rows"] == 20 * 256 and figures["after"]["units"] == 204
    assert figures["after"]["rows_per_s"] > 0 and figures["planning"]["files"] == 500


def test_predictor_benchmark_runs(tmp_path, shared_data):
    out = tmp_path / "predictor.json"
    done = subprocess.run([sys.executable, "bench/predictor.py", "--calls", "2", "--repeat", "1", "--json", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["block"] == 257 and figures["images_per_s"] > 0
