"""The embedded default, end to end: store up, sample data in, the jobs, a summary read back.

Sample data are real photos and a traffic clip from ../shared/data when it is there
(traffic-camera crops packed as WebDataset shards, ImageNet vehicle photos as loose images),
otherwise pictures and a clip drawn here. One deliberately corrupt file shows how a bad input
ends: as a row with an error.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import tempfile
import time
from pathlib import Path

import pyarrow as pa

from recog import sink, storage
from recog.objectstore import EmbeddedStore
from recog.shards import tar_bytes
from recog.storage import StorageOptions
from recog.taxonomy import NOT_VEHICLE

BUCKET = "recog-demo"


def find_shared_data() -> Path | None:
    """../shared/data beside the checkout or the working directory (or $RECOG_SAMPLE_DATA)."""
    candidates = [os.environ.get("RECOG_SAMPLE_DATA"), Path.cwd().parent / "shared" / "data",
                  Path(__file__).resolve().parents[2] / "shared" / "data"]
    for c in candidates:
        if c and (Path(c) / "photos" / "labels.csv").exists():
            return Path(c)
    return None


def shared_photos(data: Path) -> list[dict]:
    """Rows of photos/labels.csv: path (absolute), fine_label, vehicle_type, source, split_or_index."""
    with open(data / "photos" / "labels.csv") as f:
        return [{**r, "path": str(data / r["path"])} for r in csv.DictReader(f)]


def drawn_image(seed: int, size: int = 320) -> bytes:
    """A JPEG of a few coloured boxes on a grey road: stand-in data when no photos are around."""
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    img = Image.new("RGB", (size, size * 3 // 4), (90, 90, 90))
    d = ImageDraw.Draw(img)
    for _ in range(3):
        x, y = rng.randrange(size - 80), rng.randrange(size * 3 // 4 - 40)
        d.rectangle((x, y, x + rng.randrange(40, 80), y + rng.randrange(20, 40)), fill=tuple(rng.randrange(256) for _ in range(3)))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=90)
    return out.getvalue()


DRAWN_CARS = 4  # boxes driving through the drawn clip, each over the demo's line once


def drawn_clip(seconds: int = 10, fps: int = 25) -> bytes:
    """An H.264 clip of a fixed camera over a grey road: DRAWN_CARS coloured boxes drive left to
    right through its lower half, one after another (stand-in footage when no real clip is around)."""
    import av
    import numpy as np

    rng = np.random.default_rng(0)
    road = np.full((240, 320, 3), 90, np.uint8)
    road[120:, :] = 70
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "clip.mp4"
        with av.open(str(path), "w") as out:
            stream = out.add_stream("libx264", rate=fps)
            stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
            for i in range(seconds * fps):
                img = road.copy()
                for k in range(DRAWN_CARS):
                    x = int(-60 + (i - k * 2 * fps) * 4)  # enters every 2 s, 4 px a frame
                    if -60 < x < 320:
                        y = 150 + 20 * (k % 2)
                        img[y:y + 30, max(0, x):max(0, x + 56)] = (200 - 40 * k, 60 + 40 * k, 40 + 30 * k)
                noisy = np.clip(img + rng.normal(0, 2, img.shape), 0, 255).astype(np.uint8)
                for packet in stream.encode(av.VideoFrame.from_ndarray(noisy, format="rgb24")):
                    out.mux(packet)
            for packet in stream.encode(None):
                out.mux(packet)
        return path.read_bytes()


def sample_footage(data: Path | None) -> dict[str, bytes]:
    """Object key -> bytes: one traffic clip with a .json sidecar naming its camera and start."""
    clip = data / "videos" / "ahmetozlu_input_video.mp4" if data else None
    sidecar = json.dumps({"camera": "demo-cam", "start": "2026-11-03T08:00:00Z"}).encode()
    return {"footage/roadside.mp4": clip.read_bytes() if clip and clip.exists() else drawn_clip(),
            "footage/roadside.json": sidecar}


def sample_inputs(data: Path | None, per_class: int = 40, shards: int = 4) -> dict[str, bytes]:
    """Object key -> bytes: tar shards of camera crops, loose photos with .cls sidecars, one corrupt file."""
    objects: dict[str, bytes] = {}
    if data is not None:
        photos = shared_photos(data)
        rng = random.Random(0)
        crops = []
        for source, folder in (("zenodo", "zenodo/val/"), ("cifar10", "cifar10/")):
            by_class: dict[str, list[dict]] = {}
            for p in photos:
                if p["source"] == source and folder in p["path"]:
                    by_class.setdefault(p["fine_label"], []).append(p)
            for rows in by_class.values():
                crops += rng.sample(rows, min(per_class, len(rows)))
        rng.shuffle(crops)
        samples = [{"key": f"{i:06d}", "image": Path(p["path"]).read_bytes(), "cls": p["vehicle_type"],
                    "meta": {"source": p["source"], "fine_label": p["fine_label"]}} for i, p in enumerate(crops)]
        for p in photos:
            if p["source"] == "imagenet":
                name = Path(p["path"]).stem
                objects[f"inputs/photos/{name}.jpg"] = Path(p["path"]).read_bytes()
                objects[f"inputs/photos/{name}.cls"] = p["vehicle_type"].encode()
    else:
        samples = [{"key": f"{i:06d}", "image": drawn_image(i), "cls": "unknown", "meta": {"source": "drawn"}}
                   for i in range(per_class * 8)]
        for i in range(24):
            objects[f"inputs/photos/drawn_{i:02d}.jpg"] = drawn_image(1000 + i)
    step = -(-len(samples) // shards)
    for n in range(shards):
        objects[f"inputs/shards/demo-{n:06d}.tar"] = tar_bytes(
            [(s["key"], {"jpg": s["image"], "cls": s["cls"].encode(), "json": json.dumps(s["meta"]).encode()})
             for s in samples[n * step:(n + 1) * step]])
    objects["inputs/photos/broken.jpg"] = b"\xff\xd8\xff\xe0 this is not really a JPEG"
    return objects


def run_summary(table: pa.Table, manifest: dict) -> str:
    """A short text summary of a run's results, as read back from Parquet."""
    rows = table.to_pylist()
    lines = [f"{len(rows)} rows read back from {manifest['summary']['files']} Parquet file(s); "
             f"{manifest['summary']['errors']} error(s); {manifest['rows_per_s']} images/s"]
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["label"] or "(error)"] = counts.get(r["label"] or "(error)", 0) + 1
    lines.append("labels: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])))
    scored: dict[str, list[bool]] = {}
    for r in rows:
        if r["cls"] and r["label"] and r["cls"] != "unknown":
            source = json.loads(r["meta"])["source"] if r["meta"] else "imagenet"
            scored.setdefault(source, []).append(r["label"] == r["cls"])
    for source, hits in sorted(scored.items()):
        lines.append(f"agreement with the .cls label, {source}: {sum(hits)}/{len(hits)} ({100 * sum(hits) / len(hits):.0f}%)")
    for r in rows:
        if r["error"]:
            lines.append(f"error row: {r['source_uri']}: {r['error']}")
    return "\n".join(lines)


def footage_report(table: pa.Table) -> str:
    """Frames per label, and the first few frames with their times."""
    rows = sorted(table.to_pylist(), key=lambda r: r["pts_s"] if r["pts_s"] is not None else -1)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["label"] or "(error)"] = counts.get(r["label"] or "(error)", 0) + 1
    lines = [f"{len(rows)} frames at 1 fps from {len({r['source_uri'] for r in rows})} video(s); labels: "
             + ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))]
    for r in rows[:3]:
        lines.append(f"  {r['camera']} {r['wall_time']:%Y-%m-%d %H:%M:%S} (t={r['pts_s']:.2f} s, frame {r['frame_index']}): "
                     f"{r['label']} {r['score']:.2f}, top class {r['topk_labels'][0]}")
    return "\n[demo] ".join(lines)


DEMO_LINE = "gate=0.6,0.5,0.6,1.0"  # a vertical line over the near lane of the roadside clip (and the drawn one)


def vehicles_report(output: str, manifest: dict, opts: StorageOptions) -> str:
    """Vehicles found, and crossings per line and type, from the run's tables."""
    vehicles = sink.read_run(output, manifest, opts, "vehicles").to_pylist()
    crossings = sink.read_run(output, manifest, opts, "crossings").to_pylist()
    per_line: dict[tuple, dict[str, int]] = {}
    for c in crossings:
        types = per_line.setdefault((c["line"], c["direction"]), {})
        types[c["label"] or "(no label)"] = types.get(c["label"] or "(no label)", 0) + 1
    tracked = [v for v in vehicles if v["track_id"] is not None]
    background = sum(1 for v in tracked if v["label"] == NOT_VEHICLE)
    lines = [f"{len(tracked) - background} vehicle(s) tracked in every frame, {len(crossings)} crossing(s) of {DEMO_LINE}"
             + (f"; {background} track(s) of background, not counted" if background else "")]
    for (line, direction), types in sorted(per_line.items()):
        lines.append(f"  {line} {direction}: {sum(types.values())} ("
                     + ", ".join(f"{k} {v}" for k, v in sorted(types.items(), key=lambda kv: -kv[1])) + ")")
    return "\n[demo] ".join(lines)


def run_demo(workdir: Path, keep_store: bool = False, drawn: bool = False) -> dict:
    from recog.config import InferConfig, VehiclesConfig
    from recog.pipeline import run_inference
    from recog.query import Results, format_table
    from recog.report import build_report

    data = None if drawn else find_shared_data()
    print(f"[demo] sample data: {data if data else 'drawn here (no ../shared/data, or --drawn)'}")
    store = EmbeddedStore(workdir / "store").start()
    try:
        os.environ.update(store.env())  # this process and the local Ray workers it starts use the store
        opts = StorageOptions.from_env()
        print(f"[demo] object store: SeaweedFS at {store.endpoint_url}, data in {store.data_dir}")
        t0 = time.monotonic()
        objects = {**sample_inputs(data), **sample_footage(data)}
        for key, body in objects.items():
            storage.write_bytes(f"s3://{BUCKET}/{key}", body, opts)
        print(f"[demo] uploaded {len(objects)} objects to s3://{BUCKET}/ in {time.monotonic() - t0:.1f}s")
        output = f"s3://{BUCKET}/results"
        manifest = run_inference(InferConfig(input=f"s3://{BUCKET}/inputs/", output=output))
        print("[demo] " + run_summary(sink.read_run(output, manifest, opts), manifest).replace("\n", "\n[demo] "))
        print(f"[demo] Delta table: {output}/results (Parquet in camera=*/date=*/, log in _delta_log/), "
              f"run record {output}/_runs/{manifest['run_id']}.json")
        footage = run_inference(InferConfig(input=f"s3://{BUCKET}/footage/", output=output, media="video",
                                            fps=1.0, segment_seconds=10))
        print("[demo] footage: " + footage_report(sink.read_run(output, footage, opts)))
        traffic = run_inference(VehiclesConfig(input=f"s3://{BUCKET}/footage/", output=output, line=(DEMO_LINE,),
                                               segment_seconds=15))
        print("[demo] vehicles: " + vehicles_report(output, traffic, opts))
        if not data:
            print(f"[demo]   (the drawn clip's {DRAWN_CARS} boxes are tracked, but the model types coloured boxes as "
                  "not_vehicle: real footage, ../shared/data's, is counted)")
        results = Results(output, opts)
        sql = "SELECT camera, label, count(*) AS n FROM results GROUP BY ALL ORDER BY n DESC LIMIT 8"
        print(f"[demo] recog query {output} \"{sql}\"\n" + format_table(results.sql(sql)))
        sql = "SELECT line, direction, label, count(*) AS n FROM crossings GROUP BY ALL ORDER BY n DESC"
        print(f"[demo] recog query {output} \"{sql}\"\n" + format_table(results.sql(sql)))
        (workdir / "report.html").write_text(build_report(results, f"recog demo: {output}", opts), encoding="utf-8")
        print(f"[demo] report with charts and thumbnails per label: {workdir / 'report.html'}")
        print(f"[demo] the store keeps them under {store.data_dir}; to open it again: "
              f"recog store serve --dir {store.data_dir}")
        if keep_store:
            print(f"[demo] store still running at {store.endpoint_url}; credentials in {store.data_dir}/credentials.env. Ctrl+C stops it.")
            while True:
                time.sleep(3600)
        return manifest
    finally:
        store.stop()
