"""The traffic set of the shipped model (recog/dataset): camera-disjoint splits, crops cut as the
vehicles job cuts them, vehicle-free views, hand labels that name real frames; and the shipped
package itself: its hash, and its accuracy on the held-out LTA cameras."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections import Counter
from pathlib import Path

import numpy as np

from recog import models, preprocess
from recog.dataset import build
from recog.models.classifier import Classifier
from recog.storage import StorageOptions
from recog.taxonomy import NOT_VEHICLE, SOURCE_TYPES, TRAFFIC_TYPES


def test_every_source_maps_its_own_classes_into_the_taxonomy(shared_data):
    assert all(t in TRAFFIC_TYPES for mapping in SOURCE_TYPES.values() for t in mapping.values())
    assert set(SOURCE_TYPES["lta"]) == set((shared_data / "lta" / "lta.names").read_text().split())
    with open(shared_data / "photos" / "labels.csv", newline="") as f:
        photos = list(csv.DictReader(f))
    for source in ("zenodo", "cifar10"):
        assert set(SOURCE_TYPES[source]) == {r["fine_label"] for r in photos if r["source"] == source}


def test_lta_cameras_are_held_out_whole(shared_data):
    cameras = build.lta_frames(shared_data / "lta")
    splits = {camera: build.lta_split(camera) for camera in cameras}
    assert set(build.LTA_TEST) <= set(cameras) and set(build.LTA_VAL) <= set(cameras)
    assert not set(build.LTA_TEST) & set(build.LTA_VAL)
    assert Counter(splits.values()) == {"test": len(build.LTA_TEST), "val": len(build.LTA_VAL),
                                        "train": len(cameras) - len(build.LTA_TEST) - len(build.LTA_VAL)}
    # both resolutions are held out
    sizes = {build.Image.open(cameras[c][0]).size for c in build.LTA_TEST}
    assert sizes == {(320, 240), (640, 360)}


def test_a_crop_is_the_vehicles_jobs_square_with_its_margin():
    assert build.square((100, 50, 140, 70), (320, 240)) == (96, 36, 144, 84)  # 40 px wide -> a 48 px square around it
    assert build.square((0, 0, 10, 10), (320, 240))[:2] == (0, 0)  # kept inside the frame


def test_an_empty_view_is_the_scene_without_what_moves():
    rng = np.random.default_rng(0)
    scene = rng.integers(0, 255, (40, 60, 3)).astype(np.uint8)
    frames = []
    for k in range(9):
        f = scene.copy()
        f[10:20, 5 * k:5 * k + 10] = 255  # a vehicle passing
        frames.append(f)
    assert np.array_equal(build.empty_view(frames), scene)


def test_the_hand_labels_name_the_shared_clips_and_the_taxonomy(shared_data):
    rows = build.clip_labels()
    assert {r["video"] for r in rows} == {p.name for p in (shared_data / "videos").iterdir()}
    assert {r["type"] for r in rows} <= set(TRAFFIC_TYPES) and NOT_VEHICLE in {r["type"] for r in rows}
    assert all(float(r["x2"]) > float(r["x1"]) and float(r["y2"]) > float(r["y1"]) for r in rows)
    # every vehicle is typed once: its crops agree
    types = {}
    for r in rows:
        assert types.setdefault((r["video"], r["vehicle"]), r["type"]) == r["type"]


def test_splits_by_name_are_stable():
    names = [f"img{i}.jpg" for i in range(1000)]
    counts = Counter(build.by_hash(n, (0.6, 0.2)) for n in names)
    assert counts == Counter(build.by_hash(n, (0.6, 0.2)) for n in names)  # the same on every run
    assert 0.5 < counts["train"] / 1000 < 0.7 and 0.1 < counts["test"] / 1000 < 0.3


# ---- the shipped package -------------------------------------------------------------------------

PACKAGE = Path(models.BUILTIN_PACKAGES["vehicle-types"])


def test_the_shipped_package_is_the_one_its_model_json_describes():
    spec = json.loads((PACKAGE / "model.json").read_text())
    weights = (PACKAGE / "weights.pt").read_bytes()
    assert hashlib.sha256(weights).hexdigest()[:12] == spec["version"]
    assert len(weights) <= 10e6 and spec["taxonomy"] == "identity" and NOT_VEHICLE in spec["classes"]
    assert "data.gov.sg" in spec["data_source"] and "CapstoneProj-G.A" in spec["data_source"]


def jpeg(image) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=95)
    return out.getvalue()


def test_the_shipped_model_types_the_held_out_lta_cameras(shared_data):
    """The crops of 24 px and more of the LTA cameras the model never trained on (build.LTA_TEST),
    stored as the set stores them (JPEG, quality 95) and through the model as a job runs it
    (decode, resize, label = the type of its top class): the README's 875/1029 = 0.850."""
    spec = models.resolve("vehicle-types")
    crops = [c for c in build.lta_crops(shared_data / "lta", cameras=build.LTA_TEST) if c.size_px >= 24]
    pixels = np.stack([preprocess.decode_image(jpeg(c.image), spec.preprocessing)[0] for c in crops])
    probs = Classifier(spec, StorageOptions(), "cpu").probabilities(pixels)
    labels, _ = spec.labeler(0.1)(probs)
    right = sum(label == c.type for label, c in zip(labels, crops))
    as_background = sum(label == NOT_VEHICLE for label in labels)
    print(f"held-out LTA cameras, crops >= 24 px: {right}/{len(crops)} = {right / len(crops):.3f}; "
          f"called not_vehicle: {as_background}")
    # 875 measured (the target: 0.85); five crops of margin for another CPU's float rounding
    assert len(crops) == 1029 and right >= 870 and as_background / len(crops) <= 0.03
