"""Label every image in tar shards and loose image files under --input; write Parquet to --output.

    python -m jobs.infer --input s3://archive/shards/ --output s3://archive/results/
"""

from __future__ import annotations

import argparse
import sys

from jobs.args import add_cluster_args, add_io_args, add_model_args, config_from_args


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, add_help=add_help, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_io_args(p, ".tar shards (WebDataset) and/or images (.jpg .jpeg .png .webp)")
    add_model_args(p)
    p.add_argument("--images-per-unit", type=int, default=256, help="loose images per output file (default 256)")
    add_cluster_args(p)
    return p


def main(args: argparse.Namespace) -> int:
    from recog.pipeline import run_inference

    run_inference(config_from_args(args, media="images", images_per_unit=args.images_per_unit))
    return 0


if __name__ == "__main__":
    from recog.cli import run_job

    sys.exit(run_job(main, get_args_parser().parse_args()))
