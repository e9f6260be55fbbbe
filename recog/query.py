"""SQL over the results: DuckDB on pyarrow datasets of the Delta tables' committed files.

Each table of an output (`results`: one row per image or frame; `vehicles` and `crossings`: the
vehicles job's) is a Delta table; its live files come from its log, so files of runs that did not
commit are never seen. DuckDB reads them through pyarrow's filesystems (local paths, any S3
endpoint, the jobs' credentials), so no DuckDB extension is fetched at run time. Filters and column
lists are pushed into the scan, and every file carries its partition (camera, date) from the log:
a query filtered on camera or date opens only the files of those partitions.

Views: those of `results`, `vehicles` and `crossings` that exist, and `runs` (one row per finished run).
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import sys
from typing import TextIO

import pyarrow as pa
import pyarrow.dataset as ds

from recog import sink, table
from recog.errors import QueryError, StorageError
from recog.storage import StorageOptions

FORMATS = ("table", "csv", "json")
# `recog summary --by` dimensions: name -> SQL expression over `results`; over `vehicles` the
# time is when a vehicle was first seen
DIMENSIONS = {
    "label": "label", "camera": "camera", "date": "date", "model": "model", "run": "run_id",
    "hour": "strftime(wall_time, '%Y-%m-%d %H:00')", "hour_of_day": "hour(wall_time)",
    "source": "source_uri", "error": "error",
}
TIME_COLUMN = {"results": "wall_time", "vehicles": "first_seen"}


def check_dimensions(by: list[str]) -> list[str]:
    """`--by` dimensions, refused (before anything is printed) unless each is known."""
    unknown = [d for d in by if d not in DIMENSIONS]
    if unknown or not by:
        raise QueryError(f"--by {','.join(unknown)}: not a dimension; choose from {', '.join(DIMENSIONS)}")
    return by


def table_datasets(output: str, opts: StorageOptions, filesystem=None) -> dict[str, ds.Dataset]:
    """The committed files of each table under `output`, one dataset per table. `filesystem`
    replaces the one the URI implies (the tests count file opens through it)."""
    datasets = {}
    for name in table.TABLES:
        uri = table.uri(output, name)
        if table.exists(uri, opts):
            datasets[name] = table.dataset(table.load(uri, opts), sink.schema_of(name), opts, filesystem=filesystem)
    if not datasets:
        raise StorageError(f"{output}: no recog tables here (results/, vehicles/ or crossings/ with a _delta_log; "
                           f"is this the --output of a recog job?)")
    return datasets


def runs_table(runs: list[dict]) -> pa.Table:
    rows = [{"run_id": r["run_id"], "job": r.get("job"), "model": r.get("model", {}).get("name"),
             "model_version": r.get("model", {}).get("version"), "started_at": r.get("started_at"),
             "finished_at": r.get("finished_at"), "rows": r["summary"]["rows"], "errors": r["summary"]["errors"],
             "files": r["summary"].get("files"), "input": r.get("config", {}).get("input")} for r in runs]
    schema = pa.schema([("run_id", pa.string()), ("job", pa.string()), ("model", pa.string()), ("model_version", pa.string()),
                        ("started_at", pa.string()), ("finished_at", pa.string()), ("rows", pa.int64()),
                        ("errors", pa.int64()), ("files", pa.int64()), ("input", pa.string())])
    return pa.Table.from_pylist(rows, schema=schema)


class Results:
    """A DuckDB connection with a view per table of one output prefix (`results`, `vehicles`,
    `crossings`: those its runs wrote) and `runs`."""

    def __init__(self, output: str, opts: StorageOptions, filesystem=None):
        import duckdb

        self.output = output
        self.runs = sink.committed_runs(output, opts)
        self.datasets = table_datasets(output, opts, filesystem)
        self.con = duckdb.connect()
        for name, dataset in self.datasets.items():
            self.con.register(name, dataset)
        self.con.register("runs", runs_table(self.runs))

    @property
    def dataset(self) -> ds.Dataset:
        """The `results` table (the image and footage jobs')."""
        return self.datasets["results"]

    def has(self, table: str) -> bool:
        return table in self.datasets

    def sql(self, query: str) -> pa.Table:
        import duckdb

        try:
            return self.con.sql(query).to_arrow_table()
        except duckdb.CatalogException as e:
            # DuckDB's own hint names its system tables (pg_settings, ...): name recog's instead
            first = str(e).strip().splitlines()[0].rstrip("!.")
            raise QueryError(f"{first}; this output's tables: {', '.join([*self.datasets, 'runs'])}") from None
        except duckdb.Error as e:
            raise QueryError(str(e).strip()) from None


def summary_sql(by: list[str], table: str = "results") -> str:
    """Rows (or, of `vehicles`, vehicles), errors and mean score of `table` per the `by` dimensions."""
    check_dimensions(by)
    cols = ", ".join(f"{DIMENSIONS[d].replace('wall_time', TIME_COLUMN[table])} AS {d}" for d in by)
    count = "count(*) AS rows" if table == "results" else "count(track_id) AS vehicles"
    return (f"SELECT {cols}, {count}, count(*) FILTER (WHERE error IS NOT NULL) AS errors, "
            f"round(avg(score), 3) AS mean_score FROM {table} GROUP BY ALL ORDER BY 2 DESC, {', '.join(by)}")


# ---- output -------------------------------------------------------------------------------------

def write(table: pa.Table, fmt: str, out: TextIO | None = None, max_rows: int = 100) -> None:
    """Print a result as an aligned text table (at most `max_rows`), CSV or JSON (an array of objects)."""
    out = out or sys.stdout
    if fmt == "csv":
        rows = table.to_pylist()
        w = csv.writer(out, lineterminator="\n")
        w.writerow(table.column_names)
        w.writerows([_plain(r[c]) for c in table.column_names] for r in rows)
    elif fmt == "json":
        json.dump(table.to_pylist(), out, default=_json_default)
        out.write("\n")
    else:
        out.write(format_table(table, max_rows) + "\n")


def format_table(table: pa.Table, max_rows: int = 100) -> str:
    shown = table.slice(0, max_rows).to_pylist()
    cells = [[_cell(r[c]) for c in table.column_names] for r in shown]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(table.column_names)]
    numeric = [pa.types.is_integer(t) or pa.types.is_floating(t) for t in table.schema.types]

    def line(values):
        return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)).rstrip()

    lines = [line(table.column_names), line(["-" * w for w in widths])] + [line(r) for r in cells]
    if table.num_rows > max_rows:
        lines.append(f"... {table.num_rows - max_rows} more row(s) (--format csv or json prints all)")
    lines.append(f"({table.num_rows} row(s))")
    return "\n".join(lines)


def _cell(v) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, float):
        return f"{v:.4g}"
    text = str(_plain(v))
    return text if len(text) <= 60 else text[:57] + "..."


def _plain(v):
    if isinstance(v, (list, dict)):
        return json.dumps(v, default=_json_default)
    if isinstance(v, (dt.datetime, dt.date)):
        return v.isoformat()
    return "" if v is None else v


def _json_default(v):
    if isinstance(v, (dt.datetime, dt.date, dt.time)):
        return v.isoformat()
    if isinstance(v, dt.timedelta):
        return v.total_seconds()
    return str(v)


def describe_runs(runs: list[dict]) -> str:
    models = sorted({f"{r.get('model', {}).get('name')} {r.get('model', {}).get('version')}" for r in runs})
    return (f"{len(runs)} committed run(s), {sum(r['summary']['rows'] for r in runs)} rows written, "
            f"model(s): {', '.join(models)}")


def summarize(results: Results, by: list[str], out: TextIO | None = None) -> None:
    """`recog summary`: runs and models, then counts per the chosen dimensions (and, for the
    vehicles job's tables, vehicles per type and crossings per line, direction and type)."""
    out = out or sys.stdout
    out.write(describe_runs(results.runs) + "\n")
    write(results.sql("SELECT run_id, job, model, model_version, finished_at, rows, errors, input FROM runs "
                      "ORDER BY run_id"), "table", out)
    if results.has("results"):
        summarize_results(results, by, out)
    if results.has("vehicles"):
        summarize_vehicles(results, by, out)


def list_errors(results: Results, fmt: str = "table", out: TextIO | None = None, max_rows: int = 100) -> int:
    """`recog errors`: error rows by kind (the text before the first colon) per table, then the rows
    themselves. Returns the number of error rows."""
    out = out or sys.stdout
    total = 0
    for name in ("results", "vehicles"):
        if not results.has(name):
            continue
        kinds = results.sql(f"SELECT split_part(error, ':', 1) AS kind, count(*) AS rows, count(DISTINCT unit_id) AS units, "
                            f"min(source_uri) AS example FROM {name} WHERE error IS NOT NULL GROUP BY ALL ORDER BY rows DESC, kind")
        n = sum(kinds.column("rows").to_pylist())
        total += n
        if fmt != "table":
            write(results.sql(f"SELECT '{name}' AS table_name, * EXCLUDE (topk_labels, topk_scores) FROM {name} "
                              f"WHERE error IS NOT NULL ORDER BY source_uri") if name == "results" else
                  results.sql(f"SELECT '{name}' AS table_name, camera, source_uri, error, unit_id, run_id FROM {name} "
                              f"WHERE error IS NOT NULL ORDER BY source_uri"), fmt, out)
            continue
        out.write(f"{name}: {n} error row(s)" + (" by kind:\n" if n else "\n"))
        if n:
            write(kinds, "table", out)
            key = "coalesce(key, member)" if name == "results" else "CAST(track_id AS VARCHAR)"
            out.write("\n")
            write(results.sql(f"SELECT source_uri, {key} AS item, error FROM {name} WHERE error IS NOT NULL "
                              f"ORDER BY source_uri, item"), "table", out, max_rows=max_rows)
    if fmt == "table" and total:
        out.write("\nrun the job again with --retry-errors to redo the units that hold them, replacing their rows\n")
    return total


def summarize_results(results: Results, by: list[str], out: TextIO) -> None:
    totals = results.sql("SELECT count(*) AS rows, count(*) FILTER (WHERE error IS NOT NULL) AS errors, "
                         "count(DISTINCT camera) AS cameras, min(wall_time) AS first_seen, max(wall_time) AS last_seen "
                         "FROM results").to_pylist()[0]
    out.write(f"\n{totals['rows']} rows visible, {totals['errors']} error(s), {totals['cameras']} camera(s)"
              + (f", recorded {totals['first_seen']} .. {totals['last_seen']}" if totals["first_seen"] else "") + "\n\n")
    write(results.sql(summary_sql(by)), "table", out, max_rows=200)
    errors = results.sql("SELECT split_part(error, ':', 1) AS error, count(*) AS rows FROM results "
                         "WHERE error IS NOT NULL GROUP BY ALL ORDER BY rows DESC LIMIT 10")
    if errors.num_rows:
        out.write("\nerrors by kind:\n")
        write(errors, "table", out)


def summarize_vehicles(results: Results, by: list[str], out: TextIO) -> None:
    totals = results.sql("SELECT count(track_id) AS vehicles, count(error) AS errors, count(warning) AS flagged, "
                         "count(DISTINCT camera) AS cameras FROM vehicles").to_pylist()[0]
    out.write(f"\n{totals['vehicles']} vehicles tracked, {totals['errors']} without a label, {totals['flagged']} flagged, "
              f"{totals['cameras']} camera(s)\n\nvehicles by {', '.join(by)}:\n")
    write(results.sql(summary_sql(by, "vehicles")), "table", out, max_rows=200)
    if results.has("crossings"):
        out.write("\ncrossings per line, direction and type:\n")
        write(results.sql("SELECT line, direction, label, count(*) AS crossings FROM crossings "
                          "GROUP BY ALL ORDER BY line, direction, crossings DESC"), "table", out, max_rows=200)
        out.write("\ncrossings per hour and line:\n")
        write(results.sql("SELECT coalesce(strftime(wall_time, '%Y-%m-%d %H:00'), 'video hour ' || floor(pts_s / 3600)::INT) "
                          "AS hour, line, count(*) AS crossings FROM crossings GROUP BY ALL ORDER BY hour, line"),
              "table", out, max_rows=200)
    errors = results.sql("SELECT split_part(coalesce(error, warning), ':', 1) AS problem, count(*) AS vehicles FROM vehicles "
                         "WHERE error IS NOT NULL OR warning IS NOT NULL GROUP BY ALL ORDER BY vehicles DESC LIMIT 10")
    if errors.num_rows:
        out.write("\nproblems by kind:\n")
        write(errors, "table", out)
