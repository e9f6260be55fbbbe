"""Finding vehicles: fragments of one vehicle merged (lanes never), the background model on a fixed
camera, a learned detector from a checkpoint the test writes, and polygons checked."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

from recog.detect import Detections, LearnedDetector, MotionDetector, merge_fragments, vehicle_detections
from recog.geometry import parse_points
from recog.storage import StorageOptions
from tests.videodata import road_scene


def test_roof_and_body_merge_but_vehicles_side_by_side_do_not():
    boxes = np.array([[10, 10, 40, 20], [8, 22, 42, 40],  # a roof above its body, 2 px apart
                      [60, 10, 90, 40], [95, 10, 125, 40]], float)  # two cars in adjacent lanes
    merged, areas = merge_fragments(boxes, np.array([300, 600, 900, 900.0]), 0.3, 5)
    assert merged.tolist() == [[8, 10, 42, 40], [60, 10, 90, 40], [95, 10, 125, 40]] and areas.tolist() == [900, 900, 900]


def test_a_moving_box_on_a_fixed_camera_is_found_and_the_still_scene_is_not():
    scene = road_scene()
    rng = np.random.default_rng(0)
    detector = MotionDetector((320, 240), fps=25)
    for i in range(60):  # the background settles
        found = detector(np.clip(scene + rng.normal(0, 3, scene.shape), 0, 255).astype(np.uint8), i)
    assert len(found.boxes) == 0 and not found.global_change
    frame = scene.copy()
    frame[100:130, 140:180] = (200, 60, 40)
    found = detector(frame, 60)
    assert len(found.boxes) == 1 and np.allclose(found.boxes[0], [140, 100, 180, 130], atol=3)
    assert found.confidence[0] == 1.0  # large blobs are sure; small ones only extend tracks


def test_a_shaken_camera_is_a_global_change_without_detections():
    squares = (np.indices((240, 320)) // 16).sum(axis=0) % 2  # a sharp pattern: paving, a fence
    scene = np.repeat((60 + 120 * squares).astype(np.uint8)[:, :, None], 3, axis=2)
    detector = MotionDetector((320, 240), fps=25)
    for i in range(30):
        detector(scene, i)
    found = detector(np.roll(scene, 8, axis=1), 30)  # the whole picture moved
    assert found.global_change and len(found.boxes) == 0


def test_a_region_of_interest_hides_what_is_outside():
    scene = road_scene()
    detector = MotionDetector((320, 240), fps=25, roi=parse_points("0,0,0.4,0,0.4,1,0,1", "--roi", 3))
    for i in range(30):
        detector(scene, i)
    frame = scene.copy()
    frame[100:130, 200:240] = (200, 60, 40)  # right of the region
    assert len(detector(frame, 30).boxes) == 0


def test_only_coco_vehicles_above_the_score_are_kept():
    keep = vehicle_detections(np.array([1, 3, 8, 3, 17, 6]), np.array([0.9, 0.9, 0.5, 0.2, 0.99, 0.41]), 0.4)
    assert keep.tolist() == [False, True, True, False, False, True]  # person and cat out, a low-scored car out


def test_a_learned_detector_loads_a_checkpoint_weights_only(tmp_path):
    torch.manual_seed(0)
    net = torchvision.models.get_model("ssdlite320_mobilenet_v3_large", weights=None, weights_backbone=None, num_classes=91)
    torch.save(net.state_dict(), tmp_path / "ssd.pt")
    detector = LearnedDetector("ssdlite320_mobilenet_v3_large", str(tmp_path / "ssd.pt"), StorageOptions(), device="cpu",
                               min_score=0.0)
    found = detector([road_scene()[:, :, ::-1].copy() for _ in range(2)])
    assert len(found) == 2 and all(isinstance(d, Detections) for d in found) and detector([]) == []
    for d in found:  # an untrained head finds nonsense, but only of vehicle classes and inside the frame
        assert d.boxes.shape[1] == 4 and (d.boxes[:, 2] <= 320.5).all() and len(d.boxes) == len(d.confidence)
    (tmp_path / "pickled.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(Exception, match="not a loadable weights-only"):
        LearnedDetector("ssdlite320_mobilenet_v3_large", str(tmp_path / "pickled.pt"), StorageOptions(), device="cpu")
