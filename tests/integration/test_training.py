"""recog train / eval / infer --model on a real SeaweedFS and a real local Ray (CPU, 2 workers)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from recog import models, shards, sink, storage
from recog.config import InferConfig
from recog.pipeline import run_inference
from tests.conftest import REPO
from tests.traindata import disc_folder


def train_cmd(bucket, output, epochs):
    return [sys.executable, "-m", "jobs.train", "--train", f"{bucket}/discs/train-*.tar", "--val", f"{bucket}/discs/val-*.tar",
            "--output", output, "--epochs", str(epochs), "--image-size", "64", "--batch-size", "16", "--workers", "2"]


def recorded_checkpoints(run: str, opts) -> list:
    snapshot = f"{run}/checkpoint_manager_snapshot.json"
    return json.loads(storage.read_bytes(snapshot, opts))["checkpoint_results"] if storage.exists(snapshot, opts) else []


def test_training_survives_a_killed_driver_and_the_package_serves_inference(tmp_path, bucket, opts, ray_local):
    disc_folder(tmp_path / "train", per_class=40, seed=1)
    disc_folder(tmp_path / "val", per_class=15, seed=2)
    shards.write_shards(tmp_path / "train", f"{bucket}/discs/train", opts, per_shard=50)
    shards.write_shards(tmp_path / "val", f"{bucket}/discs/val", opts, per_shard=50)
    output = f"{bucket}/models/discs"
    cmd = train_cmd(bucket, output, epochs=4)

    # Kill the driver (and the local Ray it started) once Ray Train has recorded the first checkpoint.
    # Its files land before the record does; a kill between the two leaves nothing to resume from.
    first = subprocess.Popen(cmd, cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not recorded_checkpoints(f"{output}/_train/run", opts):
        assert first.poll() is None and time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.5)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    assert not storage.exists(f"{output}/model.json", opts)

    # The same command again continues from the checkpoint instead of starting over.
    again = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "[train] resuming after epoch" in again.stdout + again.stderr
    package = models.read_package(output, opts)
    history = package["training"]["history"]
    assert [h["epoch"] for h in history] == [0, 1, 2, 3]  # each epoch once, across both runs
    assert history[-1]["train_loss"] < history[0]["train_loss"]  # the loss falls
    assert package["training"]["best"]["val_acc"] > 0.6  # three classes: chance is 0.33
    assert package["classes"] == ["blue", "green", "red"] and package["preprocessing"]["input_size"] == 64

    # The package is a model for every job: infer, and eval on the validation shards.
    manifest = run_inference(InferConfig(input=f"{bucket}/discs/val-000000.tar", output=f"{bucket}/labels", model=output))
    rows = sink.read_run(f"{bucket}/labels", manifest, opts).to_pylist()
    assert len(rows) == 45 and {r["label"] for r in rows} <= {"blue", "green", "red"}
    assert {r["model"] for r in rows} == {"discs"} and {r["model_version"] for r in rows} == {package["version"]}
    # `recog eval` as the README shows it: the package and a pattern; the scores land in <model>/eval/.
    scored = subprocess.run([sys.executable, "-m", "recog.cli", "eval", "--model", output, "--data", f"{bucket}/discs/val-*.tar"],
                            cwd=REPO, capture_output=True, text=True, timeout=600)
    assert scored.returncode == 0, scored.stderr[-3000:]
    m = json.loads(storage.read_bytes(f"{output}/eval/_eval/metrics.json", opts))
    assert m["samples"] == 45 and m["accuracy"] > 0.6 and f"top-1 accuracy {m['accuracy']:.4f} on 45 samples" in scored.stdout


def test_finetune_of_the_tail_on_the_shared_traffic_photos(shared_data, tmp_path, capsys):
    """The recipe of the shipped vehicle-types model, shortened: the Zenodo traffic-camera crops
    (6 classes, 480 train / 120 val each), stages 0-5 frozen, classes mapped to types. The package
    holds only the tail and labels with two heads: its own for the type, ImageNet's for 'vehicle?'."""
    zen = shared_data / "photos" / "zenodo"
    opts = storage.StorageOptions()
    shards.write_shards(zen / "train", str(tmp_path / "shards" / "train"), opts, per_shard=500)
    shards.write_shards(zen / "val", str(tmp_path / "shards" / "val"), opts, per_shard=500)
    cmd = [sys.executable, "-m", "recog.cli", "train", "--train", str(tmp_path / "shards" / "train-*.tar"),
           "--val", str(tmp_path / "shards" / "val-*.tar"), "--output", str(tmp_path / "model"),
           "--epochs", "1", "--image-size", "96", "--batch-size", "32", "--workers", "2", "--frozen-stages", "6",
           "--types", "bike=motorcycle,juggernaut=truck,minibus=van", "--data-source", "Zenodo 6634554, CC BY 4.0"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    package = models.read_package(str(tmp_path / "model"), opts)
    best = package["training"]["best"]
    with capsys.disabled():
        print(f"\nfine-tuned the tail of efficientnet_lite0 on zenodo/train (2880 images, 1 epoch, 96 px, 2 CPU workers): "
              f"val accuracy {best['val_acc']:.3f}, {best['samples_per_s_per_worker']:.1f} samples/s per worker")
    assert best["val_acc"] > 0.7  # the ImageNet labels mapped to types get 0.42 on these classes
    assert package["taxonomy"] == "two-heads" and package["types"] == ["motorcycle", "car", "truck", "van", "pickup", "truck"]
    assert package["data_source"] == "Zenodo 6634554, CC BY 4.0"
    assert (tmp_path / "model" / "weights.pt").stat().st_size < 2.2e6  # the tail in half precision, not 4.7 M parameters


def test_the_shipped_vehicle_types_model_scores_on_the_shared_val_split(shared_data, tmp_path):
    """Issue 15's bar for the built-in model, through `recog eval`: at least 0.95 on the Zenodo val crops."""
    opts = storage.StorageOptions()
    shards.write_shards(shared_data / "photos" / "zenodo" / "val", str(tmp_path / "val"), opts, per_shard=240)
    scored = subprocess.run([sys.executable, "-m", "recog.cli", "eval", "--model", "vehicle-types", "--data",
                             str(tmp_path / "val-*.tar"), "--output", str(tmp_path / "eval")],
                            cwd=REPO, capture_output=True, text=True, timeout=600)
    assert scored.returncode == 0, scored.stderr[-3000:]
    m = json.loads((tmp_path / "eval" / "_eval" / "metrics.json").read_text())
    assert m["samples"] == 720 and m["accuracy"] >= 0.95, m
