"""Delta Lake tables (deltalake, i.e. delta-rs): where recog's rows live and what makes them committed.

Each table of an output (`<output>/results`, `<output>/vehicles`, `<output>/crossings`: separate
folders, so that a vacuum of one never sees another's files) is a Delta table partitioned by camera
and date, of zstd Parquet files named `part-<unit_id>-<token>.parquet`. The token is new for every
write attempt, so a committed file is never overwritten in place (Delta readers trust the logged
size; vacuum deletes by path); a crashed attempt leaves an orphan no reader sees.

The work is split as the data flows:
- workers (Ray tasks) write a complete unit's files with pyarrow, straight to storage, and return
  one small *add-record* per file (`write_unit`): path, size, partition values, Delta stats;
- the driver commits add-records in batches (`Committer.commit`), one Delta commit per batch and
  table, which also removes any live file of the units it adds: a redone unit (--force, errors,
  a crash between two tables' commits) replaces its rows in the same atomic commit, never doubles
  them. A commit carries a Delta transaction id (app id `recog:<run_id>`, version = batch number),
  so a commit whose answer was lost (timeout) is recognised instead of being committed twice.
- the table says which units it holds (`live_files`: the unit id is each file's min/max stat; an
  empty unit is a 0-row file whose stats still carry its unit id), so a rerun skips them.

Readers get a pyarrow dataset built from the log's add actions (`dataset`), one fragment per file
with its camera/date as partition expression: a camera/date filter opens only those files. (deltalake's
own `to_pyarrow_dataset` builds the same thing at ~4 ms a file: 382 s for 100 k files, against ~1.5 s.)
Any number of jobs may make one table and commit into it at once, on stores with conditional writes
(S3 with `conditional_put=etag`, local disk; see the README for others): `create` writes a table's
first commit only where there is none, and every commit that meets one it cannot go on top of is
tried again a bounded number of times (`_retrying`).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import secrets
import tempfile
import time
import urllib.parse
from dataclasses import dataclass
from typing import Callable, TypeVar

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from recog import storage
from recog.errors import StorageError
from recog.storage import StorageOptions

TABLES = ("results", "vehicles", "crossings")
PARTITION_BY = ("camera", "date")
NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"  # Hive's name for "no value", which Spark and DuckDB read as null
# Columns whose min/max/null count go into each file's stats: unit_id and run_id make "which units
# and runs are in the table" a log-only question; error's null count tells which files hold error
# rows; record and wall_time let engines skip files. (Only these: stats of every column would make
# the log several times bigger, and its reading is what a query pays before it starts.)
STATS_COLUMNS = ("unit_id", "run_id", "record", "wall_time", "error")
# A commit that meets another writer's commit it cannot go on top of (delta-rs goes on top of the
# rest itself) is tried again, this many tries in all, the wait between tries doubling from the
# first value to the second (with jitter): at most 5 s in all, while the job's next batch waits.
COMMIT_ATTEMPTS = 8
RETRY_WAIT_S = (0.05, 2.0)
T = TypeVar("T")
RECORD_FIELDS = pa.schema([  # one add-record: a file a worker wrote, for the driver to commit
    ("table", pa.string()), ("unit_id", pa.string()), ("run_id", pa.string()), ("path", pa.string()),
    ("size", pa.int64()), ("modification_time", pa.int64()), ("camera", pa.string()), ("date", pa.string()),
    ("stats", pa.string()), ("rows", pa.int64()), ("errors", pa.int64()), ("labels", pa.string()),
])


def uri(output: str, name: str) -> str:
    """Where table `name` of an output lives."""
    return storage.join(output, name)


def storage_options(opts: StorageOptions) -> dict[str, str]:
    """delta-rs options for the store, built in the process that uses them from its own
    environment (so credentials never travel in arguments or land in logs)."""
    so = {"conditional_put": "etag",  # atomic commits on S3: a commit file is written only if absent
          "max_retries": "4", "retry_timeout": "60s"}  # a dead store fails the job in about a minute, not three
    if opts.region or opts.endpoint_url:
        so["AWS_REGION"] = opts.region or "us-east-1"
    if opts.endpoint_url:
        so["AWS_ENDPOINT_URL"] = opts.endpoint_url
        if opts.endpoint_url.startswith("http://"):
            so["AWS_ALLOW_HTTP"] = "true"
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        if os.environ.get(name):
            so[name] = os.environ[name]
    return so


def _location(table_uri: str) -> str:
    """The URI delta-rs takes: s3:// as is, local paths absolute."""
    if storage.is_s3(table_uri):
        return table_uri.rstrip("/")
    return os.path.abspath(table_uri.removeprefix("file://"))


def delta_schema(schema: pa.Schema) -> pa.Schema:
    """A recog schema as Delta stores it: timestamps in microseconds (Delta's only unit), docs as comments."""
    fields = []
    for f in schema:
        type_ = pa.timestamp("us", tz="UTC") if pa.types.is_timestamp(f.type) else f.type
        doc = (f.metadata or {}).get(b"doc")
        fields.append(pa.field(f.name, type_, metadata={"comment": doc.decode()} if doc else None))
    return pa.schema(fields)


def file_schema(schema: pa.Schema) -> pa.Schema:
    """The columns a data file holds: all but the partition columns, which live in the log (Delta's rule)."""
    return pa.schema([f for f in delta_schema(schema) if f.name not in PARTITION_BY])


def exists(table_uri: str, opts: StorageOptions) -> bool:
    from deltalake import DeltaTable

    return DeltaTable.is_deltatable(_location(table_uri), storage_options=storage_options(opts))


def create(table_uri: str, schema: pa.Schema, opts: StorageOptions, properties: dict[str, str] | None = None):
    """The table at `table_uri`, made if missing, holding `properties` (recog's own, `recog.*`).

    Any number of jobs may make one table at once. Version 0 (schema, partitioning, settings and
    `properties`, one commit) is written only where there is none (`storage.write_new`): delta-rs'
    own create does not promise that, a creator that loses the race commits a second CREATE on top
    of the winner's. A table another job made is taken as it is; columns it lacks (a table an older
    recog made: vehicles.crops_at) and properties it lacks are added (a metadata commit each, retried
    when it meets another), a property it holds with another value raises PropertiesDiffer."""
    from deltalake import Field

    properties = properties or {}
    if not exists(table_uri, opts):
        storage.write_new(storage.join(table_uri, "_delta_log", f"{0:020d}.json"),
                          _first_commit(table_uri, schema, properties), opts)
    dtable = load(table_uri, opts)

    def record(attempt: int) -> None:
        nonlocal dtable
        if attempt:
            dtable = load(table_uri, opts)
        have = {f.name for f in dtable.schema().fields}
        if lacking := [f for f in delta_schema(schema) if f.name not in have]:  # older rows read them as null
            dtable.alter.add_columns([Field.from_arrow(f) for f in lacking])
        held = dtable.metadata().configuration
        differ = {k: held[k] for k, v in properties.items() if k in held and held[k] != v}
        if differ:
            raise PropertiesDiffer(table_uri, differ)
        missing = {k: v for k, v in properties.items() if k not in held}
        if missing:
            dtable.alter.set_table_properties(missing, raise_if_not_exists=False)

    _retrying(table_uri, "recording the table's columns and properties", record)
    return dtable


def _first_commit(table_uri: str, schema: pa.Schema, properties: dict[str, str]) -> bytes:
    """Version 0 of a new table as delta-rs writes it, made in a scratch folder (and naming the
    table's own location): `create` puts it in place only if there is none."""
    from deltalake import DeltaTable

    stats = [c for c in STATS_COLUMNS if c in schema.names]
    configuration = {"delta.checkpointInterval": "100",
                     # not dataSkippingNumIndexedCols=0: delta-rs then drops the stats given
                     "delta.dataSkippingStatsColumns": ",".join(stats), **properties}
    with tempfile.TemporaryDirectory(prefix="recog-table-") as scratch:
        DeltaTable.create(scratch, delta_schema(schema), partition_by=list(PARTITION_BY),
                          name=table_uri.rstrip("/").rsplit("/", 1)[-1], configuration=configuration,
                          raise_if_key_not_exists=False)  # recog.* keys, which delta-rs does not know
        with open(os.path.join(scratch, "_delta_log", f"{0:020d}.json"), "rb") as f:
            actions = [json.loads(line) for line in f.read().splitlines() if line.strip()]
    for action in actions:
        if "commitInfo" in action:
            action["commitInfo"].get("operationParameters", {})["location"] = _location(table_uri)
    return "".join(json.dumps(a, separators=(",", ":")) + "\n" for a in actions).encode()


class PropertiesDiffer(StorageError):
    """A table holds some of the properties a job would record, with other values."""

    def __init__(self, table_uri: str, held: dict[str, str]):
        super().__init__(f"{table_uri} records " + ", ".join(f"{k}={v}" for k, v in held.items()))
        self.held = held


def properties(table_uri: str, opts: StorageOptions) -> dict[str, str] | None:
    """The table's properties (its metadata's configuration), or None if there is no table."""
    if not exists(table_uri, opts):
        return None
    return dict(load(table_uri, opts).metadata().configuration)


def _retrying(table_uri: str, what: str, attempt: Callable[[int], T], attempts: int = COMMIT_ATTEMPTS) -> tuple[T, int]:
    """`attempt(n)`, try n of a commit, until one lands; returns its result and the tries it took
    beyond the first. delta-rs itself commits on top of other writers' commits that do not touch
    what a commit does; a try that meets one that does (a metadata change, a file both remove) is
    tried again after a wait (doubling, with jitter), up to `attempts` tries in all."""
    from deltalake.exceptions import CommitFailedError

    n = 0
    while True:
        try:
            return attempt(n), n
        except CommitFailedError as e:
            n += 1
            if n == attempts:
                raise StorageError(f"{table_uri}: {what} lost to other writers' commits {attempts} times in a row "
                                   f"({str(e).strip()}); nothing of it was committed") from None
            time.sleep(random.uniform(0.5, 1.0) * min(RETRY_WAIT_S[1], RETRY_WAIT_S[0] * 2 ** (n - 1)))


def load(table_uri: str, opts: StorageOptions, version: int | None = None):
    from deltalake import DeltaTable

    try:
        return DeltaTable(_location(table_uri), version=version, storage_options=storage_options(opts))
    except Exception as e:  # noqa: BLE001 - delta-rs raises several kinds; all mean the same to a user
        raise StorageError(f"{table_uri}: cannot read the Delta table: {e}") from None


# ---- workers: a complete unit's files -----------------------------------------------------------

def partition_dir(camera: str | None, date: dt.date | None) -> str:
    """A partition's folder, escaped as Spark and delta-rs do (`a/b` -> `a%2Fb`): the names decode to
    the true values, so a key from inside the data never becomes a path outside the table."""
    cam = NULL_PARTITION if camera is None else urllib.parse.quote(camera, safe="")
    day = NULL_PARTITION if date is None else date.isoformat()
    return f"camera={cam}/date={day}"


def partitions(table: pa.Table) -> list[tuple[str | None, dt.date | None, pa.Table]]:
    """Rows split by (camera, date), in their order within each; one empty part for no rows (the
    unit's marker: its 0-row file says the unit is done)."""
    if table.num_rows == 0:
        return [(None, None, table)]
    keys = list(zip(table.column("camera").to_pylist(), table.column("date").to_pylist()))
    out = []
    for camera, date in dict.fromkeys(keys):
        out.append((camera, date, table.filter(pa.array([k == (camera, date) for k in keys]))))
    return out


def _stat(v):
    if isinstance(v, dt.datetime):
        return v.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"  # Delta: ISO-8601, ms
    return v


def file_stats(part: pa.Table, unit_id: str, run_id: str) -> str:
    """Delta stats (numRecords, minValues, maxValues, nullCount) of one file. A 0-row file still
    carries its unit and run ids as min/max, so the unit stays findable in the log."""
    mins, maxs, nulls = {}, {}, {}
    for name in STATS_COLUMNS:
        if name not in part.column_names:
            continue
        col = part.column(name)
        nulls[name] = col.null_count
        if name != "error" and col.null_count < part.num_rows:  # error: its null count is what matters
            mm = pc.min_max(col)
            mins[name], maxs[name] = _stat(mm["min"].as_py()), _stat(mm["max"].as_py())
    if part.num_rows == 0:
        mins["unit_id"] = maxs["unit_id"] = unit_id
        mins["run_id"] = maxs["run_id"] = run_id
    return json.dumps({"numRecords": part.num_rows, "minValues": mins, "maxValues": maxs, "nullCount": nulls},
                      separators=(",", ":"))


def write_unit(table_uri: str, name: str, rows: pa.Table, schema: pa.Schema, unit_id: str, run_id: str,
               opts: StorageOptions) -> list[dict]:
    """Write one complete unit's rows of one table (in `schema`) as a zstd Parquet file per camera and
    day; return an add-record per file. Runs on workers; nothing is visible until the driver commits."""
    fs, root = storage.filesystem(table_uri, opts)
    token = secrets.token_hex(4)
    cols = file_schema(schema)
    records = []
    for camera, date, part in partitions(rows):
        path = f"{partition_dir(camera, date)}/part-{unit_id}-{token}.parquet"
        buf = pa.BufferOutputStream()
        pq.write_table(part.select(cols.names).cast(cols), buf, compression="zstd")
        body = buf.getvalue()
        if isinstance(fs, pafs.LocalFileSystem):
            fs.create_dir(f"{root}/{path.rsplit('/', 1)[0]}")
        with fs.open_output_stream(f"{root}/{path}") as out:
            out.write(body)
        labels = {}
        if "label" in part.column_names and part.num_rows:
            labels = {r["values"]: r["counts"] for r in pc.value_counts(part.column("label").drop_null()).to_pylist()}
        records.append({
            "table": name, "unit_id": unit_id, "run_id": run_id, "path": path, "size": body.size,
            "modification_time": int(time.time() * 1000), "camera": camera,
            "date": None if date is None else date.isoformat(), "stats": file_stats(part, unit_id, run_id),
            "rows": part.num_rows, "errors": part.num_rows - part.column("error").null_count if "error" in part.column_names else 0,
            "labels": json.dumps(labels),
        })
    return records


# ---- the driver: commits -----------------------------------------------------------------------

def live_files(dtable) -> pa.Table:
    """The table's live files from its log: path, size_bytes, partition.camera, partition.date,
    num_records, min.unit_id, min.run_id, null_count.error (no data file is read)."""
    return pa.table(dtable.get_add_actions(flatten=True))


def place_of(unit_id: str) -> str:
    """A unit id's place (`sources.unit_id`: `<place>.<content>`): which inputs it covers. A redone
    unit replaces the live files of every unit at its place, whatever their content was."""
    return unit_id.split(".", 1)[0]


def unit_ids(files: pa.Table) -> pa.ChunkedArray:
    if "min.unit_id" not in files.column_names:  # an empty table: no stats columns at all
        return pa.chunked_array([pa.array([None] * files.num_rows, pa.string())])
    return files.column("min.unit_id")


@dataclass
class Committer:
    """Commits add-records to one table from the driver, a batch at a time. `replaced` gives the
    live files of units that are being redone: each commit removes those at the places of the units
    it adds. A commit that meets another writer's it cannot go on top of is tried again
    (`_retrying`, counted in `retries`), against the table as it is then."""

    table_uri: str
    schema: pa.Schema
    opts: StorageOptions
    run_id: str
    attempts: int = COMMIT_ATTEMPTS

    def __post_init__(self):
        self.dtable = create(self.table_uri, self.schema, self.opts)
        self.batches = self.dtable.transaction_version(self.app_id) or 0
        self.live: dict[str, list[tuple]] = {}  # unit place -> its live files (path, size, camera, date) when redone
        self.retries = 0  # commits tried again

    @property
    def app_id(self) -> str:
        return f"recog:{self.run_id}"

    def replacing(self, units: set[str]) -> None:
        """Note the live files at the places of `units` (redone by this run, or holding inputs that
        changed since): the commits that add those units remove these files."""
        files = live_files(self.dtable)
        if not files.num_rows:
            return
        places = {place_of(u) for u in units}
        for unit, path, size, camera, date in zip(*(files.column(c).to_pylist() for c in
                                                    ("min.unit_id", "path", "size_bytes", "partition.camera", "partition.date"))):
            if unit is not None and place_of(unit) in places:
                self.live.setdefault(place_of(unit), []).append((path, size, camera, date))

    def commit(self, records: list[dict]) -> int:
        """One atomic commit: add the files of `records`, remove the earlier files of their units.
        Returns the table's version after it."""
        from deltalake import CommitProperties, Transaction
        from deltalake.transaction import AddAction, RemoveAction

        units = dict.fromkeys(r["unit_id"] for r in records)
        places = dict.fromkeys(place_of(u) for u in units)
        adds = [AddAction(r["path"], r["size"], {"camera": r["camera"], "date": r["date"]}, r["modification_time"], True,
                          r["stats"]) for r in records]
        batch = self.batches + 1
        props = CommitProperties(app_transactions=[Transaction(self.app_id, batch)],
                                 custom_metadata={"recog.run_id": self.run_id, "recog.units": str(len(units))})

        def attempt(n: int) -> None:
            if n:  # another writer's commit came first: remove what the table holds at these places now
                for place in places:
                    self.live.pop(place, None)
                self.replacing(set(units))
            now = int(time.time() * 1000)
            removes = [RemoveAction(path, True, now, size, {"camera": camera, "date": None if date is None else str(date)})
                       for place in places for path, size, camera, date in self.live.get(place, [])]
            try:
                self.dtable.create_write_transaction([*removes, *adds], mode="append", schema=delta_schema(self.schema),
                                                     partition_by=list(PARTITION_BY), commit_properties=props)
            except Exception:
                # The commit may have landed although its answer was lost: the transaction id tells.
                self.dtable = load(self.table_uri, self.opts)
                if (self.dtable.transaction_version(self.app_id) or 0) < batch:
                    raise

        self.retries += _retrying(self.table_uri, f"commit {batch} of run {self.run_id}", attempt, self.attempts)[1]
        self.dtable.update_incremental()  # the object does not advance itself after a commit
        self.batches = batch
        for place in places:
            self.live.pop(place, None)
        return self.dtable.version()


# ---- readers and housekeeping -------------------------------------------------------------------

def _partition_expression(camera, date) -> ds.Expression:
    return ((pc.field("camera").is_null() if camera is None else pc.field("camera") == camera)
            & (pc.field("date").is_null() if date is None else pc.field("date") == date))


def dataset(dtable, schema: pa.Schema, opts: StorageOptions, run_ids: set[str] | None = None,
            files: pa.Table | None = None, filesystem: pafs.FileSystem | None = None) -> ds.Dataset:
    """The table's live files (those of `files`, or of runs `run_ids`, if given) as a pyarrow dataset
    read through pyarrow's own filesystem, one fragment per file carrying its camera and date.
    `filesystem` replaces the one the URI implies (the tests count file opens through it)."""
    files = live_files(dtable) if files is None else files
    if run_ids is not None and files.num_rows:
        files = files.filter(pc.is_in(files.column("min.run_id"), pa.array(sorted(run_ids), pa.string())))
    fs, root = storage.filesystem(dtable.table_uri, opts)
    if dtable.table_uri.startswith("file://"):
        root = urllib.parse.unquote(urllib.parse.urlparse(dtable.table_uri).path)
    fs = filesystem or fs
    fmt = ds.ParquetFileFormat()  # pre_buffer (coalesced reads, good on S3) is its default
    fragments = []
    if files.num_rows:
        # Per file only what must be: a path and a fragment; one partition
        # expression per camera and day, dates handled as text (date objects cost more than the rest).
        expressions: dict = {}
        keys = zip(files.column("partition.camera").to_pylist(),
                   pc.cast(files.column("partition.date"), pa.string()).to_pylist())
        prefix = root.rstrip("/") + "/"
        make = fmt.make_fragment
        for path, size, key in zip(files.column("path").to_pylist(), files.column("size_bytes").to_pylist(), keys):
            expr = expressions.get(key)
            if expr is None:
                camera, date = key
                expr = expressions[key] = _partition_expression(camera, None if date is None else dt.date.fromisoformat(date))
            fragments.append(make(prefix + (urllib.parse.unquote(path) if "%" in path else path), filesystem=fs,
                                  partition_expression=expr, file_size=size))
    return ds.FileSystemDataset(fragments, delta_schema(schema), fmt, fs)


def purge_predicate(before: dt.date, camera: str | None) -> str:
    pred = f"date < '{before.isoformat()}'"
    if camera is not None:
        pred += " AND camera = '" + camera.replace("'", "''") + "'"
    return pred


def purge(table_uri: str, opts: StorageOptions, before: dt.date, camera: str | None = None,
          dry_run: bool = False) -> dict:
    """Delete the rows of days before `before` (of one camera, if given), then delete their files.

    The predicate is on partition columns only, so delta-rs just logs the files' removal (no file is
    rewritten); a job that commits into those days meanwhile makes the delete try again, on the
    table as it is then. The vacuum that follows deletes removed files at once (retention 0) but
    only those the log removed ("lite" mode: the expired tombstones of the version it read, less any
    file live there), never a file a running job has written and will commit later ("full" mode
    would: it deletes every file the log does not hold)."""
    dtable = load(table_uri, opts)
    files = live_files(dtable)
    if files.num_rows:
        dates, cams = files.column("partition.date"), files.column("partition.camera")
        mask = pc.fill_null(pc.less(dates, pa.scalar(before, pa.date32())), False)
        if camera is not None:
            mask = pc.and_(mask, pc.fill_null(pc.equal(cams, camera), False))
        files = files.filter(mask)
    found = {"files": files.num_rows, "rows": int(pc.sum(files.column("num_records")).as_py() or 0) if files.num_rows else 0}
    if dry_run or not files.num_rows:
        return {**found, "deleted_files": 0}

    def delete(attempt: int) -> None:
        nonlocal dtable
        if attempt:  # a job committed meanwhile what the delete read: delete from the table as it is now
            dtable = load(table_uri, opts)
        dtable.delete(purge_predicate(before, camera))

    _retrying(table_uri, "the purge's delete", delete)
    deleted = dtable.vacuum(retention_hours=0, dry_run=False, enforce_retention_duration=False, full=False)
    return {**found, "deleted_files": len(deleted), "version": dtable.version()}
