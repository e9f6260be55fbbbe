"""Sink: labeled rows -> Parquet files per unit in camera/date partitions, then a run manifest written last.

Rows (no pixels: a few hundred bytes each) stream back to the driver, which gathers them per
unit. A unit is complete when its end-of-unit record has arrived and every record before it;
its rows are then sorted and written as `camera=<camera>/date=<day>/part-<unit_id>.parquet`
(one file per camera and day the unit's rows fall in), a name fixed by the unit's inputs and the
model, so writing a unit twice replaces files rather than adding duplicates. Rows that arrive
twice (a retried task) are dropped by record number.

Commits happen at two levels. A unit commits when its record `_units/<unit_id>.json` (its files,
their partitions, its counts) is written after its files: a re-run skips committed units, so a
crash loses only the units in flight. The run commits when its manifest `_runs/<run_id>.json`
(every file of every unit of the job, its configuration and summary) is written after all its
units. Readers (recog query) see only files that committed run manifests list.
"""

from __future__ import annotations

import collections
import datetime as dt
import hashlib
import io
import json
import secrets
import urllib.parse
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recog import storage
from recog.storage import StorageOptions

OUTPUT_SCHEMA = pa.schema([
    pa.field("source_uri", pa.string(), metadata={"doc": "object the image was read from (tar shard or image file)"}),
    pa.field("shard", pa.string(), metadata={"doc": "tar shard file name; null for loose images"}),
    pa.field("key", pa.string(), metadata={"doc": "sample key (WebDataset key, or path below the input prefix)"}),
    pa.field("member", pa.string(), metadata={"doc": "image member in the shard, or image file name"}),
    pa.field("width", pa.int32(), metadata={"doc": "width of the original image in pixels"}),
    pa.field("height", pa.int32(), metadata={"doc": "height of the original image in pixels"}),
    pa.field("label", pa.string(), metadata={"doc": "vehicle type (car, pickup, van, truck, bus, motorcycle, bicycle, other_vehicle, not_vehicle)"}),
    pa.field("score", pa.float32(), metadata={"doc": "probability of the label"}),
    pa.field("topk_labels", pa.list_(pa.string()), metadata={"doc": "the model's own top-k classes"}),
    pa.field("topk_scores", pa.list_(pa.float32()), metadata={"doc": "their probabilities"}),
    pa.field("cls", pa.string(), metadata={"doc": "the sample's .cls sidecar, if any"}),
    pa.field("meta", pa.string(), metadata={"doc": "the sample's .json sidecar (JSON text), if any"}),
    pa.field("camera", pa.string(), metadata={"doc": "camera, from the .json sidecar or the video file name"}),
    pa.field("frame_index", pa.int64(), metadata={"doc": "video: frame number (time x nominal rate); null for images"}),
    pa.field("pts_s", pa.float64(), metadata={"doc": "video: presentation time in seconds from the start; null for images"}),
    pa.field("wall_time", pa.timestamp("ms", tz="UTC"), metadata={"doc": "when it was recorded, if known (video start + pts, or the image's timestamp)"}),
    pa.field("date", pa.date32(), metadata={"doc": "UTC day of wall_time; with camera, the partition the row is stored in"}),
    pa.field("error", pa.string(), metadata={"doc": "why this input has no label; null when it has one"}),
    pa.field("model", pa.string(), metadata={"doc": "model name"}),
    pa.field("model_version", pa.string(), metadata={"doc": "sha256 prefix of the model weights"}),
    pa.field("run_id", pa.string(), metadata={"doc": "the run that wrote the row"}),
    pa.field("unit_id", pa.string(), metadata={"doc": "unit of work (one output file)"}),
    pa.field("record", pa.int32(), metadata={"doc": "position of the input within its unit"}),
    pa.field("processed_at", pa.timestamp("ms", tz="UTC"), metadata={"doc": "when the model labeled it"}),
])


def new_run_id() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"  # Hive's name for "no value", which Spark and DuckDB read as null


def unit_file(unit_id: str, camera: str | None = None, date: dt.date | None = None, table: str = "results") -> str:
    """Where a unit's rows of one camera and day go, relative to the output prefix: `results` at the
    top, other tables (the vehicles job's) in a folder of their name."""
    cam = NULL_PARTITION if camera is None else urllib.parse.quote(camera, safe="")
    if len(cam) > 120:  # path segments have limits; the manifest keeps the full value
        cam = cam[:100] + "~" + hashlib.sha256(camera.encode()).hexdigest()[:16]
    day = NULL_PARTITION if date is None else date.isoformat()
    folder = "" if table == "results" else f"{table}/"
    return f"{folder}camera={cam}/date={day}/part-{unit_id}.parquet"


def to_output(rows: pa.Table, run_id: str) -> pa.Table:
    """Order a complete unit's rows by record and give them exactly the output schema."""
    rows = rows.sort_by("record")
    rows = rows.append_column("run_id", pa.array([run_id] * rows.num_rows, pa.string()))
    rows = rows.append_column("date", pc.cast(rows.column("wall_time").cast(pa.timestamp("ms", tz="UTC")), pa.date32()))
    return pa.table({f.name: rows.column(f.name).cast(f.type) for f in OUTPUT_SCHEMA}, schema=OUTPUT_SCHEMA)


def results_table(rows: pa.Table, run_id: str) -> dict[str, pa.Table]:
    """The image and footage jobs' table: a row per input, end-of-unit records left out."""
    return {"results": to_output(rows.filter(pc.invert(rows.column("end"))), run_id)}


def partitions(table: pa.Table) -> list[tuple[str | None, dt.date | None, pa.Table]]:
    """A unit's rows split by (camera, date), in record order within each; one empty part for no rows."""
    if table.num_rows == 0:
        return [(None, None, table)]
    keys = list(zip(table.column("camera").to_pylist(), table.column("date").to_pylist()))
    out = []
    for camera, date in dict.fromkeys(keys):
        mask = [k == (camera, date) for k in keys]
        out.append((camera, date, table.filter(pa.array(mask))))
    return out


@dataclass
class _Pending:
    parts: list[pa.Table] = field(default_factory=list)
    seen: set[int] = field(default_factory=set)
    total: int | None = None  # records in the unit, known once its end record arrived


@dataclass
class Summary:
    units: int = 0
    rows: int = 0
    errors: int = 0
    labels: collections.Counter = field(default_factory=collections.Counter)
    resumed_units: int = 0  # of `units`, those committed by an earlier run and taken over
    tables: collections.Counter = field(default_factory=collections.Counter)  # rows per table

    def add(self, record: dict) -> None:
        """Count a committed unit: rows, errors and labels of its first table, rows of every table."""
        self.units += 1
        self.rows += record["rows"]
        self.errors += record["errors"]
        self.labels.update(record["labels"])
        self.tables.update(record.get("tables", {"results": record["rows"]}))

    def to_dict(self) -> dict:
        return {"units": self.units, "rows": self.rows, "errors": self.errors, "labels": dict(self.labels.most_common()),
                "resumed_units": self.resumed_units, "tables": dict(self.tables)}


def unit_record_uri(output: str, unit_id: str) -> str:
    return storage.join(output, "_units", f"{unit_id}.json")


def committed_units(output: str, unit_ids: list[str], opts: StorageOptions) -> dict[str, dict]:
    """The commit records of those of `unit_ids` that an earlier run finished (one listing, then
    a parallel read of the records wanted)."""
    from concurrent.futures import ThreadPoolExecutor

    wanted = set(unit_ids)
    uris = [f.uri for f in storage.list_files(storage.join(output, "_units") + "/", opts)
            if f.uri.rsplit("/", 1)[-1].removesuffix(".json") in wanted]
    with ThreadPoolExecutor(16) as pool:
        records = list(pool.map(lambda u: json.loads(storage.read_bytes(u, opts)), uris))
    return {r["unit_id"]: r for r in records}


class UnitWriter:
    """Gathers streamed rows per unit and writes each unit's files as soon as it is complete.
    `tables` turns a complete unit's rows (its end record included) into the tables to write."""

    def __init__(self, output: str, run_id: str, opts: StorageOptions, tables=results_table):
        self.output, self.run_id, self.opts, self.tables = output, run_id, opts, tables
        self.pending: dict[str, _Pending] = {}
        self.committed: list[dict] = []
        self.summary = Summary()

    def add(self, batch: pa.Table) -> list[str]:
        """Take a batch of labeled rows; return the ids of units it completed (and wrote)."""
        done = []
        for unit in pc.unique(batch.column("unit_id")).to_pylist():
            rows = batch.filter(pc.equal(batch.column("unit_id"), unit))
            p = self.pending.setdefault(unit, _Pending())
            records = rows.column("record").to_pylist()
            fresh = [r not in p.seen for r in records]
            if not all(fresh):  # a retried task delivered some rows again
                rows = rows.filter(pa.array(fresh))
                records = [r for r, f in zip(records, fresh) if f]
            p.seen.update(records)
            ends = [r for r, end in zip(records, rows.column("end").to_pylist()) if end]
            if ends:
                p.total = ends[0]
            p.parts.append(rows)
            if p.total is not None and len(p.seen) == p.total + 1:
                self._write(unit, pa.concat_tables(self.pending.pop(unit).parts, promote_options="permissive"))
                done.append(unit)
        return done

    def _write(self, unit: str, rows: pa.Table) -> None:
        """Write a complete unit's files, then its commit record. Its counts are those of its first table."""
        tables = self.tables(rows, self.run_id)
        files = []
        for name, table in tables.items():
            for camera, date, part in partitions(table):
                buf = io.BytesIO()
                pq.write_table(part, buf, compression="zstd")
                path = unit_file(unit, camera, date, name)
                storage.write_bytes(storage.join(self.output, path), buf.getvalue(), self.opts)
                errors = part.num_rows - part.column("error").null_count if "error" in part.column_names else 0
                files.append({"unit_id": unit, "table": name, "file": path, "camera": camera,
                              "date": date.isoformat() if date else None, "rows": part.num_rows, "errors": errors})
        first = next(iter(tables.values()))
        labels = collections.Counter(v for v in first.column("label").to_pylist() if v is not None)
        record = {"unit_id": unit, "run_id": self.run_id, "files": files, "rows": first.num_rows,
                  "errors": first.num_rows - first.column("error").null_count, "labels": dict(labels),
                  "tables": {name: t.num_rows for name, t in tables.items()}}
        storage.write_bytes(unit_record_uri(self.output, unit), json.dumps(record).encode(), self.opts)
        self._take(record)

    def _take(self, record: dict) -> None:
        self.committed += record["files"]
        self.summary.add(record)

    def adopt(self, records: list[dict]) -> None:
        """Units an earlier run committed: part of this run's manifest without being redone."""
        for record in records:
            self._take(record)
        self.summary.resumed_units += len(records)

    def commit(self, manifest: dict) -> str:
        """Write the run manifest (last, after every unit file); return its URI."""
        if self.pending:
            raise RuntimeError(f"{len(self.pending)} units are incomplete: {sorted(self.pending)[:5]}")
        uri = storage.join(self.output, "_runs", f"{self.run_id}.json")
        body = {**manifest, "run_id": self.run_id, "files": self.committed, "summary": self.summary.to_dict()}
        storage.write_bytes(uri, json.dumps(body, indent=1, default=str).encode(), self.opts)
        return uri


def committed_runs(output: str, opts: StorageOptions) -> list[dict]:
    """The manifests of the runs that committed under `output`, oldest first."""
    runs = [json.loads(storage.read_bytes(f.uri, opts))
            for f in storage.list_files(storage.join(output, "_runs") + "/", opts) if f.uri.endswith(".json")]
    return sorted((r for r in runs if r.get("status") == "committed"), key=lambda r: r["run_id"])


def read_run(output: str, manifest: dict, opts: StorageOptions, table: str = "results") -> pa.Table:
    """The rows of one table a run committed, read back from the Parquet files its manifest lists."""
    tables = [pq.read_table(io.BytesIO(storage.read_bytes(storage.join(output, f["file"]), opts)))
              for f in manifest["files"] if f.get("table", "results") == table]
    return pa.concat_tables(tables) if tables else OUTPUT_SCHEMA.empty_table()
