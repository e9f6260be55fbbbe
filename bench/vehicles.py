"""The vehicles job's speed on one clip and the same cores: decode alone, detection + tracking
(recog.track on one core, every frame), and the whole job (embedded store -> Ray -> tracking tasks
-> classifier -> tables), at the clip's own size and at 1080p (the clip scaled up, H.264). Medians
of --repeat runs; one core each for decode-only and tracking, the whole job on every core.

    python bench/vehicles.py                               # the motorway clip (320x240) and its 1080p copy
    python bench/vehicles.py --video CLIP --line gate=0,0.5,1,0.5 --repeat 1 --no-hd --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
from timing import timed

from recog import video
from recog.storage import StorageOptions
from recog.track import TrackingSettings, track_segment

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "videos"
DEFAULT = (SHARED / "bgslibrary_video02.avi", ["away=0.3,0.6,1.0,0.6", "oncoming=0.2,0.1,0.2,0.55"])


def decode_only(path: Path) -> int:
    """Every frame decoded on one thread and dropped."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.codec_context.thread_count = 1
        return sum(1 for _ in c.decode(s))


def detect_and_track(path: Path, lines: list[str]) -> int:
    """recog's tracking of a whole file on one core: decode, scale, MOG2, blobs, ByteTrack, lines."""
    import cv2

    cv2.setNumThreads(1)
    result = track_segment(video.Segment(str(path), "bench", Fraction(0), None), TrackingSettings(lines=tuple(lines)),
                           StorageOptions())
    return result.frames


def scale_to_hd(src: Path, dst: Path) -> Path:
    """The clip scaled to 1920x1080, H.264 (crf 23): a stand-in for HD CCTV."""
    with av.open(str(src)) as ic, av.open(str(dst), "w") as oc:
        ins = ic.streams.video[0]
        rate = Fraction(video.frame_rate(ins)).limit_denominator(1000)
        out = oc.add_stream("libx264", rate=rate)
        out.width, out.height, out.pix_fmt, out.time_base = 1920, 1080, "yuv420p", Fraction(1, 90000)
        out.options = {"crf": "23", "preset": "fast"}
        for i, frame in enumerate(ic.decode(ins)):
            hd = frame.reformat(width=1920, height=1080, format="yuv420p", interpolation="BICUBIC")
            hd.pts, hd.time_base = round(i / rate / out.time_base), out.time_base  # both, or PyAV writes pts 0
            for packet in out.encode(hd):
                oc.mux(packet)
        for packet in out.encode():
            oc.mux(packet)
    return dst


def whole_job(path: Path, lines: list[str], repeat: int) -> tuple[int, float]:
    """(frames, seconds) of `recog vehicles` on the clip from the embedded store, the median of
    `repeat` runs after a warm-up run (Ray and the workers started)."""
    from recog.config import VehiclesConfig
    from recog.objectstore import EmbeddedStore
    from recog.pipeline import run_inference
    from recog.runtime import init_ray
    from recog.storage import write_bytes

    with tempfile.TemporaryDirectory() as tmp, EmbeddedStore(Path(tmp) / "store") as store:
        os.environ.update(store.env())
        write_bytes(f"s3://bench/clips/{path.name}", path.read_bytes(), StorageOptions.from_env())
        init_ray(None)
        seconds = []
        for i in range(repeat + 1):
            cfg = VehiclesConfig(input="s3://bench/clips/", output=f"s3://bench/out-{i}", line=tuple(lines), force=True,
                                 segment_seconds=10)
            t0 = time.perf_counter()
            run_inference(cfg, out=open(os.devnull, "w"))
            seconds.append(time.perf_counter() - t0)
        import ray

        ray.shutdown()  # its workers hold this store's credentials: the next clip starts a new store
    return decode_only(path), statistics.median(seconds[1:])


def measure(path: Path, lines: list[str], repeat: int, job: bool) -> dict:
    frames, decode_s = timed(lambda: decode_only(path), repeat)
    _, track_s = timed(lambda: detect_and_track(path, lines), repeat)
    with av.open(str(path)) as c:
        size = f"{c.streams.video[0].codec_context.width}x{c.streams.video[0].codec_context.height}"
    row = {"clip": path.name, "size": size, "frames": frames, "decode_fps": round(frames / decode_s, 1),
           "track_fps": round(frames / track_s, 1)}
    row["track_vs_decode"] = round(row["track_fps"] / row["decode_fps"], 3)
    if job:
        _, job_s = whole_job(path, lines, repeat)
        cores = os.cpu_count() or 1
        row.update(job_fps=round(frames / job_s, 1), job_fps_per_core=round(frames / job_s / cores, 1), cores=cores)
        row["job_per_core_vs_decode"] = round(row["job_fps_per_core"] / row["decode_fps"], 3)
    return row


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--video", type=Path, default=DEFAULT[0])
    p.add_argument("--line", action="append", default=None, help="counting lines (default: the motorway clip's)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--no-hd", action="store_true", help="skip the 1080p copy")
    p.add_argument("--no-job", action="store_true", help="decode and tracking only (no Ray, no store)")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    lines = args.line or DEFAULT[1]
    rows = [measure(args.video, lines, args.repeat, not args.no_job)]
    if not args.no_hd:
        with tempfile.TemporaryDirectory() as tmp:
            rows.append(measure(scale_to_hd(args.video, Path(tmp) / "hd.mp4"), lines, args.repeat, not args.no_job))
    print(f"{'clip':<28} {'size':>9} {'frames':>6} {'decode fps':>10} {'track fps':>9} {'ratio':>6} {'job fps':>8} "
          f"{'job fps/core':>12} {'ratio':>6}")
    for r in rows:
        print(f"{r['clip']:<28} {r['size']:>9} {r['frames']:>6} {r['decode_fps']:>10} {r['track_fps']:>9} "
              f"{r['track_vs_decode']:>6} {r.get('job_fps', '-'):>8} {r.get('job_fps_per_core', '-'):>12} "
              f"{r.get('job_per_core_vs_decode', '-'):>6}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
