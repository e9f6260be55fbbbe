"""The `recog` command: one subcommand per job or tool, every one with --help.

    recog demo                                        # the whole path on the embedded store, with sample data
    recog infer --input ... --output ...              # images: tar shards, loose files
    recog footage --input ... --output ... --fps 1    # sampled frames of videos
    recog vehicles --input ... --output ... --line gate=0,0.75,1,0.75   # every vehicle: tracked, typed, counted
    recog train ... | recog eval ...                  # fine-tune a model, score it
    recog submit -- infer --input ... --output ...    # the same jobs, on a Ray cluster (RAY_ADDRESS)
    recog jobs list | status ID | logs ID | stop ID
    recog query RESULTS "SELECT label, count(*) FROM results GROUP BY ALL"   # SQL over the results
    recog summary RESULTS --by camera,label | recog report RESULTS --out report.html
    recog errors RESULTS | recog purge RESULTS --before 2026-01-01 [--camera C] [--dry-run]
    recog crops RESULTS --to DIR [--camera C] [--max-score 0.6] [--limit 200]   # vehicles to review, a folder per type
    recog store serve | recog shards --from DIR --to PREFIX
    recog models list | recog models alias NAME VERSION ALIAS          # named models (MLflow), --model models:/NAME@ALIAS

The job parsers are derived from the config dataclasses (recog.config); the entry points in jobs/
run the same parsers (`run_command`). Building the parsers imports no torch, Ray or PyAV, so
--help and the cluster commands answer at once; each command imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Callable

from recog.config import InferConfig, TrainConfig, VehiclesConfig, add_arguments, fraction, from_args, positive_int
from recog.errors import ConfigError, SubmitError, run_job

RESULTS_HELP = "the --output of recog jobs: s3://bucket/prefix/ or a local path"


class Parser(argparse.ArgumentParser):
    """argparse, but a mistake is one line (`recog: error: ...`, exit status 2) as the README
    promises, not a usage block: the line names the command and where its options are listed."""

    def error(self, message: str):
        command = self.prog.removeprefix("recog ").strip()
        where = f"{self.prog} --help lists its options" if command != "recog" else "recog --help lists the commands"
        self.exit(2, f"recog: error: {command + ': ' if command != 'recog' else ''}{message} ({where})\n")


@dataclass(frozen=True)
class Command:
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int | None]
    help: str
    description: str = ""


# ---- the jobs ---------------------------------------------------------------------------------------

def infer_arguments(p: argparse.ArgumentParser) -> None:
    add_arguments(p, InferConfig, ("io", "model", "images", "cluster"))


def infer(args: argparse.Namespace) -> None:
    from recog.pipeline import run_inference

    run_inference(from_args(InferConfig, args, media="images"))


def footage_arguments(p: argparse.ArgumentParser) -> None:
    add_arguments(p, InferConfig, ("io", "video", "model", "cluster"))


def footage(args: argparse.Namespace) -> None:
    from recog.pipeline import run_inference

    run_inference(from_args(InferConfig, args, media="video"))


def vehicles_arguments(p: argparse.ArgumentParser) -> None:
    add_arguments(p, VehiclesConfig, ("io", "vehicles", "model", "cluster"), only=("name_pattern",))


def vehicles(args: argparse.Namespace) -> None:
    from recog.pipeline import run_inference

    run_inference(from_args(VehiclesConfig, args))


def eval_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", dest="input", required=True, help="labeled shards or images: a prefix, a file, or a pattern")
    p.add_argument("--output", default=None, help="where results and scores go (default: <model>/eval/)")
    p.add_argument("--label-field", default=None, help="take true labels from this key of the .json sidecars "
                   "(default: the .cls files)")
    add_arguments(p, InferConfig, ("model", "cluster"), only=("endpoint_url", "force"))


def evaluate(args: argparse.Namespace) -> None:
    from recog.evaluate import default_output, run_eval

    run_eval(from_args(InferConfig, args, output=args.output or default_output(args.model)), label_field=args.label_field)


def train_arguments(p: argparse.ArgumentParser) -> None:
    add_arguments(p, TrainConfig, ("train",))


def train(args: argparse.Namespace) -> None:
    from recog.train import run_training

    run_training(from_args(TrainConfig, args))


# ---- local tools ------------------------------------------------------------------------------------

def endpoint_argument(p: argparse.ArgumentParser) -> None:
    add_arguments(p, InferConfig, only=("endpoint_url",))


def demo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workdir", default="recog-data", help="where the embedded store keeps its data (default: recog-data)")
    p.add_argument("--keep-store", action="store_true", help="keep the store running after the demo, until Ctrl+C")
    p.add_argument("--drawn", action="store_true", help="use pictures drawn on the spot, even if ../shared/data is there")


def demo(args: argparse.Namespace) -> None:
    from pathlib import Path

    from recog.demo import run_demo

    run_demo(Path(args.workdir), keep_store=args.keep_store, drawn=args.drawn)


def store_arguments(p: argparse.ArgumentParser) -> None:
    from recog.objectstore import DEFAULT_DIR, DEFAULT_S3_PORT

    p.add_argument("action", choices=("serve",), help="serve: run the store in the foreground until Ctrl+C")
    p.add_argument("--dir", default=str(DEFAULT_DIR), help=f"data directory (default: {DEFAULT_DIR})")
    p.add_argument("--port", type=positive_int, default=DEFAULT_S3_PORT, help=f"S3 port on 127.0.0.1 (default: {DEFAULT_S3_PORT})")


def store(args: argparse.Namespace) -> None:
    import time

    from recog.objectstore import EmbeddedStore

    with EmbeddedStore(args.dir, args.port) as s:
        print(f"S3 endpoint {s.endpoint_url} (127.0.0.1 only), data in {s.data_dir}")
        print(f"to use it: source {s.data_dir}/credentials.env && export AWS_ENDPOINT_URL={s.endpoint_url}")
        print("Ctrl+C stops it.", flush=True)
        while True:
            time.sleep(3600)


def shards_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from", dest="source", required=True, help="a local folder of <class_name>/<image> files")
    p.add_argument("--to", dest="dest", required=True, help="shard prefix, e.g. s3://ds/train (-> train-000000.tar, ...)")
    p.add_argument("--per-shard", type=positive_int, default=1000, help="samples per shard (default: 1000)")
    endpoint_argument(p)


def shards(args: argparse.Namespace) -> None:
    from pathlib import Path

    from recog.shards import folder_samples, write_shards
    from recog.storage import StorageOptions

    uris = write_shards(Path(args.source), args.dest, StorageOptions.from_env(args.endpoint_url), args.per_shard)
    classes = sorted({c for c, _ in folder_samples(Path(args.source))})
    print(f"wrote {len(uris)} shard(s) {uris[0]} .. {uris[-1]}: classes {', '.join(classes)}")


# ---- results --------------------------------------------------------------------------------------

def results_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("results", help=RESULTS_HELP)
    endpoint_argument(p)


def open_results(args: argparse.Namespace):
    from recog.query import Results
    from recog.storage import StorageOptions

    opts = StorageOptions.from_env(args.endpoint_url)
    return Results(args.results, opts), opts


def query_arguments(p: argparse.ArgumentParser) -> None:
    results_arguments(p)
    p.add_argument("sql", help='e.g. "SELECT camera, label, count(*) FROM results GROUP BY ALL ORDER BY 3 DESC"')
    p.add_argument("--format", choices=("table", "csv", "json"), default="table", help="output format (default: table)")
    p.add_argument("--max-rows", type=positive_int, default=100, help="rows a table shows; csv/json print all (default: 100)")


def query(args: argparse.Namespace) -> None:
    from recog.query import write

    results, _ = open_results(args)
    write(results.sql(args.sql), args.format, max_rows=args.max_rows)


def summary_arguments(p: argparse.ArgumentParser) -> None:
    results_arguments(p)
    p.add_argument("--by", default="label", help="comma-separated, from: label, camera, date, hour, hour_of_day, model, "
                   "run, source, error (default: label)")


def summary(args: argparse.Namespace) -> None:
    from recog.query import check_dimensions, summarize

    by = check_dimensions([d.strip() for d in args.by.split(",") if d.strip()])
    results, _ = open_results(args)
    summarize(results, by)


def report_arguments(p: argparse.ArgumentParser) -> None:
    results_arguments(p)
    p.add_argument("--output", default="report.html", help="the HTML file to write (default: report.html)")
    p.add_argument("--out", dest="output", help=argparse.SUPPRESS)  # its name before 0.2
    p.add_argument("--thumbs", type=positive_int, default=12, help="thumbnails per label in the contact sheet (default: 12)")
    p.add_argument("--title", default=None, help="page title (default: recog results <results>)")


def report(args: argparse.Namespace) -> None:
    import time
    from pathlib import Path

    from recog.errors import ConfigError, StorageError
    from recog.report import build_report
    from recog.storage import check_local_output

    t0 = time.monotonic()
    out = Path(args.output)
    if out.is_dir() or not out.parent.resolve().is_dir():
        raise ConfigError(f"--output {args.output}: " + ("is a folder: name the HTML file" if out.is_dir() else
                                                         "the folder does not exist"))
    try:
        check_local_output(str(out.parent.resolve()))
    except StorageError:
        raise ConfigError(f"--output {args.output}: the folder is not writable") from None
    results, opts = open_results(args)
    problems: list[str] = []
    page = build_report(results, args.title or f"recog results {args.results}", opts, args.thumbs, problems)
    try:
        out.write_text(page, encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"--output {args.output}: cannot write the report: {e.strerror or e}") from None
    print(f"[recog] report {args.output}: {len(page) / 1e6:.1f} MB, {page.count('<img ')} thumbnails, "
          f"{time.monotonic() - t0:.1f} s")
    if problems:
        print(f"recog: warning: {len(problems)} source(s) of thumbnails could not be read (moved or deleted since the "
              f"job ran?), e.g. {problems[0]}", file=sys.stderr)


def errors_arguments(p: argparse.ArgumentParser) -> None:
    results_arguments(p)
    p.add_argument("--format", choices=("table", "csv", "json"), default="table",
                   help="table: counts by kind, then the rows; csv/json: the error rows (default: table)")
    p.add_argument("--max-rows", type=positive_int, default=100, help="error rows a table shows (default: 100)")


def errors(args: argparse.Namespace) -> None:
    from recog.query import list_errors

    results, _ = open_results(args)
    list_errors(results, args.format, max_rows=args.max_rows)


def day(text: str):
    import datetime as dt

    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a day as YYYY-MM-DD, not {text}") from None


def purge_arguments(p: argparse.ArgumentParser) -> None:
    results_arguments(p)
    p.add_argument("--before", type=day, required=True, help="delete the rows of days before this one (UTC, YYYY-MM-DD)")
    p.add_argument("--camera", default=None, help="only this camera's rows (default: every camera)")
    p.add_argument("--dry-run", action="store_true", help="say what would be deleted, delete nothing (default: off)")


def purge(args: argparse.Namespace) -> None:
    from recog import table
    from recog.errors import StorageError
    from recog.storage import StorageOptions

    opts = StorageOptions.from_env(args.endpoint_url)
    names = [n for n in table.TABLES if table.exists(table.uri(args.results, n), opts)]
    if not names:
        raise StorageError(f"{args.results}: no recog tables here (results/, vehicles/ or crossings/ with a _delta_log)")
    what = f"rows of days before {args.before}" + (f" of camera {args.camera!r}" if args.camera else "")
    for name in names:
        done = table.purge(table.uri(args.results, name), opts, args.before, args.camera, args.dry_run)
        if args.dry_run:
            print(f"[recog] {name}: would delete {done['rows']} {what} in {done['files']} file(s) (dry run: nothing deleted)")
        else:
            print(f"[recog] {name}: deleted {done['rows']} {what}; {done['deleted_files']} file(s) removed from storage"
                  + (f" (table version {done['version']})" if "version" in done else ""))


def moment(text: str):
    """A --since/--until value: a day (YYYY-MM-DD) or a time (YYYY-MM-DDTHH:MM[:SS], with or without
    a zone; without one it is UTC)."""
    import datetime as dt

    from recog.sidecars import utc

    try:
        return utc(dt.datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a day YYYY-MM-DD or a time YYYY-MM-DDTHH:MM[:SS], not {text}") from None


def crops_arguments(p: argparse.ArgumentParser) -> None:
    results_arguments(p)
    p.add_argument("--to", required=True, help="a local folder: one subfolder per label, a manifest.csv beside them")
    p.add_argument("--camera", default=None, help="only this camera's vehicles (default: every camera)")
    p.add_argument("--since", type=moment, default=None, help="only vehicles first seen at or after this day or time, "
                   "UTC unless it says (default: from the first)")
    p.add_argument("--until", type=moment, default=None, help="... and before this one (default: to the last)")
    p.add_argument("--label", default=None, help="only vehicles of this type, e.g. truck (default: every type)")
    p.add_argument("--max-score", type=fraction, default=None, help="only vehicles whose label's score is at most this "
                   "(default: any score; vehicles go least sure first either way)")
    p.add_argument("--limit", type=positive_int, default=None, help="at most this many vehicles, the least sure (default: all)")
    p.add_argument("--per-vehicle", type=positive_int, default=None, help="crops per vehicle, best first "
                   "(default: every crop the job classified, up to 3)")


def crops(args: argparse.Namespace) -> None:
    from pathlib import Path

    from recog.crops import MANIFEST, Selection, export

    if args.since and args.until and args.since >= args.until:
        raise ConfigError(f"--since {args.since:%Y-%m-%d %H:%M:%S} is not before --until {args.until:%Y-%m-%d %H:%M:%S}")
    results, opts = open_results(args)
    to = Path(args.to)
    done = export(results, to, Selection(args.camera, args.since, args.until, args.label, args.max_score, args.limit), opts,
                  args.per_vehicle)
    if not done["vehicles"]:
        print("[recog] crops: no vehicle matches (recog query RESULTS \"SELECT camera, label, count(*) FROM vehicles GROUP BY ALL\" "
              "shows what there is)")
        return
    labels = ", ".join(f"{k} {n}" for k, n in done["labels"].items())
    print(f"[recog] crops: {done['written']} crop(s) of {done['vehicles']} vehicle(s), least sure first, written under {to}"
          + (f": {labels}; manifest {to / MANIFEST}" if done["written"] else ""))
    if done["already"]:
        print(f"[recog] {done['already']} crop(s) already in {to}, left where they are (a reviewer may have moved them)")
    if done["problems"]:
        print(f"recog: warning: {len(done['problems'])} video(s) could not be read (moved or deleted since the job ran?), "
              f"e.g. {done['problems'][0]}", file=sys.stderr)
    model = done["models"][0] if len(done["models"]) == 1 else "MODEL"
    print(f"[recog] next: move misfiled crops to their type's folder (not_vehicle/ for what is no vehicle), then fine-tune "
          f"on it: recog train --init {model} --train {to} --output ... (README: Review and fine-tune per camera)")


def models_arguments(p: argparse.ArgumentParser) -> None:
    p.usage = "recog models list [NAME] | alias NAME VERSION ALIAS"
    p.add_argument("action", choices=("list", "alias"), help="list: the registered models' versions, aliases and packages; "
                   "alias: point NAME@ALIAS at VERSION (what --model models:/NAME@ALIAS then means)")
    p.add_argument("names", nargs="*", metavar="NAME VERSION ALIAS", help="list: a model's name (default: every model); "
                   "alias: a name, a version number, an alias")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table", help="output format of list (default: table)")


def models_command(args: argparse.Namespace) -> None:
    import pyarrow as pa

    from recog.models import named
    from recog.query import write

    if args.action == "list":
        if len(args.names) > 1:
            raise ConfigError(f"recog models list takes one model name at most, not {' '.join(args.names)}")
        rows = named.versions(named.check_name(args.names[0], "models list") if args.names else None)
        if not rows:
            print(f"[recog] no registered models in {named.tracking_uri()} (recog train --register NAME adds one)")
            return
        write(pa.Table.from_pylist(rows), args.format)
        return
    if len(args.names) != 3 or not args.names[1].isdigit():
        raise ConfigError("recog models alias NAME VERSION ALIAS: a model's name, a version number and an alias, "
                          f"not {' '.join(args.names) or 'nothing'}")
    name, version, alias = args.names
    mv = named.set_alias(named.check_name(name, "models alias"), version, alias)
    print(f"[recog] models:/{name}@{alias} is now version {mv.version} ({mv.source})")


# ---- the cluster ----------------------------------------------------------------------------------

def address_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ray-address", dest="address", default=None,
                   help="the cluster's dashboard, e.g. http://head:8265 (default: RAY_ADDRESS)")
    p.add_argument("--address", dest="address", help=argparse.SUPPRESS)  # its name before 0.2


def submit_arguments(p: argparse.ArgumentParser) -> None:
    from recog.submit import JOB_MODULES

    p.usage = "recog submit [options] -- {%s} [job arguments]" % ",".join(JOB_MODULES)
    address_argument(p)
    p.add_argument("--env", action="append", default=[], metavar="NAME[=VALUE]",
                   help="pass an environment variable to the job (not secrets: those stay on the cluster)")
    p.add_argument("--no-working-dir", action="store_true",
                   help="do not upload this checkout; run the recog installed in the cluster's image")
    p.add_argument("--entrypoint-cpus", type=float, default=None,
                   help="CPUs reserved for the job's driver (default: 0; it plans and writes, the pool does the work)")
    p.add_argument("--no-wait", action="store_true", help="print the job id and return; do not follow the logs")
    p.add_argument("job", nargs=argparse.REMAINDER, help="the recog command to run there and its arguments")


def submit(args: argparse.Namespace) -> int:
    from recog import submit as jobs_api

    command = args.job[1:] if args.job[:1] == ["--"] else args.job
    entrypoint = jobs_api.entrypoint(command)
    command_parser(command[0], prog=entrypoint.split(" ", 1)[0]).parse_args(command[1:])  # a typo fails here
    api = jobs_api.JobsAPI(args.address)
    api.list()  # the first request that needs the token: fail here, not half-way
    workdir = None if args.no_working_dir else jobs_api.source_checkout()
    job_id = jobs_api.submit(api, command, jobs_api.job_env(args.env), workdir, args.entrypoint_cpus)
    print(f"[recog] submitted {job_id} to {api.address}"
          + (f" with {workdir} as working_dir" if workdir else " (the cluster's installed recog)"), flush=True)
    if args.no_wait:
        print(f"[recog] follow it with: recog jobs logs {job_id} --follow", flush=True)
        return 0
    try:
        status = jobs_api.follow(api, job_id)
    except KeyboardInterrupt:
        print(f"\n[recog] stopped following; {job_id} goes on (recog jobs stop {job_id} ends it)", file=sys.stderr)
        return 130
    code = jobs_api.exit_status(api, job_id)
    print(f"[recog] job {job_id} {status}" + (f" (exit status {code})" if code else ""), flush=True)
    return code


def jobs_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("list", "status", "logs", "stop"))
    p.add_argument("job_id", nargs="?", help="submission id (for status, logs, stop)")
    p.add_argument("--follow", action="store_true", help="logs: keep printing until the job ends")
    address_argument(p)


def jobs(args: argparse.Namespace) -> int:
    from recog import submit as jobs_api

    if args.action != "list" and not args.job_id:
        raise SubmitError(f"recog jobs {args.action} needs a job id (recog jobs list shows them)")
    api = jobs_api.JobsAPI(args.address)
    if args.action == "list":
        for info in sorted(api.list(), key=lambda i: i.get("start_time") or 0):
            print(jobs_api.describe(info))
    elif args.action == "status":
        print(api.status(args.job_id))
    elif args.action == "logs" and args.follow:
        jobs_api.follow(api, args.job_id)
        return jobs_api.exit_status(api, args.job_id)
    elif args.action == "logs":
        print(api.logs(args.job_id), end="")
    else:
        print(f"{args.job_id}: " + ("stop requested" if api.stop(args.job_id) else "already ended"))
    return 0


COMMANDS: dict[str, Command] = {
    "demo": Command(demo_arguments, demo, "run the whole pipeline on the embedded store with sample data"),
    "infer": Command(infer_arguments, infer, "label images in tar shards / image prefixes -> Parquet",
                     "Label every image in tar shards (WebDataset) and loose image files under --input; write one "
                     "row per image to --output.\n\n    recog infer --input s3://archive/shards/ --output s3://archive/results/"),
    "footage": Command(footage_arguments, footage, "label sampled frames of video files -> Parquet",
                       "Label sampled frames of every video (.mp4 .mkv .avi .mov) under --input. Videos are cut into "
                       "segments decoded in parallel; rows carry the frame's time, and the wall-clock time when the "
                       "recording's start is known (a .json sidecar {\"camera\": ..., \"start\": ...} beside the video, "
                       "or --name-pattern).\n\n    recog footage --input s3://archive/cam-07/ --output s3://archive/results/ --fps 1"),
    "vehicles": Command(vehicles_arguments, vehicles, "find, track, classify and count every vehicle in footage -> tables",
                        "Find (motion, or a detector), track, classify and count every vehicle in the videos under --input: "
                        "every frame is looked at (--analyze-fps: fewer, all decoded). Writes two tables: vehicles (one row per tracked vehicle: when, where "
                        "it entered and left, direction, type from its best crops) and crossings (one row per vehicle "
                        "crossing a named --line, with its direction). Line and --roi coordinates are fractions of the "
                        "frame's width and height.\n\n    recog vehicles --input s3://archive/cam-07/ --output "
                        "s3://archive/traffic/ --line gate=0,0.75,1,0.75"),
    "train": Command(train_arguments, train, "fine-tune a model on labeled shards or folders (Ray Train) -> model package",
                     "Fine-tune a registry architecture, or a model package (--init), on labeled shards or a "
                     "class-folder tree with Ray Train (DDP); write a model package to --output (and, with --register, "
                     "a new version of a named model in MLflow's registry). Labels come from each sample's .cls (or "
                     "--label-field of its .json), or a loose image's folder. A checkpoint goes to <output>/_train/ "
                     "every epoch; the same command run again continues from the last one."
                     "\n\n    recog train --train 's3://ds/train-{000000..000031}.tar' --val 's3://ds/val-*.tar' "
                     "--output s3://models/gate-cams"
                     "\n    recog train --init vehicle-types --train review/cam-07 --output s3://models/cam-07 --register cam-07"),
    "eval": Command(eval_arguments, evaluate, "score a model on labeled shards",
                    "Score a model on labeled data: runs the inference job over --data and compares each label with "
                    "the sample's .cls (or --label-field of its .json): top-1 accuracy, per-class precision and "
                    "recall, confusion matrix.\n\n    recog eval --model s3://models/gate-cams --data 's3://ds/test-*.tar'"),
    "shards": Command(shards_arguments, shards, "pack a class_name/*.jpg folder tree into labeled tar shards",
                      "Pack a <class_name>/<image> folder tree into WebDataset shards: per sample the image, a .cls "
                      "(the class) and a .json; samples shuffled across shards.\n\n"
                      "    recog shards --from photos/train --to s3://ds/train --per-shard 1000"),
    "store": Command(store_arguments, store, "run the embedded S3 object store (SeaweedFS)"),
    "query": Command(query_arguments, query, "SQL over the results (DuckDB)",
                     "SQL (DuckDB) over the committed results. Views, those the output holds: results (one row per "
                     "image or frame: recog infer, recog footage), vehicles (one row per tracked vehicle) and crossings "
                     "(one row per line crossing: recog vehicles), and runs (one row per finished run). Filter on "
                     "camera and date to read less.\n\n    recog query s3://archive/results/ \"SELECT label, count(*) "
                     "FROM results GROUP BY ALL\""),
    "errors": Command(errors_arguments, errors, "the error rows of the results, by kind",
                      "List the error rows (inputs that could not be labeled) of the results by kind (the text before "
                      "the first colon), then the rows. `recog infer ... --retry-errors` redoes the units that hold "
                      "them.\n\n    recog errors s3://archive/results/"),
    "purge": Command(purge_arguments, purge, "delete the rows of days before a date (retention), and their files",
                     "Delete the rows of every table under RESULTS recorded before --before (UTC day; of one --camera "
                     "if given), in one Delta commit per table, then delete their files from storage (vacuum). "
                     "Rows without a recording day are kept.\n\n    recog purge s3://archive/results/ --before 2026-01-01 "
                     "--camera gate-3 --dry-run"),
    "crops": Command(crops_arguments, crops, "the vehicles typed, as crops in a folder per type: review, correct, fine-tune",
                     "Cut the crops of the vehicles a `recog vehicles` job typed from their videos again (as the job cut "
                     "them for the classifier) and write them as <to>/<label>/<camera>_<time>_<track>.jpg, least sure "
                     "first, with a manifest.csv (source, frame, box, label, score, run, model). Labeling tools import "
                     "such a tree; moved into the right folders, the crops are training data for "
                     "`recog train --init MODEL --train DIR`. Crops already in the tree are not written again."
                     "\n\n    recog crops s3://archive/traffic/ --to review/cam-07 --camera cam-07 --max-score 0.6 --limit 200"),
    "models": Command(models_arguments, models_command, "named models in MLflow's registry: list versions, move an alias",
                      "The model packages registered with `recog train --register NAME` (MLflow's model registry: "
                      "MLFLOW_TRACKING_URI, else recog-data/mlflow.db). Every job's --model takes models:/NAME/VERSION "
                      "or models:/NAME@ALIAS; an alias says which version that is.\n\n"
                      "    recog models list\n    recog models alias cam-07 3 champion"),
    "summary": Command(summary_arguments, summary, "counts per label/camera/hour, errors, runs and models"),
    "report": Command(report_arguments, report, "an HTML report with charts and thumbnails per label",
                      "One self-contained HTML file: counts over time per label, per camera, score histograms, "
                      "errors, and a contact sheet of thumbnails per label."),
    "submit": Command(submit_arguments, submit, "run infer/footage/vehicles/train/eval as a job on a Ray cluster",
                      "Send a recog job to a Ray cluster through its Jobs API (token auth), follow its logs and exit "
                      "with its status. Credentials are never sent: the cluster uses its own."),
    "jobs": Command(jobs_arguments, jobs, "list, follow and stop jobs on a Ray cluster"),
}


def command_parser(name: str, prog: str | None = None) -> argparse.ArgumentParser:
    """The parser of one command (as `python -m jobs.<name>` and `recog submit` use it)."""
    command = COMMANDS[name]
    p = Parser(prog=prog or f"recog {name}", description=command.description or command.help,
               formatter_class=argparse.RawDescriptionHelpFormatter)
    command.add_arguments(p)
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="recog", description="Vehicle recognition over image archives and camera "
                    "footage, on Ray. `recog COMMAND --help` tells more.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        p = sub.add_parser(name, help=command.help, description=command.description or command.help,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        command.add_arguments(p)
    return parser


def run_command(name: str, argv: list[str], prog: str | None = None) -> int:
    """Parse `argv` with the parser of command `name` and run it (the entry points in jobs/)."""
    return run_job(COMMANDS[name].run, command_parser(name, prog).parse_args(argv))


def main(argv: list[str] | None = None) -> int:
    args, extra = build_parser().parse_known_args(argv)
    if extra:  # said by the command's own parser, which lists its options
        command_parser(args.command).error(f"unrecognized arguments: {' '.join(extra)}")
    return run_job(COMMANDS[args.command].run, args)


if __name__ == "__main__":
    sys.exit(main())
