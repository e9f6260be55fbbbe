"""Footage decoding without Ray: sampling rules, segment borders, timestamps, broken files."""

from __future__ import annotations

import datetime as dt
import json
from fractions import Fraction

import pytest

from recog import sources, video
from recog.storage import FileEntry, StorageOptions
from recog.video import Sampling, Segment
from tests.videodata import encode_video

OPTS = StorageOptions()


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """10 s at 25 fps: 250 frames, keyframes every 2 s, B-frames on."""
    return encode_video(tmp_path_factory.mktemp("video") / "clip.mp4")


def frames(uri, sampling, start=0, end=None, duration=None):
    rows = list(video.read_segment(Segment(str(uri), "k", Fraction(start), end, duration), sampling, OPTS))
    return [r for r in rows if r["error"] is None], [r for r in rows if r["error"]]


def segmented(uri, sampling, seconds, duration):
    out = []
    for start, end in video.segment_bounds(duration, sampling.segment_length(seconds)):
        good, bad = frames(uri, sampling, start, end, duration)
        assert not bad
        out += [(r["frame_index"], r["pts_s"]) for r in good]
    return out


def test_probe_reads_the_header(clip):
    info = video.probe(str(clip), OPTS)
    assert (info.codec, info.width, info.height, info.fps, info.error) == ("h264", 96, 64, 25.0, None)
    assert info.duration_s == pytest.approx(10.0, abs=0.05)


def test_fps_takes_the_first_frame_of_each_interval(clip):
    good, bad = frames(clip, Sampling(fps=1))
    assert not bad
    assert [r["pts_s"] for r in good] == [float(s) for s in range(10)]
    assert [r["frame_index"] for r in good] == list(range(0, 250, 25))
    assert good[3]["frame"].size == (96, 64)
    # the pixels are those of the frame the timestamp names: grey level (i * 7) % 256
    assert abs(good[3]["frame"].getpixel((10, 10))[0] - (75 * 7) % 256) <= 3


def test_every_n_and_fractional_fps(clip):
    good, _ = frames(clip, Sampling(fps=None, every_n=10))
    assert [r["frame_index"] for r in good] == list(range(0, 250, 10))
    good, _ = frames(clip, Sampling(fps=0.4))  # one frame per 2.5 s
    assert [r["pts_s"] for r in good] == [0.0, 2.52, 5.0, 7.52]  # frames fall on 1/25 s


def test_keyframes_mode_decodes_only_keyframes(clip):
    good, _ = frames(clip, Sampling(fps=None, keyframes=True))
    assert [r["pts_s"] for r in good] == [0.0, 2.0, 4.0, 6.0, 8.0]


@pytest.mark.parametrize("sampling, seconds", [
    (Sampling(fps=1), 3), (Sampling(fps=3), 1.7), (Sampling(fps=None, every_n=7), 2.2),
    (Sampling(fps=None, keyframes=True), 3), (Sampling(fps=25), 0.9),
])
def test_segments_keep_exactly_the_frames_of_a_whole_decode(clip, sampling, seconds):
    whole = [(r["frame_index"], r["pts_s"]) for r in frames(clip, sampling)[0]]
    parts = segmented(clip, sampling, seconds, 10.0)
    assert parts == whole  # same frames, same order: none lost, none doubled at the borders


def test_segment_length_is_a_whole_number_of_intervals():
    assert Sampling(fps=0.4).segment_length(6) == Fraction(15, 2)
    assert Sampling(fps=3).segment_length(1.7) == Fraction(2)
    assert Sampling(fps=None, every_n=5).segment_length(60) == 60
    assert video.segment_bounds(130, Fraction(60)) == [(0, 60), (60, 120), (120, None)]
    assert video.segment_bounds(None, Fraction(60)) == [(0, None)]


def test_the_shared_clips_segment_without_loss(shared_data):
    """Real files: H.264 in MP4, and MPEG-4 part 2 in AVI with packed B-frames and a header
    that overstates its frame count."""
    for name in ("ahmetozlu_input_video.mp4", "bgslibrary_video02.avi", "intel_car-detection.mp4"):
        path = shared_data / "videos" / name
        info = video.probe(str(path), OPTS)
        for sampling in (Sampling(fps=2), Sampling(fps=None, every_n=1)):
            whole = [(r["frame_index"], r["pts_s"]) for r in frames(path, sampling, duration=info.duration_s)[0]]
            assert whole and segmented(path, sampling, 7, info.duration_s) == whole, name
    every = frames(shared_data / "videos" / "bgslibrary_video02.avi", Sampling(fps=None, every_n=1))[0]
    assert len(every) == 748  # what decodes, not the 750 of the header


def test_truncated_video_keeps_the_frames_before_the_damage(tmp_path):
    path = encode_video(tmp_path / "fast.mp4", faststart=True)  # index first, so a cut file still opens
    data = path.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) * 6 // 10])
    good, bad = frames(cut, Sampling(fps=1), duration=10.0)
    assert 3 <= len(good) < 10 and [r["pts_s"] for r in good] == [float(s) for s in range(len(good))]
    assert len(bad) == 1 and "video ends early" in bad[0]["error"]
    # the segments past the damage say so too
    good, bad = frames(cut, Sampling(fps=1), start=8, end=None, duration=10.0)
    assert not good and "video ends early" in bad[0]["error"]


@pytest.mark.parametrize("content, message", [
    (b"", "cannot open video"),
    (b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 500, "cannot open video"),
])
def test_unreadable_video_is_one_error_row(tmp_path, content, message):
    path = tmp_path / "bad.mp4"
    path.write_bytes(content)
    good, bad = frames(path, Sampling(fps=1))
    assert not good and len(bad) == 1 and message in bad[0]["error"]
    assert video.probe(str(path), OPTS).error.startswith("cannot open video")


def test_unsupported_codec_says_so(tmp_path, shared_data):
    data = bytearray((shared_data / "videos" / "bgslibrary_video02.avi").read_bytes())
    at = data.find(b"XVID")
    data[at:at + 4] = b"QQQQ"  # a FourCC no decoder knows
    path = tmp_path / "odd.avi"
    path.write_bytes(bytes(data))
    good, bad = frames(path, Sampling(fps=1))
    assert not good and "unsupported codec" in bad[0]["error"]


def test_recording_time_and_camera_from_name_or_sidecar():
    camera, start = video.recording_context(None, "{camera}_{start:%Y%m%dT%H%M%S}.mp4", "cam-07_20261103T080000.mp4")
    assert (camera, start) == ("cam-07", dt.datetime(2026, 11, 3, 8, 0, tzinfo=dt.timezone.utc))
    sidecar = json.dumps({"camera": "gate-3", "start": "2026-11-03T09:30:00+01:00"})
    assert video.recording_context(sidecar, None, "x.mp4") == ("gate-3", dt.datetime(2026, 11, 3, 8, 30, tzinfo=dt.timezone.utc))
    assert video.recording_context(None, "{camera}_{start:%Y%m%dT%H}.mp4", "cam-1_2026bad.mp4") == ("cam-1", None)
    assert video.recording_context(None, "{camera}_{start:%Y%m%d}.mp4", "other.mp4") == (None, None)


def test_wall_time_is_recording_start_plus_frame_time(clip):
    seg = Segment(str(clip), "k", Fraction(0), None, 10.0, None, "cam-1", "2026-11-03T08:00:00+00:00")
    rows = [r for r in video.read_segment(seg, Sampling(fps=1), OPTS)]
    assert rows[2]["wall_time"] == dt.datetime(2026, 11, 3, 8, 0, 2, tzinfo=dt.timezone.utc)
    assert rows[2]["camera"] == "cam-1"


def test_videos_are_grouped_with_their_sidecars_and_segmented():
    files = [FileEntry("s3://b/in/a.mp4", 100), FileEntry("s3://b/in/a.json", 10), FileEntry("s3://b/in/x.jpg", 5)]
    videos, ignored = sources.video_samples(files, "s3://b/in/")
    assert videos == [("a", {"mp4": "s3://b/in/a.mp4", "json": "s3://b/in/a.json"})]
    assert ignored == ["s3://b/in/x.jpg"]
    infos = {"s3://b/in/a.mp4": video.VideoInfo(duration_s=150.0, fps=25.0)}
    metas = {"s3://b/in/a.mp4": '{"camera": "c1", "start": "2026-11-03T08:00:00Z"}'}
    units = sources.segment_units(videos, infos, metas, "fp", Sampling(fps=1).segment_length(60))
    assert [(u.params["start"], u.params["end"]) for u in units] == [("0", "60"), ("60", "120"), ("120", None)]
    assert {u.params["camera"] for u in units} == {"c1"} and len({u.unit_id for u in units}) == 3


def test_frames_at_returns_the_frames_shown_at_those_times_in_one_pass(tmp_path):
    import numpy as np

    path = encode_video(tmp_path / "v.mp4", frames=50, fps=10, gop=12, size=(64, 48))
    # the first frame at or after each time; 4.9 s is more than gap_s after 2.05 s: a second seek
    wanted = {0.0: 0, 0.3: 3, 2.05: 21, 4.9: 49}
    frames = video.frames_at(str(path), [4.9, 0.0, 2.05, 0.3, 9.0], StorageOptions(), gap_s=1.0)
    assert set(frames) == set(wanted)  # 9.0 s is past the end
    for t, index in wanted.items():
        assert frames[t].size == (64, 48)
        assert abs(float(np.asarray(frames[t]).mean()) - (index * 7) % 256) < 4  # frame i is grey (7 i) % 256
