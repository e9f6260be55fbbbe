"""Label every image in tar shards / loose images under --input; write Parquet under --output.

    python -m jobs.infer --input s3://archive/shards/ --output s3://archive/results/
"""

from __future__ import annotations

import argparse
import sys

from recog.config import InferConfig


def add_storage_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--endpoint-url", default=None,
                        help="S3-compatible endpoint, e.g. http://minio:9000 (default: AWS_ENDPOINT_URL, else AWS)")


def add_ray_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ray-address", default=None,
                        help="Ray cluster to run on (default: RAY_ADDRESS; without it, a private local Ray)")


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, add_help=add_help, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", required=True, help="s3://bucket/prefix/ or a local path: .tar shards and/or images")
    p.add_argument("--output", required=True, help="s3://bucket/prefix/ or a local path for the Parquet results")
    add_storage_args(p)
    p.add_argument("--model", default="efficientnet_lite0",
                   help="architecture (default: efficientnet_lite0, ImageNet weights built in)")
    p.add_argument("--weights", default=None, help="checkpoint (state dict) for --model, local or s3://")
    p.add_argument("--classes", default=None, help="comma-separated class names of --weights, if not ImageNet's")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--actors", type=int, default=None, help="predictor actors (default: one per GPU, or from CPUs)")
    p.add_argument("--cpus-per-actor", type=float, default=None, help="CPUs (torch threads) per CPU predictor actor")
    p.add_argument("--batch-size", type=int, default=None, help="images per model call (default: 256 GPU, 32 CPU)")
    p.add_argument("--topk", type=int, default=5, help="raw model classes kept per image (default 5)")
    p.add_argument("--min-vehicle-score", type=float, default=0.1,
                   help="probability the vehicle types must hold together, else not_vehicle (default 0.1)")
    p.add_argument("--images-per-unit", type=int, default=256, help="loose images per output file (default 256)")
    add_ray_args(p)
    return p


def config_from_args(args: argparse.Namespace) -> InferConfig:
    return InferConfig(
        input=args.input, output=args.output, endpoint_url=args.endpoint_url, model=args.model,
        weights=args.weights, classes=tuple(args.classes.split(",")) if args.classes else None,
        device=args.device, actors=args.actors, cpus_per_actor=args.cpus_per_actor,
        batch_size=args.batch_size, topk=args.topk, min_vehicle_score=args.min_vehicle_score, images_per_unit=args.images_per_unit,
        ray_address=args.ray_address,
    )


def main(args: argparse.Namespace) -> int:
    from recog.pipeline import run_inference

    run_inference(config_from_args(args))
    return 0


if __name__ == "__main__":
    from recog.cli import run_job

    sys.exit(run_job(main, get_args_parser().parse_args()))
