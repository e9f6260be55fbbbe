"""The `recog` command. Each subcommand is a thin parser over a job in jobs/ or a local tool here.

    recog demo                      # the whole path on the embedded store, with sample data
    recog infer --input ... --output ...         # images: tar shards, loose files
    recog footage --input ... --output ... --fps 1   # videos
    recog store serve               # the embedded S3 store, in the foreground
    recog submit -- infer --input ... --output ...   # the same jobs, on a Ray cluster (RAY_ADDRESS)
    recog jobs list | logs ID | stop ID
    recog query RESULTS "SELECT label, count(*) FROM results GROUP BY ALL"   # SQL over the results
    recog summary RESULTS --by camera,label | recog report RESULTS --out report.html
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from recog import objectstore
from recog.cluster import ClusterError
from recog.models import ModelError
from recog.objectstore import StoreError
from recog.pipeline import JobFailed
from recog.query import QueryError
from recog.storage import StorageError

# Errors that mean "the configuration is wrong": one clear line, no traceback.
USER_ERRORS = (StorageError, ModelError, StoreError, ClusterError, QueryError)


def run_job(main: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a command; turn configuration errors into a one-line message and exit status 2."""
    try:
        return main(args) or 0
    except USER_ERRORS as e:
        print(f"recog: error: {e}", file=sys.stderr)
        return 2
    except JobFailed as e:
        print(f"recog: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("recog: interrupted", file=sys.stderr)
        return 130


def demo_args(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=add_help)
    p.add_argument("--workdir", default="recog-data", help="where the embedded store keeps its data (default ./recog-data)")
    p.add_argument("--keep-store", action="store_true", help="keep the store running after the demo, until Ctrl+C")
    p.add_argument("--drawn", action="store_true", help="use pictures drawn on the spot, even if ../shared/data is there")
    return p


def demo_main(args: argparse.Namespace) -> int:
    from pathlib import Path

    from recog.demo import run_demo

    run_demo(Path(args.workdir), keep_store=args.keep_store, drawn=args.drawn)
    return 0


def store_args(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=add_help)
    p.add_argument("action", choices=("serve",), help="serve: run the store in the foreground until Ctrl+C")
    p.add_argument("--dir", default=str(objectstore.DEFAULT_DIR), help="data directory (default ./recog-data/store)")
    p.add_argument("--port", type=int, default=objectstore.DEFAULT_S3_PORT, help="S3 port on 127.0.0.1 (default 8333)")
    return p


def store_main(args: argparse.Namespace) -> int:
    import time

    with objectstore.EmbeddedStore(args.dir, args.port) as store:
        print(f"S3 endpoint {store.endpoint_url} (127.0.0.1 only), data in {store.data_dir}")
        print(f"to use it: source {store.data_dir}/credentials.env && export AWS_ENDPOINT_URL={store.endpoint_url}")
        print("Ctrl+C stops it.", flush=True)
        while True:
            time.sleep(3600)


def shards_args(add_help: bool = True) -> argparse.ArgumentParser:
    from recog import shards

    p = argparse.ArgumentParser(add_help=add_help, description=shards.__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--from", dest="source", required=True, help="a local folder of <class_name>/<image> files")
    p.add_argument("--to", dest="dest", required=True, help="shard prefix, e.g. s3://ds/train (-> train-000000.tar, ...)")
    p.add_argument("--per-shard", type=int, default=1000, help="samples per shard (default 1000)")
    p.add_argument("--endpoint-url", default=None, help="S3-compatible endpoint (default: AWS_ENDPOINT_URL, else AWS)")
    return p


def shards_main(args: argparse.Namespace) -> int:
    from pathlib import Path

    from recog.shards import folder_samples, write_shards
    from recog.storage import StorageOptions

    uris = write_shards(Path(args.source), args.dest, StorageOptions.from_env(args.endpoint_url), args.per_shard)
    classes = sorted({c for c, _ in folder_samples(Path(args.source))})
    print(f"wrote {len(uris)} shard(s) {uris[0]} .. {uris[-1]}: classes {', '.join(classes)}")
    return 0


def submit_args(add_help: bool = True) -> argparse.ArgumentParser:
    from recog import cluster

    p = argparse.ArgumentParser(add_help=add_help, description=cluster.__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                usage="recog submit [options] -- {%s} [job arguments]" % ",".join(cluster.JOB_MODULES))
    p.add_argument("--address", default=None, help="the cluster's dashboard, e.g. http://head:8265 (default: RAY_ADDRESS)")
    p.add_argument("--env", action="append", default=[], metavar="NAME[=VALUE]",
                   help="pass an environment variable to the job (not secrets: those stay on the cluster)")
    p.add_argument("--no-working-dir", action="store_true",
                   help="do not upload this checkout; run the recog installed in the cluster's image")
    p.add_argument("--entrypoint-cpus", type=float, default=None,
                   help="CPUs reserved for the job's driver (default 0: it plans and writes, the pool does the work)")
    p.add_argument("--no-wait", action="store_true", help="print the job id and return; do not follow the logs")
    p.add_argument("job", nargs=argparse.REMAINDER, help="the recog command to run there and its arguments")
    return p


def submit_main(args: argparse.Namespace) -> int:
    from recog import cluster

    command = args.job[1:] if args.job[:1] == ["--"] else args.job
    cluster.entrypoint(command)  # check the job's arguments before connecting
    client = cluster.connect(args.address)
    workdir = None if args.no_working_dir else cluster.source_checkout()
    job_id = cluster.submit(client, command, cluster.job_env(args.env), workdir, args.entrypoint_cpus)
    print(f"[recog] submitted {job_id} to {client.get_address()}"
          + (f" with {workdir} as working_dir" if workdir else " (the cluster's installed recog)"), flush=True)
    if args.no_wait:
        print(f"[recog] follow it with: recog jobs logs {job_id} --follow", flush=True)
        return 0
    try:
        status = cluster.follow(client, job_id)
    except KeyboardInterrupt:
        print(f"\n[recog] stopped following; {job_id} goes on (recog jobs stop {job_id} ends it)", file=sys.stderr)
        return 130
    code = cluster.exit_status(client, job_id)
    print(f"[recog] job {job_id} {status}" + (f" (exit status {code})" if code else ""), flush=True)
    return code


def jobs_args(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=add_help, description="List, inspect and stop jobs on a Ray cluster.")
    p.add_argument("action", choices=("list", "status", "logs", "stop"))
    p.add_argument("job_id", nargs="?", help="submission id (for status, logs, stop)")
    p.add_argument("--follow", action="store_true", help="logs: keep printing until the job ends")
    p.add_argument("--address", default=None, help="the cluster's dashboard, e.g. http://head:8265 (default: RAY_ADDRESS)")
    return p


def jobs_main(args: argparse.Namespace) -> int:
    from recog import cluster

    if args.action != "list" and not args.job_id:
        raise ClusterError(f"recog jobs {args.action} needs a job id (recog jobs list shows them)")
    client = cluster.connect(args.address)
    if args.action == "list":
        for info in sorted(client.list_jobs(), key=lambda i: i.start_time or 0):
            print(cluster.describe(info))
        return 0
    try:
        if args.action == "status":
            print(client.get_job_status(args.job_id).value)
        elif args.action == "logs" and args.follow:
            cluster.follow(client, args.job_id)
            return cluster.exit_status(client, args.job_id)
        elif args.action == "logs":
            print(client.get_job_logs(args.job_id), end="")
        else:
            print(f"{args.job_id}: " + ("stop requested" if client.stop_job(args.job_id) else "already ended"))
    except RuntimeError as e:
        raise ClusterError(f"{args.job_id}: {cluster.first_line(e)}") from None
    return 0


def results_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("results", help="the --output of recog jobs: s3://bucket/prefix/ or a local path")
    p.add_argument("--endpoint-url", default=None, help="S3-compatible endpoint (default: AWS_ENDPOINT_URL, else AWS)")


def query_args(add_help: bool = True) -> argparse.ArgumentParser:
    from recog import query

    p = argparse.ArgumentParser(add_help=add_help, description=query.__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    results_args(p)
    p.add_argument("sql", help='e.g. "SELECT camera, label, count(*) FROM results GROUP BY ALL ORDER BY 3 DESC"')
    p.add_argument("--format", choices=query.FORMATS, default="table", help="table (default), csv or json")
    p.add_argument("--max-rows", type=int, default=100, help="rows a table shows (default 100; csv/json print all)")
    return p


def query_main(args: argparse.Namespace) -> int:
    from recog.query import Results, write
    from recog.storage import StorageOptions

    results = Results(args.results, StorageOptions.from_env(args.endpoint_url))
    write(results.sql(args.sql), args.format, max_rows=args.max_rows)
    return 0


def summary_args(add_help: bool = True) -> argparse.ArgumentParser:
    from recog import query

    p = argparse.ArgumentParser(add_help=add_help, description="Runs and models seen, counts per label "
                                "(or other dimensions), errors, of the committed results.")
    results_args(p)
    p.add_argument("--by", default="label", help=f"comma-separated, from: {', '.join(query.DIMENSIONS)} (default label)")
    return p


def summary_main(args: argparse.Namespace) -> int:
    from recog.query import Results, summarize
    from recog.storage import StorageOptions

    summarize(Results(args.results, StorageOptions.from_env(args.endpoint_url)), [d.strip() for d in args.by.split(",") if d.strip()])
    return 0


def report_args(add_help: bool = True) -> argparse.ArgumentParser:
    from recog import report

    p = argparse.ArgumentParser(add_help=add_help, description=report.__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    results_args(p)
    p.add_argument("--out", default="report.html", help="the HTML file to write (default report.html)")
    p.add_argument("--thumbs", type=int, default=12, help="thumbnails per label in the contact sheet (default 12)")
    p.add_argument("--title", default=None, help="page title (default: recog results <results>)")
    return p


def report_main(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from recog.query import Results
    from recog.report import build_report
    from recog.storage import StorageOptions

    t0 = time.monotonic()
    opts = StorageOptions.from_env(args.endpoint_url)
    page = build_report(Results(args.results, opts), args.title or f"recog results {args.results}", opts, args.thumbs)
    Path(args.out).write_text(page, encoding="utf-8")
    print(f"[recog] report {args.out}: {len(page) / 1e6:.1f} MB, {page.count('<img ')} thumbnails, "
          f"{time.monotonic() - t0:.1f} s")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from jobs import eval as eval_job
    from jobs import footage, infer, train

    parser = argparse.ArgumentParser(prog="recog", description="Vehicle recognition over image archives and camera footage, on Ray.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands = {
        "demo": (demo_args, demo_main, "run the whole pipeline on the embedded store with sample data"),
        "infer": (infer.get_args_parser, infer.main, "label images in tar shards / image prefixes -> Parquet"),
        "footage": (footage.get_args_parser, footage.main, "label sampled frames of video files -> Parquet"),
        "train": (train.get_args_parser, train.main, "fine-tune a model on labeled shards (Ray Train) -> model package"),
        "eval": (eval_job.get_args_parser, eval_job.main, "score a model on labeled shards"),
        "shards": (shards_args, shards_main, "pack a class_name/*.jpg folder tree into labeled tar shards"),
        "store": (store_args, store_main, "run the embedded S3 object store (SeaweedFS)"),
        "query": (query_args, query_main, "SQL over the results (DuckDB)"),
        "summary": (summary_args, summary_main, "counts per label/camera/hour, errors, runs and models"),
        "report": (report_args, report_main, "an HTML report with charts and thumbnails per label"),
        "submit": (submit_args, submit_main, "run infer/footage/train/eval as a job on a Ray cluster"),
        "jobs": (jobs_args, jobs_main, "list, follow and stop jobs on a Ray cluster"),
    }
    for name, (get_parser, main, help_text) in commands.items():
        parent = get_parser(add_help=False)
        p = sub.add_parser(name, parents=[parent], help=help_text, description=parent.description or help_text,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(main=main)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_job(args.main, args)


if __name__ == "__main__":
    sys.exit(main())
