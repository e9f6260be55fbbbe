"""Phantoms on the shared clips: what the vehicles job keeps of each clip, against the clips'
vehicles typed by hand.

    python bench/phantoms.py [--truth recog/dataset/clips.csv] [--model vehicle-types] [--clips roadside,motorway,parking]

Each clip runs whole (one segment, so that track ids are the whole file's track numbers, as in
the truth file) with its lines, as tests/integration/test_vehicles.py counts them. Per clip it
prints the tracks kept; those flagged (a `warning`: `not_vehicle`, or a phantom flood) and
whether any flagged one was a vehicle by hand; the phantoms left (tracks typed not_vehicle by hand
that still carry a vehicle type) and the tracks nobody typed, each with its size, frames and crossings;
the hand-typed vehicles typed right; the crossings counted against the hand count.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import tempfile
from collections import Counter
from contextlib import redirect_stdout
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vehicles import CLIPS, SHARED  # noqa: E402  (bench/vehicles.py: each clip's file, lines and hand counts; the videos)

from recog.config import VehiclesConfig  # noqa: E402
from recog.pipeline import run_inference  # noqa: E402
from recog.query import Results  # noqa: E402
from recog.storage import StorageOptions  # noqa: E402
from recog.taxonomy import NOT_VEHICLE  # noqa: E402


def read_truth(path: Path) -> dict[tuple[str, int], str]:
    """(video, track number) -> type, from a CSV with columns video, vehicle, type (one row per crop)."""
    with open(path, newline="") as f:
        return {(r["video"], int(r["vehicle"])): r["type"] for r in csv.DictReader(f)}


def run_clip(name: str, model: str, work: Path) -> tuple[list[dict], Counter]:
    """`recog vehicles` on one clip, whole: its vehicles rows and its crossings per line and direction."""
    file, lines, _ = CLIPS[name]
    folder = work / name / "in"
    folder.mkdir(parents=True)
    (folder / file).symlink_to(SHARED / file)
    output = str(work / name / "out")
    with redirect_stdout(io.StringIO()):
        run_inference(VehiclesConfig(input=str(folder), output=output, model=model, line=tuple(lines),
                                     segment_seconds=3600.0))
    results = Results(output, StorageOptions())
    vehicles = results.sql("SELECT track_id, label, score, warning, frames_seen, lines, best_box FROM vehicles "
                           "ORDER BY track_id").to_pylist()
    crossings = Counter((r["line"], r["direction"]) for r in results.sql("SELECT line, direction FROM crossings").to_pylist())
    return vehicles, crossings


def describe(v: dict) -> str:
    box = v["best_box"]
    size = f"{box[2] - box[0]:.0f}x{box[3] - box[1]:.0f} px" if box else "no crop"
    crossed = ", ".join(v["lines"]) or "no crossing"
    return f"track {v['track_id']}: {v['label']} {v['score']:.2f}, {size}, {v['frames_seen']} frames, {crossed}"


def report(name: str, vehicles: list[dict], crossings: Counter, truth: dict[tuple[str, int], str]) -> dict:
    file, _, hand = CLIPS[name]
    typed = {v["track_id"]: truth.get((file, v["track_id"])) for v in vehicles}
    flagged = [v for v in vehicles if v["warning"]]
    left = [v for v in vehicles if not v["warning"] and typed[v["track_id"]] == NOT_VEHICLE]
    untyped = [v for v in vehicles if not v["warning"] and typed[v["track_id"]] is None]
    real = [v for v in vehicles if typed[v["track_id"]] not in (NOT_VEHICLE, None)]
    right = [v for v in real if v["label"] == typed[v["track_id"]]]
    print(f"{name} ({file}): {len(vehicles)} track(s) kept, {sum(t is not None for t in typed.values())} of them typed by hand")
    print(f"  flagged, not counted: {len(flagged)}; of them vehicles by hand: "
          f"{sum(typed[v['track_id']] not in (NOT_VEHICLE, None) for v in flagged)}")
    for v in flagged:
        print(f"    {describe(v)} (by hand: {typed[v['track_id']] or 'not typed'})")
    print(f"  phantoms left (not_vehicle by hand, still a vehicle type): {len(left)}")
    for v in left:
        print(f"    {describe(v)}")
    print(f"  not typed by hand (a vehicle or a phantom: look at its crop, `recog crops`): {len(untyped)}")
    for v in untyped:
        print(f"    {describe(v)}")
    print(f"  hand-typed vehicles typed right: {len(right)}/{len(real)}")
    for v in real:
        if v["label"] != typed[v["track_id"]]:
            print(f"    {describe(v)} (by hand: {typed[v['track_id']]})")
    print("  crossings: " + ", ".join(f"{ln} {d} {crossings.get((ln, d), 0)} (hand {n})" for (ln, d), n in hand.items()))
    return {"tracks": len(vehicles), "flagged": len(flagged), "phantoms_left": len(left), "not_typed": len(untyped), "typed_right": len(right),
            "hand_typed_vehicles": len(real), "crossings": {f"{ln} {d}": n for (ln, d), n in crossings.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--truth", type=Path, default=REPO / "recog" / "dataset" / "clips.csv",
                        help="the clips' vehicles typed by hand (default recog/dataset/clips.csv)")
    parser.add_argument("--model", default="vehicle-types", help="what --model of recog vehicles takes (default vehicle-types)")
    parser.add_argument("--clips", default=",".join(CLIPS), help=f"comma-separated, of {', '.join(CLIPS)} (default all)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    names = [c.strip() for c in args.clips.split(",") if c.strip()]
    if unknown := [c for c in names if c not in CLIPS]:
        parser.error(f"--clips: unknown clip(s) {', '.join(unknown)}; known: {', '.join(CLIPS)}")
    if not args.truth.exists():
        parser.error(f"--truth {args.truth}: no such file")
    missing = [CLIPS[c][0] for c in names if not (SHARED / CLIPS[c][0]).exists()]
    if missing:
        raise SystemExit(f"{SHARED} lacks {', '.join(missing)} (the shared data sits beside the repository)")
    truth, figures = read_truth(args.truth), {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            print(f"[phantoms] {name}: recog vehicles on the whole clip ...", file=sys.stderr, flush=True)
            figures[name] = report(name, *run_clip(name, args.model, Path(tmp)), truth)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
