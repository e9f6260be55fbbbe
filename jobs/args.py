"""Argument groups shared by the jobs, and the config they build."""

from __future__ import annotations

import argparse

from recog.config import InferConfig


def add_io_args(p: argparse.ArgumentParser, what: str) -> None:
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", help=f"s3://bucket/prefix/ or a local path: {what}")
    source.add_argument("--input-list", help="a text file (local or s3://) naming the input files, one per line")
    p.add_argument("--output", required=True, help="s3://bucket/prefix/ or a local path for the Parquet results")
    p.add_argument("--endpoint-url", default=None,
                   help="S3-compatible endpoint, e.g. http://minio:9000 (default: AWS_ENDPOINT_URL, else AWS)")
    p.add_argument("--force", action="store_true",
                   help="redo the units an earlier run of the same job committed (default: resume, skip them)")


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="efficientnet_lite0",
                   help="a model package (path or s3:// URI, as recog train writes) or an architecture "
                        "(default: efficientnet_lite0, ImageNet weights built in)")
    p.add_argument("--weights", default=None, help="checkpoint (state dict) for --model, local or s3://")
    p.add_argument("--classes", default=None, help="comma-separated class names of --weights, if not ImageNet's")
    p.add_argument("--min-vehicle-score", type=float, default=0.1,
                   help="probability the vehicle types must hold together, else not_vehicle (default 0.1)")
    p.add_argument("--topk", type=int, default=5, help="raw model classes kept per image (default 5)")


def add_cluster_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--actors", type=int, default=None, help="predictor actors (default: one per GPU, or from CPUs)")
    p.add_argument("--cpus-per-actor", type=float, default=None, help="CPUs (torch threads) per CPU predictor actor")
    p.add_argument("--batch-size", type=int, default=None, help="images per model call (default: 256 GPU, 32 CPU)")
    p.add_argument("--decode", choices=("workers", "predictor"), default="workers",
                   help="where JPEGs are decoded: CPU workers (default), or the predictor actors on their device "
                        "(nvJPEG on a GPU), for when the CPUs cannot keep up with the GPUs")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the model in each predictor actor (slower start, often faster batches)")
    p.add_argument("--ray-address", default=None,
                   help="Ray cluster to run on (default: RAY_ADDRESS; without it, a private local Ray)")


def config_from_args(args: argparse.Namespace, **job: object) -> InferConfig:
    """The config of the common arguments; `job` adds the job's own fields."""
    return InferConfig(
        input=args.input or args.input_list, input_list=bool(args.input_list), output=args.output, endpoint_url=args.endpoint_url, model=args.model,
        weights=args.weights, classes=tuple(args.classes.split(",")) if args.classes else None,
        min_vehicle_score=args.min_vehicle_score, topk=args.topk, device=args.device, actors=args.actors,
        cpus_per_actor=args.cpus_per_actor, batch_size=args.batch_size, decode=args.decode, compile=args.compile, ray_address=args.ray_address,
        force=args.force, **job,
    )
