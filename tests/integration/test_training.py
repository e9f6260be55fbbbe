"""recog train / eval / infer --model on a real SeaweedFS and a real local Ray (CPU, 2 workers):
the shipped model's recipe, shortened, interrupted and resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from recog import models, shards, sink, storage
from recog.config import InferConfig
from recog.models.weights import BUILTIN_WEIGHTS
from recog.pipeline import run_inference
from tests.conftest import REPO

# Zenodo's classes this test trains on, and the types they map to; "background" is noise patches
TYPES = "juggernaut=truck,minibus=van,background=not_vehicle"


def crops_folder(root: Path, shared_data: Path, split: str, per_class: int, seed: int) -> Path:
    """Traffic-camera crops of three Zenodo classes, and a class of background (noise patches)."""
    rng = np.random.default_rng(seed)
    for cls in ("car", "juggernaut", "minibus"):
        (root / cls).mkdir(parents=True)
        for p in sorted((shared_data / "photos" / "zenodo" / split / cls).iterdir())[:per_class]:
            (root / cls / p.name).write_bytes(p.read_bytes())
    (root / "background").mkdir()
    for i in range(per_class):
        grey = rng.integers(70, 150, (1, 1, 3))
        Image.fromarray((grey + rng.integers(-25, 25, (48, 48, 3))).clip(0, 255).astype(np.uint8)).save(root / "background" / f"{i}.jpg")
    return root


def recorded_checkpoints(run: str, opts) -> list:
    snapshot = f"{run}/checkpoint_manager_snapshot.json"
    return json.loads(storage.read_bytes(snapshot, opts))["checkpoint_results"] if storage.exists(snapshot, opts) else []


def test_the_shipped_recipe_survives_a_killed_driver_and_the_package_serves_inference(shared_data, tmp_path, bucket, opts,
                                                                                       ray_local, joined_env):
    """Stages 0-4 frozen, small-crop augmentation, balanced classes, classes mapped to types with a
    not_vehicle class of its own: the package holds only the tail and labels by its own judgement."""
    shards.write_shards(crops_folder(tmp_path / "train", shared_data, "train", 24, seed=1), f"{bucket}/ds/train", opts, per_shard=48)
    shards.write_shards(crops_folder(tmp_path / "val", shared_data, "val", 8, seed=2), f"{bucket}/ds/val", opts, per_shard=48)
    output = f"{bucket}/models/cams"
    cmd = [sys.executable, "-m", "jobs.train", "--train", f"{bucket}/ds/train-*.tar", "--val", f"{bucket}/ds/val-*.tar",
           "--output", output, "--epochs", "2", "--image-size", "64", "--batch-size", "16", "--workers", "2",
           "--frozen-stages", "5", "--augment", "crops", "--balance-classes", "--types", TYPES, "--data-source", "Zenodo 6634554"]

    # Kill the driver (its process group) once Ray Train has recorded the first checkpoint.
    first = subprocess.Popen(cmd, cwd=REPO, env=joined_env, start_new_session=True, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not recorded_checkpoints(f"{output}/_train/run", opts):
        assert first.poll() is None and time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.5)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    assert not storage.exists(f"{output}/model.json", opts)

    # The driver joined this session's Ray: its job's Ray Train actors end with it and free their CPUs.
    deadline = time.monotonic() + 60
    while ray_local.available_resources().get("CPU", 0) < ray_local.cluster_resources()["CPU"]:
        assert time.monotonic() < deadline, f"the killed run still holds {ray_local.available_resources()}"
        time.sleep(0.5)

    # The same command again continues from the checkpoint instead of starting over.
    again = subprocess.run(cmd, cwd=REPO, env=joined_env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "[train] resuming after epoch" in again.stdout + again.stderr
    package = models.read_package(output, opts)
    history = package["training"]["history"]
    assert [h["epoch"] for h in history] == [0, 1]  # each epoch once, across both runs
    assert package["training"]["best"]["val_acc"] > 0.5  # four classes: chance is 0.25
    assert package["classes"] == ["background", "car", "juggernaut", "minibus"]
    assert package["types"] == ["not_vehicle", "car", "truck", "van"] and package["taxonomy"] == "identity"
    assert package["shared_stages"] == 5 and package["base"] == BUILTIN_WEIGHTS
    assert len(storage.read_bytes(f"{output}/weights.pt", opts)) < 6.5e6  # the tail in half precision, not 4.7 M parameters

    # The package is a model for every job: infer labels by the model's own judgement (label = the
    # type of its top class), and eval scores it on the validation shards.
    manifest = run_inference(InferConfig(input=f"{bucket}/ds/val-000000.tar", output=f"{bucket}/labels", model=output))
    rows = sink.read_run(f"{bucket}/labels", manifest, opts).to_pylist()
    types = dict(zip(package["classes"], package["types"]))
    assert len(rows) == 32 and all(r["label"] == types[r["topk_labels"][0]] for r in rows)
    assert {r["model"] for r in rows} == {"cams"} and {r["model_version"] for r in rows} == {package["version"]}
    scored = subprocess.run([sys.executable, "-m", "recog.cli", "eval", "--model", output, "--data", f"{bucket}/ds/val-*.tar"],
                            cwd=REPO, env=joined_env, capture_output=True, text=True, timeout=600)
    assert scored.returncode == 0, scored.stderr[-3000:]
    m = json.loads(storage.read_bytes(f"{output}/eval/_eval/metrics.json", opts))
    assert m["samples"] == 32 and m["accuracy"] > 0.5 and f"top-1 accuracy {m['accuracy']:.4f} on 32 samples" in scored.stdout
