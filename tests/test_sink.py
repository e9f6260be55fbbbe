import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pytest

from recog import sink, table
from recog.sink import OUTPUT_SCHEMA, RunCommitter, read_run, unit_status, write_units
from recog.storage import StorageOptions
from tests.resultsdata import commit, rows, table_rows

OPTS = StorageOptions()


def test_a_block_of_complete_units_becomes_files_and_add_records(tmp_path):
    out = str(tmp_path)
    block = pa.concat_tables([rows("a", [3, 1, 0, 2], 3), rows("empty", [0], 0)], promote_options="permissive")
    records = write_units(block, out, "run-1", OPTS)
    assert records.schema.equals(sink.RECORD_SCHEMA)
    by_unit = {r["unit_id"]: r for r in records.to_pylist()}
    assert by_unit["a"]["rows"] == 3 and by_unit["a"]["errors"] == 1 and json.loads(by_unit["a"]["labels"]) == {"car": 2}
    assert by_unit["empty"]["rows"] == 0  # a unit with no inputs still leaves a (0-row) file: its marker
    assert json.loads(by_unit["empty"]["stats"])["minValues"]["unit_id"] == "empty"
    for r in records.to_pylist():
        assert r["path"].startswith("camera=__HIVE_DEFAULT_PARTITION__/date=__HIVE_DEFAULT_PARTITION__/part-")
        assert (tmp_path / "results" / r["path"]).stat().st_size == r["size"]
    assert not (tmp_path / "results" / "_delta_log").exists()  # written, not committed: no table yet


def test_an_incomplete_unit_is_refused_loudly(tmp_path):
    with pytest.raises(sink.IncompleteUnit, match="unit a reached the writer incomplete"):
        write_units(rows("a", [0, 3], 3), str(tmp_path), "r", OPTS)
    with pytest.raises(sink.IncompleteUnit):
        write_units(rows("a", [0, 1], 3), str(tmp_path), "r", OPTS)  # no end record
    assert not list(tmp_path.rglob("*.parquet"))


def test_commits_make_rows_visible_and_the_run_record_lists_no_files(tmp_path):
    out = str(tmp_path)
    run, manifest = commit(out, "r7", rows("a", [0, 1, 2, 3], 3), rows("empty", [0], 0), commit_units=1)
    assert manifest["summary"] == {"units": 2, "rows": 3, "errors": 1, "labels": {"car": 2}, "resumed_units": 0,
                                   "tables": {"results": 3}, "files": 2}
    assert "files" not in manifest and manifest["run_ids"] == ["r7"] and run.commits == 2
    assert manifest["tables"]["results"] == 2  # created at 0, two commits
    back = read_run(out, manifest, OPTS)
    assert back.column("record").to_pylist() == [0, 1, 2] and set(back.column("run_id").to_pylist()) == {"r7"}
    assert back.schema.field("wall_time").type == pa.timestamp("us", tz="UTC")  # Delta's unit
    log = (tmp_path / "results" / "_delta_log" / "00000000000000000001.json").read_text()
    assert '"txn":{"appId":"recog:r7","version":1' in log.replace(" ", "")


def test_a_unit_delivered_twice_is_committed_once(tmp_path):
    out = str(tmp_path)
    run = RunCommitter(out, "r", OPTS)
    assert run.add(write_units(rows("a", [0, 1, 2], 2), out, "r", OPTS)) == sink.Taken(1, 2, 1)  # 2 inputs, 1 error
    assert run.add(write_units(rows("a", [0, 1, 2], 2), out, "r", OPTS)).units == 0  # a retried task wrote it again
    run.finish({"status": "committed"}, "d")
    assert table_rows(out).num_rows == 2
    assert len(list((tmp_path / "results").rglob("*.parquet"))) == 2  # the copy is an orphan nobody reads


def test_a_rerun_sees_committed_units_and_a_redo_replaces_rows(tmp_path):
    out = str(tmp_path)
    write_units(rows("b", [0, 1, 2], 2), out, "r1", OPTS)  # b written, never committed: the run "crashed"
    commit(out, "r1", rows("a", [0, 1, 2, 3], 3))
    status = unit_status(out, ("results",), ["a", "b", "c"], OPTS)
    assert set(status.committed) == {"a"} and status.with_errors == {"a"} and not status.partial
    assert status.committed["a"][0]["rows"] == 3 and status.committed["a"][0]["errors"] == 1

    second = RunCommitter(out, "r2", OPTS)
    second.replacing({"a", "b"})  # a redone (say --force), b done for the first time
    second.adopt(status, set())
    second.add(write_units(rows("a", [0, 1, 2, 3], 3), out, "r2", OPTS))
    second.add(write_units(rows("b", [0, 1, 2], 2), out, "r2", OPTS))
    manifest = second.finish({"status": "committed"}, "d")[1]
    got = table_rows(out)
    assert sorted(zip(got.column("unit_id").to_pylist(), got.column("run_id").to_pylist())) == \
        [("a", "r2")] * 3 + [("b", "r2")] * 2  # a's rows replaced, not doubled
    assert read_run(out, manifest, OPTS).num_rows == 5


def test_adopted_units_count_in_the_summary_with_their_labels(tmp_path):
    out = str(tmp_path)
    commit(out, "r1", rows("a", [0, 1, 2, 3], 3))
    status = unit_status(out, ("results",), ["a", "b"], OPTS)
    run = RunCommitter(out, "r2", OPTS)
    run.adopt(status, {"a"})
    run.add(write_units(rows("b", [0, 1], 1), out, "r2", OPTS))
    manifest = run.finish({"status": "committed"}, "d")[1]
    assert manifest["summary"]["units"] == 2 and manifest["summary"]["resumed_units"] == 1
    assert manifest["summary"]["labels"] == {"car": 2} and manifest["summary"]["rows"] == 4
    assert manifest["run_ids"] == ["r1", "r2"] and read_run(out, manifest, OPTS).num_rows == 4


def test_a_unit_in_some_tables_only_is_not_committed(tmp_path):
    out = str(tmp_path)
    from recog.vehicles import CROSSINGS_SCHEMA, VEHICLES_SCHEMA

    recs = table.write_unit(table.uri(out, "vehicles"), "vehicles", VEHICLES_SCHEMA.empty_table(), VEHICLES_SCHEMA, "u", "r", OPTS)
    table.Committer(table.uri(out, "vehicles"), VEHICLES_SCHEMA, OPTS, "r").commit(recs)
    table.create(table.uri(out, "crossings"), CROSSINGS_SCHEMA, OPTS)
    status = unit_status(out, ("vehicles", "crossings"), ["u"], OPTS)
    assert status.committed == {} and status.partial == {"u"}  # crashed between the two tables' commits


def test_vehicles_jobs_started_together_make_both_tables_once_and_all_land(tmp_path):
    """Vehicles jobs at once on a new output, each through its RunCommitter: the two tables are made
    once each, every job's units are in both."""
    from recog.vehicles import CROSSINGS_SCHEMA, VEHICLES_SCHEMA

    out, jobs = str(tmp_path), 4
    start = threading.Barrier(jobs)

    def job(i: int) -> None:
        start.wait()
        run = RunCommitter(out, f"r{i}", OPTS, ("vehicles", "crossings"), commit_units=1)
        records = [{**r, "inputs": 0} for name, schema in (("vehicles", VEHICLES_SCHEMA), ("crossings", CROSSINGS_SCHEMA))
                   for r in table.write_unit(table.uri(out, name), name, schema.empty_table(), schema, f"u{i}", f"r{i}", OPTS)]
        run.add(pa.Table.from_pylist(records, schema=sink.RECORD_SCHEMA))
        run.finish({"job": "vehicles", "status": "committed"}, "d")

    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(job, range(jobs)))
    for name in ("vehicles", "crossings"):
        history = table.load(table.uri(out, name), OPTS).history()
        assert [c["operation"] for c in history].count("CREATE TABLE") == 1
    status = unit_status(out, ("vehicles", "crossings"), [f"u{i}" for i in range(jobs)], OPTS)
    assert sorted(status.committed) == [f"u{i}" for i in range(jobs)] and not status.partial


def test_readme_documents_every_output_column():
    from recog.vehicles import CROSSINGS_SCHEMA, VEHICLES_SCHEMA
    from tests.conftest import REPO

    readme = (REPO / "README.md").read_text()
    for schema in (OUTPUT_SCHEMA, VEHICLES_SCHEMA, CROSSINGS_SCHEMA):
        for f in schema:
            assert f"| `{f.name}` | " in readme, f"README lacks the column {f.name}"
