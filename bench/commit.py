"""The commit path, before and after the Delta tables, on the embedded store and without a model.

    python bench/commit.py [--units 2000] [--commit-units 20000] [--files 100000] [--json out.json]

before  today's (commit 1c20ce0) driver-side writer: every labeled row reaches the driver, which
        writes each unit's Parquet file and its `_units/<id>.json`, then a run manifest listing
        every file. A compact copy of that path is kept below (`OldDriverWriter`) so the comparison
        runs on the same machine and store; `recog query` then lists and parses the manifests and
        builds a dataset of every listed file (`old_open`, the code of 1c20ce0's query.py).
after   workers write (here `sink.write_units`, timed apart as worker CPU) and the driver only
        takes add-records and commits them (`sink.RunCommitter`, the job's own class). The commit
        path is fed add-records as fast as the driver takes them: what it sustains is the rate a
        cluster's writers could hand it. Beyond the units really written, add-records are copies
        with other unit ids and paths (no files behind them): commits never read data files.

Query planning: `recog query`'s set-up (`Results`: table logs or manifests, the dataset, DuckDB)
plus DuckDB planning a one-partition query, on a table of --files files (log only, no data files
needed), with and without a Delta checkpoint; and on the old layout with as many manifest entries.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recog import sink, storage, table  # noqa: E402
from recog.objectstore import EmbeddedStore  # noqa: E402
from recog.query import Results  # noqa: E402
from recog.storage import StorageOptions  # noqa: E402

ROWS_PER_UNIT = 256
DAY = dt.datetime(2026, 11, 3, tzinfo=dt.timezone.utc)


def cpu_s() -> float:
    """CPU seconds of this process (the driver), all threads."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def unit_rows(unit: str, n: int = ROWS_PER_UNIT, camera: str = "cam-01") -> pa.Table:
    """One unit's labeled rows as the predictor emits them (and its end record): frames of one camera."""
    ms = [int(DAY.timestamp() * 1000) + i * 500 for i in range(n + 1)]
    labels = ["car", "truck", "bus", "van"]
    return pa.table({
        "unit_id": [unit] * (n + 1), "record": pa.array(range(n + 1), pa.int32()), "end": [False] * n + [True],
        "source_uri": [f"s3://archive/{camera}/{unit}.mp4"] * (n + 1), "shard": pa.nulls(n + 1, pa.string()),
        "key": [unit] * (n + 1), "member": pa.nulls(n + 1, pa.string()), "width": pa.array([1920] * (n + 1), pa.int32()),
        "height": pa.array([1080] * (n + 1), pa.int32()), "cls": pa.nulls(n + 1, pa.string()), "meta": pa.nulls(n + 1, pa.string()),
        "error": pa.nulls(n + 1, pa.string()), "label": [labels[i % 4] for i in range(n + 1)],
        "score": pa.array([0.5 + (i % 50) / 100 for i in range(n + 1)], pa.float32()),
        "topk_labels": [labels[:3]] * (n + 1), "topk_scores": pa.array([[0.7, 0.2, 0.1]] * (n + 1), pa.list_(pa.float32())),
        "model": ["efficientnet_lite0"] * (n + 1), "model_version": ["579344248a93"] * (n + 1),
        "processed_at": pa.array(ms, pa.timestamp("ms", tz="UTC")), "camera": [camera] * (n + 1),
        "frame_index": pa.array(range(n + 1), pa.int64()), "pts_s": [i * 0.5 for i in range(n + 1)],
        "wall_time": pa.array(ms, pa.timestamp("ms", tz="UTC")),
    })


# ---- before: the driver-side writer and manifests of commit 1c20ce0 (compact copy) --------------

class OldDriverWriter:
    """1c20ce0's sink.UnitWriter for complete units: the driver sorts a unit's rows, writes one
    Parquet file per partition and the unit's record, and lists every file in the run manifest."""

    def __init__(self, output: str, run_id: str, opts: StorageOptions):
        self.output, self.run_id, self.opts, self.files = output, run_id, opts, []

    def add(self, rows: pa.Table) -> None:
        unit = rows.column("unit_id")[0].as_py()
        out = sink.results_table(rows, self.run_id)["results"].cast(sink.OUTPUT_SCHEMA)
        files = []
        for camera, date, part in table.partitions(out):
            buf = io.BytesIO()
            pq.write_table(part, buf, compression="zstd")
            path = f"camera={camera}/date={date}/part-{unit}.parquet"
            storage.write_bytes(storage.join(self.output, path), buf.getvalue(), self.opts)
            files.append({"unit_id": unit, "table": "results", "file": path, "camera": camera,
                          "date": date.isoformat() if date else None, "rows": part.num_rows, "errors": 0})
        record = {"unit_id": unit, "run_id": self.run_id, "files": files, "rows": out.num_rows}
        storage.write_bytes(storage.join(self.output, "_units", f"{unit}.json"), json.dumps(record).encode(), self.opts)
        self.files += files

    def commit(self) -> None:
        body = {"run_id": self.run_id, "status": "committed", "files": self.files, "summary": {"rows": 0, "errors": 0}}
        storage.write_bytes(storage.join(self.output, "_runs", f"{self.run_id}.json"), json.dumps(body).encode(), self.opts)


def old_open(output: str, opts: StorageOptions):
    """1c20ce0's `recog query` set-up: read every run manifest, a dataset of every listed file, DuckDB."""
    import duckdb
    import pyarrow.compute as pc

    runs = [json.loads(storage.read_bytes(f.uri, opts)) for f in storage.list_files(storage.join(output, "_runs") + "/", opts)]
    entries = {f["file"]: f for run in runs for f in run["files"]}
    fs, base = storage.filesystem(output, opts)
    parts = [(pc.field("camera") == e["camera"]) & (pc.field("date") == dt.date.fromisoformat(e["date"])) for e in entries.values()]
    dataset = ds.FileSystemDataset.from_paths([f"{base}/{e['file']}" for e in entries.values()], schema=sink.OUTPUT_SCHEMA,
                                              format=ds.ParquetFileFormat(), filesystem=fs, partitions=parts)
    con = duckdb.connect()
    con.register("results", dataset)
    return con


# ---- the figures --------------------------------------------------------------------------------

def before(bucket: str, opts: StorageOptions, units: int) -> dict:
    blocks = [unit_rows(f"b{u:06d}") for u in range(min(units, 50))]  # made once, re-labeled per unit below
    writer = OldDriverWriter(f"{bucket}/before", "run-before", opts)
    t0, c0 = time.perf_counter(), cpu_s()
    for u in range(units):
        rows = blocks[u % len(blocks)]
        writer.add(rows.set_column(0, "unit_id", pa.array([f"b{u:06d}"] * rows.num_rows)))
    writer.commit()
    wall, cpu = time.perf_counter() - t0, cpu_s() - c0
    rows = units * ROWS_PER_UNIT
    return {"units": units, "rows": rows, "wall_s": wall, "rows_per_s": rows / wall, "driver_cpu_s_per_1m_rows": cpu / rows * 1e6}


def after(bucket: str, opts: StorageOptions, units: int, written: int) -> dict:
    output = f"{bucket}/after"
    t0, c0 = time.perf_counter(), cpu_s()
    real = [sink.write_units(unit_rows(f"w{u:06d}"), output, "run-after", opts) for u in range(written)]
    worker_cpu = (cpu_s() - c0) / written
    worker_wall = (time.perf_counter() - t0) / written
    template = real[0].to_pylist()[0]
    run = sink.RunCommitter(output, "run-after", opts, commit_units=300, commit_seconds=30)
    blocks = [pa.Table.from_pylist([{**template, "unit_id": f"a{u:07d}", "path": template["path"].replace("w000000", f"a{u:07d}")}],
                                   schema=sink.RECORD_SCHEMA) for u in range(units)]  # as the writer tasks hand them on
    t0, c0 = time.perf_counter(), cpu_s()
    for block in real + blocks:
        run.add(block)
    run.finish({"job": "bench", "status": "committed"}, "bench")
    wall, cpu = time.perf_counter() - t0, cpu_s() - c0
    rows = run.summary.rows
    return {"units": run.summary.units, "rows": rows, "wall_s": wall, "rows_per_s": rows / wall, "commits": run.commits,
            "driver_cpu_s_per_1m_rows": cpu / rows * 1e6, "worker_cpu_s_per_unit": worker_cpu,
            "worker_wall_s_per_unit": worker_wall}


def planning(bucket: str, opts: StorageOptions, files: int) -> dict:
    """recog query's set-up and DuckDB's plan of a one-partition query, on `files` files, both layouts."""
    sql = "EXPLAIN SELECT count(*) FROM results WHERE camera = 'cam-03' AND date = DATE '2026-11-04'"
    template = sink.write_units(unit_rows("p0000000"), f"{bucket}/big", "run-big", opts).to_pylist()[0]
    committer = table.Committer(table.uri(f"{bucket}/big", "results"), sink.OUTPUT_SCHEMA, opts, "run-big")
    step = 10_000
    for start in range(0, files, step):
        recs = []
        for u in range(start, min(files, start + step)):
            camera, day = f"cam-{u % 20:02d}", (DAY + dt.timedelta(days=(u // 20) % 100)).date().isoformat()
            recs.append({**template, "unit_id": f"p{u:07d}", "camera": camera, "date": day,
                         "path": f"camera={camera}/date={day}/part-p{u:07d}-0.parquet"})
        committer.commit(recs)

    def new_open():
        return Results(f"{bucket}/big", opts).con.sql(sql).fetchall()

    t0 = time.perf_counter()
    new_open()
    log_only = time.perf_counter() - t0
    committer.dtable.create_checkpoint()
    t0 = time.perf_counter()
    new_open()
    checkpointed = time.perf_counter() - t0

    entries = [{"unit_id": f"p{u:07d}", "table": "results", "camera": f"cam-{u % 20:02d}",
                "date": (DAY + dt.timedelta(days=(u // 20) % 100)).date().isoformat(), "rows": ROWS_PER_UNIT, "errors": 0,
                "file": f"camera=cam-{u % 20:02d}/date={(DAY + dt.timedelta(days=(u // 20) % 100)).date()}/part-p{u:07d}.parquet"}
               for u in range(files)]
    storage.write_bytes(f"{bucket}/old/_runs/run-big.json", json.dumps({"run_id": "run-big", "status": "committed",
                                                                        "files": entries}).encode(), opts)
    t0 = time.perf_counter()
    old_open(f"{bucket}/old", opts).sql(sql).fetchall()
    old = time.perf_counter() - t0
    return {"files": files, "before_s": old, "after_log_only_s": log_only, "after_checkpoint_s": checkpointed}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--units", type=int, default=2000, help="units of 256 rows through today's driver-side writer (default: 2000)")
    p.add_argument("--commit-units", type=int, default=20000, help="units whose add-records the commit path takes (default: 20000)")
    p.add_argument("--written", type=int, default=50, help="of them, units really written by sink.write_units (default: 50)")
    p.add_argument("--files", type=int, default=100_000, help="files in the table that query planning is timed on (default: 100000)")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = p.parse_args()

    with tempfile.TemporaryDirectory(prefix="recog-bench-commit-") as tmp, EmbeddedStore(Path(tmp) / "store") as store:
        os.environ.update(store.env())
        opts = StorageOptions.from_env()
        pafs.S3FileSystem(endpoint_override=store.endpoint_url, scheme="http", region="us-east-1",
                          allow_bucket_creation=True).create_dir("bench")
        figures = {"before": before("s3://bench", opts, args.units),
                   "after": after("s3://bench", opts, args.commit_units, args.written),
                   "planning": planning("s3://bench", opts, args.files)}
    b, a, q = figures["before"], figures["after"], figures["planning"]
    print(f"{'':<44} {'before (driver writes)':>24} {'after (Delta, workers write)':>30}")
    print(f"{'rows/s the commit path sustains':<44} {b['rows_per_s']:>24,.0f} {a['rows_per_s']:>30,.0f}")
    print(f"{'driver CPU per 1 M rows':<44} {b['driver_cpu_s_per_1m_rows']:>22.1f} s {a['driver_cpu_s_per_1m_rows']:>28.2f} s")
    label = f"query planning, {q['files']:,} files"
    print(f"{label:<44} {q['before_s']:>22.2f} s {q['after_checkpoint_s']:>28.2f} s"
          f"  (no checkpoint: {q['after_log_only_s']:.2f} s)")
    print(f"before: {b['units']} units x {ROWS_PER_UNIT} rows in {b['wall_s']:.1f} s; after: {a['units']} units in "
          f"{a['commits']} commits, {a['wall_s']:.1f} s; a worker writes a unit in {a['worker_wall_s_per_unit'] * 1000:.0f} ms "
          f"({a['worker_cpu_s_per_unit'] * 1000:.0f} ms CPU)")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
