"""SQL over results: committed runs only, partition pruning, output formats, summaries."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from recog import query
from recog.query import QueryError, Results
from recog.storage import StorageOptions
from tests.resultsdata import DAY, labeled, write_run


@pytest.fixture
def results_dir(tmp_path) -> str:
    """Two committed runs over 3 cameras x 2 days (one unit crosses midnight), and a run that crashed."""
    out = str(tmp_path / "results")
    write_run(out, [labeled("u1", 120, "gate-1", DAY), labeled("u2", 30, "gate-2", DAY)])
    write_run(out, [labeled("u3", 40, "lobby", None), labeled("u4", 10, None, DAY + dt.timedelta(days=1))])
    write_run(out, [labeled("u5", 999, "gate-1", DAY)], commit=False)  # files written, never committed
    return out


class CountingFS(pafs.FileSystemHandler):
    """A filesystem that records which files are opened (to see what a query really reads)."""

    def __init__(self, fs: pafs.FileSystem):
        self.fs, self.opened = fs, []

    def __eq__(self, other):
        return self is other

    def __ne__(self, other):
        return self is not other

    def get_type_name(self):
        return "counting"

    def normalize_path(self, path):
        return self.fs.normalize_path(path)

    def get_file_info(self, paths):
        return self.fs.get_file_info(paths)

    def get_file_info_selector(self, selector):
        return self.fs.get_file_info(selector)

    def open_input_file(self, path):
        self.opened.append(path)
        return self.fs.open_input_file(path)

    def open_input_stream(self, path):
        self.opened.append(path)
        return self.fs.open_input_stream(path)

    def _read_only(self, *args, **kwargs):
        raise OSError("read-only")

    create_dir = delete_dir = delete_dir_contents = delete_root_dir_contents = delete_file = _read_only
    move = copy_file = open_output_stream = open_append_stream = _read_only


def test_only_committed_runs_are_visible_and_counts_match(results_dir):
    r = Results(results_dir, StorageOptions())
    assert len(r.runs) == 2
    total, errors = r.sql("SELECT count(*), count(error) FROM results").to_pylist()[0].values()
    assert (total, errors) == (120 + 30 + 40 + 10, 4)  # nothing of the crashed run's 999
    per_camera = {row["camera"]: row["n"] for row in r.sql("SELECT camera, count(*) AS n FROM results GROUP BY ALL").to_pylist()}
    assert per_camera == {"gate-1": 120, "gate-2": 30, "lobby": 40, None: 10}
    days = r.sql("SELECT date, count(*) AS n FROM results WHERE camera = 'gate-1' GROUP BY ALL ORDER BY date").to_pylist()
    assert [(str(d["date"]), d["n"]) for d in days] == [("2026-11-03", 90), ("2026-11-04", 30)]  # crossed midnight
    assert r.sql("SELECT count(*) AS n FROM runs").to_pylist() == [{"n": 2}]


def test_a_query_for_one_camera_day_opens_only_that_partition(results_dir):
    counting = CountingFS(pafs.LocalFileSystem())
    r = Results(results_dir, StorageOptions(), filesystem=pafs.PyFileSystem(counting))
    all_files = len(r.dataset.files)
    assert all_files == 5  # gate-1 x 2 days, gate-2, lobby, no camera

    assert r.sql("SELECT count(*) AS n FROM results").to_pylist() == [{"n": 200}]
    assert len(set(counting.opened)) == all_files
    counting.opened.clear()
    one = r.sql("SELECT label, count(*) AS n FROM results WHERE camera = 'gate-1' AND date = DATE '2026-11-04' "
                "GROUP BY ALL").to_pylist()
    assert sum(x["n"] for x in one) == 30
    assert [Path(p).parts[-3:-1] for p in set(counting.opened)] == [("camera=gate-1", "date=2026-11-04")]


def test_output_formats(results_dir, capsys):
    r = Results(results_dir, StorageOptions())
    table = r.sql("SELECT camera, label, count(*) AS n, min(wall_time) AS first FROM results "
                  "WHERE camera = 'gate-2' GROUP BY ALL ORDER BY label NULLS FIRST")
    query.write(table, "csv")
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(x["label"], int(x["n"])) for x in rows] == [("", 1), ("bus", 10), ("car", 9), ("truck", 10)]
    query.write(table, "json")
    parsed = json.loads(capsys.readouterr().out)
    assert parsed[1] == {"camera": "gate-2", "label": "bus", "n": 10, "first": "2026-11-03T22:32:00+00:00"}
    query.write(table, "table", max_rows=2)
    text = capsys.readouterr().out
    assert text.splitlines()[0].split() == ["camera", "label", "n", "first"] and "2 more row(s)" in text


def test_summary_and_mistakes_say_what_is_wrong(results_dir, capsys):
    r = Results(results_dir, StorageOptions())
    query.summarize(r, ["camera", "label"])
    out = capsys.readouterr().out
    assert "2 committed run(s)" in out and "200 rows visible, 4 error(s)" in out
    assert re.search(r"gate-1\s+car\s+39\s+0", out) and re.search(r"cannot decode image\s+4", out)
    with pytest.raises(QueryError, match="not a dimension"):
        query.summary_sql(["weather"])
    with pytest.raises(QueryError, match="nope"):
        r.sql("SELECT nope FROM results")


def test_no_runs_is_a_clear_error(tmp_path):
    from recog.storage import StorageError

    with pytest.raises(StorageError, match="no recog tables here"):
        Results(str(tmp_path), StorageOptions())
