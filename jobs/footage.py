"""Label sampled frames of every video (.mp4 .mkv .avi .mov) under --input; write Parquet to --output.

Each video is cut into segments that decode in parallel across the cluster. One row per sampled
frame, with the frame's time in the video and, when the recording's start is known (a .json
sidecar {"camera": ..., "start": ...} beside the video, or --name-pattern), its wall-clock time.

    python -m jobs.footage --input s3://archive/cam-07/2026-11/ --output s3://archive/results/ --fps 1
"""

from __future__ import annotations

import argparse
import sys

from jobs.args import add_cluster_args, add_io_args, add_model_args, config_from_args


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, add_help=add_help, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_io_args(p, "video files (.mp4 .mkv .avi .mov), with optional .json sidecars")
    sampling = p.add_mutually_exclusive_group()
    sampling.add_argument("--fps", type=float, default=None, help="frames per second of video time (default 1)")
    sampling.add_argument("--every-n", type=int, default=None, help="every N-th frame")
    sampling.add_argument("--keyframes", action="store_true", help="keyframes only: fast, no full decode")
    p.add_argument("--segment-seconds", type=float, default=60.0,
                   help="cut videos into pieces of this many seconds, decoded in parallel (default 60)")
    p.add_argument("--name-pattern", default=None,
                   help="how file names carry camera and start time, e.g. '{camera}_{start:%%Y%%m%%dT%%H%%M%%S}.mp4'")
    add_model_args(p)
    add_cluster_args(p)
    return p


def main(args: argparse.Namespace) -> int:
    from recog.pipeline import run_inference

    fps = args.fps if args.fps is not None else (None if args.every_n or args.keyframes else 1.0)
    run_inference(config_from_args(args, media="video", fps=fps, every_n=args.every_n, keyframes=args.keyframes,
                                   segment_seconds=args.segment_seconds, name_pattern=args.name_pattern))
    return 0


if __name__ == "__main__":
    from recog.cli import run_job

    sys.exit(run_job(main, get_args_parser().parse_args()))
