"""Score a model on labeled shards: top-1 accuracy, per-class precision/recall, confusion matrix.

    python -m jobs.eval --model s3://models/gate-cams --data s3://ds/test-*.tar

Runs the inference job over --data (results under --output, by default <model>/eval/) and
compares each label with the sample's .cls (or --label-field of its .json).
"""

from __future__ import annotations

import argparse
import sys

from jobs.args import add_cluster_args, add_model_args, config_from_args


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, add_help=add_help, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="labeled shards or images: a prefix, a file, or a pattern")
    p.add_argument("--output", default=None, help="where results and scores go (default: <model>/eval/)")
    p.add_argument("--endpoint-url", default=None, help="S3-compatible endpoint (default: AWS_ENDPOINT_URL, else AWS)")
    p.add_argument("--label-field", default=None, help="take true labels from this key of the .json sidecars")
    add_model_args(p)
    add_cluster_args(p)
    return p


def main(args: argparse.Namespace) -> int:
    from recog.evaluate import default_output, run_eval

    args.input, args.input_list = args.data, None
    args.output = args.output or default_output(args.model)
    run_eval(config_from_args(args, media="images"), label_field=args.label_field)
    return 0


if __name__ == "__main__":
    from recog.cli import run_job

    sys.exit(run_job(main, get_args_parser().parse_args()))
