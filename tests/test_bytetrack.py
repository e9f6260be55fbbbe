"""recog's array ByteTrack against the `trackers` package it follows: the same detections, the
same confirmed ids (up to numbering) on the same boxes, frame by frame."""

from __future__ import annotations

import numpy as np
import pytest

from recog.bytetrack import ByteTrack, iou


def scene(frames: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Boxes driving across a 320x240 frame with jitter, some faint (low scores), some missed for a
    few frames (occlusion), some appearing and leaving: what MOG2's blobs give."""
    rng = np.random.default_rng(seed)
    cars = [(rng.uniform(0, 300), rng.uniform(0, 220), rng.uniform(-4, 4), rng.uniform(-4, 4), rng.uniform(10, 40),
             rng.uniform(8, 30), int(rng.integers(0, frames - 10)), int(rng.integers(10, 60))) for _ in range(25)]
    out = []
    for f in range(frames):
        boxes, scores = [], []
        for x, y, vx, vy, w, h, born, life in cars:
            if not born <= f < born + life or rng.random() < 0.1:  # absent, or missed this frame
                continue
            cx, cy = x + vx * (f - born) + rng.normal(0, 1), y + vy * (f - born) + rng.normal(0, 1)
            boxes.append([cx, cy, cx + w + rng.normal(0, 1), cy + h + rng.normal(0, 1)])
            scores.append(rng.choice([1.0, 1.0, 0.8, 0.65, 0.4]))
        out.append((np.array(boxes, np.float32).reshape(-1, 4), np.array(scores, np.float32)))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_same_tracks_as_the_trackers_package(seed):
    import supervision as sv
    import trackers

    theirs = trackers.ByteTrackTracker(lost_track_buffer=30, frame_rate=25, track_activation_threshold=0.7,
                                       minimum_consecutive_frames=3, minimum_iou_threshold=0.1, high_conf_det_threshold=0.6)
    ours = ByteTrack(lost_frames=int(25 / 30.0 * 30), confirm_frames=3, min_iou=0.1)
    same_ids: dict[int, int] = {}
    confirmed = 0
    for boxes, scores in scene(200, seed):
        out = theirs.update(sv.Detections(xyxy=boxes.copy(), confidence=scores.copy()))
        keep = out.tracker_id >= 0 if out.tracker_id is not None else np.zeros(0, bool)
        ids, got = ours.update(boxes, scores)
        assert len(ids) == int(keep.sum())
        assert np.array_equal(got, out.xyxy[keep])  # the same detections, in the same order
        for a, b in zip(ids.tolist(), out.tracker_id[keep].tolist()):
            assert same_ids.setdefault(a, b) == b  # one of ours is always the same one of theirs
        confirmed += len(ids)
        states = np.array([t.state[:, 0] for t in theirs.tracks], np.float32).reshape(-1, 8)
        assert np.array_equal(ours.state, states)  # the Kalman filter's numbers, to the bit
    assert confirmed > 500 and len(same_ids) > 15  # the scenes do exercise it


def test_iou():
    a = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32)
    b = np.array([[5, 0, 15, 10], [0, 0, 0, 0]], np.float32)
    assert np.allclose(iou(a, b), [[1 / 3, 0], [0, 0]])
