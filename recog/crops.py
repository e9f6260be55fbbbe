"""`recog crops`: the vehicles a vehicles job typed, as crops to review: a class-folder tree.

    recog crops s3://archive/traffic/ --to review/cam-07 --camera cam-07 --max-score 0.6 --limit 200

The vehicles the filters select (least sure first) are cut from their source videos again, as the
job cut them for the classifier (the frames and boxes it kept, `vehicles.crops_at`, squared with a
margin by `geometry.square_box`), and written as `<to>/<label>/<camera>_<time>_<track>.jpg` (the best
crop; the next ones `..._<track>-2.jpg`, `-3`), with a line each in `<to>/manifest.csv` (source,
frame, box, label, score, run, model). Labeling tools (FiftyOne, CVAT, Label Studio) import such a
tree, and so does `recog train`: once misfiled crops are moved to their type's folder (phantoms to
`not_vehicle/`), the folder names are the labels of a fine-tune (`recog train --init MODEL --train DIR`).
A crop already in the tree, in whichever folder, is not written again: a second export adds to a
reviewed tree without undoing its corrections.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from recog import storage, video
from recog.errors import ConfigError, StorageError
from recog.geometry import square_box
from recog.query import Results
from recog.storage import StorageOptions

MANIFEST = "manifest.csv"
MANIFEST_COLUMNS = ("file", "label", "score", "camera", "source_uri", "track_id", "crop", "pts_s", "frame_index", "box",
                    "crop_box", "first_seen", "model", "model_version", "run_id")


@dataclass(frozen=True)
class Selection:
    """Which vehicles to export: every filter optional; least sure first, at most `limit`."""

    camera: str | None = None
    since: dt.datetime | None = None  # first seen at or after (UTC)
    until: dt.datetime | None = None  # first seen before
    label: str | None = None
    max_score: float | None = None
    limit: int | None = None

    def sql(self) -> str:
        """The vehicles table's rows to export: labeled vehicles with a crop, least sure first."""
        def text(v: str) -> str:
            return "'" + v.replace("'", "''") + "'"

        where = ["label IS NOT NULL", "best_box IS NOT NULL"]
        if self.camera is not None:
            where.append(f"camera = {text(self.camera)}")
        if self.since is not None:
            where.append(f"first_seen >= TIMESTAMPTZ {text(self.since.isoformat())}")
        if self.until is not None:
            where.append(f"first_seen < TIMESTAMPTZ {text(self.until.isoformat())}")
        if self.label is not None:
            where.append(f"label = {text(self.label)}")
        if self.max_score is not None:
            where.append(f"score <= {float(self.max_score)!r}")
        return (f"SELECT camera, source_uri, track_id, label, score, first_seen, first_pts_s, best_pts_s, best_frame_index, "
                f"best_box, crops_at, model, model_version, run_id FROM vehicles WHERE {' AND '.join(where)} "
                f"ORDER BY score, camera, source_uri, track_id" + (f" LIMIT {int(self.limit)}" if self.limit else ""))


def crops_of(vehicle: dict, per_vehicle: int | None = None) -> list[dict]:
    """A vehicle's crops (pts_s, frame_index, box), best first: those the job kept (`crops_at`), or
    its best alone in a table written before recog kept them all."""
    kept = vehicle.get("crops_at") or [{"pts_s": vehicle["best_pts_s"], "frame_index": vehicle["best_frame_index"],
                                        "box": vehicle["best_box"]}]
    return kept[:per_vehicle] if per_vehicle else kept


def _safe(text: str) -> str:
    """A piece of a file name: letters, digits and dashes (no dot: a dot would start the extension
    that groups files into samples)."""
    return re.sub(r"[^A-Za-z0-9-]+", "-", text).strip("-") or "x"


def crop_name(vehicle: dict, k: int) -> str:
    """`<camera>_<time>_<track>[-k].jpg`: the time the vehicle was first seen (UTC), or, where the
    recording's start is unknown, the video's name and the seconds into it."""
    stem = vehicle["source_uri"].rstrip("/").rsplit("/", 1)[-1].rsplit(".", 1)[0]
    first = vehicle["first_seen"]
    when = first.astimezone(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ") if first else _safe(f"{stem}-t{vehicle['first_pts_s']:.2f}s")
    return f"{_safe(vehicle['camera'] or stem)}_{when}_{vehicle['track_id']}" + (f"-{k + 1}" if k else "") + ".jpg"


def cut(frame, box) -> tuple:
    """The crop of `box` (x1, y1, x2, y2 pixels) in a frame (PIL image), squared with a margin inside
    the frame as the vehicles job cuts it for the classifier; returns (crop, the square's box)."""
    square = square_box(box, frame.size)
    return frame.crop(square), square


def cut_crops(wanted: list[tuple], opts: StorageOptions, problems: list[str]) -> dict:
    """Crops of `wanted` (key, video URI, seconds into it, box): {key: (PIL crop, squared box)}. Each
    video is read once for all its crops; why one could not be cut goes to `problems`."""
    by_source: dict[str, list[tuple]] = defaultdict(list)
    for item in wanted:
        by_source[item[1]].append(item)

    def one_source(items: list[tuple]) -> dict:
        uri = items[0][1]
        try:
            frames = video.frames_at(uri, [t for _, _, t, _ in items], opts)
        except Exception as e:  # noqa: BLE001 - the other videos' crops are still worth having
            problems.append(f"{uri}: {type(e).__name__}: {e}")
            return {}
        if len(frames) < len({t for _, _, t, _ in items}):
            problems.append(f"{uri}: the video ends before {max(t for _, _, t, _ in items):.2f} s (changed since the job ran?)")
        return {key: cut(frames[t], box) for key, _, t, box in items if t in frames}

    out: dict = {}
    with ThreadPoolExecutor(8) as pool:
        for part in pool.map(one_source, by_source.values()):
            out.update(part)
    return out


def existing_crops(to: Path) -> set[str]:
    """The names of the crops already in the tree, in whichever class folder."""
    return {p.name for p in to.glob("*/*.jpg")} if to.is_dir() else set()


def export(results: Results, to: Path, selection: Selection, opts: StorageOptions, per_vehicle: int | None = None) -> dict:
    """Write the selected vehicles' crops under `to`, one folder per label, and their manifest lines;
    return what was done: vehicles, crops written, crops already there, labels, problems."""
    if storage.is_s3(str(to)):
        raise ConfigError(f"--to {to}: a local folder (labeling tools and reviewers work on files)")
    if to.exists() and not to.is_dir():
        raise ConfigError(f"--to {to}: is a file, not a folder")
    if not results.has("vehicles"):
        raise StorageError("no vehicles table in these results: recog crops exports what `recog vehicles` typed")
    vehicles = results.sql(selection.sql()).to_pylist()
    there = existing_crops(to)
    wanted, lines, already = [], [], 0
    for v in vehicles:
        for k, c in enumerate(crops_of(v, per_vehicle)):
            name = crop_name(v, k)
            if name in there:
                already += 1
                continue
            wanted.append((name, v["source_uri"], c["pts_s"], c["box"]))
            lines.append((name, k, v, c))
    problems: list[str] = []
    cut_out = cut_crops(wanted, opts, problems)
    written: Counter = Counter()
    rows = []
    for name, k, v, c in lines:
        if name not in cut_out:
            continue
        crop, square = cut_out[name]
        folder = to / v["label"]
        folder.mkdir(parents=True, exist_ok=True)
        crop.save(folder / name, "JPEG", quality=95)
        written[v["label"]] += 1
        rows.append({"file": f"{v['label']}/{name}", "label": v["label"], "score": round(v["score"], 4), "camera": v["camera"],
                     "source_uri": v["source_uri"], "track_id": v["track_id"], "crop": k + 1, "pts_s": c["pts_s"],
                     "frame_index": c["frame_index"], "box": ",".join(map(str, c["box"])), "crop_box": ",".join(map(str, square)),
                     "first_seen": v["first_seen"].isoformat() if v["first_seen"] else "", "model": v["model"],
                     "model_version": v["model_version"], "run_id": v["run_id"]})
    if rows:
        manifest = to / MANIFEST
        new = not manifest.exists()
        with open(manifest, "a", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, MANIFEST_COLUMNS)
            if new:
                w.writeheader()
            w.writerows(rows)
    return {"vehicles": len(vehicles), "written": sum(written.values()), "already": already, "labels": dict(written.most_common()),
            "models": sorted({v["model"] for v in vehicles if v["model"]}), "problems": problems}
