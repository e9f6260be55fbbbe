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
from dataclasses import dataclass

from recog import models, sink, sources, storage
from recog.config import InferConfig
from recog.models import ModelSpec
from recog.preprocess import preprocess_batch
from recog.predict import Predictor
from recog.progress import Progress
from recog.storage import StorageOptions

log = logging.getLogger("recog")

ACTOR_MEMORY = 2 << 30  # bytes of RAM reserved per predictor actor (torch + model + a batch)


@dataclass(frozen=True)
class Resources:
    """How the predictor pool is laid out on the cluster."""

    actors: int
    cpus_per_actor: float
    gpus_per_actor: float
    batch_size: int
    device: str  # "cuda" or "cpu"

    def describe(self) -> str:
        kind = f"{self.gpus_per_actor:g} GPU" if self.gpus_per_actor else f"{self.cpus_per_actor:g} CPU"
        return f"{self.actors} predictor actor(s) x {kind} each on {self.device}, batch {self.batch_size}"


def plan_resources(cluster: dict, cfg: InferConfig) -> Resources:
    """Size the predictor pool from the cluster's resources, unless the config says otherwise.

    With GPUs: one actor per GPU. CPU only: about half the CPUs run the model, in actors of up to
    4 threads each; the rest decode images.
    """
    gpus, cpus = int(cluster.get("GPU", 0)), max(1, int(cluster.get("CPU", 1)))
    if gpus and cfg.device != "cpu":
        return Resources(cfg.actors or gpus, cfg.cpus_per_actor or 1, 1, cfg.batch_size or 256, "cuda")
    if cfg.device == "cuda":
        raise RuntimeError("--device cuda was asked for, but the Ray cluster has no GPUs")
    model_cpus = max(1, cpus // 2)
    actors = cfg.actors or max(1, model_cpus // 4)
    per_actor = cfg.cpus_per_actor or max(1, model_cpus // actors)
    return Resources(actors, per_actor, 0, cfg.batch_size or 32, "cpu")


def init_ray(address: str | None) -> None:
    """Connect to the cluster at `address` (or RAY_ADDRESS); without one, start a private local Ray."""
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, logging_level=logging.WARNING)
    else:
        ray.init(address="local", include_dashboard=False, logging_level=logging.WARNING)


def build_pipeline(units: list[sources.Unit], spec: ModelSpec, res: Resources, opts: StorageOptions, cfg: InferConfig):
    """The Ray Data chain, every stage with its resources in one place."""
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # recog prints progress in units, with an ETA
    ctx.print_on_execution_start = False
    return (
        ray.data.from_items([u.to_row() for u in units], override_num_blocks=max(1, len(units)))
        # read + decode: CPU tasks, one unit at a time, fused into one task by Ray Data
        .map_batches(sources.read_units_batch, batch_size=1, batch_format="pyarrow", fn_kwargs={"opts": opts})
        .map_batches(preprocess_batch, batch_size=None, batch_format="pyarrow",
                     fn_kwargs={"prep": spec.preprocessing})
        # the model: a pool of actors, each with its own GPU (or CPUs)
        .map_batches(
            Predictor,
            fn_constructor_kwargs={"spec": spec, "opts": opts, "device": res.device, "topk": cfg.topk,
                                   "min_vehicle_score": cfg.min_vehicle_score,
                                   "threads": None if res.gpus_per_actor else int(res.cpus_per_actor)},
            batch_size=res.batch_size,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=res.actors),
            num_cpus=res.cpus_per_actor,
            num_gpus=res.gpus_per_actor,
            # Room for the weights and a batch's activations. Being a different request from the
            # decode tasks', it also stops Ray Data fusing decoding into the actors, which would
            # leave the model's CPUs decoding and the rest idle.
            memory=ACTOR_MEMORY,
        )
    )


def run_inference(cfg: InferConfig, out=sys.stdout) -> dict:
    """Run the inference job end to end; return the run manifest."""
    started = dt.datetime.now(dt.timezone.utc)
    opts = cfg.storage
    print(f"[recog] infer {json.dumps(cfg.to_dict())}", file=out, flush=True)
    files = storage.check_access(cfg.input, cfg.output, opts)
    spec = models.resolve(cfg.model, cfg.weights, list(cfg.classes) if cfg.classes else None, opts)
    fingerprint = json.dumps({"model": spec.to_dict(), "topk": cfg.topk, "min_vehicle_score": cfg.min_vehicle_score}, sort_keys=True)
    plan = sources.plan_units(files, cfg.input, fingerprint, cfg.images_per_unit)
    if not plan.units:
        raise storage.StorageError(f"{cfg.input}: no tar shards or images ({', '.join(sources.IMAGE_EXTS)}) found")
    print(f"[recog] {plan.shards} shard(s), {plan.images} loose image(s) -> {len(plan.units)} unit(s); "
          f"model {spec.name} {spec.version}" + (f"; ignored {len(plan.ignored)} other file(s)" if plan.ignored else ""),
          file=out, flush=True)

    import ray

    init_ray(cfg.ray_address)
    res = plan_resources(ray.cluster_resources(), cfg)
    print(f"[recog] cluster {_describe_cluster(ray.cluster_resources())}: {res.describe()}", file=out, flush=True)

    run_id = sink.new_run_id()
    writer = sink.UnitWriter(cfg.output, run_id, opts)
    progress = Progress(len(plan.units))
    t0 = time.monotonic()
    ds = build_pipeline(plan.units, spec, res, opts, cfg)
    for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
        done = writer.add(batch)
        progress.update(units=len(done), rows=batch.num_rows,
                        errors=batch.num_rows - batch.column("error").null_count)
    elapsed = time.monotonic() - t0
    summary = writer.summary
    manifest_uri = writer.commit({
        "job": "infer", "status": "committed", "started_at": started.isoformat(),
        "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(), "elapsed_s": round(elapsed, 3),
        "images_per_s": round(summary.rows / elapsed, 2) if elapsed else None,
        "config": cfg.to_dict(), "model": spec.to_dict() | {"classes": len(spec.classes)},
        "resources": res.__dict__, "inputs": {"shards": plan.shards, "images": plan.images, "ignored": len(plan.ignored)},
    })
    labels = ", ".join(f"{k} {v}" for k, v in summary.labels.most_common())
    print(f"[recog] run {run_id}: {summary.rows} rows in {summary.units} file(s), {summary.errors} error(s), "
          f"{summary.rows / elapsed:.1f} images/s | {labels}", file=out, flush=True)
    print(f"[recog] results: {cfg.output}  manifest: {manifest_uri}", file=out, flush=True)
    return json.loads(storage.read_bytes(manifest_uri, opts))


def _describe_cluster(res: dict) -> str:
    return ", ".join(f"{res.get(k, 0):g} {k}" for k in ("CPU", "GPU")) + f", {len(_nodes())} node(s)"


def _nodes() -> list:
    import ray

    return [n for n in ray.nodes() if n.get("Alive")]
