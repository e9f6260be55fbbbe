"""The inference job as one chain: find units -> read -> preprocess -> predict -> write -> commit.

`run_inference(cfg)` is what `recog infer`, `recog footage` and `python -m jobs.<name>` call.
Everything that can fail without a cluster (credentials, missing input, unknown model) is checked
first (`prepare`), with which units the output's tables already hold; then Ray Data streams the
units to do through CPU tasks (read + decode) into a pool of predictor actors and on to writer
tasks, which write each complete unit's files and hand only their add-records to the driver; the
driver commits those to the Delta tables in batches (`label_units`), and last writes the run
record (`commit_run`).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sys
import time
from dataclasses import dataclass, field, replace

from recog import models, sink, storage, table
from recog.balance import DecodeBalance, RemoteBalance, describe
from recog.config import InferConfig
from recog.errors import JobFailed, JobInterrupted, StorageError
from recog.media import MEDIA, fingerprint
from recog.models import ModelSpec
from recog.predict import Predictor, describe_probes, probe_reports, read_probe_reports
from recog.progress import Progress
from recog.runtime import WRITER_CPUS, JobRay, PredictorPool, decode_slots, describe_cluster, largest_node_cpus, units_dataset, whole_blocks
from recog.sources import Inputs, Unit


def build_pipeline(units: list[Unit], spec: ModelSpec, pool: PredictorPool, cfg: InferConfig, run_id: str,
                   balance: RemoteBalance | None = None):
    """The Ray Data chain, every stage with its resources in one place. Each unit travels as one
    block from the read stage on (`whole_blocks`), so that the writer sees complete units.
    `balance` (--decode auto) tells the read stage which units' JPEGs to leave to the predictors."""
    import ray.data

    read = MEDIA[cfg.media].read_stage(cfg, spec, pool, balance)
    # read + decode + resize (or, for vehicles, track): CPU tasks, one unit (shard, image group,
    # video segment) each; for a learned detector, actors on the GPUs
    units_read = units_dataset(units).map_batches(read.pop("fn"), batch_size=1, batch_format="pyarrow", **read)
    # the model: a pool of actors, each with its own GPU (or CPUs), pool.batch_size rows a call
    labeled = whole_blocks(
        units_read,
        Predictor,
        fn_constructor_kwargs={"spec": spec, "opts": cfg.storage, "device": pool.device, "topk": cfg.topk,
                               "min_vehicle_score": cfg.min_vehicle_score, "batch_size": pool.batch_size,
                               "threads": pool.threads, "compile": cfg.compile,
                               "report": probe_reports(cfg.output, run_id), "balance": balance},
        compute=ray.data.ActorPoolStrategy(size=pool.actors),
        num_cpus=pool.cpus_per_actor,
        num_gpus=pool.gpus_per_actor,
        # Room for the weights and a batch's activations. Being a different request from the
        # decode tasks', it also stops Ray Data fusing decoding into the actors, which would
        # leave the model's CPUs decoding and the rest idle.
        memory=pool.memory,
    )
    # the tables: CPU tasks write each complete unit's Parquet files to storage; only their
    # add-records (a few hundred bytes a file) go on to the driver
    return whole_blocks(labeled, sink.write_units, num_cpus=WRITER_CPUS,
                        fn_kwargs={"output": cfg.output, "run_id": run_id, "opts": cfg.storage,
                                   "tables": MEDIA[cfg.media].tables(cfg)})


@dataclass
class Work:
    """An inference job ready to run: its model, the units found, those an earlier run committed
    (taken over as they are), and those still to do."""

    cfg: InferConfig  # as the job runs it: with its unit size settled
    spec: ModelSpec
    found: Inputs
    status: sink.UnitStatus
    earlier: set[str]
    todo: list[Unit]
    started_at: float  # when the job started (time.time())
    unit_size: dict | None = None  # --images-per-unit auto on a new output: what it chose, from what
    properties: dict[str, str] = field(default_factory=dict)  # to record in the first table before committing

    @property
    def digest(self) -> str:
        return sink.units_digest([u.unit_id for u in self.found.units])


def prepare(cfg: InferConfig, ray_job: JobRay, out=sys.stdout) -> Work:
    """Check access and the model, find the units (of the size the output keeps, or one chosen for
    the cluster, for which `ray_job` starts Ray), and leave out those the tables already hold."""
    t0 = time.time()
    opts, media = cfg.storage, MEDIA[cfg.media]
    files = storage.check_access(cfg.source, cfg.output, opts, cfg.input_list is not None)
    spec = models.resolve(cfg.model, cfg.weights, list(cfg.classes) if cfg.classes else None, opts)
    cfg, unit_size, properties = media.sized(cfg, files, ray_job, out)
    found = media.find_units(cfg, files, fingerprint(cfg, spec.to_dict()))
    if not found.units:
        raise StorageError(f"{cfg.source}: no {media.wanted} found")
    print(f"[recog] {media.describe(cfg, found)}; model {spec.name} {spec.version}"
          + (f"; ignored {len(found.ignored)} other file(s)" if found.ignored else ""), file=out, flush=True)
    for warning in media.warnings(cfg):
        print(f"[recog] warning: {warning}", file=out, flush=True)
    # Resume: units the tables hold are taken over, not redone (unless forced, or holding errors).
    status = sink.unit_status(cfg.output, media.tables(cfg).names, [u.unit_id for u in found.units], opts)
    earlier = set() if cfg.force else set(status.committed) - (status.with_errors if cfg.retry_errors else set())
    todo = [u for u in found.units if u.unit_id not in earlier]
    if cfg.retry_errors:
        print(f"[recog] --retry-errors: {len(status.with_errors)} committed unit(s) hold error rows; "
              f"{len(todo)} to do", file=out, flush=True)
    elif earlier:
        print(f"[recog] {len(earlier)} of {len(found.units)} unit(s) already committed by an earlier run; "
              f"{len(todo)} to do (--force redoes them all)", file=out, flush=True)
    if status.changed:
        print(f"[recog] {len(status.changed)} unit(s) hold inputs added or rewritten since an earlier run: "
              f"their new rows replace the old", file=out, flush=True)
    return Work(cfg, spec, found, status, earlier, todo, t0, unit_size, properties)


@dataclass
class Labeled:
    """How a run's units were labeled: the predictor pool, where the time to the first results
    went, and (--decode auto) where JPEGs were decoded and why."""

    pool: PredictorPool
    startup: dict
    decoding: dict | None


def label_units(work: Work, run: sink.RunCommitter, progress: Progress, ray_job: JobRay, out=sys.stdout) -> Labeled:
    """Stream the units to do through the Ray pipeline; the run commits their files in batches."""
    import ray

    cfg = work.cfg
    since = lambda: round(time.time() - work.started_at, 2)  # noqa: E731 - seconds into the job
    startup = {"prepare_s": since()}
    cluster = ray_job.cluster()
    startup["ray_up_s"] = since()
    pool = MEDIA[cfg.media].pool(cluster, cfg, largest_node_cpus())
    if cfg.actors is None and pool.actors > len(work.todo):  # an actor per unit at most: each costs a process and a model
        pool = replace(pool, actors=len(work.todo))
    print(f"[recog] cluster {describe_cluster(cluster)}: {pool.describe()}", file=out, flush=True)
    balance = None
    if cfg.decode == "auto" and MEDIA[cfg.media].jpegs:
        slots = decode_slots(cluster, pool)
        balance = RemoteBalance(ray.remote(DecodeBalance).options(num_cpus=0).remote(slots, pool.actors))
    try:
        startup["pipeline_s"] = since()
        for records in build_pipeline(work.todo, work.spec, pool, cfg, run.run_id, balance).iter_batches(
                batch_format="pyarrow", batch_size=None):
            taken = run.add(records)
            if "first_results_s" not in startup:  # the first block: say once where the start-up went
                startup["first_results_s"] = since()
                reports = read_probe_reports(probe_reports(cfg.output, run.run_id), cfg.storage)
                startup |= predictors_startup(reports, work.started_at)
                for line in [*describe_probes(reports), describe_startup(startup)]:
                    print(f"[recog] {line}", file=out, flush=True)
            progress.update(units=taken.units, rows=taken.inputs, errors=taken.errors)
        run.close()
    except KeyboardInterrupt:
        run.stop()
        raise JobInterrupted(f"stopped after committing {len(run.committed)} of {len(work.todo)} unit(s), which are kept: "
                             f"run the same command again to do the rest") from None
    except Exception as e:
        run.stop()
        raise JobFailed(f"the job stopped after committing {len(run.committed)} of {len(work.todo)} unit(s): {_cause(e)}. "
                        f"Committed units are kept: run the same command again to do the rest.") from e
    decoding = balance.state() if balance else None
    if decoding:
        print(f"[recog] {describe(decoding)}", file=out, flush=True)
    return Labeled(pool, startup, decoding)


def predictors_startup(reports: list[dict], started_at: float) -> dict:
    """When the (slowest of the) predictors that reported were ready, seconds into the job, and
    what their start took: scheduling, process and imports; the model; the batch probe."""
    if not reports:
        return {}
    return {"predictors_ready_s": round(max(r["ready_at"] for r in reports) - started_at, 2),
            "predictor_init_s": round(max(r["init_at"] for r in reports) - started_at, 2),
            "model_s": max(r["model_s"] for r in reports),
            "probe_s": max(r.get("probe_s", 0) for r in reports)}


def describe_startup(startup: dict) -> str:
    """`start-up: first results at 7.1 s: inputs checked 0.4 s, Ray up at 2.9 s, ...`."""
    parts = [f"inputs checked at {startup['prepare_s']:g} s", f"Ray up at {startup['ray_up_s']:g} s"]
    if "predictors_ready_s" in startup:
        parts.append(f"predictors constructed from {startup['predictor_init_s']:g} s (processes and imports), "
                     f"ready at {startup['predictors_ready_s']:g} s (model {startup['model_s']:g} s, "
                     f"batch probe {startup['probe_s']:g} s)")
    return f"start-up: first results at {startup['first_results_s']:g} s; " + ", ".join(parts)


def run_inference(cfg: InferConfig, out=None) -> dict:
    """Run the inference job end to end; return its run record."""
    out = out or sys.stdout  # looked up per call: a caller may have replaced it since import
    started = dt.datetime.now(dt.timezone.utc)
    media = MEDIA[cfg.media]
    print(f"[recog] {media.job} job {json.dumps(cfg.to_dict())}", file=out, flush=True)
    with JobRay(media.job, cfg.ray_address, cfg.verbose, out) as ray_job:
        work = prepare(cfg, ray_job, out)
        if not work.todo and (finished := _run_covering(work.cfg.output, work.digest, work.cfg.storage)):
            print(f"[recog] nothing to do: every unit is committed, run {finished['run_id']} "
                  f"({finished['summary']['rows']} rows); nothing written. --force reprocesses.", file=out, flush=True)
            return finished
        if not _recorded(work):  # another job recorded another unit size since `prepare` looked: settle
            work = prepare(cfg, ray_job, out)  # it again from the output (auto takes it, another number stops)
        cfg = work.cfg
        run = sink.RunCommitter(cfg.output, sink.new_run_id(), cfg.storage, media.tables(cfg).names,
                                cfg.commit_units, cfg.commit_seconds)
        run.replacing({u.unit_id for u in work.todo})
        run.adopt(work.status, work.earlier)
        progress = Progress(len(work.todo), label=media.noun, stream=out)
        labeled = label_units(work, run, progress, ray_job, out) if work.todo else None
    return commit_run(cfg, work, run, labeled, started, progress, out)


def _recorded(work: Work) -> bool:
    """Make the job's first table if missing and record what a new output keeps (its unit size),
    once there is work to commit; False if the table holds other values (another job's, recorded
    since `prepare` looked)."""
    if not work.properties:
        return True
    first = MEDIA[work.cfg.media].tables(work.cfg).names[0]
    try:
        table.create(table.uri(work.cfg.output, first), sink.schema_of(first), work.cfg.storage, work.properties)
    except table.PropertiesDiffer:
        return False
    return True


def commit_run(cfg: InferConfig, work: Work, run: sink.RunCommitter, labeled: Labeled | None,
               started: dt.datetime, progress: Progress, out=sys.stdout) -> dict:
    """Write the run record (the run's commit) and say what the run did."""
    media = MEDIA[cfg.media]
    elapsed = progress.elapsed()
    resumed_rows = sum(r["rows"] for u in work.earlier for r in work.status.committed[u] if r["table"] == run.names[0])
    rows_labeled = run.summary.rows - resumed_rows  # by this run, not taken over
    rate = rows_labeled / elapsed if work.todo and elapsed else None
    uri, manifest = run.finish({
        "job": media.job, "status": "committed",
        "started_at": started.isoformat(), "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        "elapsed_s": round(elapsed, 3), "rows_per_s": round(rate, 2) if rate is not None else None,
        "config": cfg.to_dict(), "model": work.spec.to_dict() | {"classes": len(work.spec.classes),
                                                                  "class_names": None if work.spec.taxonomy == "imagenet"
                                                                  else list(work.spec.classes)},
        "resources": labeled.pool.__dict__ if labeled else None, "inputs": work.found.counts(),
        # every predictor's start-up and batch probe (those that started after the first block too)
        "predictors": read_probe_reports(probe_reports(cfg.output, run.run_id), cfg.storage) if labeled else None,
        "startup": labeled.startup if labeled else None,
        "decoding": labeled.decoding if labeled else None,
        "unit_size": work.unit_size,
    }, work.digest)
    summary = run.summary
    labels = ", ".join(f"{k} {v}" for k, v in summary.labels.most_common())
    print(f"[recog] run {run.run_id}: {summary.rows} rows in {summary.files} file(s), {summary.errors} error(s), "
          f"{rate or 0:.1f} {media.row_noun}/s"
          + (f" ({summary.resumed_units} unit(s) from an earlier run)" if summary.resumed_units else "")
          + f" | {labels}", file=out, flush=True)
    tables = ", ".join(f"{table.uri(cfg.output, name)} v{v}" for name, v in manifest["tables"].items())
    print(f"[recog] tables: {tables}  run record: {uri}", file=out, flush=True)
    for line in media.report(cfg, manifest):
        print(f"[recog] {line}", file=out, flush=True)
    return manifest


# an exception's own line in a traceback's text: `OSError: When initiating ...`
_RAISED = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception)): (.*)$", re.MULTILINE)


def _cause(e: BaseException) -> str:
    """What stopped the job, in one line. Ray wraps a task's exception in its own (RayTaskError,
    whose text is the task's traceback) and Ray Data in advice on its retries; the line says what
    the task raised first, or, when that was the object store failing, what to fix
    (`cannot reach the store: ...`)."""
    chain = [e]
    while (inner := getattr(chain[-1], "cause", None) or chain[-1].__cause__) is not None:
        chain.append(inner)
    texts = [str(link) for link in chain]
    if advice := storage.store_advice("\n".join(texts)):
        return f"the object store failed: {advice}"
    for link, text in zip(chain, texts):
        if type(link).__name__.startswith("RayTaskError") and (raised := _RAISED.search(text)):
            name, message = raised.groups()
            return f"{name.rsplit('.', 1)[-1]}: {message}"
    lines = texts[-1].strip().splitlines()
    return f"{type(chain[-1]).__name__}: {lines[-1] if lines else ''}"


def _run_covering(output: str, digest: str, opts: storage.StorageOptions) -> dict | None:
    """The newest finished run of the same units (the same job), if any."""
    for run in reversed(sink.committed_runs(output, opts)):
        if run.get("units_digest") == digest:
            return run
    return None
