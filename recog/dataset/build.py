"""Build the traffic set: crops of every source, mapped to the traffic taxonomy, split by camera.

    python -m recog.dataset.build --shared ../shared/data --to recog-data/traffic

writes `<to>/<split>/<type>/<source>-<name>.jpg` for the splits train, val and test, and
`<to>/manifest.csv` (one row per crop: split, file, type, source, group, vehicle, size_px,
period), which the evaluation reads to report by source, camera, crop size and time of day.

The splits are camera-disjoint (FIELD.md: a classifier validated on the cameras it trained on
looks perfect and fails on the next camera): whole LTA cameras, and one whole shared clip, are held
out for `test`; other whole cameras for `val` (choosing the epoch); the rest trains. Sources
without cameras (the Zenodo crops, one camera; CIFAR; the packaged pictures) split by a hash of
each file's name, Zenodo's own val split going to test.

The negatives (`not_vehicle`) are real backgrounds, not a borrowed judgement: each LTA camera's
vehicle-free view of the day, the dusk and the night (the median of its stills of that time: every
vehicle moves on between stills a minute apart; looked at, see <to>/views/), cut at the places and
sizes its vehicles were boxed and beside them; the same for each shared clip; the clips' phantom
tracks (asphalt, shadows, overlay text), typed by hand in clips.csv; and patches of the pictures
scikit-image ships (people, a cat, coffee, text, textures), which no road camera shows but a
detector may hand over.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import random
import shutil
from collections import Counter, defaultdict
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

from recog.taxonomy import NOT_VEHICLE, SOURCE_TYPES, TRAFFIC_TYPES

SPLITS = ("train", "val", "test")
# LTA cameras held out whole: `test` is only reported on, never tuned on; `val` chooses the epoch.
# Both mix the two resolutions (320x240 and 640x360), day and night, and every type.
LTA_TEST = ("1004", "1503", "2705", "3702", "8702")
LTA_VAL = ("1006", "1501", "2703", "8706")
CLIP_TEST = ("bgslibrary_video02.avi",)  # the motorway clip: the held-out clip
MIN_BOX_PX = 12  # a box whose longer side is shorter is a few blurred pixels, not a type
CROP_MARGIN = 0.1  # as the vehicles job cuts its crops (recog.track.square_box)
BACKGROUNDS_PER_VIEW = 40  # negatives cut from each vehicle-free view (camera x day/dusk/night)
PATCHES_PER_PICTURE = 25
# scikit-image's sample pictures that show a vehicle are not negatives
VEHICLE_PICTURES = ("motorcycle_left", "motorcycle_right")


@dataclass
class Crop:
    """One picture of the set, before it is written."""

    image: Image.Image
    type: str
    source: str  # lta, zenodo, cifar10, clips, background, pictures
    group: str  # camera, video or picture: what a split keeps together
    name: str  # unique within its source
    split: str
    vehicle: str = ""  # a clip's vehicle: its crops are one vehicle's views
    size_px: int = 0  # the longer side of the box, in the source's pixels
    period: str = ""  # LTA: day, dusk or night


def by_hash(name: str, shares: tuple[float, float] = (0.8, 0.2)) -> str:
    """train / val / test for a name, from a hash of it: the same on every machine and run."""
    u = int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "train" if u < shares[0] else "val" if u < shares[0] + shares[1] else "test"


def lta_split(camera: str) -> str:
    return "test" if camera in LTA_TEST else "val" if camera in LTA_VAL else "train"


def square(box, size: tuple[int, int], margin: float = CROP_MARGIN) -> tuple[int, int, int, int]:
    """The box grown to a square with a margin, inside the frame (the vehicles job's crop)."""
    from recog.track import square_box

    return tuple(square_box(box, size, margin))


# ---- LTA: fixed expressway cameras, YOLO boxes -------------------------------------------------

def lta_frames(root: Path) -> dict[str, list[Path]]:
    """Frames per camera (the first four digits of a file's name), in time order."""
    cams: dict[str, list[Path]] = defaultdict(list)
    for p in sorted((root / "train").glob("*.jpg")):
        cams[p.name[:4]].append(p)
    return dict(cams)


def lta_boxes(frame: Path, size: tuple[int, int]) -> list[tuple[str, tuple[float, float, float, float]]]:
    """(class name, box in pixels) of a frame's YOLO file."""
    names = (frame.parent.parent / "lta.names").read_text().split()
    w, h = size
    out = []
    for line in frame.with_suffix(".txt").read_text().splitlines():
        parts = line.split()
        if len(parts) != 5:
            continue
        k, cx, cy, bw, bh = int(parts[0]), *map(float, parts[1:])
        out.append((names[k], ((cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h)))
    return out


PERIODS = ("day", "dusk", "night")


def period(frame: Path) -> str:
    """day, dusk or night: the LTA stills were taken 06:00-10:00 and 18:00-22:00, the light going
    at about 19:30 (the time is in the name, HHMMSS)."""
    hhmm = int(frame.stem.split("_")[3][:4])
    return "day" if hhmm < 1200 else "dusk" if hhmm < 1930 else "night"


def lta_crops(root: Path, cameras: tuple[str, ...] | None = None) -> Iterator[Crop]:
    """Every boxed vehicle of at least MIN_BOX_PX (of `cameras`, or all), as the vehicles job crops it."""
    for camera, frames in lta_frames(root).items():
        if cameras is not None and camera not in cameras:
            continue
        for frame in frames:
            img = Image.open(frame).convert("RGB")
            for k, (cls, box) in enumerate(lta_boxes(frame, img.size)):
                side = max(box[2] - box[0], box[3] - box[1])
                if side < MIN_BOX_PX:
                    continue
                yield Crop(img.crop(square(box, img.size)), SOURCE_TYPES["lta"][cls], "lta", camera, f"{frame.stem}-{k}",
                           lta_split(camera), size_px=round(side), period=period(frame))


def empty_view(frames: list[np.ndarray]) -> np.ndarray:
    """A fixed camera's view without its traffic: the median of frames far apart in time."""
    return np.median(np.stack(frames), axis=0).astype(np.uint8)


def background_boxes(boxes: list, size: tuple[int, int], n: int, rng: random.Random) -> list:
    """`n` boxes where and as big as vehicles were boxed, half of them moved by up to their own size
    (kerbs, verges, lane markings beside the lanes)."""
    out = []
    for box in rng.sample(boxes, min(n, len(boxes))):
        w, h = box[2] - box[0], box[3] - box[1]
        if rng.random() < 0.5:
            dx, dy = rng.uniform(-w, w), rng.uniform(-h, h)
            box = (box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy)
        box = (max(0, box[0]), max(0, box[1]), min(size[0], box[2]), min(size[1], box[3]))
        if box[2] - box[0] >= MIN_BOX_PX / 2 and box[3] - box[1] >= MIN_BOX_PX / 2:
            out.append(box)
    return out


def lta_backgrounds(root: Path, seed: int, views_to: Path | None = None) -> Iterator[Crop]:
    """Negatives from each camera's vehicle-free view of the morning, the dusk and the night."""
    rng = random.Random(seed)
    for camera, frames in lta_frames(root).items():
        for when in PERIODS:
            chosen = [f for f in frames if period(f) == when]
            if len(chosen) < 9:  # too few stills for a median to lose its vehicles
                continue
            pictures = [np.asarray(Image.open(f).convert("RGB")) for f in chosen]
            view = Image.fromarray(empty_view(pictures))
            if views_to is not None:
                view.save(views_to / f"lta-{camera}-{when}.jpg", quality=90)
            boxes = [b for f in chosen for _, b in lta_boxes(f, view.size) if max(b[2] - b[0], b[3] - b[1]) >= MIN_BOX_PX]
            for k, box in enumerate(background_boxes(boxes, view.size, BACKGROUNDS_PER_VIEW, rng)):
                yield Crop(view.crop(square(box, view.size)), NOT_VEHICLE, "background", camera, f"lta-{camera}-{when}-{k}",
                           lta_split(camera), size_px=round(max(box[2] - box[0], box[3] - box[1])), period=when)


# ---- the shared clips, typed by hand ------------------------------------------------------------

CLIP_LABELS = Path(__file__).parent / "clips.csv"


def clip_labels() -> list[dict]:
    with open(CLIP_LABELS, newline="") as f:
        return list(csv.DictReader(f))


def clip_frames(path: Path, wanted: set[int]) -> dict[int, np.ndarray]:
    """The frames of a video with the given indices (time x nominal rate, as the vehicles job
    numbers them), as RGB arrays."""
    from recog import video
    from recog.storage import StorageOptions

    out = {}
    with video.open_video(str(path), StorageOptions()) as container:
        stream = container.streams.video[0]
        rate = Fraction(video.frame_rate(stream)).limit_denominator(1000)
        for t, frame in video.frames_from(container, stream, video.Segment(str(path), path.name, Fraction(0), None), [],
                                          [Fraction(0)]):
            index = round(t * rate)
            if index in wanted and index not in out:
                out[index] = frame.to_ndarray(format="rgb24")
            if len(out) == len(wanted):
                break
    return out


def clip_crops(videos: Path, seed: int, views_to: Path | None = None) -> Iterator[Crop]:
    """The hand-typed crops of each shared clip (its vehicles and phantoms), and negatives from its
    vehicle-free view at the places its vehicles were seen."""
    rng = random.Random(seed)
    by_video: dict[str, list[dict]] = defaultdict(list)
    for row in clip_labels():
        by_video[row["video"]].append(row)
    for name, rows in sorted(by_video.items()):
        split = "test" if name in CLIP_TEST else "train"
        path = videos / name
        every = set(range(0, 10_000, 25))  # a still every 25 frames for the empty view
        frames = clip_frames(path, {int(r["frame"]) for r in rows} | every)
        for r in rows:
            img = Image.fromarray(frames[int(r["frame"])])
            box = tuple(float(r[k]) for k in ("x1", "y1", "x2", "y2"))
            yield Crop(img.crop(square(box, img.size)), r["type"], "clips", name, f"{Path(name).stem}-{r['vehicle']}-{r['frame']}",
                       split, vehicle=f"{name}#{r['vehicle']}", size_px=round(max(box[2] - box[0], box[3] - box[1])))
        view = Image.fromarray(empty_view([frames[i] for i in sorted(every & frames.keys())]))
        if views_to is not None:
            view.save(views_to / f"clip-{Path(name).stem}.jpg", quality=90)
        boxes = [tuple(float(r[k]) for k in ("x1", "y1", "x2", "y2")) for r in rows if r["type"] != NOT_VEHICLE]
        for k, box in enumerate(background_boxes(boxes, view.size, BACKGROUNDS_PER_VIEW, rng)):
            yield Crop(view.crop(square(box, view.size)), NOT_VEHICLE, "background", name, f"clip-{Path(name).stem}-{k}", split,
                       size_px=round(max(box[2] - box[0], box[3] - box[1])))


# ---- photos: Zenodo crops, CIFAR, pictures a package ships ---------------------------------------

def photo_crops(photos: Path) -> Iterator[Crop]:
    """The Zenodo crops (its train split to train and val, its val split to test) and CIFAR's cars
    and trucks (by a hash of the name), from labels.csv."""
    with open(photos / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        source = r["source"]
        if source not in ("zenodo", "cifar10"):
            continue
        path = photos.parent / r["path"]
        if source == "zenodo":
            split = "test" if r["split_or_index"] == "val" else by_hash(path.name, (0.8, 0.2))
        else:
            split = by_hash(path.name, (0.6, 0.2))
        img = Image.open(path).convert("RGB")
        yield Crop(img, SOURCE_TYPES[source][r["fine_label"]], source, source, f"{r['fine_label']}-{path.stem}", split,
                   size_px=max(img.size))


def package_pictures() -> list[Path]:
    """The sample pictures scikit-image ships (a person, a cat, coffee, coins, text, textures...),
    without those of vehicles; found in the installed package without importing it."""
    import importlib.util

    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the traffic set's packaged negatives need scikit-image: pip install -e '.[model]'")
    folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    return sorted(p for p in folder.iterdir() if p.suffix in (".png", ".jpg") and p.stem not in VEHICLE_PICTURES
                  and Image.open(p).size[0] >= 64)


def picture_patches(seed: int) -> Iterator[Crop]:
    rng = random.Random(seed)
    for path in package_pictures():
        img = Image.open(path).convert("RGB")
        split = by_hash(path.stem, (0.6, 0.2))
        for k in range(PATCHES_PER_PICTURE):
            side = int(min(img.size) * rng.uniform(0.1, 1.0))
            x, y = rng.randint(0, img.width - side), rng.randint(0, img.height - side)
            patch = img.crop((x, y, x + side, y + side))
            small = rng.choice((16, 24, 32, 48, 64, 96, side))  # as small and blurred as a far crop, sometimes
            yield Crop(patch.resize((min(small, side),) * 2, Image.Resampling.BILINEAR), NOT_VEHICLE, "pictures", path.stem,
                       f"{path.stem}-{k}", split, size_px=min(small, side))


# ---- the set -------------------------------------------------------------------------------------

MANIFEST_FIELDS = ("split", "file", "type", "source", "group", "vehicle", "size_px", "period")


def build(shared: Path, to: Path, seed: int = 0) -> Counter:
    """Write the set under `to` (replacing what was there); return the count per (split, type)."""
    if to.exists():
        shutil.rmtree(to)
    views = to / "views"  # the vehicle-free views the backgrounds were cut from, to look at
    views.mkdir(parents=True)
    counts: Counter = Counter()
    sources = (lta_crops(shared / "lta"), lta_backgrounds(shared / "lta", seed, views),
               clip_crops(shared / "videos", seed, views), photo_crops(shared / "photos"), picture_patches(seed))
    with open(to / "manifest.csv", "w", newline="") as f:
        manifest = csv.DictWriter(f, MANIFEST_FIELDS)
        manifest.writeheader()
        for source in sources:
            for c in source:
                if c.type not in TRAFFIC_TYPES:
                    raise ValueError(f"{c.source} {c.name}: type {c.type!r} is not in the traffic taxonomy")
                rel = Path(c.split) / c.type / f"{c.source}-{c.name}.jpg"
                (to / rel).parent.mkdir(parents=True, exist_ok=True)
                c.image.save(to / rel, quality=95)
                manifest.writerow({"split": c.split, "file": str(rel), "type": c.type, "source": c.source, "group": c.group,
                                   "vehicle": c.vehicle, "size_px": c.size_px, "period": c.period})
                counts[(c.split, c.type)] += 1
    return counts


def describe(counts: Counter) -> str:
    types = sorted({t for _, t in counts}, key=list(TRAFFIC_TYPES).index)
    lines = [f"{'split':6} " + " ".join(f"{t:>11}" for t in types) + f" {'total':>7}"]
    for split in SPLITS:
        lines.append(f"{split:6} " + " ".join(f"{counts[(split, t)]:11d}" for t in types)
                     + f" {sum(counts[(split, t)] for t in types):7d}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m recog.dataset.build", description=__doc__.split("\n\n")[0])
    p.add_argument("--shared", type=Path, default=Path("../shared/data"), help="the shared data (default: ../shared/data)")
    p.add_argument("--to", type=Path, default=Path("recog-data/traffic"), help="where the set goes; replaced "
                   "(default: recog-data/traffic)")
    p.add_argument("--seed", type=int, default=0, help="seed of the negatives' places (default: 0)")
    args = p.parse_args(argv)
    counts = build(args.shared, args.to, args.seed)
    print(f"[dataset] {sum(counts.values())} crops in {args.to} (train / val / test camera-disjoint):\n{describe(counts)}")


if __name__ == "__main__":
    main()
