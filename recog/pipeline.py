"""The inference job as one chain: find units -> read -> preprocess -> predict -> sink.

`run_inference(cfg)` is what `recog infer`, `recog footage` and `python -m jobs.<name>` call.
Everything that can fail without a cluster (credentials, missing input, unknown model) is checked
first (`prepare`); then Ray Data streams the units through CPU tasks (read + decode) into a pool
of predictor actors, and the labeled rows back to the driver, which writes one Parquet file per
unit as it completes (`label_units`); last, the run manifest commits the run (`commit_run`).
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from dataclasses import dataclass

import pyarrow.compute as pc

from recog import models, sink, storage
from recog.config import InferConfig
from recog.errors import JobFailed, StorageError
from recog.media import MEDIA, fingerprint
from recog.models import ModelSpec
from recog.predict import Predictor
from recog.progress import Progress
from recog.runtime import PredictorPool, describe_cluster, init_ray, largest_node_cpus, ray_messages, units_dataset
from recog.sources import Inputs, Unit


def build_pipeline(units: list[Unit], spec: ModelSpec, pool: PredictorPool, cfg: InferConfig):
    """The Ray Data chain, every stage with its resources in one place."""
    import ray.data

    read = MEDIA[cfg.media].read_stage(cfg, spec, pool)
    return (
        units_dataset(units)
        # read + decode + resize (or, for vehicles, track): CPU tasks, one unit (shard, image group,
        # video segment) each; for a learned detector, actors on the GPUs
        .map_batches(read.pop("fn"), batch_size=1, batch_format="pyarrow", **read)
        # the model: a pool of actors, each with its own GPU (or CPUs)
        .map_batches(
            Predictor,
            fn_constructor_kwargs={"spec": spec, "opts": cfg.storage, "device": pool.device, "topk": cfg.topk,
                                   "min_vehicle_score": cfg.min_vehicle_score,
                                   "threads": pool.threads, "compile": cfg.compile},
            batch_size=pool.batch_size,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=pool.actors),
            num_cpus=pool.cpus_per_actor,
            num_gpus=pool.gpus_per_actor,
            # Room for the weights and a batch's activations. Being a different request from the
            # decode tasks', it also stops Ray Data fusing decoding into the actors, which would
            # leave the model's CPUs decoding and the rest idle.
            memory=pool.memory,
        )
    )


@dataclass
class Work:
    """An inference job ready to run: its model, the units found, and those still to do."""

    spec: ModelSpec
    found: Inputs
    earlier: dict[str, dict]  # unit id -> commit record, of units an earlier run committed
    todo: list[Unit]


def prepare(cfg: InferConfig, out=sys.stdout) -> Work:
    """Check access and the model, find the units, and leave out those already committed."""
    opts, media = cfg.storage, MEDIA[cfg.media]
    files = storage.check_access(cfg.source, cfg.output, opts, cfg.input_list is not None)
    spec = models.resolve(cfg.model, cfg.weights, list(cfg.classes) if cfg.classes else None, opts)
    found = media.find_units(cfg, files, fingerprint(cfg, spec.to_dict()))
    if not found.units:
        raise StorageError(f"{cfg.source}: no {media.wanted} found")
    print(f"[recog] {media.describe(cfg, found)}; model {spec.name} {spec.version}"
          + (f"; ignored {len(found.ignored)} other file(s)" if found.ignored else ""), file=out, flush=True)
    # Resume: units an earlier run of this job committed are taken over, not redone.
    earlier = {} if cfg.force else sink.committed_units(cfg.output, [u.unit_id for u in found.units], opts)
    todo = [u for u in found.units if u.unit_id not in earlier]
    if earlier:
        print(f"[recog] {len(earlier)} of {len(found.units)} unit(s) already committed by an earlier run; "
              f"{len(todo)} to do (--force redoes them all)", file=out, flush=True)
    return Work(spec, found, earlier, todo)


def label_units(work: Work, cfg: InferConfig, writer: sink.UnitWriter, progress: Progress, out=sys.stdout) -> PredictorPool:
    """Stream the units to do through the Ray pipeline; the writer commits each unit as it completes."""
    import ray

    init_ray(cfg.ray_address)
    pool = MEDIA[cfg.media].pool(ray.cluster_resources(), cfg, largest_node_cpus())
    print(f"[recog] cluster {describe_cluster(ray.cluster_resources())}: {pool.describe()}", file=out, flush=True)
    try:
        for batch in build_pipeline(work.todo, work.spec, pool, cfg).iter_batches(batch_format="pyarrow", batch_size=None):
            completed = writer.add(batch)
            inputs = batch.num_rows - pc.sum(batch.column("end")).as_py()  # end-of-unit records are no input
            progress.update(units=len(completed), rows=inputs, errors=batch.num_rows - batch.column("error").null_count)
    except Exception as e:
        units_written = writer.summary.units - writer.summary.resumed_units
        raise JobFailed(f"the job stopped after committing {units_written} of {len(work.todo)} unit(s): {_cause(e)}. "
                        f"Committed units are kept: run the same command again to do the rest.") from e
    return pool


def run_inference(cfg: InferConfig, out=sys.stdout) -> dict:
    """Run the inference job end to end; return the run manifest."""
    started = dt.datetime.now(dt.timezone.utc)
    media = MEDIA[cfg.media]
    print(f"[recog] {media.job} job {json.dumps(cfg.to_dict())}", file=out, flush=True)
    work = prepare(cfg, out)
    if not work.todo and (finished := _run_covering(cfg.output, set(work.earlier), cfg.storage)):
        print(f"[recog] nothing to do: every unit is committed, run {finished['run_id']} "
              f"({finished['summary']['rows']} rows); nothing written. --force reprocesses.", file=out, flush=True)
        return finished

    writer = sink.UnitWriter(cfg.output, sink.new_run_id(), cfg.storage, media.tables(cfg))
    writer.adopt(list(work.earlier.values()))
    progress = Progress(len(work.todo), label=media.noun, stream=out)
    pool = None
    if work.todo:
        with ray_messages(media.job, cfg.verbose, out):
            pool = label_units(work, cfg, writer, progress, out)
    return commit_run(cfg, work, writer, pool, started, progress, out)


def commit_run(cfg: InferConfig, work: Work, writer: sink.UnitWriter, pool: PredictorPool | None,
               started: dt.datetime, progress: Progress, out=sys.stdout) -> dict:
    """Write the run manifest (the run's commit) and say what the run did."""
    media, summary = MEDIA[cfg.media], writer.summary
    elapsed = progress.elapsed()
    rows_labeled = summary.rows - sum(r["rows"] for r in work.earlier.values())  # by this run, not adopted
    rate = rows_labeled / elapsed if work.todo and elapsed else None
    manifest_uri = writer.commit({
        "job": media.job, "status": "committed",
        "started_at": started.isoformat(), "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        "elapsed_s": round(elapsed, 3), "rows_per_s": round(rate, 2) if rate is not None else None,
        "config": cfg.to_dict(), "model": work.spec.to_dict() | {"classes": len(work.spec.classes),
                                                                  "class_names": None if work.spec.taxonomy == "imagenet"
                                                                  else list(work.spec.classes)},
        "resources": pool.__dict__ if pool else None, "inputs": work.found.counts(),
    })
    labels = ", ".join(f"{k} {v}" for k, v in summary.labels.most_common())
    print(f"[recog] run {writer.run_id}: {summary.rows} rows in {len(writer.committed)} file(s), {summary.errors} error(s), "
          f"{rate or 0:.1f} {media.row_noun}/s"
          + (f" ({summary.resumed_units} unit(s) from an earlier run)" if summary.resumed_units else "")
          + f" | {labels}", file=out, flush=True)
    print(f"[recog] results: {cfg.output}  manifest: {manifest_uri}", file=out, flush=True)
    manifest = json.loads(storage.read_bytes(manifest_uri, cfg.storage))
    for line in media.report(cfg, manifest):
        print(f"[recog] {line}", file=out, flush=True)
    return manifest


def _cause(e: BaseException) -> str:
    """The innermost error's first line: Ray wraps a task's exception in its own."""
    while getattr(e, "cause", None) is not None or e.__cause__ is not None:
        e = getattr(e, "cause", None) or e.__cause__
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[-1] if text else ''}"


def _run_covering(output: str, unit_ids: set[str], opts: storage.StorageOptions) -> dict | None:
    """A committed run whose files include every one of `unit_ids`, if any (the newest)."""
    for run in reversed(sink.committed_runs(output, opts)):
        if unit_ids <= {f["unit_id"] for f in run["files"]}:
            return run
    return None
