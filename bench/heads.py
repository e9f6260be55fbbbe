"""What the second head of `vehicle-types` costs: model-only images/s of the plain ImageNet model
(`efficientnet_lite0`, one head) and of `vehicle-types` (one backbone pass, its own tail and the
ImageNet tail), on the same pixels in the same process, interleaved; medians of --repeat.

    python bench/heads.py [--count 256] [--batch 16] [--repeat 5] [--threads N] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from timing import timed

from recog import models
from recog.models.classifier import Classifier
from recog.storage import StorageOptions

MODELS = ("efficientnet_lite0", "vehicle-types")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int, default=256, help="images per measurement (default 256)")
    p.add_argument("--batch", type=int, default=16, help="model batch (default 16, the CPU actors')")
    p.add_argument("--repeat", type=int, default=5, help="interleaved repetitions (default 5)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (args.count, 224, 224, 3), dtype=np.uint8)
    classifiers = {m: Classifier(models.resolve(m), StorageOptions(), args.device, threads=args.threads) for m in MODELS}
    for c in classifiers.values():  # warm-up
        c.probabilities(pixels[:args.batch])
    seconds: dict[str, list[float]] = {m: [] for m in MODELS}
    for _ in range(args.repeat):
        for m, c in classifiers.items():
            seconds[m].append(timed(lambda c=c: [c.probabilities(pixels[i:i + args.batch]) for i in range(0, args.count, args.batch)])[1])
    rate = {m: round(args.count / float(np.median(s)), 1) for m, s in seconds.items()}
    cost = round(rate[MODELS[0]] / rate[MODELS[1]] - 1, 3)
    for m in MODELS:
        print(f"{m:<20} {rate[m]:>8} images/s (median of {args.repeat}, batch {args.batch}, {args.device})")
    print(f"two heads cost {100 * cost:+.1f} % time per image against one")
    if args.json:
        args.json.write_text(json.dumps({"images_per_s": rate, "two_heads_extra_time": cost}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
