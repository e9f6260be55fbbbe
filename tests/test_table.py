"""Delta tables: a unit's files written apart from their commit, commits that replace a redone
unit's files and recognise their own lost answers, camera/day partitions, purge."""

from __future__ import annotations

import collections
import datetime as dt
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pytest

from recog import sink, table
from recog.errors import StorageError
from recog.media import UNIT_PROPERTY
from recog.sink import read_run
from tests.resultsdata import OPTS, commit, rows, table_rows


def write(uri: str, unit: str, run_id: str, opts=OPTS) -> list[dict]:
    return table.write_unit(uri, "results", sink.to_output(rows(unit, [0, 1, 2], 2), run_id), sink.OUTPUT_SCHEMA,
                            unit, run_id, opts)


def unit_files(output: str) -> list[tuple[str, str]]:
    files = table.live_files(table.load(table.uri(output, "results"), OPTS))
    return sorted(zip(table.unit_ids(files).to_pylist(), files.column("path").to_pylist()))


def test_written_files_are_invisible_until_committed_and_a_redo_replaces_them_in_one_commit(tmp_path):
    out, uri = str(tmp_path), table.uri(str(tmp_path), "results")
    first = write(uri, "a.1", "r1")
    committer = table.Committer(uri, sink.OUTPUT_SCHEMA, OPTS, "r1")
    assert unit_files(out) == []  # created, nothing committed
    committer.commit(first)
    assert [u for u, _ in unit_files(out)] == ["a.1"] and table_rows(out).num_rows == 3

    again = table.Committer(uri, sink.OUTPUT_SCHEMA, OPTS, "r2")
    again.replacing({"a.2", "b.1"})  # a's input rewritten: same place, other content; b is new
    redo = write(uri, "a.2", "r2")
    version = again.commit(redo)
    assert unit_files(out) == [("a.2", redo[0]["path"])] and table_rows(out).num_rows == 3  # replaced, not doubled
    assert table.load(uri, OPTS, version - 1).version() == version - 1  # the old version stays readable


def test_two_jobs_committing_to_one_table_at_the_same_version_both_land(bucket, opts):
    """On the S3 store: the second writer's commit finds its version taken (conditional put) and is
    retried by delta-rs on top of the first; neither loses rows."""
    uri = table.uri(bucket, "results")
    first = table.Committer(uri, sink.OUTPUT_SCHEMA, opts, "job-a")
    second = table.Committer(uri, sink.OUTPUT_SCHEMA, opts, "job-b")  # both loaded at version 0
    a, b = write(uri, "a.1", "job-a", opts), write(uri, "b.1", "job-b", opts)
    assert first.commit(a) == 1
    assert second.commit(b) == 2  # it tried version 1, found it written, and went on to 2
    files = table.live_files(table.load(uri, opts))
    assert sorted(table.unit_ids(files).to_pylist()) == ["a.1", "b.1"]
    assert table.dataset(table.load(uri, opts), sink.OUTPUT_SCHEMA, opts).count_rows() == 6


@pytest.mark.parametrize("where", ["s3", "local"])
def test_eight_jobs_make_one_new_table_and_commit_into_it_at_once(where, request, tmp_path):
    """The load figure: jobs started together on a new output, each as a job does it: make the
    table (half of them recording the output's unit size: in the table's first commit if one of
    them makes it, else as a metadata commit that the others' appends meet), then commit its
    batches. Every job lands every batch, the table is made once, each unit's rows are there once."""
    out, opts = (request.getfixturevalue("bucket"), request.getfixturevalue("opts")) if where == "s3" else (str(tmp_path), OPTS)
    uri, jobs, batches = table.uri(out, "results"), 8, 4
    start = threading.Barrier(jobs)

    def job(i: int) -> tuple[int, int]:
        start.wait()
        if i % 2:
            table.create(uri, sink.OUTPUT_SCHEMA, opts, {UNIT_PROPERTY: "256"})
        committer, on_top = table.Committer(uri, sink.OUTPUT_SCHEMA, opts, f"job-{i}"), 0
        for b in range(batches):
            read = committer.dtable.version()
            on_top += committer.commit(write(uri, f"u{i}x{b}", f"job-{i}", opts)) > read + 1  # others committed since
        return committer.retries, on_top

    t0 = time.monotonic()
    with ThreadPoolExecutor(jobs) as pool:
        retries, on_top = zip(*pool.map(job, range(jobs)))
    elapsed = time.monotonic() - t0
    dtable = table.load(uri, opts)
    rows = table.dataset(dtable, sink.OUTPUT_SCHEMA, opts).to_table(columns=["unit_id", "record"])
    per_unit = collections.Counter(zip(rows.column("unit_id").to_pylist(), rows.column("record").to_pylist()))
    assert per_unit == {(f"u{i}x{b}", r): 1 for i in range(jobs) for b in range(batches) for r in (0, 1, 2)}
    operations = collections.Counter(c["operation"] for c in dtable.history())
    assert operations["CREATE TABLE"] == 1 and operations["WRITE"] == jobs * batches
    assert dtable.metadata().configuration[UNIT_PROPERTY] == "256"
    print(f"{where}: {jobs} committers made one new table and committed {jobs * batches} batches "
          f"(+{operations['SET TBLPROPERTIES']} metadata commit) in {elapsed:.1f} s: {sum(on_top)} landed on top of "
          f"others' commits, {sum(retries)} tried again; {rows.num_rows} rows checked")


def test_a_commit_that_meets_a_metadata_change_is_tried_again_a_bounded_number_of_times(tmp_path):
    """delta-rs goes on top of other writers' appends itself, not of a metadata change (another job
    recording the unit size): the committer tries again on the table as it is then; out of tries, it
    says so (nothing of the batch committed)."""
    uri = table.uri(str(tmp_path), "results")
    once = table.Committer(uri, sink.OUTPUT_SCHEMA, OPTS, "r1", attempts=1)
    again = table.Committer(uri, sink.OUTPUT_SCHEMA, OPTS, "r2")
    table.create(uri, sink.OUTPUT_SCHEMA, OPTS, {UNIT_PROPERTY: "8"})  # another job, after both loaded the table
    with pytest.raises(StorageError, match=r"commit 1 of run r1 lost to other writers' commits 1 times in a row "
                                           r"\(.*Metadata changed.*\); nothing of it was committed"):
        once.commit(write(uri, "a.1", "r1"))
    assert again.commit(write(uri, "b.1", "r2")) == 2 and again.retries == 1
    assert [u for u, _ in unit_files(str(tmp_path))] == ["b.1"]
    with pytest.raises(table.PropertiesDiffer, match="recog.imagesPerUnit=8"):
        table.create(uri, sink.OUTPUT_SCHEMA, OPTS, {UNIT_PROPERTY: "16"})


def test_a_purge_between_a_jobs_start_and_its_commit_deletes_nothing_the_commit_holds(tmp_path):
    """A job redoing a unit of a day being purged: the purge removes and vacuums the unit's old file,
    which the job's commit also removes; that commit is tried again (without it) and lands, and the
    files the job wrote before the purge, not yet committed, are still there for it."""
    out, uri = str(tmp_path), table.uri(str(tmp_path), "results")
    old, recent = 1_700_000_000_000, 1_700_000_000_000 + 10 * 86_400_000  # 2023-11-14, 2023-11-24

    def dated(unit: str, run_id: str, ms: int) -> list[dict]:
        batch = rows(unit, [0, 1, 2], 2)
        batch = batch.set_column(batch.schema.get_field_index("wall_time"), "wall_time",
                                 pa.array([ms] * 3, pa.timestamp("ms", tz="UTC")))
        return table.write_unit(uri, "results", sink.to_output(batch, run_id), sink.OUTPUT_SCHEMA, unit, run_id, OPTS)

    table.Committer(uri, sink.OUTPUT_SCHEMA, OPTS, "r1").commit(dated("a.1", "r1", old) + dated("b.1", "r1", old))
    job = table.Committer(uri, sink.OUTPUT_SCHEMA, OPTS, "r2")
    job.replacing({"a.2"})  # the job redoes a's place: its commit removes a.1's file
    written = dated("a.2", "r2", old) + dated("c.1", "r2", recent)
    assert table.purge(uri, OPTS, dt.date(2023, 11, 20))["deleted_files"] == 2  # a.1 and b.1, from the log and the disk
    job.commit(written)
    assert job.retries == 1 and [u for u, _ in unit_files(out)] == ["a.2", "c.1"]
    assert table_rows(out).num_rows == 6  # every file the log holds is there to read
    assert len(list((tmp_path / "results").rglob("*.parquet"))) == 2


def test_a_committer_resumes_its_runs_transaction_count_from_the_table(tmp_path):
    uri = table.uri(str(tmp_path), "results")
    committer = table.Committer(uri, sink.OUTPUT_SCHEMA, OPTS, "r1")
    for unit in ("a", "b"):
        committer.commit(write(uri, unit, "r1"))
    # A driver that lost the answer of its last commit loads the table again: the run's transaction
    # version says that batch landed, so it is not committed a second time.
    assert table.Committer(uri, sink.OUTPUT_SCHEMA, OPTS, "r1").batches == 2
    assert table.Committer(uri, sink.OUTPUT_SCHEMA, OPTS, "r2").batches == 0


def test_rows_go_to_camera_and_day_partitions_that_stay_inside_the_table(tmp_path):
    batch = rows("a", [0, 1, 2, 3, 4], 4)
    cameras = pa.array(["gate-3", "../../etc", None, "gate-3"] + [None], pa.string())
    day = 1_700_000_000_000  # 2023-11-14 22:13:20 UTC
    times = pa.array([day, day, None, day + 7_200_000, None], pa.timestamp("ms", tz="UTC"))
    batch = batch.set_column(batch.schema.get_field_index("camera"), "camera", cameras)
    batch = batch.set_column(batch.schema.get_field_index("wall_time"), "wall_time", times)
    out = str(tmp_path)
    _, manifest = commit(out, "r", batch)
    folders = sorted(str(p.parent.relative_to(tmp_path / "results")) for p in (tmp_path / "results").rglob("*.parquet"))
    assert folders == ["camera=..%2F..%2Fetc/date=2023-11-14", "camera=__HIVE_DEFAULT_PARTITION__/date=__HIVE_DEFAULT_PARTITION__",
                       "camera=gate-3/date=2023-11-14", "camera=gate-3/date=2023-11-15"]
    back = read_run(out, manifest, OPTS).to_pylist()
    assert sorted((r["record"], r["camera"], str(r["date"])) for r in back) == [
        (0, "gate-3", "2023-11-14"), (1, "../../etc", "2023-11-14"), (2, None, "None"), (3, "gate-3", "2023-11-15")]
    got = {(r["camera"], r["date"]) for r in table.live_files(table.load(table.uri(out, "results"), OPTS))
           .select(["partition.camera", "partition.date"]).rename_columns(["camera", "date"]).to_pylist()}
    assert ("../../etc", dt.date(2023, 11, 14)) in got


def test_purge_deletes_old_days_of_one_camera_and_their_files(tmp_path):
    batch = rows("a", [0, 1, 2, 3], 3)
    day = 1_700_000_000_000  # 2023-11-14
    batch = batch.set_column(batch.schema.get_field_index("camera"), "camera", pa.array(["g1", "g2", "g1", "g1"]))
    batch = batch.set_column(batch.schema.get_field_index("wall_time"), "wall_time",
                             pa.array([day, day, day + 86_400_000, None], pa.timestamp("ms", tz="UTC")))
    out = str(tmp_path)
    commit(out, "r", batch)
    uri = table.uri(out, "results")
    dry = table.purge(uri, OPTS, dt.date(2023, 11, 15), "g1", dry_run=True)
    assert dry == {"files": 1, "rows": 1, "deleted_files": 0}
    done = table.purge(uri, OPTS, dt.date(2023, 11, 15), "g1")
    assert done["deleted_files"] == 1
    left = table_rows(out)
    assert sorted(zip(left.column("camera").to_pylist(), map(str, left.column("date").to_pylist()))) == \
        [("g1", "2023-11-15"), ("g2", "2023-11-14")]
    assert len(list((tmp_path / "results").rglob("*.parquet"))) == 2  # the purged file is gone from storage


def test_a_table_made_before_a_column_was_added_gets_it(tmp_path):
    from recog.vehicles import VEHICLES_SCHEMA

    uri = str(tmp_path / "vehicles")
    table.create(uri, pa.schema([f for f in VEHICLES_SCHEMA if f.name != "crops_at"]), OPTS)  # as an older recog made it
    dtable = table.create(uri, VEHICLES_SCHEMA, OPTS)
    assert "crops_at" in {f.name for f in dtable.schema().fields} and dtable.version() == 1
    assert table.create(uri, VEHICLES_SCHEMA, OPTS).version() == 1  # nothing left to add: no commit
