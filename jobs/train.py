"""Fine-tune a model on labeled shards with Ray Train (DDP); write a model package to --output.

    python -m jobs.train --train s3://ds/train-{000..031}.tar --val s3://ds/val-*.tar \\
        --arch efficientnet_lite0 --workers 8 --gpus-per-worker 1 --epochs 20 --output s3://models/gate-cams

Labels come from each sample's .cls (or --label-field of its .json). Checkpoints go to
<output>/_train/ every epoch; the same command run again continues from the last one.
"""

from __future__ import annotations

import argparse
import sys

from recog.config import TrainConfig


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, add_help=add_help, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", required=True, help="labeled shards: a prefix, a file, or a pattern (braces, wildcards)")
    p.add_argument("--val", default=None, help="labeled shards to pick the best epoch by (recommended)")
    p.add_argument("--output", required=True, help="where the model package goes (local or s3://)")
    p.add_argument("--endpoint-url", default=None, help="S3-compatible endpoint (default: AWS_ENDPOINT_URL, else AWS)")
    p.add_argument("--arch", default="efficientnet_lite0", help="architecture from the registry (default efficientnet_lite0)")
    p.add_argument("--init-weights", default=None,
                   help="ImageNet checkpoint or model package to start from (built in for efficientnet_lite0)")
    p.add_argument("--classes", default=None, help="comma-separated class names (default: all labels found)")
    p.add_argument("--label-field", default=None, help="take labels from this key of the .json sidecars")
    p.add_argument("--image-size", type=int, default=None, help="input size in pixels (default: the architecture's, 224)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64, help="per worker (default 64)")
    p.add_argument("--optimizer", choices=("adamw", "sgd"), default="adamw")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--warmup-epochs", type=float, default=1.0)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--freeze-backbone", action="store_true", help="train the new head only: quick fits")
    p.add_argument("--workers", type=int, default=2, help="training workers (DDP replicas)")
    p.add_argument("--gpus-per-worker", type=float, default=0.0)
    p.add_argument("--cpus-per-worker", type=float, default=None, help="default: from the cluster, leaving CPUs for data")
    p.add_argument("--max-failures", type=int, default=3, help="worker losses to survive (default 3)")
    p.add_argument("--restart", action="store_true", help="start over, ignoring checkpoints in --output")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ray-address", default=None, help="Ray cluster (default: RAY_ADDRESS; without it, a local Ray)")
    return p


def main(args: argparse.Namespace) -> int:
    from recog.train import run_training

    fields = {k: v for k, v in vars(args).items() if k in TrainConfig.__dataclass_fields__}
    fields["classes"] = tuple(args.classes.split(",")) if args.classes else None
    run_training(TrainConfig(**fields))
    return 0


if __name__ == "__main__":
    from recog.cli import run_job

    sys.exit(run_job(main, get_args_parser().parse_args()))
