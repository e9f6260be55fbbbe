"""Where the cores go during one recog job: CPU seconds per kind of process, sampled with psutil.

Runs the image job once to warm up, then once more while sampling every process every 0.2 s, and
prints CPU seconds per group (predictor actors, decode tasks, driver, object store, Ray's own
processes) beside the machine's total busy time. A Ray worker belongs to the first job it is seen
doing (its process title); one that only ever sat idle is counted as idle workers.

    python bench/cores.py                          # 2,400 HD frames (see throughput.py --images)
    python bench/cores.py --images photos --count 480 --json out.json
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import tempfile
import threading
import time
from pathlib import Path

import psutil
import throughput  # bench/throughput.py: the same images, upload and job as the throughput figures

from recog.storage import StorageOptions

RAY_SYSTEM = ("raylet", "gcs_server", "dashboard", "log_monitor", "monitor.py", "runtime_env", "ray::_", "ray::Dashboard",
              "ray::RuntimeEnv", "ray::ActorLocation")


def group_of(cmdline: str, pid: int) -> str | None:
    """The group a process counts in, or None for processes outside the job (and idle Ray workers)."""
    if pid == os.getpid():
        return "driver"
    if "Predictor" in cmdline:
        return "predictor actors"
    if "load_units" in cmdline:
        return "decode tasks"
    if "weed" in cmdline:
        return "object store (weed)"
    if unassigned_worker(cmdline):
        return None  # not yet seen at work; decided at a later sample
    if any(s in cmdline for s in RAY_SYSTEM):
        return "Ray's own processes"
    if cmdline.startswith("ray::"):
        return "other Ray tasks: " + cmdline.split()[0][:40]
    return None


def unassigned_worker(cmdline: str) -> bool:
    """A Ray worker process before its first task (still `default_worker.py ...`) or between tasks."""
    return cmdline.startswith("ray::IDLE") or "workers/default_worker.py" in cmdline


class Sampler:
    """CPU seconds per pid since `start`, and each pid's group (sticky: first one seen). The
    sampling's own CPU (`own_s`, a thread of the driver's process) is not counted as the driver's."""

    def __init__(self) -> None:
        self.base: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.group: dict[int, str] = {}
        self.idle: set[int] = set()
        self.own_s = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self, into: dict[int, float]) -> None:
        for p in psutil.process_iter():
            try:
                cmdline, t = " ".join(p.cmdline()), p.cpu_times()
            except (psutil.Error, OSError):
                continue
            g = group_of(cmdline, p.pid)
            if g is None and unassigned_worker(cmdline):
                self.idle.add(p.pid)
            elif g is not None:
                self.group.setdefault(p.pid, g)
            if p.pid in self.group or p.pid in self.idle:
                into[p.pid] = t.user + t.system

    def _run(self) -> None:
        while not self._stop.is_set():
            t0 = time.thread_time()
            self._sample(self.last)
            self.own_s += time.thread_time() - t0
            time.sleep(0.2)

    def __enter__(self) -> "Sampler":
        self._sample(self.base)
        self._machine0 = psutil.cpu_times()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample(self.last)
        m = psutil.cpu_times()
        self.machine_busy = sum(getattr(m, f) - getattr(self._machine0, f) for f in ("user", "system", "nice"))

    def per_group(self) -> dict[str, float]:
        out: dict[str, float] = collections.defaultdict(float)
        for pid, t in self.last.items():
            out[self.group.get(pid, "idle Ray workers")] += t - self.base.get(pid, 0.0)
        out["driver"] -= self.own_s
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", default="hd", help="hd | photos | a folder of images (default hd)")
    p.add_argument("--count", type=int, default=2400, help="images in the measured job (default 2400)")
    p.add_argument("--per-shard", type=int, default=64, help="images per tar shard (default 64)")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = p.parse_args()

    from recog.objectstore import EmbeddedStore
    from recog.runtime import init_ray

    images = throughput.cycle(throughput.image_set(args.images), args.count)
    with tempfile.TemporaryDirectory() as tmp, EmbeddedStore(Path(tmp) / "store") as store:
        os.environ.update(store.env())
        throughput.upload(images, "s3://cores/in/", args.per_shard, StorageOptions.from_env())
        init_ray(None)
        print(f"{args.count} images ({args.images}); warm-up job ...", flush=True)
        throughput.recog_job("s3://cores/in/", "s3://cores/warm/")
        with Sampler() as s:
            job = throughput.recog_job("s3://cores/in/", "s3://cores/out/")
    wall, cores = job["wall_s"], os.cpu_count() or 1
    groups = s.per_group()
    print(f"{job['rows']} rows in {wall:.1f} s = {job['rows'] / wall:.1f} images/s; {cores} cores x {wall:.1f} s = "
          f"{cores * wall:.1f} core-s, machine busy {s.machine_busy:.1f} core-s ({100 * s.machine_busy / (cores * wall):.0f} %)")
    for g, t in groups.items():
        print(f"  {g:36s} {t:7.1f} core-s  {1000 * t / job['rows']:6.2f} core-ms/image  {100 * t / (cores * wall):5.1f} %")
    print(f"  (this benchmark's sampling: {s.own_s:.1f} core-s, in the machine's busy time but none of the above)")
    if args.json:
        args.json.write_text(json.dumps({"images": args.images, "rows": job["rows"], "wall_s": wall, "cores": cores,
                                         "machine_busy_core_s": s.machine_busy, "core_s": groups, "sampler_core_s": s.own_s}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
