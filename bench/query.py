"""Query speed over a large result set: recog query (DuckDB on the committed files, partition
pruning) beside pandas reading the same Parquet files. Medians of --repeat runs, one process.

    python bench/query.py [--rows 10000000] [--repeat 3] [--data bench-results/query-data] [--json out.json]

The result set is synthetic but laid out exactly as the jobs write it: camera=/date= partitions,
one file per unit and partition, committed to the Delta table `results`. It is made once and reused.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
from timing import timed

from recog import sink
from recog import table as table_
from recog.query import Results
from recog.storage import StorageOptions
from recog.taxonomy import LABELS

CAMERAS, DAYS = 20, 30
BASE = [""]  # the table's folder, once known
START = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)

QUERIES = {
    "labels": "SELECT label, count(*) AS n FROM results GROUP BY label ORDER BY n DESC",
    "trucks per camera, 2-4 am": ("SELECT camera, count(*) AS n FROM results WHERE label = 'truck' "
                                  "AND hour(wall_time) BETWEEN 2 AND 3 GROUP BY camera ORDER BY n DESC"),
    "one camera-day": ("SELECT label, count(*) AS n, avg(score) AS mean FROM results "
                       "WHERE camera = 'cam-07' AND date = DATE '2026-11-10' GROUP BY label"),
    "10 least sure buses": "SELECT source_uri, key, score FROM results WHERE label = 'bus' ORDER BY score LIMIT 10",
}


PARTITIONS = ds.partitioning(pa.schema([("camera", pa.string()), ("date", pa.date32())]), flavor="hive")


def pandas_query(name: str, files: list[str]):
    """The same questions as a pandas user answers them: read the columns needed, then compute. (The
    table's partition columns are in its folder names, as Delta keeps them: hive partitioning.)"""
    import pandas as pd

    files = BASE[0]  # the folder: every file there is committed (one run, no orphans)

    if name == "labels":
        df = pd.read_parquet(files, partitioning=PARTITIONS, columns=["label"])
        return df.groupby("label", dropna=True).size().sort_values(ascending=False)
    if name == "trucks per camera, 2-4 am":
        df = pd.read_parquet(files, partitioning=PARTITIONS, columns=["camera", "label", "wall_time"])
        df = df[(df.label == "truck") & df.wall_time.dt.hour.between(2, 3)]
        return df.groupby("camera").size().sort_values(ascending=False)
    if name == "one camera-day":
        df = pd.read_parquet(files, partitioning=PARTITIONS, columns=["camera", "date", "label", "score"],
                             filters=[("camera", "==", "cam-07"), ("date", "==", dt.date(2026, 11, 10))])
        return df.groupby("label").score.agg(["size", "mean"])
    if name == "10 least sure buses":
        df = pd.read_parquet(files, partitioning=PARTITIONS, columns=["source_uri", "key", "label", "score"])
        return df[df.label == "bus"].nsmallest(10, "score")[["source_uri", "key", "score"]]
    raise KeyError(name)


def answer(name: str, result) -> list:
    """A query's answer in a form both sides give alike, to check that they agree."""
    if not isinstance(result, pa.Table):  # pandas
        result = pa.Table.from_pandas(result.reset_index() if name != "10 least sure buses" else result,
                                      preserve_index=False)
    rows = [tuple(round(v, 4) if isinstance(v, float) else v for v in r.values()) for r in result.to_pylist()]
    return sorted(rows, key=str)


def make_results(out: Path, rows: int, seed: int = 0) -> None:
    """A committed run of `rows` rows over CAMERAS cameras x DAYS days, one unit per camera-day."""
    rng = np.random.default_rng(seed)
    per_part = -(-rows // (CAMERAS * DAYS))  # at least `rows` in all
    labels = np.array(LABELS, dtype=object)
    records = []
    for c in range(CAMERAS):
        camera = f"cam-{c:02d}"
        for d in range(DAYS):
            unit = f"u{c:02d}{d:02d}"
            t = START + dt.timedelta(days=d)
            ms = np.sort(rng.integers(0, 86_400_000, per_part)) + int(t.timestamp() * 1000)
            lab = labels[rng.integers(0, len(labels), per_part)]
            table = pa.table({
                "source_uri": pa.array([f"s3://archive/{camera}/{t:%Y-%m-%d}.mp4"] * per_part).dictionary_encode().cast(pa.string()),
                "shard": pa.nulls(per_part, pa.string()), "key": pa.array([f"{t:%Y-%m-%d}"] * per_part),
                "member": pa.nulls(per_part, pa.string()), "width": pa.array(np.full(per_part, 1920, np.int32)),
                "height": pa.array(np.full(per_part, 1080, np.int32)), "label": pa.array(lab, pa.string()),
                "score": pa.array(rng.random(per_part, np.float32)),
                "topk_labels": pa.array([["cab", "minivan"]] * per_part, pa.list_(pa.string())),
                "topk_scores": pa.array([[0.5, 0.2]] * per_part, pa.list_(pa.float32())),
                "cls": pa.nulls(per_part, pa.string()), "meta": pa.nulls(per_part, pa.string()),
                "camera": pa.array([camera] * per_part), "frame_index": pa.array(np.arange(per_part, dtype=np.int64) * 25),
                "pts_s": pa.array((ms - ms[0]) / 1000.0), "wall_time": pa.array(ms, pa.timestamp("ms", tz="UTC")),
                "error": pa.nulls(per_part, pa.string()), "model": pa.array(["efficientnet_lite0"] * per_part),
                "model_version": pa.array(["579344248a93"] * per_part), "unit_id": pa.array([unit] * per_part),
                "record": pa.array(np.arange(per_part, dtype=np.int32)),
                "processed_at": pa.array(np.full(per_part, int(time.time() * 1000)), pa.timestamp("ms", tz="UTC")),
            })
            output = sink.to_output(table, "bench-run")
            records += table_.write_unit(table_.uri(str(out), "results"), "results", output, sink.OUTPUT_SCHEMA, unit,
                                         "bench-run", StorageOptions())
    table_.Committer(table_.uri(str(out), "results"), sink.OUTPUT_SCHEMA, StorageOptions(), "bench-run").commit(records)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=10_000_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--data", type=Path, default=Path("bench-results/query-data"))
    p.add_argument("--skip-pandas", action="store_true")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = p.parse_args()

    out = args.data / f"rows-{args.rows}"
    if not (out / "results" / "_delta_log").exists():
        t0 = time.perf_counter()
        make_results(out, args.rows)
        print(f"made {args.rows:,} rows in {out} ({time.perf_counter() - t0:.0f} s)")
    size = sum(f.stat().st_size for f in out.rglob("*.parquet"))
    results, open_s = timed(lambda: Results(str(out), StorageOptions()), args.repeat)
    files = results.dataset.files
    BASE[0] = str(out / "results")
    rows = results.sql("SELECT count(*) AS n FROM results").to_pylist()[0]["n"]
    print(f"{rows:,} rows in {len(files)} files, {size / 1e6:.0f} MB; opening the results (Delta log): {open_s * 1000:.0f} ms")
    figures = {"rows": rows, "files": len(files), "bytes": size, "open_s": open_s, "queries": {}}
    print(f"{'query':<28} {'recog (DuckDB)':>15} {'pandas':>10} {'ratio':>7}  same answer")
    for name, sql in QUERIES.items():
        mine, ours = timed(lambda sql=sql: results.sql(sql), args.repeat)
        theirs, same = None, None
        if not args.skip_pandas:
            other, theirs = timed(lambda name=name: pandas_query(name, files), args.repeat)
            same = answer(name, mine) == answer(name, other)
        figures["queries"][name] = {"recog_s": ours, "pandas_s": theirs, "same_answer": same}
        ratio = f"{theirs / ours:6.1f}x" if theirs else "-"
        print(f"{name:<28} {ours * 1000:>12.0f} ms {theirs * 1000 if theirs else 0:>7.0f} ms {ratio:>7}  {same}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
