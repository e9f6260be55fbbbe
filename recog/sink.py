"""Sink: a complete unit's labeled rows -> its tables' files (on workers) -> Delta commits (on the driver).

The predictor hands each unit on whole (one block: the read stage emits a unit as one block, and
the stages after it keep blocks whole). A writer task (`write_units`) checks that the block's units
are complete (records 0..end all there), turns each into its tables (`results`, or the vehicles
job's `vehicles` and `crossings`), writes their Parquet files straight to storage and returns only
add-records: the driver never sees a labeled row.

The driver's `RunCommitter` commits the add-records per table in batches (every `commit_units`
units or `commit_seconds`, whichever comes first; a batch takes whatever arrived while the previous
commit ran, so commits keep up however fast units arrive). A unit is committed when it is in every
table of its job: a rerun skips those (`unit_status`) and redoes the rest, and every commit removes
the live files of the units it adds, so a unit redone after a crash between two tables' commits,
with --force or --retry-errors, is replaced, never doubled. Last, a small run record
`_runs/<run_id>.json` (configuration, model, summary, the table versions the run committed, the run
ids its rows carry; no file list) says the run finished.
"""

from __future__ import annotations

import collections
import datetime as dt
import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from recog import storage, table
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


RECORD_SCHEMA = pa.schema([  # one add-record: a file a worker wrote, for the driver to commit
    ("table", pa.string()), ("unit_id", pa.string()), ("run_id", pa.string()), ("path", pa.string()),
    ("size", pa.int64()), ("modification_time", pa.int64()), ("camera", pa.string()), ("date", pa.string()),
    ("stats", pa.string()), ("rows", pa.int64()), ("errors", pa.int64()), ("labels", pa.string()),
    ("inputs", pa.int64()),  # the unit's labeled inputs (for progress), on each of its records
])


def new_run_id() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def schema_of(name: str) -> pa.Schema:
    """The schema of table `name`."""
    if name == "results":
        return OUTPUT_SCHEMA
    from recog.vehicles import CROSSINGS_SCHEMA, VEHICLES_SCHEMA

    return {"vehicles": VEHICLES_SCHEMA, "crossings": CROSSINGS_SCHEMA}[name]


def to_output(rows: pa.Table, run_id: str) -> pa.Table:
    """Order a complete unit's rows by record and give them exactly the output schema."""
    rows = rows.sort_by("record")
    rows = rows.append_column("run_id", pa.array([run_id] * rows.num_rows, pa.string()))
    rows = rows.append_column("date", pc.cast(rows.column("wall_time").cast(pa.timestamp("ms", tz="UTC")), pa.date32()))
    return pa.table({f.name: rows.column(f.name).cast(f.type) for f in OUTPUT_SCHEMA}, schema=OUTPUT_SCHEMA)


class ResultsTable:
    """The image and footage jobs' table maker: a row per input, end-of-unit records left out."""

    names = ("results",)

    def __call__(self, rows: pa.Table, run_id: str) -> dict[str, pa.Table]:
        return {"results": to_output(rows.filter(pc.invert(rows.column("end"))), run_id)}


results_table = ResultsTable()


class IncompleteUnit(RuntimeError):
    """A block reached the writer with part of a unit: writing it would commit a partial unit."""


def complete_units(block: pa.Table) -> dict[str, pa.Table]:
    """The units of a block, each in record order; raises IncompleteUnit unless every unit in it is
    whole (records 0..end, each once, end last)."""
    out = {}
    for unit in pc.unique(block.column("unit_id")).to_pylist():
        rows = block.filter(pc.equal(block.column("unit_id"), unit)).sort_by("record")
        records = rows.column("record").to_pylist()
        ends = [r for r, end in zip(records, rows.column("end").to_pylist()) if end]
        if len(ends) != 1 or records != list(range(ends[0] + 1)):
            raise IncompleteUnit(
                f"unit {unit} reached the writer incomplete (records {records[:3]}..{records[-3:]} of 0..{ends or '?'}): "
                f"every stage must pass a unit on as one block. Is the unit bigger than Ray Data's "
                f"target_max_block_size (fewer --images-per-unit or shorter --segment-seconds)?")
        out[unit] = rows
    return out


def write_units(block: pa.Table, output: str, run_id: str, opts: StorageOptions, tables=results_table) -> pa.Table:
    """The writer stage (a Ray task per block): every complete unit of the block becomes its tables'
    files in storage; returns their add-records (`RECORD_SCHEMA`), a few hundred bytes a file."""
    records = []
    for unit, rows in complete_units(block).items():
        inputs = rows.num_rows - pc.sum(rows.column("end")).as_py()
        for name, rows_of_table in tables(rows, run_id).items():
            for r in table.write_unit(table.uri(output, name), name, rows_of_table, schema_of(name), unit, run_id, opts):
                records.append({**r, "inputs": inputs})
    return pa.Table.from_pylist(records, schema=RECORD_SCHEMA)


@dataclass
class Summary:
    units: int = 0
    rows: int = 0
    errors: int = 0
    labels: collections.Counter = field(default_factory=collections.Counter)
    resumed_units: int = 0  # of `units`, those committed by an earlier run and taken over
    tables: collections.Counter = field(default_factory=collections.Counter)  # rows per table
    files: int = 0

    def add(self, first: str, records: list[dict]) -> None:
        """Count a committed unit from its add-records: rows, errors and labels of its `first` table
        (the job's main one), rows of every table."""
        self.units += 1
        self.files += len(records)
        for r in records:
            self.tables[r["table"]] += r["rows"]
            if r["table"] == first:
                self.rows += r["rows"]
                self.errors += r["errors"]
                self.labels.update(json.loads(r["labels"]))

    def to_dict(self) -> dict:
        return {"units": self.units, "rows": self.rows, "errors": self.errors, "labels": dict(self.labels.most_common()),
                "resumed_units": self.resumed_units, "tables": dict(self.tables), "files": self.files}


@dataclass
class UnitStatus:
    """What the tables of a job hold of its units."""

    committed: dict[str, list[dict]]  # unit id -> its live files (as add-records), for units in every table
    partial: set[str]  # units in some of the job's tables but not all (a crash between two commits)
    with_errors: set[str]  # committed units with error rows in the first table
    changed: set[str] = field(default_factory=set)  # units not held whose place is (their inputs were rewritten)


def unit_status(output: str, names: tuple[str, ...], unit_ids: list[str], opts: StorageOptions) -> UnitStatus:
    """Which of `unit_ids` the job's tables (`names`, the first being its main one) hold, from their
    logs alone: a unit is committed when it is in every one of them."""
    wanted = pa.array(sorted(set(unit_ids)), pa.string())
    places = {table.place_of(u): u for u in unit_ids}
    found: dict[str, dict[str, list[dict]]] = {}
    changed: set[str] = set()
    for name in names:
        uri = table.uri(output, name)
        files = table.live_files(table.load(uri, opts)) if table.exists(uri, opts) else pa.table({})
        by_unit: dict[str, list[dict]] = {}
        if files.num_rows:
            held = set(table.unit_ids(files).unique().drop_null().to_pylist())
            changed |= {places[p] for p in {table.place_of(u) for u in held} & places.keys()} - held
            files = files.filter(pc.is_in(table.unit_ids(files), wanted))
            for f in files.to_pylist():
                n, ok = f["num_records"], f.get("null_count.error")  # rows, and rows without an error
                by_unit.setdefault(f["min.unit_id"], []).append(
                    {"table": name, "unit_id": f["min.unit_id"], "run_id": f.get("min.run_id"), "rows": n,
                     "errors": n - ok if ok is not None else 0, "labels": "{}"})
        found[name] = by_unit
    everywhere = set.intersection(*(set(v) for v in found.values())) if found else set()
    anywhere = set().union(*(set(v) for v in found.values()))
    committed = {u: [r for name in names for r in found[name][u]] for u in everywhere}
    with_errors = {u for u in everywhere if any(r["errors"] for r in found[names[0]][u])}
    return UnitStatus(committed, anywhere - everywhere, with_errors, changed)


def units_digest(unit_ids: list[str]) -> str:
    """One value for a job's set of units: a rerun of the same job has the same."""
    return hashlib.sha256("\n".join(sorted(unit_ids)).encode()).hexdigest()[:16]


@dataclass
class Taken:
    """What a block of add-records brought to a run: new units, their inputs and error rows."""

    units: int
    inputs: int
    errors: int


class RunCommitter:
    """The driver's side of a run: takes the writers' add-records, commits them to each table in
    batches on a thread of its own (so the driver keeps taking records while a commit runs), and
    writes the run record last.

    A unit offered twice (a retried task wrote it again) is taken once; the second copy's files
    stay orphans that no reader sees. A failed commit stops the run: `add` and `finish` raise it."""

    def __init__(self, output: str, run_id: str, opts: StorageOptions, names: tuple[str, ...] = ("results",),
                 commit_units: int = 300, commit_seconds: float = 30.0):
        self.output, self.run_id, self.opts, self.names = output, run_id, opts, names
        self.commit_units, self.commit_seconds = commit_units, commit_seconds
        self.tables = {name: table.Committer(table.uri(output, name), schema_of(name), opts, run_id) for name in names}
        self.summary = Summary()
        self.run_ids = {run_id}
        self.versions = {name: c.dtable.version() for name, c in self.tables.items()}  # as this run leaves them
        self.taken: set[str] = set()  # units whose records arrived
        self.committed: set[str] = set()  # units in every table
        self.commits = 0
        self._pending: list[pa.Table] = []  # blocks of add-records taken, not yet committed
        self._pending_units = 0
        self._cond = threading.Condition()
        self._closing = False
        self._error: BaseException | None = None
        self._last = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="recog-commits", daemon=True)
        self._thread.start()

    def replacing(self, units: set[str]) -> None:
        """Units this run redoes: the commits that add them remove their earlier files."""
        for committer in self.tables.values():
            committer.replacing(units)

    def adopt(self, status: UnitStatus, units: set[str]) -> None:
        """Units an earlier run committed: part of this run's summary without being redone. Their
        labels are read from their files (the label column of the main table only)."""
        labels = _labels_of(self.output, self.names[0], units, self.opts) if units else {}
        for unit in units:
            records = status.committed[unit]
            first = [r for r in records if r["table"] == self.names[0]]
            if first:
                first[0] = {**first[0], "labels": json.dumps(labels.get(unit, {}))}
            self.summary.add(self.names[0], first + [r for r in records if r["table"] != self.names[0]])
            self.run_ids.update(r["run_id"] for r in records if r["run_id"])
        self.summary.resumed_units += len(units)

    def add(self, records: pa.Table) -> Taken:
        """Take a block of add-records; say what it brought that is new (each unit at most once per
        run). Columnar and O(1) in Python per block, so the driver keeps up with many writers; the
        commit thread turns the records into Python objects, once per batch."""
        self._raise()
        ids, tables, inputs, errors = (records.column(c).to_pylist() for c in ("unit_id", "table", "inputs", "errors"))
        seen = set(ids)
        new = seen - self.taken
        if len(new) < len(seen):  # a retried writer task handed in a unit again: its second files stay orphans
            records = records.take(pa.array([i for i, u in enumerate(ids) if u in new], pa.int64()))
        first = {u: n for u, t, n in zip(ids, tables, inputs) if t == self.names[0] and u in new}
        taken = Taken(len(new), sum(first.values()),
                      sum(e for u, t, e in zip(ids, tables, errors) if t == self.names[0] and u in new))
        if new:
            with self._cond:
                self._pending.append(records)
                self._pending_units += len(new)
                self.taken |= new
                self._cond.notify()
        return taken

    def _due(self) -> bool:
        return self._closing or self._pending_units >= self.commit_units or \
            (self._pending_units and time.monotonic() - self._last >= self.commit_seconds)

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._due(), timeout=max(0.1, self.commit_seconds / 10))
                if not self._due():
                    continue
                batch, self._pending, self._pending_units = self._pending, [], 0
                closing = self._closing
            if batch:
                try:
                    self._commit(pa.concat_tables(batch).to_pylist())
                except BaseException as e:  # noqa: BLE001 - handed to the driver's thread, which raises it
                    self._error = e
                    return
            if closing and not self._pending:
                return

    def _commit(self, records: list[dict]) -> None:
        """One batch: one commit per table, in the job's table order (a crash between them leaves
        units in some tables only, which a rerun redoes)."""
        for name, committer in self.tables.items():
            self.versions[name] = committer.commit([r for r in records if r["table"] == name])
        self.commits += 1
        by_unit: dict[str, list[dict]] = {}
        for r in records:
            by_unit.setdefault(r["unit_id"], []).append(r)
        for rs in by_unit.values():
            self.summary.add(self.names[0], rs)
        self.committed.update(by_unit)
        self._last = time.monotonic()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        """Give up (the run failed): what is pending stays uncommitted, and the thread ends."""
        with self._cond:
            self._pending.clear()
            self._pending_units = 0
            self._closing = True
            self._cond.notify()

    def close(self) -> None:
        """Commit what is pending and stop the commit thread."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join()
        self._raise()

    def finish(self, manifest: dict, digest: str) -> tuple[str, dict]:
        """Commit what is pending, then write the run record (the run's own commit); return its URI and body."""
        self.close()
        uri = storage.join(self.output, "_runs", f"{self.run_id}.json")
        body = {**manifest, "run_id": self.run_id, "summary": self.summary.to_dict(), "tables": dict(self.versions),
                "run_ids": sorted(self.run_ids), "units_digest": digest}
        storage.write_bytes(uri, json.dumps(body, indent=1, default=str).encode(), self.opts)
        return uri, body


def _labels_of(output: str, name: str, units: set[str], opts: StorageOptions) -> dict[str, dict[str, int]]:
    """Label counts per unit, read from the label column of those units' files in table `name`."""
    dtable = table.load(table.uri(output, name), opts)
    files = table.live_files(dtable)
    files = files.filter(pc.is_in(table.unit_ids(files), pa.array(sorted(units), pa.string())))
    rows = table.dataset(dtable, schema_of(name), opts, files=files).to_table(columns=["unit_id", "label"])
    counts: dict[str, dict[str, int]] = {}
    for r in rows.group_by(["unit_id", "label"]).aggregate([("label", "count")]).to_pylist():
        if r["label"] is not None:
            counts.setdefault(r["unit_id"], {})[r["label"]] = r["label_count"]
    return counts


def committed_runs(output: str, opts: StorageOptions) -> list[dict]:
    """The records of the runs that finished under `output`, oldest first."""
    runs = [json.loads(storage.read_bytes(f.uri, opts))
            for f in storage.list_files(storage.join(output, "_runs") + "/", opts) if f.uri.endswith(".json")]
    return sorted((r for r in runs if r.get("status") == "committed"), key=lambda r: r["run_id"])


def read_run(output: str, manifest: dict, opts: StorageOptions, name: str = "results") -> pa.Table:
    """The rows of table `name` that a run's job holds: the table at the version the run left it,
    the files of the run ids its rows carry (its own, and those of the units it took over)."""
    version = manifest.get("tables", {}).get(name)
    if version is None:
        return table.delta_schema(schema_of(name)).empty_table()
    dtable = table.load(table.uri(output, name), opts, version=version)
    return table.dataset(dtable, schema_of(name), opts, run_ids=set(manifest["run_ids"])).to_table()
