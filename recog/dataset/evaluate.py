"""Score a model on the traffic set's held-out split the way users get their labels: through the
inference job (`recog infer`), then per evaluation set and class, by crop size, and the two errors
about what is a vehicle.

    python -m recog.dataset.evaluate --set recog-data/traffic --model vehicle-types

Evaluation sets (all held out from training, the cameras whole): the LTA cameras of `test`, their
crops of 24 px and more apart (as the issue's held-out CCTV set counts them); the held-out shared
clip's hand-typed vehicles, each judged by the vote of its crops as the vehicles job does; the
Zenodo val crops; CIFAR's held-out cars and trucks; the ImageNet vehicle photos of
../shared/data/photos/imagenet; and the non-vehicles (vehicle-free views of the held-out cameras and
clip, packaged pictures). `label` is what recog writes; `top-1` the model's own first class, as a
type: the label policy must not lose what the model knows.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

from recog.storage import canonical
from recog.taxonomy import IMAGENET_VEHICLES, NOT_VEHICLE, TRAFFIC_TYPES

SIZES = ((0, 24, "< 24 px"), (24, 48, "24-48 px"), (48, 96, "48-96 px"), (96, 10**9, "> 96 px"))


def size_bucket(px: int) -> str:
    return next(name for lo, hi, name in SIZES if lo <= px < hi)


def label_rows(folder: Path, model: str, output: str) -> dict[str, dict]:
    """Label every image under `folder` with `model` through the inference job; rows by file."""
    from recog.config import InferConfig
    from recog.pipeline import run_inference
    from recog.query import Results
    from recog.storage import StorageOptions

    run_inference(InferConfig(input=str(folder), output=output, model=model), out=io.StringIO())
    rows = Results(output, StorageOptions()).sql("SELECT source_uri, label, score, topk_labels[1] AS top, error FROM results")
    return {r["source_uri"]: r for r in rows.to_pylist()}


def type_of(model: str):
    """The model's own class -> its type (a model trained on types maps each class to itself)."""
    from recog import models

    spec = models.resolve(model)
    if spec.taxonomy == "imagenet":
        return lambda cls: None
    types = dict(zip(spec.classes, spec.types or spec.classes))
    return types.get


class Tally:
    """Right answers of `label` and of top-1 per (set, class), and counts per what was said."""

    def __init__(self):
        self.n, self.label, self.top = Counter(), Counter(), Counter()

    def add(self, key, truth: str, label: str | None, top: str | None) -> None:
        self.n[key] += 1
        self.label[key] += label == truth
        self.top[key] += top == truth

    def cell(self, key) -> str:
        n = self.n[key]
        return f"{self.label[key] / n:.3f} ({self.label[key]}/{n})" if n else "-"

    def top_cell(self, key) -> str:
        n = self.n[key]
        return f"{self.top[key] / n:.3f}" if n else "-"


def evaluate(traffic: Path, model: str, photos: Path | None, split: str = "test") -> dict:
    """The figures: per set and class, by crop size, vehicle/not-vehicle errors."""
    types = type_of(model)
    with open(traffic / "manifest.csv", newline="") as f:
        items = [r for r in csv.DictReader(f) if r["split"] == split]
    with tempfile.TemporaryDirectory() as tmp:
        rows = label_rows(traffic / split, model, str(Path(tmp) / "out"))
        imagenet = {}
        if photos is not None:
            imagenet_rows = label_rows(photos / "imagenet", model, str(Path(tmp) / "imagenet"))
            with open(photos / "labels.csv", newline="") as f:  # typed by the taxonomy, from their ImageNet class
                truth = {canonical(str(photos.parent / r["path"])): IMAGENET_VEHICLES[int(r["split_or_index"])]
                         for r in csv.DictReader(f) if r["source"] == "imagenet"}
            imagenet = {uri: (truth[uri], r) for uri, r in imagenet_rows.items() if uri in truth}
    sets, sizes = Tally(), Tally()
    said = defaultdict(Counter)  # what vehicles and non-vehicles were called
    votes: dict[str, Counter] = defaultdict(Counter)
    vehicle_truth: dict[str, str] = {}
    for item in items:
        r = rows[canonical(str(traffic / item["file"]))]
        truth, label, top = item["type"], r["label"], types(r["top"])
        source = item["source"]
        name = {"lta": "held-out LTA cameras", "clips": "held-out clip, crops", "zenodo": "Zenodo val",
                "cifar10": "CIFAR-10 held out", "background": "non-vehicles: empty views",
                "pictures": "non-vehicles: pictures"}[source]
        if source == "lta" and int(item["size_px"]) >= 24:
            sets.add(("held-out LTA cameras, >= 24 px", truth), truth, label, top)
        sets.add((name, truth), truth, label, top)
        if truth != NOT_VEHICLE:
            sizes.add((source, size_bucket(int(item["size_px"]))), truth, label, top)
        said["vehicle" if truth != NOT_VEHICLE else NOT_VEHICLE][label == NOT_VEHICLE if truth != NOT_VEHICLE
                                                                  else label != NOT_VEHICLE] += 1
        if item["vehicle"]:
            votes[item["vehicle"]][label] += r["score"] or 0.0
            vehicle_truth[item["vehicle"]] = truth
    for vehicle, v in votes.items():
        voted = max(v, key=lambda k: (v[k], k))
        sets.add(("held-out clip, vehicles (vote of their crops)", vehicle_truth[vehicle]), vehicle_truth[vehicle], voted, voted)
    for truth, r in imagenet.values():
        sets.add(("ImageNet vehicle photos", truth), truth, r["label"], types(r["top"]))
    return {"sets": sets, "sizes": sizes, "said": said, "model": model}


def tables(figures: dict) -> str:
    """Markdown: label accuracy per set and class (with top-1 beside the total), by crop size, the errors."""
    sets, sizes, said = figures["sets"], figures["sizes"], figures["said"]
    names = list(dict.fromkeys(k[0] for k in sets.n))
    classes = [t for t in TRAFFIC_TYPES if any(k[1] == t for k in sets.n)]
    lines = ["| set | " + " | ".join(classes) + " | all: `label` | all: top-1 |", "|---" * (len(classes) + 3) + "|"]
    for name in names:
        total = Tally()
        for (s, c) in [k for k in sets.n if k[0] == name]:
            total.n[name] += sets.n[(s, c)]
            total.label[name] += sets.label[(s, c)]
            total.top[name] += sets.top[(s, c)]
        lines.append(f"| {name} | " + " | ".join(sets.cell((name, c)) for c in classes)
                     + f" | **{total.cell(name)}** | {total.top_cell(name)} |")
    lines += ["", "| vehicles' crops by size (`label` right) | " + " | ".join(n for *_, n in SIZES) + " |",
              "|---" * (len(SIZES) + 1) + "|"]
    for source in sorted({k[0] for k in sizes.n}):
        lines.append(f"| {source} | " + " | ".join(sizes.cell((source, n)) for *_, n in SIZES) + " |")
    v, nv = said["vehicle"], said[NOT_VEHICLE]
    lines += ["", f"vehicles called not_vehicle: {v[True] / max(1, sum(v.values())):.1%} ({v[True]} of {sum(v.values())}); "
                  f"non-vehicles given a vehicle type: {nv[True] / max(1, sum(nv.values())):.1%} "
                  f"({nv[True]} of {sum(nv.values())})"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m recog.dataset.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--set", type=Path, default=Path("recog-data/traffic"), help="the traffic set that "
                   "recog.dataset.build wrote (default: recog-data/traffic)")
    p.add_argument("--model", default="vehicle-types", help="the model to score (default: vehicle-types)")
    p.add_argument("--photos", type=Path, default=Path("../shared/data/photos"), help="the shared photos, for the "
                   "ImageNet vehicle photos (default: ../shared/data/photos; skipped if absent)")
    p.add_argument("--split", default="test", choices=("train", "val", "test"), help="which split (default: test)")
    p.add_argument("--json", type=Path, default=None, help="also write the counts here (default: none)")
    args = p.parse_args(argv)
    figures = evaluate(args.set, args.model, args.photos if (args.photos / "imagenet").is_dir() else None, args.split)
    print(tables(figures))
    if args.json:
        args.json.write_text(json.dumps({k: {"|".join(map(str, key)): [t.n[key], t.label[key], t.top[key]] for key in t.n}
                                         for k, t in (("sets", figures["sets"]), ("sizes", figures["sizes"]))}, indent=1))


if __name__ == "__main__":
    main()
