"""Model-only speed of classifiers, each at its own input size: images/s of forward passes on
uint8 batches already in memory, in one process, interleaved; medians of --repeat. The first
model is the reference the others are compared with.

    python bench/models.py [--models efficientnet_lite0,vehicle-types] [--count 256] [--batch 16] [--repeat 5] [--threads N]
    python bench/models.py --unfolded --threads 1     # what folding the batch norms gives (recog.models.lite0)

--models takes what --model takes: a built-in name or a package folder. To compare the shipped
model with an earlier one, unpack the earlier one first:

    mkdir /tmp/old && for f in model.json weights.pt; do git show REF:recog/models/vehicle_types/$f > /tmp/old/$f; done
    python bench/models.py --models /tmp/old,vehicle-types --threads 1
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


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="efficientnet_lite0,vehicle-types",
                   help="comma-separated models, the first the reference (default efficientnet_lite0,vehicle-types)")
    p.add_argument("--count", type=int, default=256, help="images per measurement (default 256)")
    p.add_argument("--batch", type=int, default=16, help="model batch (default 16, the CPU actors')")
    p.add_argument("--repeat", type=int, default=5, help="interleaved repetitions (default 5)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--unfolded", action="store_true",
                   help="also each model as built, its batch norms not folded into its convolutions (default: off)")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    names = [m for m in args.models.split(",") if m]
    rng = np.random.default_rng(0)
    specs = {m: models.resolve(m) for m in names}
    pixels = {m: rng.integers(0, 256, (args.count, s.preprocessing.input_size, s.preprocessing.input_size, 3), dtype=np.uint8)
              for m, s in specs.items()}
    classifiers = {m: Classifier(s, StorageOptions(), args.device, threads=args.threads) for m, s in specs.items()}
    if args.unfolded:
        for m in list(names):
            names.append(f"{m} unfolded")
            specs[names[-1]], pixels[names[-1]] = specs[m], pixels[m]
            classifiers[names[-1]] = Classifier(specs[m], StorageOptions(), args.device, threads=args.threads, fold=False)
    for m, c in classifiers.items():  # warm-up
        c.probabilities(pixels[m][:args.batch])
    seconds: dict[str, list[float]] = {m: [] for m in names}
    for _ in range(args.repeat):
        for m, c in classifiers.items():
            x = pixels[m]
            seconds[m].append(timed(lambda c=c, x=x: [c.probabilities(x[i:i + args.batch]) for i in range(0, args.count, args.batch)])[1])
    rate = {m: round(args.count / float(np.median(s)), 1) for m, s in seconds.items()}
    reference = names[0]
    for m in names:
        s = specs[m]
        print(f"{m:<24} {s.preprocessing.input_size:>4} px {s.taxonomy:<9} {rate[m]:>8} images/s "
              f"x{rate[m] / rate[reference]:.2f} (median of {args.repeat}, batch {args.batch}, {args.device})")
    if args.json:
        args.json.write_text(json.dumps({"images_per_s": rate, "input_size": {m: s.preprocessing.input_size for m, s in specs.items()}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
