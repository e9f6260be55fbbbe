"""Labeled rows as the predictor emits them, and runs written from them: results without a model."""

from __future__ import annotations

import datetime as dt
import json

import pyarrow as pa

from recog import sink, table
from recog.storage import StorageOptions

OPTS = StorageOptions()
DAY = dt.datetime(2026, 11, 3, 22, 30, tzinfo=dt.timezone.utc)


def labeled(unit: str, n: int, camera, start: dt.datetime | None, labels=("car", "truck", "bus"),
            processed_every: dt.timedelta = dt.timedelta(0)) -> pa.Table:
    """Rows as the predictor emits them for one unit of n inputs (plus its end record), a frame a
    minute from `start` (or no recording times), labeled `processed_every` apart from DAY on."""
    rows = [{"unit_id": unit, "record": i, "end": False, "source_uri": f"/nonexistent/{unit}.tar", "shard": f"{unit}.tar",
             "key": f"{unit}-{i}", "member": f"{unit}-{i}.jpg", "width": 64, "height": 48, "cls": None, "meta": None,
             "error": "cannot decode image: broken" if i == 0 else None, "label": None if i == 0 else labels[i % len(labels)],
             "score": 0.1 * (i % 10), "topk_labels": ["cab"], "topk_scores": [0.5], "model": "m", "model_version": "v1",
             "processed_at": DAY + i * processed_every, "camera": camera, "frame_index": None, "pts_s": None,
             "wall_time": start + dt.timedelta(minutes=i) if start else None} for i in range(n)]
    rows.append({**rows[0], "record": n, "end": True, "error": None})
    return pa.Table.from_pylist(rows)


def write_run(output: str, units: list[pa.Table], commit: bool = True) -> dict | None:
    """Write the units' files as the writer tasks do; with `commit`, commit them and the run as the
    driver does (without it, the files are there and the tables do not hold them: a crashed run)."""
    run_id = sink.new_run_id()
    records = [sink.write_units(u, output, run_id, StorageOptions()) for u in units]
    if not commit:
        return None
    run = sink.RunCommitter(output, run_id, StorageOptions())
    for r in records:
        run.add(r)
    _, body = run.finish({"job": "infer", "status": "committed", "model": {"name": "m", "version": "v1"}}, "digest")
    return body


def rows(unit, records, total):
    """Labeled rows as the predictor emits them; record `total` is the end-of-unit record."""
    n = len(records)
    return pa.table({
        "unit_id": [unit] * n, "record": pa.array(records, pa.int32()), "end": [r == total for r in records],
        "source_uri": [f"s3://b/{unit}.tar"] * n, "shard": [f"{unit}.tar"] * n, "key": [f"k{r}" for r in records],
        "member": [f"k{r}.jpg" for r in records], "width": pa.array([10] * n, pa.int32()),
        "height": pa.array([10] * n, pa.int32()), "cls": pa.array([None] * n, pa.string()),
        "meta": pa.array([None] * n, pa.string()), "error": pa.array([None if r % 3 else "bad" for r in records], pa.string()),
        "label": [None if r % 3 == 0 else "car" for r in records], "score": pa.array([0.5] * n, pa.float32()),
        "topk_labels": [["cab"]] * n, "topk_scores": pa.array([[0.5]] * n, pa.list_(pa.float32())),
        "model": ["m"] * n, "model_version": ["v"] * n,
        "processed_at": pa.array([0] * n, pa.timestamp("ms", tz="UTC")),
        "camera": pa.array([None] * n, pa.string()), "frame_index": pa.array([None] * n, pa.int64()),
        "pts_s": pa.array([None] * n, pa.float64()), "wall_time": pa.array([None] * n, pa.timestamp("ms", tz="UTC")),
    })


def commit(output, run_id, *blocks, **kw) -> tuple[sink.RunCommitter, dict]:
    """Write each block's units as the writer tasks do and commit them as one run."""
    run = sink.RunCommitter(output, run_id, OPTS, **kw)
    for b in blocks:
        run.add(sink.write_units(b, output, run_id, OPTS))
    return run, run.finish({"job": "infer", "status": "committed"}, "d")[1]


def table_rows(output, name="results") -> pa.Table:
    """Every live row of one of the output's tables."""
    return table.dataset(table.load(table.uri(output, name), OPTS), sink.schema_of(name), OPTS).to_table()


def vehicles_run(output: str, video: str, vehicles: list[dict], camera: str | None = "cam-7",
                 start: str | None = "2026-11-03T08:00:00+00:00") -> dict:
    """A vehicles job's run on `video` without tracking or a model: each vehicle {"track_id", "crops":
    [(seconds, frame, box, label, score), ...]} becomes its labeled crops (one record each, as the
    predictor emits them) and the tables the job commits (the vehicle's label: the crops' vote)."""
    from recog.vehicles import VehicleTables

    rows = []
    for v in vehicles:
        track = {"track_id": v["track_id"], "first_t": v["crops"][0][0], "last_t": v["crops"][-1][0], "first_frame": 0,
                 "last_frame": 0, "frames_seen": 10, "entry": [0.5, 0.9], "exit": [0.5, 0.1], "direction": "up",
                 "heading_deg": 270.0, "suspect": False, "crossings": [],
                 "crops": [{"quality": 1.0, "t": t, "frame": f, "box": box} for t, f, box, _, _ in v["crops"]]}
        rows += [{"unit_id": "u1", "record": len(rows) + i, "end": False, "source_uri": video, "key": f"v#{v['track_id']}",
                  "meta": json.dumps(track), "camera": camera, "error": None, "label": label, "score": score,
                  "topk_labels": [label], "topk_scores": [score], "model": "vehicle-types", "model_version": "abc"}
                 for i, (_, _, _, label, score) in enumerate(v["crops"])]
    segment = {"source_uri": video, "camera": camera, "recorded_at": start, "error": None}
    rows.append({**rows[0], "record": len(rows), "end": True, "key": None, "meta": json.dumps(segment), "label": None,
                 "score": None, "topk_labels": None, "topk_scores": None})
    run_id = sink.new_run_id()
    tables = VehicleTables("motion", "d1")
    run = sink.RunCommitter(output, run_id, OPTS, names=tables.names)
    run.add(sink.write_units(pa.Table.from_pylist(rows), output, run_id, OPTS, tables))
    return run.finish({"job": "vehicles", "status": "committed", "model": {"name": "vehicle-types", "version": "abc"}}, "d")[1]
