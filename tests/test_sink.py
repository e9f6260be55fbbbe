import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recog.sink import OUTPUT_SCHEMA, UnitWriter, committed_units, unit_file
from recog.storage import StorageOptions


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


def test_units_are_written_when_complete_whatever_the_arrival_order(tmp_path):
    w = UnitWriter(str(tmp_path), "run-1", StorageOptions())
    assert w.add(pa.concat_tables([rows("a", [5, 4, 0], 5), rows("b", [1], 1)])) == []
    assert w.add(rows("b", [0], 1)) == ["b"]
    assert w.add(rows("a", [2, 3, 1], 5)) == ["a"]
    table = pq.read_table(tmp_path / unit_file("a"))
    assert table.schema.equals(OUTPUT_SCHEMA, check_metadata=False)
    assert table.column("record").to_pylist() == [0, 1, 2, 3, 4]
    assert set(table.column("run_id").to_pylist()) == {"run-1"}


def test_rows_delivered_twice_are_written_once(tmp_path):
    w = UnitWriter(str(tmp_path), "r", StorageOptions())
    w.add(rows("a", [0, 1], 3))
    w.add(rows("a", [1, 0], 3))  # a retried task sends them again
    assert w.add(rows("a", [2, 3], 3)) == ["a"]
    assert pq.read_table(tmp_path / unit_file("a")).column("record").to_pylist() == [0, 1, 2]


def test_manifest_is_written_last_and_lists_the_files(tmp_path):
    w = UnitWriter(str(tmp_path), "r7", StorageOptions())
    w.add(rows("a", [0, 1, 2, 3], 3))
    assert w.add(rows("empty", [0], 0)) == ["empty"]  # a unit with no inputs still completes
    uri = w.commit({"job": "infer"})
    manifest = json.loads(open(uri).read())
    assert manifest["files"] == [
        {"unit_id": "a", "table": "results", "file": unit_file("a"), "camera": None, "date": None, "rows": 3, "errors": 1},
        {"unit_id": "empty", "table": "results", "file": unit_file("empty"), "camera": None, "date": None, "rows": 0, "errors": 0}]
    assert manifest["summary"] == {"units": 2, "rows": 3, "errors": 1, "labels": {"car": 2}, "resumed_units": 0,
                                   "tables": {"results": 3}}


def test_each_unit_commits_on_its_own_and_a_later_run_adopts_it(tmp_path):
    first = UnitWriter(str(tmp_path), "r1", StorageOptions())
    first.add(rows("a", [0, 1, 2, 3], 3))
    first.add(rows("b", [0, 1], 2))  # b incomplete: the run "crashes" here, nothing else committed
    done = committed_units(str(tmp_path), ["a", "b", "c"], StorageOptions())
    assert set(done) == {"a"} and done["a"]["files"] == first.committed and done["a"]["labels"] == {"car": 2}
    second = UnitWriter(str(tmp_path), "r2", StorageOptions())
    second.adopt(list(done.values()))
    second.add(rows("b", [0, 1, 2], 2))
    manifest = json.loads(open(second.commit({"status": "committed"})).read())
    assert [f["unit_id"] for f in manifest["files"]] == ["a", "b"]
    assert manifest["summary"]["units"] == 2 and manifest["summary"]["resumed_units"] == 1


def test_rows_go_to_camera_and_day_partitions_that_stay_inside_the_output(tmp_path):
    batch = rows("a", [0, 1, 2, 3, 4], 4)
    cameras = pa.array(["gate-3", "../../etc", None, "gate-3"] + [None], pa.string())
    day = 1_700_000_000_000  # 2023-11-14 22:13:20 UTC
    times = pa.array([day, day, None, day + 7_200_000, None], pa.timestamp("ms", tz="UTC"))
    batch = batch.set_column(batch.schema.get_field_index("camera"), "camera", cameras)
    batch = batch.set_column(batch.schema.get_field_index("wall_time"), "wall_time", times)
    w = UnitWriter(str(tmp_path), "r", StorageOptions())
    assert w.add(batch) == ["a"]
    files = {f["file"]: f for f in w.committed}
    assert set(files) == {"camera=gate-3/date=2023-11-14/part-a.parquet", "camera=gate-3/date=2023-11-15/part-a.parquet",
                          "camera=..%2F..%2Fetc/date=2023-11-14/part-a.parquet", unit_file("a")}
    assert files["camera=..%2F..%2Fetc/date=2023-11-14/part-a.parquet"]["camera"] == "../../etc"
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.parquet"))
    assert written == sorted(files)  # nothing outside the output prefix
    day1 = pq.read_table(tmp_path / "camera=gate-3/date=2023-11-14/part-a.parquet").to_pylist()
    assert [(r["record"], str(r["date"])) for r in day1] == [(0, "2023-11-14")]
    assert sum(f["rows"] for f in files.values()) == 4 and w.summary.units == 1


def test_commit_refuses_while_a_unit_is_incomplete(tmp_path):
    w = UnitWriter(str(tmp_path), "r", StorageOptions())
    w.add(rows("a", [0, 3], 3))
    with pytest.raises(RuntimeError, match="1 units are incomplete"):
        w.commit({})
    assert not (tmp_path / "_runs").exists()


def test_readme_documents_every_output_column():
    from recog.vehicles import CROSSINGS_SCHEMA, VEHICLES_SCHEMA
    from tests.conftest import REPO

    readme = (REPO / "README.md").read_text()
    for schema in (OUTPUT_SCHEMA, VEHICLES_SCHEMA, CROSSINGS_SCHEMA):
        for f in schema:
            assert f"| `{f.name}` | " in readme, f"README lacks the column {f.name}"
