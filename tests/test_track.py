"""Tracking and counting: the crossing rules (LineZone's, with each track counted once per line and
direction), lines, crops, and segments that give a whole file's crossings, each vehicle once."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from recog import video
from recog.storage import StorageOptions
from recog.track import LineCounter, SegmentTracker, TrackingSettings, crop_rgb, cut_crop, heading, track_segment
from tests.videodata import traffic_video

OPTS = StorageOptions()


def crossings(counter: LineCounter, ys: list[float], track: int = 1) -> list[dict]:
    """Feed a track's anchor (x = 50, y from `ys`) frame by frame; return the crossings."""
    out = []
    for i, y in enumerate(ys):
        out += counter.update(np.array([track]), np.array([[50.0, float(y)]]), i / 25, i)
    return out


def horizontal(min_frames: int = 2) -> LineCounter:
    return LineCounter("l", (0, 0.5, 1, 0.5), (100, 100), min_frames)


def test_moving_up_across_a_left_to_right_line_is_in_and_its_time_is_the_first_frame_across():
    assert [(e["direction"], e["frame"]) for e in crossings(horizontal(), [80, 70, 60, 45, 40, 30])] == [("in", 3)]
    assert [e["direction"] for e in crossings(horizontal(), [20, 30, 40, 60, 70])] == ["out"]


def test_jitter_at_the_line_is_not_a_crossing():
    assert crossings(horizontal(3), [80, 70, 45, 60, 45, 44, 60, 70]) == []


def test_unconfirmed_tracks_never_count():
    assert crossings(horizontal(), [80, 70, 40, 30, 20], track=-1) == []


def test_a_track_counts_once_per_line_and_direction():
    assert [e["direction"] for e in crossings(horizontal(), [80, 70, 40, 30, 70, 80, 40, 30, 70, 80])] == ["in", "out"]


def test_a_track_born_at_the_line_needs_to_settle_before_it_can_cross():
    assert crossings(horizontal(2), [55, 40, 30, 20]) == []


def test_anchors_beyond_the_ends_of_the_line_do_not_count():
    short = LineCounter("l", (0.2, 0.5, 0.4, 0.5), (100, 100), 2)
    assert crossings(short, [80, 70, 40, 30]) == []  # x = 50 is past the line's right end (x = 40)


def test_headings():
    assert heading((0.5, 0.9), (0.5, 0.2)) == ("up", 270.0) and heading((0.1, 0.1), (0.9, 0.9))[0] == "down-right"
    assert heading((0.5, 0.5), (0.505, 0.5)) == ("still", None)


def test_one_vehicle_driving_down_is_counted_once_with_its_crop(tmp_path):
    path = traffic_video(tmp_path / "one.mp4", 200, vehicles=[(40, 140, 40, 30, 2.5, (200, 60, 40))])
    result = track_segment(video.Segment(str(path), "one", Fraction(0), None), TrackingSettings(lines=("mid=0,0.5,1,0.5",)), OPTS)
    assert [(c["line"], c["direction"]) for c in result.crossings] == [("mid", "out")]
    assert abs(result.crossings[0]["frame"] - 88) <= 1  # its bottom edge reaches y = 120 in frame 88
    (track,) = result.tracks
    assert heading(track.entry, track.exit)[0] == "down" and track.crops and crop_rgb(track.crops[0][4]).shape[2] == 3
    # --analyze-fps 8: every third frame analysed (all decoded), the same vehicle in the same place
    third = track_segment(video.Segment(str(path), "one", Fraction(0), None),
                          TrackingSettings(lines=("mid=0,0.5,1,0.5",), analyze_fps=8), OPTS)
    assert third.frames == result.frames == 200 and [c["direction"] for c in third.crossings] == ["out"]
    assert third.crossings[0]["frame"] % 3 == 0 and abs(third.crossings[0]["frame"] - 88) <= 3  # the video's numbering
    (seen,) = third.tracks
    assert abs(seen.frames_seen - track.frames_seen / 3) <= 2 and seen.crops


def test_fewer_frames_analysed_with_every_gate_lasting_as_long_in_seconds():
    assert [TrackingSettings(analyze_fps=f).frame_step(fps) for f, fps in
            ((None, 25), (25, 25), (12.5, 25), (12.5, 24.01), (8, 25), (5, 25), (25, 12.5), (8, 12.5))] == [1, 1, 2, 2, 3, 5, 1, 1]
    every, fifth = (SegmentTracker(TrackingSettings(lines=("l=0,0.5,1,0.5",), analyze_fps=f), (320, 240), 25.0, 0.0, 10.0)
                    for f in (None, 5))
    assert (every.fps, fifth.fps, [fifth.analyses(i) for i in range(6)]) == (25, 5, [True, False, False, False, False, True])
    # the lost-track buffer (1 s), the background's memory (20 s) and the crossing hold in analysed frames
    assert (every.tracker.lost_frames, fifth.tracker.lost_frames) == (25, 5)
    assert (every.detector.mog.getHistory(), fifth.detector.mog.getHistory()) == (500, 100)
    assert (every.min_cross, fifth.min_cross, every.crop_stride, fifth.crop_stride) == (2, 2, 2, 1)
    # the setting is part of a unit's id only when set: outputs written before it keep theirs
    assert "analyze_fps" not in TrackingSettings().to_dict() and TrackingSettings(analyze_fps=5).to_dict()["analyze_fps"] == 5
    assert TrackingSettings.from_dict(TrackingSettings(analyze_fps=5).to_dict()).analyze_fps == 5


def test_a_crop_is_cut_from_the_decoded_planes_with_the_colours_of_the_whole_frames_conversion(tmp_path):
    import av

    path = traffic_video(tmp_path / "one.mp4", 50, vehicles=[(0, 100, 40, 30, 2.5, (200, 60, 40))])
    with av.open(str(path)) as c:
        frame = list(c.decode(video=0))[30]
    whole = frame.to_ndarray(format="rgb24")
    for box in ([101, 31, 143, 64], [0, 0, 320, 240], [10, 20, 12, 22]):  # odd bounds, the whole frame, a tiny one
        crop = crop_rgb(cut_crop(frame, box))
        assert np.array_equal(crop, whole[box[1]:box[3], box[0]:box[2]])  # to the bit: the classifier sees what it saw
    assert (crop_rgb(cut_crop(whole, [1, 2, 5, 9])) == whole[2:9, 1:5]).all()


def test_a_static_scene_has_no_vehicles(tmp_path):
    path = traffic_video(tmp_path / "static.mp4", 150)
    result = track_segment(video.Segment(str(path), "s", Fraction(0), None), TrackingSettings(lines=("mid=0,0.5,1,0.5",)), OPTS)
    assert result.tracks == [] and result.crossings == [] and result.error is None


@pytest.mark.parametrize("gain", [1.35, 0.6])
def test_a_sudden_lighting_change_is_flagged_not_a_flood_of_vehicles(tmp_path, gain):
    path = traffic_video(tmp_path / "light.mp4", 180, gain=lambda i: gain if 60 <= i < 120 else 1.0)
    result = track_segment(video.Segment(str(path), "l", Fraction(0), None), TrackingSettings(lines=("mid=0,0.5,1,0.5",)), OPTS)
    assert len(result.tracks) <= 2 and result.crossings == []
    assert {f["kind"] for f in result.flags} & {"global_change", "exposure_change"}


def test_segments_give_the_whole_files_crossings_and_each_vehicle_once(tmp_path):
    """Vehicles every ~2 s over 12 s, in 4 s segments: some cross at a border, one lives across two."""
    cars = [(10 + 50 * k, 40 + 60 * (k % 4), 36, 28, 2.0 + 0.5 * (k % 3), (40 * k % 255, 90, 200)) for k in range(5)]
    cars.append((150, 100, 40, 30, 1.0, (30, 200, 60)))  # slow: ~6 s in view
    path = traffic_video(tmp_path / "busy.mp4", 300, vehicles=cars)
    settings = TrackingSettings(lines=("mid=0,0.5,1,0.5",))
    whole = track_segment(video.Segment(str(path), "b", Fraction(0), None), settings, OPTS)
    parts = [track_segment(video.Segment(str(path), "b", Fraction(a), Fraction(a + 4) if a < 8 else None), settings, OPTS)
             for a in (0, 4, 8)]
    segmented = sorted((c for p in parts for c in p.crossings), key=lambda c: c["t"])
    assert len(whole.crossings) == 6
    assert [c["direction"] for c in segmented] == [c["direction"] for c in whole.crossings]
    assert all(abs(a["frame"] - b["frame"]) <= 1 for a, b in zip(segmented, whole.crossings))
    assert sum(len(p.tracks) for p in parts) == len(whole.tracks) == 6
    slow = max((t for p in parts for t in p.tracks), key=lambda t: t.last_t - t.first_t)
    assert slow.last_t - slow.first_t > 4  # followed past its segment's end: one whole row, not two halves
