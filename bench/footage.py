"""Footage throughput on one video: decode alone (PyAV, every frame), recog's segment reader, and
the whole footage job (object store -> Ray -> model -> Parquet). Medians of --repeat runs.

    python bench/footage.py [--video ../shared/data/videos/ahmetozlu_input_video.mp4] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

import av
from timing import timed

from recog import storage, video
from recog.storage import StorageOptions

DEFAULT_VIDEO = Path(__file__).resolve().parents[2] / "shared" / "data" / "videos" / "ahmetozlu_input_video.mp4"


def pyav_decode(path: Path, threads: int) -> int:
    """Every frame, decoded and dropped: the ffmpeg-class reference (threads 0: FFmpeg's choice)."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.codec_context.thread_count = threads
        s.codec_context.thread_type = "AUTO"
        return sum(1 for _ in c.decode(s))


def recog_reader(path: Path, sampling: video.Sampling, duration: float) -> int:
    """recog's decode path alone: one segment, frames selected and converted to RGB images."""
    seg = video.Segment(str(path), "k", Fraction(0), None, duration)
    return sum(1 for r in video.read_segment(seg, sampling, StorageOptions()) if r["error"] is None)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--skip-job", action="store_true", help="only the decode figures (no Ray, no store)")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = p.parse_args()
    info = video.probe(str(args.video), StorageOptions())
    print(f"{args.video.name}: {info.codec} {info.width}x{info.height}, {info.fps:.2f} fps, {info.duration_s:.1f} s")
    figures = {"video": args.video.name}
    for name, fn in [
        ("pyav_decode_1_thread", lambda: pyav_decode(args.video, 1)),
        ("pyav_decode_auto_threads", lambda: pyav_decode(args.video, 0)),
        ("recog_reader_every_frame", lambda: recog_reader(args.video, video.Sampling(fps=None, every_n=1), info.duration_s)),
        ("recog_reader_1fps", lambda: recog_reader(args.video, video.Sampling(fps=1), info.duration_s)),
        ("recog_reader_keyframes", lambda: recog_reader(args.video, video.Sampling(fps=None, keyframes=True), info.duration_s)),
    ]:
        n, seconds = timed(fn, args.repeat)
        figures[name] = {"frames": n, "seconds": round(seconds, 3), "video_s_per_s": round(info.duration_s / seconds, 1),
                         "frames_per_s": round(n / seconds, 1)}
        print(f"{name:28s} {n:5d} frames  {seconds:7.3f} s  {n / seconds:8.1f} frames/s  "
              f"{info.duration_s / seconds:7.1f} s of video per s")
    if not args.skip_job:
        figures["job"] = job(args.video, args.repeat)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    return 0


def job(path: Path, repeat: int) -> dict:
    """The footage job at 1 fps and at every frame, on the embedded store, run `repeat` times each."""
    import os

    from recog.config import InferConfig
    from recog.objectstore import EmbeddedStore
    from recog.pipeline import run_inference
    from recog.runtime import init_ray

    out = {}
    with tempfile.TemporaryDirectory() as tmp, EmbeddedStore(Path(tmp) / "store") as store:
        os.environ.update(store.env())
        opts = StorageOptions.from_env()
        storage.write_bytes(f"s3://bench/clips/{path.name}", path.read_bytes(), opts)
        init_ray(None)
        for label, kwargs in [("job_1fps", {"fps": 1.0}), ("job_every_frame", {"fps": None, "every_n": 1})]:
            rates = []
            for i in range(repeat):
                cfg = InferConfig(input="s3://bench/clips/", output=f"s3://bench/out-{label}-{i}", media="video",
                                  segment_seconds=10, **kwargs)
                m = run_inference(cfg, out=open(os.devnull, "w"))
                rates.append(m["summary"]["rows"] / m["elapsed_s"])
            out[label] = {"frames": m["summary"]["rows"], "frames_per_s": round(statistics.median(rates), 1)}
            print(f"{label:28s} {m['summary']['rows']:5d} frames labeled  {statistics.median(rates):8.1f} frames/s (median of {repeat})")
    return out


if __name__ == "__main__":
    sys.exit(main())
