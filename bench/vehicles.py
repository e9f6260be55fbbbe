"""The vehicles job's cost the way users count it: frames/s per core on long inputs, start-up apart,
and core-days per camera-month (25 fps: 64.8 M frames), at 320x240, 720p and 1080p; and where
each frame's time goes.

The inputs are a shared clip (the motorway, 30 s) looped to --seconds and encoded in H.264 at each
size (kept under --clips for the next run). Each measurement runs in a process of its own, on one
core unless said:
- decode-only: every frame decoded by PyAV on one thread, and dropped; measured before and after
  each other measurement, the median kept;
- tracking: recog.track over the whole input as one segment, every frame, with the time of each
  stage (decode, colour conversion and scaling, background subtraction, morphology and blobs,
  tracking, counting, crop keeping, the rest: Python between them) from thread CPU clocks around
  them, and its peak memory on one loop and on the whole input;
- profile: cProfile of the same, its functions' own time grouped into the same stages by name
  (cProfile inflates per-call Python; the clocks above do not);
- the whole job (embedded store -> Ray -> tracking tasks -> classifier -> tables) on every core,
  on one loop and on the whole input, after a warm-up job: the CPU time of every process it ran
  (sampled; the sampling's own CPU is not the driver's), by kind, the start-up apart (what the
  whole input cost beyond one loop, per frame beyond); and its wall time after its start-up (until
  the first tracking task works).
The machine may be shared: rates per CPU-second are what the work costs whoever else runs;
rates per wall second on every core are what this machine gave this time. Ratios are within one run.

With --before REF every measurement also runs with that commit's recog (`git archive`), in the
same run, interleaved; with --analyze-fps F this checkout's also runs at F analysed frames a second.
--counts prints the counting table of --analyze-fps on the shared clips, and with --working-widths
the counts and the tracking's cost at other widths of the working frame (MOG2's), every frame.

    python bench/vehicles.py                                  # 240 s at each size, this checkout
    python bench/vehicles.py --before main --profile --counts --json out.json
    python bench/vehicles.py --sizes 320x240 --seconds 60 --no-job
    python bench/vehicles.py --analyze-fps 12.5 --no-job --counts --working-widths 320,256,192,160
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import functools
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from fractions import Fraction
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "videos"
MOTORWAY = ["away=0.3,0.6,1.0,0.6", "oncoming=0.2,0.1,0.2,0.55"]
# the shared clips and their hand counts (tests/integration/test_vehicles.py says how they were made)
CLIPS = {
    "roadside": ("ahmetozlu_input_video.mp4", ["gate=0.6,0.5,0.6,1.0"], {("gate", "in"): 8}),
    "motorway": ("bgslibrary_video02.avi", MOTORWAY, {("away", "in"): 23, ("oncoming", "out"): 20}),
    "parking": ("intel_car-detection.mp4", ["mid=0,0.5,1,0.5"], {("mid", "in"): 2, ("mid", "out"): 2}),
}
SIZES = {"320x240": (320, 240), "720p": (1280, 720), "1080p": (1920, 1080)}
FRAMES_A_CAMERA_MONTH = 25 * 86400 * 30  # 64.8 M
STAGES = ("decode", "colour conversion and scaling", "background subtraction", "morphology and blobs", "tracking",
          "counting", "crop keeping", "the rest (Python between them)")
# cProfile's functions -> stages, by the first fragment of "file:function" that matches
PROFILE_RULES = [
    ("decode", ("'decode' of 'av.packet", "demux", "'read' of '_io", "_ordered_frames", "frames_from", "heappush", "heappop")),
    ("colour conversion and scaling", ("reformat", "to_ndarray", "cvtColor", "working_frame", "crop_rgb", "frombuffer")),
    ("background subtraction", ("BackgroundSubtractorMOG2", "GaussianBlur", "_exposure", "convertScaleAbs", "threshold",
                                "bitwise_and", "foreground")),
    ("morphology and blobs", ("morphologyEx", "connectedComponents", "countNonZero", "merge_fragments", "overlapping",
                              "stacked", "blobs", "detect.py")),
    ("tracking", ("trackers/", "supervision/", "copy.py", "scipy", "linalg", "_number", "track.py:track")),
    ("counting", ("LineCounter", "track.py:update", "track.py:sides", "track.py:count", "track.py:_record")),
    ("crop keeping", ("Laplacian", "consider_crop", "square_box", "_var")),
]


# ---- inputs ---------------------------------------------------------------------------------------

def looped(clip: Path, size: tuple[int, int], seconds: float, folder: Path) -> Path:
    """The clip played over and over for `seconds`, scaled to `size`, H.264 (crf 23): a stand-in for
    a camera's archive (kept in `folder`: encoding 1080p takes minutes here)."""
    import av

    dst = folder / f"{clip.stem}-{size[0]}x{size[1]}-{seconds:g}s.mp4"
    if dst.exists():
        return dst
    folder.mkdir(parents=True, exist_ok=True)
    part = dst.with_suffix(".part.mp4")
    with av.open(str(part), "w") as oc:
        out = oc.add_stream("libx264", rate=25)
        out.width, out.height, out.pix_fmt, out.time_base = size[0], size[1], "yuv420p", Fraction(1, 90000)
        out.options = {"crf": "23", "preset": "veryfast"}
        i, total = 0, round(seconds * 25)
        while i < total:
            with av.open(str(clip)) as ic:
                for frame in ic.decode(video=0):
                    if i >= total:
                        break
                    scaled = frame.reformat(width=size[0], height=size[1], format="yuv420p", interpolation="BICUBIC")
                    scaled.pts, scaled.time_base = i * 3600, out.time_base  # both, or PyAV writes pts 0
                    for packet in out.encode(scaled):
                        oc.mux(packet)
                    i += 1
        for packet in out.encode():
            oc.mux(packet)
    part.rename(dst)
    return dst


def decode_only(path: str) -> dict:
    """Every frame decoded on one thread and dropped."""
    import av

    t0, c0 = time.perf_counter(), time.process_time()
    with av.open(path) as c:
        s = c.streams.video[0]
        s.codec_context.thread_count = 1
        frames = sum(1 for _ in c.decode(s))
    return {"frames": frames, "wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0}


# ---- measurements, each in a process of its own with the recog under test ---------------------

def tracking(path: str, lines: list[str], stages: bool = True, analyze_fps: float | None = None,
             proc_width: int | None = None) -> dict:
    """recog.track over the whole file on one core (at `analyze_fps`, on a working frame `proc_width`
    wide, when given): rates, time per stage, peak memory."""
    import cv2

    from recog import detect, track, video
    from recog.storage import StorageOptions

    cv2.setNumThreads(1)
    spent: dict[str, float] = collections.defaultdict(float)
    if stages and hasattr(track, "working_frame"):  # the stages as methods of their own (since issue 29)
        for owner, name, stage in ((video, "frames_from", "decode"), (track, "working_frame", STAGES[1]),
                                   (detect.MotionDetector, "foreground", STAGES[2]), (detect.MotionDetector, "blobs", STAGES[3]),
                                   (track.SegmentTracker, "track", STAGES[4]), (track.SegmentTracker, "count", STAGES[5]),
                                   (track.SegmentTracker, "consider_crop", STAGES[6])):
            setattr(owner, name, _clocked(getattr(owner, name), stage, spent))
    settings = track.TrackingSettings(lines=tuple(lines), **({"analyze_fps": analyze_fps} if analyze_fps else {}))
    if proc_width:
        settings = dataclasses.replace(settings, motion=dataclasses.replace(settings.motion, proc_width=proc_width))
    track.track_segment(video.Segment(path, "warm", Fraction(0), Fraction(1)), settings, StorageOptions())  # imports
    spent.clear()
    t0, c0 = time.perf_counter(), time.thread_time()
    result = track.track_segment(video.Segment(path, "bench", Fraction(0), None), settings, StorageOptions())
    wall, cpu = time.perf_counter() - t0, time.thread_time() - c0
    split = None
    if spent:
        split = {s: spent.get(s, 0.0) for s in STAGES[:-1]}
        split[STAGES[-1]] = cpu - sum(split.values())
    return {"frames": result.frames, "wall_s": wall, "cpu_s": cpu, "stages_s": split, "tracks": len(result.tracks),
            "crossings": [[c["line"], c["direction"], c["frame"]] for c in result.crossings],
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _clocked(fn, stage: str, spent: dict):
    """`fn` with its thread CPU time added to spent[stage] (a generator: the time in each step)."""
    import inspect

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def steps(*args, **kwargs):
            it = fn(*args, **kwargs)
            while True:
                t0 = time.thread_time()
                try:
                    item = next(it)
                except StopIteration:
                    spent[stage] += time.thread_time() - t0
                    return
                spent[stage] += time.thread_time() - t0
                yield item
        return steps

    @functools.wraps(fn)
    def call(*args, **kwargs):
        t0 = time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[stage] += time.thread_time() - t0
    return call


def profile(path: str, lines: list[str]) -> dict:
    """cProfile of recog.track over the file: each function's own time, grouped into the stages by name."""
    import cProfile
    import pstats

    import cv2

    from recog import track, video
    from recog.storage import StorageOptions

    cv2.setNumThreads(1)
    settings = track.TrackingSettings(lines=tuple(lines))
    track.track_segment(video.Segment(path, "warm", Fraction(0), Fraction(1)), settings, StorageOptions())
    prof = cProfile.Profile(time.thread_time)  # CPU time: what others run on a shared machine does not count
    prof.enable()
    result = track.track_segment(video.Segment(path, "bench", Fraction(0), None), settings, StorageOptions())
    prof.disable()
    stats = pstats.Stats(prof).stats
    by_stage: dict[str, float] = collections.defaultdict(float)
    functions = []
    for (file, _, name), (_, _, own, _, _) in stats.items():
        where = f"{file.split('site-packages/')[-1]}:{name}"
        by_stage[next((s for s, marks in PROFILE_RULES if any(m in where for m in marks)), STAGES[-1])] += own
        functions.append((own, where))
    top = [[where, round(own, 3)] for own, where in sorted(functions, reverse=True)[:15]]
    return {"frames": result.frames, "stages_s": {s: by_stage.get(s, 0.0) for s in STAGES}, "top": top}


class CpuSampler:
    """CPU seconds and peak memory of this process and its descendants (Ray's processes, the store),
    sampled every `every` s; each sample's CPU goes to the kind of work the process is doing then.
    The sampling's own CPU (`own_s`: reading every process's counters, in this process) is taken out
    of the driver's."""

    KINDS = (("tracking tasks", "track_units"), ("classifier", "Predictor"), ("writers", "write_units"),
             ("object store", "weed"))

    def __init__(self, every: float = 0.25):
        import psutil

        self.psutil, self.every = psutil, every
        self.cpu: dict[str, float] = collections.defaultdict(float)
        self.rss: dict[str, float] = collections.defaultdict(float)
        self.first: dict[str, float] = {}
        self.last: dict[int, float] = {}
        self.own_s = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def kind(self, proc) -> str:
        if proc.pid == os.getpid():
            return "driver"
        cmdline = " ".join(proc.cmdline())
        return next((k for k, mark in self.KINDS if mark in cmdline), "Ray and the rest")

    def _sample(self, count: bool) -> None:
        me = self.psutil.Process()
        for proc in [me, *me.children(recursive=True)]:
            try:
                with proc.oneshot():
                    t, rss, kind = proc.cpu_times(), proc.memory_info().rss, self.kind(proc)
            except self.psutil.Error:
                continue
            used = t.user + t.system
            if count:
                delta = used - self.last.get(proc.pid, 0.0)  # a process started since: all of its time
                self.cpu[kind] += delta
                self.rss[kind] = max(self.rss[kind], rss / 2**20)
                if delta > 0 and kind not in self.first:
                    self.first[kind] = time.perf_counter()
            self.last[proc.pid] = used

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            t0 = time.thread_time()
            self._sample(True)
            self.own_s += time.thread_time() - t0

    def __enter__(self) -> CpuSampler:
        self._sample(False)  # what the processes alive now had used before
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        t0 = time.thread_time()
        self._sample(True)
        self.own_s += time.thread_time() - t0
        self.cpu["driver"] -= self.own_s


def job(path: str, lines: list[str], warm: str, repeat: int, rates: list[float | None]) -> dict:
    """`recog vehicles` on the file from the embedded store, every core, and on the short `warm` file,
    after a warm-up job on that (Ray and its workers started); at each of `rates` analysed frames a
    second (None: every frame), on the same Ray."""
    from recog import sink
    from recog.config import VehiclesConfig
    from recog.objectstore import EmbeddedStore
    from recog.pipeline import run_inference
    from recog.runtime import init_ray
    from recog.storage import StorageOptions, write_bytes

    runs: dict[str, list] = {str(rate): [] for rate in rates}
    with tempfile.TemporaryDirectory() as tmp, EmbeddedStore(Path(tmp) / "store") as store:
        os.environ.update(store.env())
        opts = StorageOptions.from_env()
        for name, local in (("warm", warm), ("input", path)):
            write_bytes(f"s3://bench/{name}/{Path(local).name}", Path(local).read_bytes(), opts)
        init_ray(None)
        import ray

        import recog
        theirs = ray.get(ray.remote(lambda: __import__("recog").__file__).remote())
        assert theirs == recog.__file__, f"Ray's workers import {theirs}, the driver {recog.__file__}: not the code measured"
        quiet = io.StringIO()

        def measured(name: str, i: int, rate: float | None = None) -> dict:
            with CpuSampler() as sampled, contextlib.redirect_stdout(quiet):
                t0 = time.perf_counter()
                cfg = VehiclesConfig(input=f"s3://bench/{name}/", output=f"s3://bench/out-{name}-{i}-{rate}", line=tuple(lines),
                                     **({"analyze_fps": rate} if rate else {}))
                manifest = run_inference(cfg, out=quiet)
                wall = time.perf_counter() - t0
            vehicles = sink.read_run(cfg.output, manifest, opts, "vehicles")
            return {"wall_s": wall, "startup_s": sampled.first.get("tracking tasks", t0) - t0,
                    "cpu_s": dict(sampled.cpu), "sampler_cpu_s": sampled.own_s, "peak_rss_mb": dict(sampled.rss),
                    "segments": manifest["summary"]["units"], "vehicles": vehicles.num_rows,
                    "crops": sum(n or 0 for n in vehicles.column("crops").to_pylist()),
                    "segment_seconds": manifest["config"].get("segment_seconds")}

        measured("warm", -1)  # Ray's workers started, their imports done
        for i in range(repeat):  # the short input too: what both cost beyond their frames is the start-up
            for rate in rates:
                runs[str(rate)].append({"short": measured("warm", i, rate), "long": measured("input", i, rate)})
        ray.shutdown()
    return {"runs": runs}


def counts(analyze_fps: list[float], widths: list[int] = ()) -> dict:
    """Crossings per line and direction on each shared clip at each --analyze-fps (25: every frame),
    and, every frame, at each working width with the tracking's CPU per frame."""
    out = {}
    for clip, (name, lines, _) in CLIPS.items():
        for rate in analyze_fps:
            got = tracking(str(SHARED / name), lines, stages=False, analyze_fps=None if rate >= 25 else rate)
            out[f"{clip}@{rate:g}"] = collections.Counter(f"{ln} {d}" for ln, d, _ in got["crossings"])
        for width in widths:
            got = tracking(str(SHARED / name), lines, stages=False, proc_width=width)
            out[f"{clip}@{width}px"] = {**collections.Counter(f"{ln} {d}" for ln, d, _ in got["crossings"]),
                                        "ms": 1000 * got["cpu_s"] / got["frames"]}
    return out


WORKERS = {"tracking": tracking, "profile": profile, "job": job, "counts": counts}


def in_process(code: Path, kind: str, **kwargs) -> dict:
    """A measurement in a new process that imports recog from `code`, and whose Ray workers do too:
    Ray puts the driver's working directory first on its workers' path, so the process runs in
    `code` (from the repository, a --before job's tasks and predictors ran this checkout's recog)."""
    env = {**os.environ, "PYTHONPATH": str(code)}
    done = subprocess.run([sys.executable, __file__, "--worker", kind, json.dumps(kwargs)], env=env, capture_output=True,
                          text=True, cwd=code)
    if done.returncode:
        raise SystemExit(f"{kind} with {code} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def checkout(ref: str, folder: Path) -> Path:
    """recog as of `ref`, extracted (no worktree: nothing in the repository changes)."""
    archive = subprocess.run(["git", "archive", ref, "recog"], cwd=REPO, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


# ---- the figures ----------------------------------------------------------------------------------

def figures(frames: int, short_frames: int, decode: dict, track: dict, job_runs: list[dict] | None) -> dict:
    """Rates per core and per CPU-second, the ratios to decode-only, core-days a camera-month. The
    job's CPU per frame is the long input's beyond the short one's (the start-up apart), when longer."""
    row = {"frames": frames, "decode_fps_cpu": frames / decode["cpu_s"], "track_fps_cpu": frames / track["cpu_s"],
           "track_fps_wall": frames / track["wall_s"], "track_peak_rss_mb": track["peak_rss_mb"]}
    if job_runs:
        pair = sorted(job_runs, key=lambda r: r["long"]["wall_s"])[len(job_runs) // 2]  # the median
        run, short = pair["long"], pair["short"]
        kinds = sorted(set(run["cpu_s"]) | set(short["cpu_s"]))
        if frames > short_frames:
            per_frame = {k: (run["cpu_s"].get(k, 0.0) - short["cpu_s"].get(k, 0.0)) / (frames - short_frames) for k in kinds}
        else:
            per_frame = {k: run["cpu_s"].get(k, 0.0) / frames for k in kinds}
        row.update(job_fps_cpu=1 / sum(per_frame.values()), job_fps_cpu_with_startup=frames / sum(run["cpu_s"].values()),
                   job_fps_per_core_wall=frames / (run["wall_s"] - run["startup_s"]) / run["cores"],
                   job_startup_s=run["startup_s"], job_wall_s=run["wall_s"], segments=run["segments"],
                   segment_seconds=run["segment_seconds"], vehicles=run["vehicles"], crops=run["crops"],
                   job_ms_per_frame={k: 1000 * v for k, v in per_frame.items()}, job_peak_rss_mb=run["peak_rss_mb"])
        row["job_vs_decode"] = row["job_fps_cpu"] / row["decode_fps_cpu"]
        row["core_days_a_camera_month"] = FRAMES_A_CAMERA_MONTH / row["job_fps_cpu"] / 86400
    return row


def print_cost(rows: dict) -> None:
    print("\nCost (frames per CPU-second = frames/s per core with the core to itself; per wall s: what this shared "
          "machine gave, every core, start-up apart)")
    print(f"{'input':<16} {'code':<11} {'decode':>7} {'tracking':>9} {'job/CPU-s':>9} {'(start-up in)':>13} "
          f"{'job/core,wall':>13} {'job/decode':>10} {'core-days/cam-month':>19} {'segments':>12}")
    for (size, code), r in rows.items():
        seg = f"{r['segments']} x {r['segment_seconds']:g} s" if "segments" in r else "-"
        print(f"{size + ' ' + str(r['frames']):<16} {code:<11} {r['decode_fps_cpu']:>7.0f} {r['track_fps_cpu']:>9.0f} "
              f"{r.get('job_fps_cpu', 0):>9.0f} {r.get('job_fps_cpu_with_startup', 0):>13.0f} "
              f"{r.get('job_fps_per_core_wall', 0):>13.0f} {r.get('job_vs_decode', 0):>10.2f} "
              f"{r.get('core_days_a_camera_month', 0):>19.1f} {seg:>12}")


def print_stages(name: str, split: dict, frames: int) -> None:
    total = sum(split.values())
    print(f"  {name}: {1000 * total / frames:.2f} ms a frame")
    for stage, s in split.items():
        print(f"    {stage:<34} {1000 * s / frames:6.2f} ms {100 * s / total:5.1f} %")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clip", type=Path, default=SHARED / CLIPS["motorway"][0], help="clip to loop (default: the motorway's)")
    p.add_argument("--line", action="append", default=None, help="counting lines (default: the motorway's)")
    p.add_argument("--seconds", type=float, default=240.0, help="length of the long inputs (default: 240)")
    p.add_argument("--sizes", default=",".join(SIZES), help=f"frame sizes among {', '.join(SIZES)} (default: all)")
    p.add_argument("--before", default=None, metavar="REF", help="also measure recog as of this commit (default: no)")
    p.add_argument("--repeat", type=int, default=1, help="job runs per input, the median kept (default: 1)")
    p.add_argument("--no-job", action="store_true", help="decode and tracking only: no Ray, no store (default: off)")
    p.add_argument("--profile", action="store_true", help="also cProfile the tracking, grouped by stage (default: off)")
    p.add_argument("--counts", action="store_true", help="also count on the shared clips at 25, 12.5, 8 and 5 analysed "
                   "frames/s against the hand counts (default: off)")
    p.add_argument("--analyze-fps", type=float, default=None, metavar="F",
                   help="also measure this checkout at F analysed frames a second (default: every frame only)")
    p.add_argument("--working-widths", default=None, metavar="W,W",
                   help="with --counts: also count, every frame, on working frames this wide (default: no)")
    p.add_argument("--clips", type=Path, default=REPO / "recog-data" / "bench-clips",
                   help="where the looped inputs are kept (default: recog-data/bench-clips)")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here (default: no)")
    p.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(WORKERS[args.worker[0]](**json.loads(args.worker[1]))))
        return 0
    if args.working_widths and not args.counts:
        p.error("--working-widths goes with --counts (it adds columns to the counting table)")
    lines = args.line or MOTORWAY
    with tempfile.TemporaryDirectory() as tmp:
        codes = {"after": (REPO, None)}  # the rows' names: the recog measured and its analysed rate (None: every frame)
        if args.before:
            codes = {"before": (checkout(args.before, Path(tmp)), None), **codes}
        if args.analyze_fps:
            codes[f"after@{args.analyze_fps:g}"] = (REPO, args.analyze_fps)
        rows, profiles, out = {}, {}, {"seconds": args.seconds, "cores": os.cpu_count(), "rows": {}, "profiles": {},
                                     "decode_fps_cpu_runs": {}}
        for size_name in args.sizes.split(","):
            size = SIZES[size_name]
            long = str(looped(args.clip, size, args.seconds, args.clips))
            once = str(looped(args.clip, size, min(args.seconds, 30.0), args.clips))
            # decoding alone between the other measurements, the median kept: a shared machine's
            # speed drifts over a run, and every ratio to decoding leans on this one figure
            decodes, short_frames = [decode_only(long)], decode_only(once)["frames"]
            print(f"[bench] {size_name}: {decodes[0]['frames']} frames, decode-only "
                  f"{decodes[0]['frames'] / decodes[0]['cpu_s']:.0f} frames per CPU-s", flush=True)
            jobs = {}  # per recog measured: its jobs at each of its rates, on one Ray
            if not args.no_job:
                for where in dict.fromkeys(where for where, _ in codes.values()):
                    rates = [rate for w, rate in codes.values() if w == where]
                    jobs[where] = in_process(where, "job", path=long, lines=lines, warm=once, repeat=args.repeat,
                                             rates=rates)["runs"]
                    decodes.append(decode_only(long))
            tracked, tracked_once = {}, {}  # per row: the tracking on the long input, and on one loop
            for code, (where, rate) in codes.items():
                tracked[code] = in_process(where, "tracking", path=long, lines=lines, analyze_fps=rate)
                tracked_once[code] = tracked[code] if once == long else in_process(
                    where, "tracking", path=once, lines=lines, stages=False, analyze_fps=rate)
                decodes.append(decode_only(long))
                if args.profile and rate is None:
                    profiles[size_name, code] = in_process(where, "profile", path=long, lines=lines)
            decode = sorted(decodes, key=lambda d: d["cpu_s"])[len(decodes) // 2]
            out["decode_fps_cpu_runs"][size_name] = [d["frames"] / d["cpu_s"] for d in decodes]
            rates_seen = ", ".join(f"{d['frames'] / d['cpu_s']:.0f}" for d in decodes)
            print(f"[bench] {size_name}: decode-only {rates_seen} frames per CPU-s over the run, the median kept", flush=True)
            for code, (where, rate) in codes.items():
                job_runs = jobs[where][str(rate)] if jobs else None
                for pair in job_runs or []:
                    pair["long"]["cores"] = os.cpu_count() or 1
                row = rows[size_name, code] = figures(decode["frames"], short_frames, decode, tracked[code], job_runs)
                row["track_peak_rss_mb_one_loop"] = tracked_once[code]["peak_rss_mb"]
                row["stages_s"] = tracked[code]["stages_s"]
                print(f"[bench] {size_name} {code}: tracking {row['track_fps_cpu']:.0f} frames per CPU-s"
                      + (f", job {row['job_fps_cpu']:.0f}" if job_runs else ""), flush=True)
        print_cost(rows)
        print(f"\nWhere a frame's time goes, tracking on one core (thread CPU clocks around each stage), "
              f"{args.clip.name} looped to {args.seconds:g} s:")
        for (size_name, code), r in rows.items():
            if r["stages_s"]:
                print_stages(f"{size_name} {code}", r["stages_s"], r["frames"])
        for (size_name, code), prof in profiles.items():
            print(f"\ncProfile, {size_name} {code} (own time by stage; the top functions):")
            print_stages("grouped", prof["stages_s"], prof["frames"])
            for where, own in prof["top"][:10]:
                print(f"    {own:8.3f} s  {where}")
        if not args.no_job:
            print("\nThe whole job's CPU by process kind, ms a frame (start-up apart); peak memory (MB) of a tracking task; "
                  "tracking on one core, peak memory on one loop / the whole input:")
            for (size_name, code), r in rows.items():
                parts = ", ".join(f"{k} {v:.2f}" for k, v in r["job_ms_per_frame"].items())
                per_crop = r["job_ms_per_frame"].get("classifier", 0) * r["frames"] / max(1, r["crops"])
                print(f"  {size_name} {code}: {parts}; {r['vehicles']} vehicles, {r['crops']} crops classified "
                      f"({per_crop:.0f} ms of classifier each); tracking task {r['job_peak_rss_mb'].get('tracking tasks', 0):.0f} MB; "
                      f"one core {r['track_peak_rss_mb_one_loop']:.0f} / {r['track_peak_rss_mb']:.0f} MB")
        out["rows"] = {f"{s} {c}": r for (s, c), r in rows.items()}
        out["profiles"] = {f"{s} {c}": r for (s, c), r in profiles.items()}
        if args.counts:
            rates = [25.0, 12.5, 8.0, 5.0]
            widths = [int(w) for w in args.working_widths.split(",")] if args.working_widths else []
            got = in_process(REPO, "counts", analyze_fps=rates, widths=widths)
            out["counts"] = got
            print("\nCounting at --analyze-fps F (25: every frame) on the shared clips, whole files, against the hand counts:")
            for clip, (_, _, hand) in CLIPS.items():
                for line, direction in hand:
                    key = f"{line} {direction}"
                    print(f"  {clip:<9} {key:<13} hand {hand[line, direction]:>3}   "
                          + "   ".join(f"{r:g}: {got[f'{clip}@{r:g}'].get(key, 0):>3}" for r in rates))
            if widths:
                print("\nCounting every frame on working frames (MOG2's) W px wide, against the hand counts; the "
                      "tracking's CPU a frame (one core, a frame no wider than the clip's):")
                for clip, (_, _, hand) in CLIPS.items():
                    for line, direction in hand:
                        key = f"{line} {direction}"
                        print(f"  {clip:<9} {key:<13} hand {hand[line, direction]:>3}   "
                              + "   ".join(f"{w}: {got[f'{clip}@{w}px'].get(key, 0):>3}" for w in widths))
                    print(f"  {clip:<9} {'ms a frame':<22}   " + "   ".join(f"{w}: {got[f'{clip}@{w}px']['ms']:.2f}" for w in widths))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
