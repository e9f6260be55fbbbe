"""The Ray runtime of a job: starting or joining Ray, keeping its messages out of the user's way,
the Ray Data source every job starts from, and sizing the actors and workers to the cluster.

Ray's CPUs are admission tickets, not cores. A CPU predictor actor holds MODEL_SHARE of a ticket
per torch thread and a decode task DECODE_TASK_CPUS, so that on every node, even one of one CPU,
decode tasks fit beside the actors: decoding is a small part of the work (PIL at reduced scale)
and time-shares the cores the model keeps busy (bench/throughput.py and bench/cores.py measure it).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import heapq
import logging
import math
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

from recog.errors import ClusterError

GPU_ACTOR_MEMORY = 2 << 30  # bytes of RAM reserved per predictor actor (torch, CUDA, model, a batch)
CPU_ACTOR_MEMORY = 1 << 30  # a CPU actor's resident size with EfficientNet-Lite0 at batch 16, rounded up
MODEL_SHARE = 0.75
DECODE_TASK_CPUS = 0.25
WRITER_CPUS = 0.25  # a writer task: Parquet encoding and a PUT per file, a small part of a unit's work
# CPU batches stay small: larger ones were slower per image here (activations fall out of cache).
GPU_BATCH, CPU_BATCH = 256, 16
LOG_DIR = Path(os.environ.get("RECOG_LOG_DIR", "recog-data/logs"))


# ---- Ray, started quietly -------------------------------------------------------------------------

OWN_LINES = ("[recog]", "[train]")  # what recog's workers print for the user
_worker_log: Path | None = None  # where the current (or last) job sends its workers' other lines


@contextlib.contextmanager
def ray_messages(job: str, verbose: bool = False, out=sys.stdout) -> Iterator[Path | None]:
    """Send what Ray prints (its warnings and C++ core-worker lines on this process's stderr, and
    the output of tasks and actors but for recog's own lines) to a log file for the duration of
    the block, and say where; with `verbose` leave everything on the terminal. recog's own lines go
    to stdout, errors are printed after the block, so neither is hidden."""
    global _worker_log
    if verbose:
        _worker_log = None
        yield None
        return
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    path = LOG_DIR / f"{job}-{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%SZ}-{os.getpid()}.log"
    print(f"[recog] Ray's own messages go to {path} (--verbose shows them here)", file=out, flush=True)
    _worker_log = path
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(path, "ab") as log:
            os.dup2(log.fileno(), 2)
        yield path
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def init_ray(address: str | None, dashboard: bool = False) -> None:
    """Connect to the cluster at `address` (or RAY_ADDRESS); without one, start a private local Ray
    (with its dashboard only if asked: Ray Train's controller watches itself through it)."""
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address and address.startswith(("http://", "https://")):
        raise ClusterError(f"RAY_ADDRESS={address} is a dashboard (Jobs API) address: send the job there with "
                           f"`recog submit -- <job> ...`, or unset RAY_ADDRESS to run on a local Ray")
    if address:
        ray.init(address=address, logging_level=logging.WARNING)
    else:
        ray.init(address="local", include_dashboard=dashboard, logging_level=logging.WARNING)
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # recog prints its own progress
    _sort_worker_output()


class JobRay:
    """Ray for one job: started (or joined) when the job first needs it, which a job with nothing
    to do never does; while the job runs, Ray's own messages go to a log file (`ray_messages`)."""

    def __init__(self, job: str, address: str | None, verbose: bool = False, out=sys.stdout):
        self.job, self.address, self.verbose, self.out = job, address, verbose, out
        self._messages = contextlib.ExitStack()
        self.up = False

    def cluster(self) -> dict:
        """The cluster's resources, Ray started first if it is not up yet."""
        import ray

        if not self.up:
            self._messages.enter_context(ray_messages(self.job, self.verbose, self.out))
            init_ray(self.address)
            self.up = True
        return ray.cluster_resources()

    def __enter__(self) -> JobRay:
        return self

    def __exit__(self, *exc) -> None:
        self._messages.close()


def units_per_second(small: int = 16, large: int = 48) -> float:
    """How many units (one block, one task each) Ray Data moves per second through a stage that
    does nothing, on this cluster: the difference of a pass over `small` units and one over `large`,
    so that what any pass costs to start cancels out. About 56-74 on a shared 2-core machine."""
    def seconds(n: int) -> float:
        t0 = time.perf_counter()
        for _ in one_block_each([{"unit": i} for i in range(n)]).map_batches(
                lambda b: b, batch_size=None, batch_format="pyarrow").iter_batches(batch_size=None):
            pass
        return time.perf_counter() - t0

    return (large - small) / max(seconds(large) - seconds(small), 1e-3)


def _sort_worker_output() -> None:
    """Ray prints every line its tasks and actors write, prefixed with their pid; recog's own lines
    (OWN_LINES) are for the user, the rest is Ray's chatter (Ray Data's logs, library warnings):
    to the job's log file, unless --verbose. Uses Ray's stdout dispatcher, a private interface: if
    it changes, Ray's own printing stays as it is."""
    try:
        from ray._private import worker as ray_worker

        dispatcher = ray_worker.global_worker_stdstream_dispatcher
        if not any(name == "ray_print_logs" for name, _ in dispatcher.handlers):
            return
        dispatcher.remove_handler("ray_print_logs")
        dispatcher.add_handler("recog_print_logs", _print_worker_lines)
    except (ImportError, AttributeError):
        return


def _print_worker_lines(batch: dict) -> None:
    lines = batch.get("lines", [])
    for line in lines:
        if line.startswith(OWN_LINES) or _worker_log is None:
            print(line, file=sys.stderr if batch.get("is_err") and _worker_log is None else sys.stdout, flush=True)
    chatter = [line for line in lines if not line.startswith(OWN_LINES)]
    if chatter and _worker_log is not None:
        with open(_worker_log, "a") as log:
            log.writelines(f"({batch.get('actor_name') or batch.get('task_name') or ''} pid={batch.get('pid')}) {line}\n"
                           for line in chatter)


def units_dataset(units: list):
    """The Ray Data source of every job: one block per unit of work (sources.Unit), so that each
    unit is read by one task. Progress bars are off: recog counts progress in units."""
    return one_block_each([u.to_row() for u in units])


def one_block_each(rows: list[dict]):
    """A Ray Data dataset of one block per row, each kept whole through every stage."""
    import ray.data

    ctx = ray.data.DataContext.get_current()  # datasets carry the context they were made in
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    # No block shaping: each task's output stays one block, so a unit (one task's work) reaches the
    # predictor and the writer whole, however big it is (the writer fails loudly if one ever does not).
    ctx.target_max_block_size = None
    return ray.data.from_items(rows, override_num_blocks=max(1, len(rows)))


def whole_blocks(ds, fn, **args):
    """`ds.map_batches(fn, batch_size=None, batch_format="pyarrow", **args)`: each block (here, whole
    units) one call. Ray Data's public map_batches refuses batch_size=None when GPUs are asked for
    (it wants a batch size to tune); its map_groups takes GPUs with whole blocks through
    map_batches_internal, and so does this. A fixed batch size would cut units apart."""
    whole = getattr(ds, "map_batches_internal", None)
    if whole is None:
        raise ClusterError("this Ray has no Dataset.map_batches_internal, which recog needs to pass whole units to "
                           "GPU actors; install the Ray version in constraints.txt")
    return whole(fn, batch_size=None, batch_format="pyarrow", **args)


def nodes() -> list:
    import ray

    return [n for n in ray.nodes() if n.get("Alive")]


def describe_cluster(resources: dict) -> str:
    return ", ".join(f"{resources.get(k, 0):g} {k}" for k in ("CPU", "GPU")) + f", {len(nodes())} node(s)"


def largest_node_cpus() -> float:
    """CPUs of the biggest node: no actor or worker may ask for more, or it would never be placed."""
    return max((n.get("Resources", {}).get("CPU", 0) for n in nodes()), default=0) or 1


# ---- sizing ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PredictorPool:
    """How the predictor actors and the decode tasks are laid out on the cluster."""

    actors: int
    cpus_per_actor: float  # Ray CPUs each actor holds
    gpus_per_actor: float
    batch_size: int | None  # None: each actor probes its device for it
    device: str  # "cuda" or "cpu"
    threads: int | None = None  # torch threads in each CPU actor (Ray would set OMP threads to its CPUs)
    decode_cpus: float = 1.0  # Ray CPUs each decode task holds
    memory: int = GPU_ACTOR_MEMORY  # bytes of RAM each actor holds

    def describe(self) -> str:
        kind = f"{self.gpus_per_actor:g} GPU" if self.gpus_per_actor else f"{self.threads} thread(s)"
        batch = self.batch_size or "probed on each actor's device"
        return f"{self.actors} predictor actor(s) x {kind} each on {self.device}, batch {batch}"


def decode_slots(cluster: dict, pool: PredictorPool) -> float:
    """How many decode tasks run at once beside the predictor actors (--decode auto weighs them)."""
    return max(1.0, (cluster.get("CPU", 1) - pool.actors * pool.cpus_per_actor) // pool.decode_cpus)


def pool_batch(cfg, default: int | None) -> int | None:
    """The batch size a pool runs at: the user's number, None (probe) for `auto`, else `default`."""
    return None if cfg.batch_size == "auto" else cfg.batch_size or default


def predictor_pool(cluster: dict, cfg, node_cpus: float | None = None) -> PredictorPool:
    """Size the predictor pool from the cluster's resources, unless the config (an InferConfig)
    says otherwise.

    With GPUs: one actor per GPU, and every CPU decodes. CPU only: the model is most of the work,
    so it gets every core, as one single-threaded actor per core (faster than fewer actors with
    more threads: no OpenMP barrier waits on a core that is also decoding); with `cpus_per_actor`
    set, actors of that many threads. `node_cpus`, the largest node's CPUs, bounds an actor.
    """
    gpus, cpus = int(cluster.get("GPU", 0)), max(1, int(cluster.get("CPU", 1)))
    if gpus and cfg.device != "cpu":
        return PredictorPool(cfg.actors or gpus, cfg.cpus_per_actor or 1, 1, pool_batch(cfg, None), "cuda")
    if cfg.device == "cuda":
        raise ClusterError("--device cuda was asked for, but the Ray cluster has no GPUs")
    fits = max(1, int(node_cpus or cpus))
    if cfg.cpus_per_actor and cfg.cpus_per_actor > fits:
        raise ClusterError(f"--cpus-per-actor {cfg.cpus_per_actor:g}: the largest node has {fits} CPU(s)")
    threads = max(1, int(cfg.cpus_per_actor or 1))
    memory_fits = int(cluster.get("memory", 0) // CPU_ACTOR_MEMORY) or cpus
    actors = cfg.actors or max(1, min(cpus // threads, memory_fits))
    if actors * threads * MODEL_SHARE + DECODE_TASK_CPUS > cpus:
        raise ClusterError(f"--actors {actors} x {threads} thread(s) do not fit in the cluster's {cpus} CPU(s) "
                           f"with room left to decode: ask for at most {int((cpus - DECODE_TASK_CPUS) / (threads * MODEL_SHARE))}")
    return PredictorPool(actors, threads * MODEL_SHARE, 0, pool_batch(cfg, CPU_BATCH), "cpu", threads, DECODE_TASK_CPUS,
                         CPU_ACTOR_MEMORY)


# --images-per-unit auto. Ray Data schedules each unit as a task of each stage, at a cost per unit
# that does not depend on its size (units_per_second), so a unit must hold enough images that the
# cluster's rate is well inside what the scheduling moves; yet fewer images make smaller output files
# sooner, and more units to spread over the predictors.
# the fewest (one output file each) and the most: units vary in size around the mean (sources.ends_unit),
# one in a thousand is 7 times it, and a block of 7,000 decoded 224 px images is 1 GB
UNIT_IMAGES = (256, 1024)
UNIT_HEADROOM = 2  # the scheduling moves at least twice the images the cluster is planned to take
# Images/s the unit size plans for: per GPU actor (Lite0 alone: 9.8 k on an RTX 4090, timm; 19 k on an
# H100, bench/gpu.py), and per CPU core (the model on CPU: under 100, bench/throughput.py).
PLANNED_IMAGES_PER_S = {"cuda": 10_000, "cpu": 100}
SLOWEST_UNITS_PER_S = 50  # below the 56-74 measured on a shared 2-core machine: no need to measure under it


def images_per_unit(images_per_s: float, units_per_s: float, images: int, actors: int) -> int:
    """The fewest loose images per unit, a power of two in UNIT_IMAGES, at which Ray Data moving
    `units_per_s` carries UNIT_HEADROOM times `images_per_s`; but no more than leave each of the
    `actors` predictors 4 of the job's `images` units (never fewer than the smallest size)."""
    least, most = UNIT_IMAGES
    size = least
    while size < most and size * units_per_s < UNIT_HEADROOM * images_per_s:
        size *= 2
    while size > least and images < 4 * actors * size:
        size //= 2
    return size


@dataclass(frozen=True)
class UnitSize:
    """What --images-per-unit auto chose on an output's first run, and from what."""

    images: int
    planned_images_per_s: float  # what the cluster is planned to take (PLANNED_IMAGES_PER_S)
    units_per_s: float | None  # Ray Data's measured scheduling rate; None: not needed at this plan

    def describe(self) -> str:
        if self.units_per_s is None:
            return (f"the cluster is planned at {self.planned_images_per_s:,.0f} images/s, which "
                    f"{UNIT_IMAGES[0]} a unit carries {UNIT_HEADROOM}x over at any likely scheduling rate")
        return (f"Ray Data moves {self.units_per_s:,.0f} units/s here and the cluster is planned at "
                f"{self.planned_images_per_s:,.0f} images/s: {self.images} a unit carries it "
                f"{self.images * self.units_per_s / self.planned_images_per_s:.1f}x over")


def choose_unit_size(cluster: dict, pool: PredictorPool, images: int, measure=units_per_second) -> UnitSize:
    """The unit size for a new output's loose `images` on this cluster: from the images/s the pool
    is planned to take and Ray Data's per-unit rate, which `measure` takes (2 s on a small machine)
    only when the smallest size might not do."""
    planned = pool.actors * PLANNED_IMAGES_PER_S["cuda"] if pool.device == "cuda" \
        else cluster.get("CPU", 1) * PLANNED_IMAGES_PER_S["cpu"]
    if UNIT_IMAGES[0] * SLOWEST_UNITS_PER_S >= UNIT_HEADROOM * planned:
        return UnitSize(UNIT_IMAGES[0], planned, None)
    rate = measure()
    return UnitSize(images_per_unit(planned, rate, images, pool.actors), planned, round(rate, 1))


@dataclass(frozen=True)
class TrainingWorkers:
    """How the training workers are laid out."""

    use_gpu: bool
    resources: dict  # per worker
    threads: int  # torch threads per worker

    def describe(self, workers: int) -> str:
        kind = f"{self.resources.get('GPU', 0):g} GPU + " if self.use_gpu else ""
        return f"{workers} worker(s) x {kind}{self.resources['CPU']:g} CPU, {self.threads} torch thread(s) each"


def training_workers(cluster: dict, cfg, node_cpus: float | None = None) -> TrainingWorkers:
    """Resources per training worker (cfg: a TrainConfig); on CPU, leave at least one CPU for
    decoding, and ask no more than the largest node (`node_cpus`) has."""
    cpus = max(1.0, float(cluster.get("CPU", 1)))
    if cfg.gpus_per_worker > 0:
        need = cfg.workers * cfg.gpus_per_worker
        if cluster.get("GPU", 0) < need:
            raise ClusterError(f"{cfg.workers} workers x {cfg.gpus_per_worker:g} GPU need {need:g} GPUs; "
                               f"the cluster has {cluster.get('GPU', 0):g}")
        per = cfg.cpus_per_worker or 1.0
        return TrainingWorkers(True, {"CPU": per, "GPU": cfg.gpus_per_worker}, max(1, int(per)))
    per = cfg.cpus_per_worker or max(0.25, min(4.0, float(node_cpus or cpus), (cpus - 1) / cfg.workers))
    return TrainingWorkers(False, {"CPU": per}, max(1, int(per)))


def crop_classifier_pool(cluster: dict, cfg) -> PredictorPool:
    """The vehicles job's classifier: a handful of crops per vehicle is little work beside decoding and
    tracking every frame, so one actor (per GPU, sharing it with a learned detector) with half a
    CPU ticket. The tracking tasks (`decode_cpus`) hold what is left of a core once the classifier
    and a writer have their share, so that one runs on every core (a whole CPU each left one of a
    2-CPU machine's cores to the classifier's half ticket)."""
    gpus = int(cluster.get("GPU", 0))
    if gpus and cfg.device != "cpu":
        pool = PredictorPool(cfg.actors or gpus, cfg.cpus_per_actor or 0.5, 0.5, pool_batch(cfg, GPU_BATCH), "cuda")
    elif cfg.device == "cuda":
        raise ClusterError("--device cuda was asked for, but the Ray cluster has no GPUs")
    else:
        pool = PredictorPool(cfg.actors or 1, 0.5, 0, pool_batch(cfg, CPU_BATCH), "cpu", int(cfg.cpus_per_actor or 1),
                             memory=CPU_ACTOR_MEMORY)
    cpus = max(1, int(cluster.get("CPU", 1)))
    left = cpus - pool.actors * pool.cpus_per_actor - WRITER_CPUS
    # in hundredths: Ray adds tickets in fixed point, and a sum that came to 2.0000001 would not fit
    return replace(pool, decode_cpus=max(0.05, math.floor(100 * left / cpus) / 100))


# --segment-seconds auto (the vehicles job). Each segment is a task that tracks on one core, and
# also decodes a warm-up before its start (TrackingSettings.warmup_s: 11 s with the motion
# detector), work its neighbour does again. Long segments waste less on warm-ups; enough of them
# keep every core busy to the end. The length is chosen for the least time on the busiest core.
# The longest: a unit's crops travel as one block (224 px, 150 KB each, 3 a vehicle), about 230 MB for
# 300 s of a motorway as busy as the shared clip's (1.7 vehicles/s); a crash loses at most a segment.
SEGMENT_SECONDS = (10.0, 300.0)
SEGMENT_LADDER = (30, 60, 120, 180, 240, 300)  # lengths tried besides the total split evenly


def segment_works(durations: list[float], length: float, warmup_s: float) -> list[float]:
    """Seconds of video each segment decodes when videos of `durations` are cut into `length`-second
    segments as video.segment_bounds cuts them (the last takes the rest), each with its warm-up
    (none for a video's first)."""
    works = []
    for d in durations:
        n = 1 if d <= length else math.ceil(d / length)
        works += [length + (warmup_s if k else 0.0) for k in range(n - 1)]
        works.append(d - (n - 1) * length + (min(warmup_s, (n - 1) * length)))
    return works


def busiest_slot(works: list[float], slots: int) -> float:
    """Seconds of video on the busiest of `slots` tracking slots, each taking the next segment as
    it frees (longest first, as a bound on what Ray's order gives): exact for up to 50 segments a
    slot, beyond that the mean plus the longest segment."""
    if len(works) > 50 * slots:
        return sum(works) / slots + max(works)
    load = [0.0] * min(slots, len(works))
    for w in sorted(works, reverse=True):
        heapq.heapreplace(load, load[0] + w)
    return max(load)


@dataclass(frozen=True)
class SegmentSize:
    """What --segment-seconds auto chose on an output's first run, and from what."""

    seconds: float
    slots: int  # tracking tasks that run at once
    videos: int
    video_s: float  # their total duration
    warmup_s: float
    busiest_s: float  # seconds of video (warm-ups included) on the busiest slot

    def describe(self) -> str:
        return (f"{self.videos} video(s), {self.video_s / 60:,.1f} min in all, on {self.slots} tracking slot(s), each "
                f"segment also decoding {self.warmup_s:g} s of warm-up: the busiest has {self.busiest_s:,.0f} s of video, "
                f"{self.busiest_s * self.slots / self.video_s:.2f}x an even share")


def choose_segment_seconds(durations: list[float], slots: int, warmup_s: float) -> SegmentSize:
    """The segment length for videos of `durations` (seconds; unknown ones left out) on `slots`
    tracking slots: the longest whose busiest slot is within 3 % of the best, among the total split
    evenly over the slots 1 to 4 times and SEGMENT_LADDER, within SEGMENT_SECONDS and no shorter
    than the warm-up."""
    durations = [d for d in durations if d and d > 0] or [SEGMENT_SECONDS[0]]
    slots, total = max(1, slots), sum(durations)
    least, most = max(SEGMENT_SECONDS[0], warmup_s), SEGMENT_SECONDS[1]
    tried = {min(most, max(least, float(math.ceil(total / (slots * k))))) for k in (1, 2, 3, 4)}
    tried |= {min(most, max(least, float(s))) for s in SEGMENT_LADDER}
    busiest = {length: busiest_slot(segment_works(durations, length, warmup_s), slots) for length in tried}
    best = min(busiest.values())
    length = max(s for s, b in busiest.items() if b <= 1.03 * best)
    return SegmentSize(length, slots, len(durations), round(total, 1), warmup_s, round(busiest[length], 1))
