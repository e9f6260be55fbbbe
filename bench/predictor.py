"""The predictor actor's own work per block, apart from the model: Arrow columns to a pixel array,
the copy to the device, the labels, the top-k classes and the output columns. On a GPU this host
work, not the model, set the actor's pace inside the job (bench/gpu.py: 1,400-2,900 images/s
against 19,000 for the model alone), so it is measured here with the model taken out (random
probabilities in its place). Medians of --repeat timings of --calls blocks each.

    python bench/predictor.py [--block 257] [--batch 256] [--device cpu] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from recog import models
from recog.predict import Predictor
from recog.preprocess import model_input
from recog.sources import RECORD_SCHEMA, blank_record
from recog.storage import StorageOptions

PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos" / "imagenet"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--block", type=int, default=257, help="rows per block: a unit of 256 images and its end record (default 257)")
    p.add_argument("--batch", type=int, default=256, help="rows per model call (default 256)")
    p.add_argument("--device", default="cpu", help="where the pixels are copied to (default cpu)")
    p.add_argument("--calls", type=int, default=20, help="blocks per timing (default 20)")
    p.add_argument("--repeat", type=int, default=5, help="timings; the median is reported (default 5)")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()

    spec = models.resolve("efficientnet_lite0")
    predictor = Predictor(spec, StorageOptions(), device=args.device, threads=1, batch_size=args.batch)
    rng = np.random.default_rng(0)

    def no_model(pixels):  # the copy to the device stays; the network is replaced by random output
        x = predictor.classifier.upload(pixels) if isinstance(pixels, np.ndarray) else pixels
        return rng.random((len(x), len(spec.classes)), dtype=np.float32)

    predictor.classifier.probabilities = no_model
    photos = [f.read_bytes() for f in sorted(PHOTOS.iterdir())]
    records = [blank_record("s3://b/x.tar", key=f"k{i}", data=photos[i % len(photos)], unit_id="u", record=i, end=False)
               for i in range(args.block - 1)]
    records.append(blank_record("s3://b/x.tar", unit_id="u", record=args.block - 1, end=True))
    block = model_input(records, spec.preprocessing, RECORD_SCHEMA)
    predictor(block)  # warm-up
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        for _ in range(args.calls):
            predictor(block)
        times.append((time.perf_counter() - t0) / args.calls)
    ms = statistics.median(times) * 1000
    rate = (args.block - 1) / statistics.median(times)
    print(f"predictor host work, model taken out: {ms:.1f} ms per block of {args.block} rows (batch {args.batch}, "
          f"{args.device}) = {rate:,.0f} images/s")
    if args.json:
        args.json.write_text(json.dumps({"ms_per_block": round(ms, 2), "images_per_s": round(rate, 1), "block": args.block,
                                         "batch": args.batch, "device": args.device}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
