"""recog footage end to end: videos on a real SeaweedFS -> segments on a real local Ray -> Parquet."""

from __future__ import annotations

import collections
import datetime as dt
import math

import av

from recog import sink, storage
from recog.config import InferConfig
from recog.pipeline import run_inference
from recog.storage import StorageOptions
from tests.imagedata import jpeg
from tests.videodata import encode_video


def read_rows(output, manifest, opts):
    return sink.read_run(output, manifest, opts).to_pylist()


def test_videos_become_one_row_per_sampled_frame(tmp_path, bucket, opts, ray_local):
    clip = encode_video(tmp_path / "clip.mp4").read_bytes()
    fast = encode_video(tmp_path / "fast.mp4", faststart=True).read_bytes()
    inputs = {
        "cam-07_20261103T080000.mp4": clip,
        "lobby.mp4": clip, "lobby.json": b'{"camera": "lobby", "start": "2026-11-03T09:00:00Z"}',
        "broken.mp4": fast[: len(fast) * 6 // 10],
        "still.jpg": jpeg(),
    }
    for key, body in inputs.items():
        storage.write_bytes(f"{bucket}/cams/{key}", body, opts)
    cfg = InferConfig(input=f"{bucket}/cams/", output=f"{bucket}/out", media="video", fps=1.0, segment_seconds=3,
                      name_pattern="{camera}_{start:%Y%m%dT%H%M%S}.mp4")
    manifest = run_inference(cfg)
    rows = read_rows(f"{bucket}/out", manifest, opts)

    assert manifest["summary"]["files"] == manifest["summary"]["units"] == 12  # 3 videos x segments [0,3) [3,6) [6,9) [9,end)
    assert manifest["inputs"] == {"shards": 0, "images": 0, "videos": 3, "ignored": 1}
    by_video = collections.defaultdict(list)
    for r in rows:
        by_video[r["key"]].append(r)
    for key, camera, start in (("cam-07_20261103T080000", "cam-07", dt.datetime(2026, 11, 3, 8, tzinfo=dt.timezone.utc)),
                               ("lobby", "lobby", dt.datetime(2026, 11, 3, 9, tzinfo=dt.timezone.utc))):
        frames = sorted(by_video[key], key=lambda r: r["pts_s"])
        assert [r["pts_s"] for r in frames] == [float(s) for s in range(10)]  # no frame lost or doubled at 3, 6, 9 s
        assert [r["frame_index"] for r in frames] == list(range(0, 250, 25))
        assert {r["camera"] for r in frames} == {camera}
        assert [r["wall_time"] for r in frames] == [start + dt.timedelta(seconds=s) for s in range(10)]
        assert all(r["error"] is None and r["label"] and r["width"] == 96 for r in frames)
        assert all(r["source_uri"] == f"{bucket}/cams/{key}.mp4" and r["shard"] is None for r in frames)
    broken = by_video["broken"]
    good = [r for r in broken if r["error"] is None]
    errors = [r for r in broken if r["error"]]
    assert 3 <= len(good) < 10 and errors and all("video ends early" in r["error"] for r in errors)
    assert by_video.keys() == {"cam-07_20261103T080000", "lobby", "broken"}  # the still image is not footage


def test_shared_traffic_clips(shared_data, bucket, opts, ray_local, capsys):
    """The real clips: every 1 s interval of video time that holds a frame gives one row."""
    expected = {}
    for path in sorted((shared_data / "videos").iterdir()):
        storage.write_bytes(f"{bucket}/clips/{path.name}", path.read_bytes(), opts)
        with av.open(str(path)) as c:  # an independent count: plain PyAV, every frame decoded
            s = c.streams.video[0]
            expected[path.stem] = len({math.floor((f.pts - (s.start_time or 0)) * s.time_base) for f in c.decode(s)})
    manifest = run_inference(InferConfig(input=f"{bucket}/clips/", output=f"{bucket}/labels", media="video",
                                         fps=1.0, segment_seconds=10))
    rows = read_rows(f"{bucket}/labels", manifest, opts)
    counts = collections.Counter(r["key"] for r in rows)
    assert counts == expected and not any(r["error"] for r in rows)
    with capsys.disabled():
        for key in sorted(counts):
            labels = collections.Counter(r["label"] for r in rows if r["key"] == key)
            top = collections.Counter(r["topk_labels"][0] for r in rows if r["key"] == key)
            print(f"\n{key}: {counts[key]} frames at 1 fps; labels {dict(labels.most_common())}; "
                  f"the model's top classes {dict(top.most_common(3))}", end="")


def test_footage_from_an_input_list(tmp_path, ray_local):
    for name in ("a.mp4", "b.mp4"):
        encode_video(tmp_path / name, frames=50)
    (tmp_path / "list.txt").write_text(f"{tmp_path / 'b.mp4'}\n")
    manifest = run_inference(InferConfig(input_list=str(tmp_path / "list.txt"), output=str(tmp_path / "out"),
                                         media="video", fps=1.0))
    table = sink.read_run(str(tmp_path / "out"), manifest, StorageOptions())
    assert table.column("key").to_pylist() == ["b", "b"] and table.column("pts_s").to_pylist() == [0.0, 1.0]
