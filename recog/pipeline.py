"""The inference job as one chain: plan units -> read -> preprocess -> predict -> sink.

`run_inference(cfg)` is what `recog infer` and `python -m jobs.infer` call. Everything that can
fail without a cluster (credentials, missing input, unknown model) is checked first; then Ray
Data streams units through CPU tasks (read + decode) into a pool of predictor actors, and the
labeled rows back to the driver, which writes one Parquet file per unit and the run manifest.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pyarrow.compute as pc

from recog import models, preprocess, sink, sources, storage, video
from recog.cluster import ClusterError
from recog.config import InferConfig
from recog.models import ModelSpec
from recog.predict import Predictor
from recog.progress import Progress
from recog.storage import StorageOptions

GPU_ACTOR_MEMORY = 2 << 30  # bytes of RAM reserved per predictor actor (torch, CUDA, model, a batch)
CPU_ACTOR_MEMORY = 1 << 30  # measured 0.9 GB resident for EfficientNet-Lite0 at batch 16


# Ray's CPUs are admission tickets, not cores. A CPU predictor actor holds MODEL_SHARE of a ticket
# per torch thread and a decode task DECODE_TASK_CPUS, so that on every node, even one of one CPU,
# decode tasks fit beside the actors: they take about a tenth of the work (PIL at reduced scale)
# and time-share the cores the model keeps busy. See bench/throughput.py for the figures.
MODEL_SHARE = 0.75
GPU_BATCH, CPU_BATCH = 256, 16  # CPU: batch 16 ran 75 images/s, batch 32 60 (activations fall out of cache)
DECODE_TASK_CPUS = 0.25


@dataclass(frozen=True)
class Resources:
    """How the predictor pool and the decode tasks are laid out on the cluster."""

    actors: int
    cpus_per_actor: float  # Ray CPUs each actor holds
    gpus_per_actor: float
    batch_size: int
    device: str  # "cuda" or "cpu"
    threads: int | None = None  # torch threads in each CPU actor (Ray would set OMP threads to its CPUs)
    decode_cpus: float = 1.0  # Ray CPUs each decode task holds
    memory: int = GPU_ACTOR_MEMORY  # bytes of RAM each actor holds

    def describe(self) -> str:
        kind = f"{self.gpus_per_actor:g} GPU" if self.gpus_per_actor else f"{self.threads} thread(s)"
        return f"{self.actors} predictor actor(s) x {kind} each on {self.device}, batch {self.batch_size}"


def plan_resources(cluster: dict, cfg: InferConfig, node_cpus: float | None = None) -> Resources:
    """Size the predictor pool from the cluster's resources, unless the config says otherwise.

    With GPUs: one actor per GPU, and every CPU decodes. CPU only: the model is most of the work,
    so it gets every core, as one single-threaded actor per core (measured faster here than fewer
    actors with more threads: no OpenMP barrier waits on a core that is also decoding); with
    `cpus_per_actor` set, actors of that many threads. `node_cpus`, the largest node's CPUs,
    bounds an actor: a bigger one would never be placed.
    """
    gpus, cpus = int(cluster.get("GPU", 0)), max(1, int(cluster.get("CPU", 1)))
    if gpus and cfg.device != "cpu":
        return Resources(cfg.actors or gpus, cfg.cpus_per_actor or 1, 1, cfg.batch_size or GPU_BATCH, "cuda")
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
    return Resources(actors, threads * MODEL_SHARE, 0, cfg.batch_size or CPU_BATCH, "cpu", threads, DECODE_TASK_CPUS,
                     CPU_ACTOR_MEMORY)


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


def build_pipeline(units: list[sources.Unit], spec: ModelSpec, res: Resources, cfg: InferConfig):
    """The Ray Data chain, every stage with its resources in one place."""
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # recog prints progress in units, with an ETA
    ctx.print_on_execution_start = False
    return (
        ray.data.from_items([u.to_row() for u in units], override_num_blocks=max(1, len(units)))
        # read + decode + resize: CPU tasks, one unit (shard, image group, video segment) each
        .map_batches(preprocess.load_units, batch_size=1, batch_format="pyarrow", num_cpus=res.decode_cpus,
                     fn_kwargs={"opts": cfg.storage, "prep": spec.preprocessing, "sampling": cfg.sampling,
                                "defer_jpeg": cfg.decode == "predictor"})
        # the model: a pool of actors, each with its own GPU (or CPUs)
        .map_batches(
            Predictor,
            fn_constructor_kwargs={"spec": spec, "opts": cfg.storage, "device": res.device, "topk": cfg.topk,
                                   "min_vehicle_score": cfg.min_vehicle_score,
                                   "threads": res.threads, "compile": cfg.compile},
            batch_size=res.batch_size,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=res.actors),
            num_cpus=res.cpus_per_actor,
            num_gpus=res.gpus_per_actor,
            # Room for the weights and a batch's activations. Being a different request from the
            # decode tasks', it also stops Ray Data fusing decoding into the actors, which would
            # leave the model's CPUs decoding and the rest idle.
            memory=res.memory,
        )
    )


def plan(cfg: InferConfig, files: list[storage.FileEntry], fingerprint: str) -> sources.Plan:
    """Units of work for the job's media; video headers are read here, a few at a time."""
    root = storage.common_root([f.uri for f in files]) if cfg.input_list or storage.is_pattern(cfg.input) else cfg.input
    result = sources.plan_units(files, root, fingerprint, cfg.images_per_unit, cfg.media)
    if cfg.media == "video" and result.videos:
        uris = [files_[sources.pick(files_, video.VIDEO_EXTS)] for _, files_ in result.videos]
        sidecars = {files_[sources.pick(files_, video.VIDEO_EXTS)]: files_.get("json") for _, files_ in result.videos}
        with ThreadPoolExecutor(16) as pool:  # header reads are small and latency-bound
            infos = dict(zip(uris, pool.map(lambda u: video.probe(u, cfg.storage), uris)))
            metas = dict(zip(sidecars, pool.map(
                lambda u: storage.read_bytes(u, cfg.storage).decode("utf-8", "replace") if u else None, sidecars.values())))
        result.units = sources.plan_segments(result.videos, infos, metas, fingerprint, cfg.sampling,
                                             cfg.segment_seconds, cfg.name_pattern)
    return result


def run_inference(cfg: InferConfig, out=sys.stdout) -> dict:
    """Run the inference job end to end; return the run manifest."""
    started = dt.datetime.now(dt.timezone.utc)
    opts = cfg.storage
    print(f"[recog] {cfg.media} job {json.dumps(cfg.to_dict())}", file=out, flush=True)
    files = storage.check_access(cfg.input, cfg.output, opts, cfg.input_list)
    spec = models.resolve(cfg.model, cfg.weights, list(cfg.classes) if cfg.classes else None, opts)
    settings = {"model": spec.to_dict(), "topk": cfg.topk, "min_vehicle_score": cfg.min_vehicle_score}
    if cfg.media == "video":
        settings["sampling"] = cfg.sampling.describe()
    work = plan(cfg, files, json.dumps(settings, sort_keys=True))
    if not work.units:
        wanted = "videos (" + ", ".join(video.VIDEO_EXTS) + ")" if cfg.media == "video" else \
            "tar shards or images (" + ", ".join(sources.IMAGE_EXTS) + ")"
        raise storage.StorageError(f"{cfg.input}: no {wanted} found")
    found = (f"{len(work.videos)} video(s) -> {len(work.units)} segment(s) of {float(cfg.sampling.segment_length(cfg.segment_seconds)):g} s, "
             f"sampling {cfg.sampling.describe()}" if cfg.media == "video" else
             f"{work.shards} shard(s), {work.images} loose image(s) -> {len(work.units)} unit(s)")
    print(f"[recog] {found}; model {spec.name} {spec.version}"
          + (f"; ignored {len(work.ignored)} other file(s)" if work.ignored else ""), file=out, flush=True)

    # Resume: units an earlier run of this job committed are taken over, not redone.
    earlier = {} if cfg.force else sink.committed_units(cfg.output, [u.unit_id for u in work.units], opts)
    todo = [u for u in work.units if u.unit_id not in earlier]
    if earlier:
        print(f"[recog] {len(earlier)} of {len(work.units)} unit(s) already committed by an earlier run; "
              f"{len(todo)} to do (--force redoes them all)", file=out, flush=True)
    if not todo and (finished := _run_covering(cfg.output, {u.unit_id for u in work.units}, opts)):
        print(f"[recog] nothing to do: every unit is committed, run {finished['run_id']} "
              f"({finished['summary']['rows']} rows); nothing written. --force reprocesses.", file=out, flush=True)
        return finished

    run_id = sink.new_run_id()
    writer = sink.UnitWriter(cfg.output, run_id, opts)
    writer.adopt(list(earlier.values()))
    progress = Progress(len(todo), label="frames" if cfg.media == "video" else "images")
    t0 = time.monotonic()
    res = None
    if todo:
        import ray

        init_ray(cfg.ray_address)
        res = plan_resources(ray.cluster_resources(), cfg, largest_node_cpus())
        print(f"[recog] cluster {_describe_cluster(ray.cluster_resources())}: {res.describe()}", file=out, flush=True)
        try:
            for batch in build_pipeline(todo, spec, res, cfg).iter_batches(batch_format="pyarrow", batch_size=None):
                done = writer.add(batch)
                inputs = batch.num_rows - pc.sum(batch.column("end")).as_py()
                progress.update(units=len(done), rows=inputs,
                                errors=batch.num_rows - batch.column("error").null_count)
        except Exception as e:
            made = writer.summary.units - writer.summary.resumed_units
            raise JobFailed(f"the job stopped after committing {made} of {len(todo)} unit(s): {_cause(e)}. "
                            f"Committed units are kept: run the same command again to do the rest.") from e
    elapsed = time.monotonic() - t0
    summary = writer.summary
    made = summary.rows - sum(r["rows"] for r in earlier.values())  # rows this run labeled itself
    manifest_uri = writer.commit({
        "job": "footage" if cfg.media == "video" else "infer", "status": "committed",
        "started_at": started.isoformat(), "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        "elapsed_s": round(elapsed, 3), "rows_per_s": round(made / elapsed, 2) if todo and elapsed else None,
        "config": cfg.to_dict(), "model": spec.to_dict() | {"classes": len(spec.classes)},
        "resources": res.__dict__ if res else None,
        "inputs": {"shards": work.shards, "images": work.images, "videos": len(work.videos), "ignored": len(work.ignored)},
    })
    labels = ", ".join(f"{k} {v}" for k, v in summary.labels.most_common())
    print(f"[recog] run {run_id}: {summary.rows} rows in {len(writer.committed)} file(s), {summary.errors} error(s), "
          f"{made / elapsed if elapsed else 0:.1f} {progress.label}/s"
          + (f" ({summary.resumed_units} unit(s) from an earlier run)" if summary.resumed_units else "")
          + f" | {labels}", file=out, flush=True)
    print(f"[recog] results: {cfg.output}  manifest: {manifest_uri}", file=out, flush=True)
    return json.loads(storage.read_bytes(manifest_uri, opts))


class JobFailed(RuntimeError):
    """The job could not finish (e.g. the object store went away); what it committed is kept."""


def _cause(e: BaseException) -> str:
    """The innermost error's first line: Ray wraps a task's exception in its own."""
    while getattr(e, "cause", None) is not None or e.__cause__ is not None:
        e = getattr(e, "cause", None) or e.__cause__
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[-1] if text else ''}"


def _run_covering(output: str, unit_ids: set[str], opts: StorageOptions) -> dict | None:
    """A committed run whose files include every one of `unit_ids`, if any (the newest)."""
    for run in reversed(sink.committed_runs(output, opts)):
        if unit_ids <= {f["unit_id"] for f in run["files"]}:
            return run
    return None


def _describe_cluster(res: dict) -> str:
    return ", ".join(f"{res.get(k, 0):g} {k}" for k in ("CPU", "GPU")) + f", {len(_nodes())} node(s)"


def _nodes() -> list:
    import ray

    return [n for n in ray.nodes() if n.get("Alive")]


def largest_node_cpus() -> float:
    """CPUs of the biggest node: no actor or worker may ask for more, or it would never be placed."""
    return max((n.get("Resources", {}).get("CPU", 0) for n in _nodes()), default=0) or 1
