"""The learning curve of review and fine-tune on one camera: typing accuracy on a clip's held-back
vehicles after correcting 0, 20, 50 and 100 of its other vehicles' crops.

    python bench/review.py [--truth recog/dataset/clips.csv] [--model vehicle-types] [--video CLIP] [--steps 0,20,50,100]

What a reviewer would do, scripted: `recog vehicles` on the clip with --model (the whole file as one
segment, so that track ids are the whole file's track numbers), `recog crops` of every vehicle;
the vehicles typed by hand dealt into --folds groups, type by type (so that each group holds its
share of the rare types); for each group held back, the other vehicles' crops reviewed least sure
first, as the export orders them, the first N put in their true type's folder, `recog train --init
MODEL` on those N crops, and `recog vehicles` with the fine-tuned package again. Each row: the
held-back vehicles typed right (the vehicles table's label against the truth), summed over the
groups (every vehicle held back once), and those of them that are not cars (the clips are mostly
cars: a model that says car to everything scores well on all of them).

The truth is the shared clips typed by hand: a CSV with columns `video`, `vehicle` (its track number)
and `type` (recog/dataset/clips.csv), or `vehicle` ("<video file>#<track number>") and `type`; one
row per vehicle, or per crop of it. Vehicles typed not_vehicle are phantoms (asphalt, shadows):
not in the figures, which are of vehicles' types. Takes --model of any package (a path, s3://,
models:/NAME@ALIAS), so the figures can be measured again for another shipped model.
"""

from __future__ import annotations

import argparse
import csv
import io
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from contextlib import redirect_stdout
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from recog.config import TrainConfig, VehiclesConfig  # noqa: E402
from recog.crops import Selection, export  # noqa: E402
from recog.pipeline import run_inference  # noqa: E402
from recog.query import Results  # noqa: E402
from recog.storage import StorageOptions  # noqa: E402
from recog.taxonomy import NOT_VEHICLE  # noqa: E402
from recog.train import run_training  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
OPTS = StorageOptions()


def read_truth(path: Path, video: str) -> dict[int, str]:
    """track number -> type, for the vehicles of `video` in the truth file."""
    if not path.exists():
        raise SystemExit(f"{path}: no such file (--truth: the clips' vehicles typed by hand)")
    truth: dict[int, str] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            name, track = (row["video"], row["vehicle"]) if "video" in row else row["vehicle"].rpartition("#")[::2]
            if name == video and track:
                if truth.setdefault(int(track), row["type"]) != row["type"]:
                    raise SystemExit(f"{path}: vehicle {row['vehicle']} has two types")
    if not truth:
        raise SystemExit(f"{path}: no vehicle of {video} (expected a column vehicle as '{video}#<track>')")
    return truth


def count(clip_dir: Path, output: Path, model: str, quiet: io.StringIO) -> dict[int, str]:
    """`recog vehicles` on the clip (one segment): track id -> label."""
    with redirect_stdout(quiet):
        run_inference(VehiclesConfig(input=str(clip_dir), output=str(output), model=model, segment_seconds=3600.0))
    rows = Results(str(output), OPTS).sql("SELECT track_id, label FROM vehicles WHERE label IS NOT NULL").to_pylist()
    return {r["track_id"]: r["label"] for r in rows}


def accuracy(labels: dict[int, str], truth: dict[int, str], held: list[int]) -> tuple[int, int, int, int]:
    """(typed right, vehicles, not cars typed right, not cars) among the held-back vehicles that are vehicles."""
    vehicles = [t for t in held if truth[t] != NOT_VEHICLE]
    others = [t for t in vehicles if truth[t] != "car"]
    return (sum(labels.get(t) == truth[t] for t in vehicles), len(vehicles),
            sum(labels.get(t) == truth[t] for t in others), len(others))


def folds(tracks: list[int], truth: dict[int, str], k: int, seed: int) -> list[list[int]]:
    """The vehicles dealt into k groups type by type (a stratified k-fold), in a seeded order."""
    rng, groups, i = random.Random(seed), [[] for _ in range(k)], 0
    for kind in sorted({truth[t] for t in tracks}):
        of_kind = sorted(t for t in tracks if truth[t] == kind)
        rng.shuffle(of_kind)
        for t in of_kind:
            groups[i % k].append(t)
            i += 1
    return [sorted(g) for g in groups]


def row(n: str, scores: list[tuple], seconds: str, note: str) -> str:
    right, total, other_right, others = (sum(s[i] for s in scores) for i in range(4))
    return (f"{n:>15}  {right:>3}/{total:<3} = {right / total:6.1%}  {other_right:>3}/{others:<3} = "
            f"{other_right / others if others else 0:6.1%}  {seconds:>11}  {note}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--truth", type=Path, default=REPO / "recog" / "dataset" / "clips.csv",
                   help="the clips' vehicles typed by hand: a CSV of video, vehicle (track number) and type, or of "
                        "vehicle (<video>#<track>) and type (default: recog/dataset/clips.csv)")
    p.add_argument("--model", default="vehicle-types", help="the package to start from (default: vehicle-types)")
    p.add_argument("--video", type=Path, default=SHARED / "videos" / "bgslibrary_video02.avi",
                   help="the clip (default: ../shared/data/videos/bgslibrary_video02.avi, the motorway)")
    p.add_argument("--steps", default="0,20,50,100", help="crops corrected before each fine-tune (default: 0,20,50,100)")
    p.add_argument("--folds", type=int, default=3, help="groups of vehicles, each held back once (default: 3)")
    p.add_argument("--epochs", type=int, default=5, help="fine-tune epochs (default: 5)")
    p.add_argument("--lr", type=float, default=None,
                   help="fine-tune learning rate (default: the model's recipe, its rate per sample at batch 16)")
    p.add_argument("--seed", type=int, default=0, help="how the vehicles are dealt into groups (default: 0)")
    p.add_argument("--keep", type=Path, default=None, help="keep the work (crops, packages, tables) here (default: a temporary folder)")
    args = p.parse_args()
    steps = [int(s) for s in args.steps.split(",")]
    truth = read_truth(args.truth, args.video.name)
    work = Path(args.keep or tempfile.mkdtemp(prefix="recog-review-"))
    (work / "clip").mkdir(parents=True, exist_ok=True)
    shutil.copy(args.video, work / "clip" / args.video.name)
    quiet = io.StringIO()  # the jobs' own lines; the figures are what this prints

    t0 = time.monotonic()
    labels = count(work / "clip", work / "counted", args.model, quiet)
    export(Results(str(work / "counted"), OPTS), work / "crops", Selection(), OPTS)
    with open(work / "crops" / "manifest.csv", newline="") as f:
        crops = [r for r in csv.DictReader(f) if int(r["track_id"]) in truth]  # least sure vehicle first
    typed = sorted({int(r["track_id"]) for r in crops})
    groups = folds(typed, truth, args.folds, args.seed)
    pools = [sum(int(r["track_id"]) not in held for r in crops) for held in groups]  # crops there are to review
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(Counter(truth[t] for t in typed).items(), key=lambda kv: -kv[1]))
    print(f"{args.video.name}: {len(labels)} vehicles counted, {len(typed)} of them typed by hand ({kinds}), dealt into "
          f"{args.folds} groups; each held back once while up to {max(steps)} of the others' {len(crops)} crops are "
          f"corrected; model {args.model}, fine-tunes of {args.epochs} epochs at lr {args.lr or 'of its recipe'}")
    print(f"{'crops corrected':>15}  {'held-back vehicles right':>24}  {'of them not cars':>16}  {'fine-tune s':>11}  crops trained per type (all groups)")
    for n in steps:
        if n == 0:
            print(row("0", [accuracy(labels, truth, g) for g in groups], "-", "(the model as it is)"), flush=True)
            continue
        scores, seconds, trained = [], [], Counter()
        for i, held in enumerate(groups):
            reviewed = [r for r in crops if int(r["track_id"]) not in held][:n]
            tree = work / f"reviewed-{n}-{i}"
            for r in reviewed:  # the reviewer's verdict: each crop into its true type's folder
                kind = truth[int(r["track_id"])]
                (tree / kind).mkdir(parents=True, exist_ok=True)
                shutil.copy(work / "crops" / r["file"], tree / kind / r["file"].split("/")[1])
                trained[kind] += 1
            t1 = time.monotonic()
            with redirect_stdout(quiet):
                run_training(TrainConfig(train=str(tree), output=str(work / f"model-{n}-{i}"), init=args.model,
                                         epochs=args.epochs, lr=args.lr, batch_size=16, workers=1, restart=True))
            seconds.append(time.monotonic() - t1)
            scores.append(accuracy(count(work / "clip", work / f"counted-{n}-{i}", str(work / f"model-{n}-{i}"), quiet),
                                   truth, held))
        note = ", ".join(f"{k} {c}" for k, c in trained.most_common())
        print(row(str(n) if n <= min(pools) else f"{n} (all)", scores, f"{statistics.median(seconds):.0f}", note), flush=True)
    print(f"({time.monotonic() - t0:.0f} s in all; work in {work})")


if __name__ == "__main__":
    main()
