"""How close the image job comes to the model's own limit, and how far it is ahead of a hand-written
loop: one run, the same images, the same model, the same machine.

    model-only   forward passes on uint8 batches already in memory, all of this machine's threads
                 (or its GPU): the most the model can do here
    plain loop   what a user writes by hand: one process, PIL open + torchvision transforms + model,
                 in batches, reading the images from local disk (no object store to wait on)
    recog        the job end to end: embedded object store -> Ray Data -> predictor actors -> Parquet,
                 timed around run_inference (listing, actor start-up and the commit included)

Repetitions are interleaved (model, loop, recog, model, ...) so that drift on a shared machine hits
all three alike; figures are medians. Then, once each: recog with 1 and 2 predictor actors, recog on
10x and 100x the images (time per image should stay flat), and footage: frames/s the footage job
labels (every frame) vs decode-only (PyAV) of the same file.

    python bench/throughput.py                        # HD frames, 480 images, 3 repetitions
    python bench/throughput.py --images photos        # the ImageNet photos at their own sizes
    python bench/throughput.py --count 32 --repeat 1 --scale 1 --no-footage --json out.json   # CI

Images: `hd` are frames of the three clips in ../shared/data/videos, scaled to 1920x1080 and saved as
JPEG (quality 90): a stand-in for HD camera stills. `photos` are the 24 photos of
../shared/data/photos/imagenet (180x135 to 1280x960). Or a folder of your own images.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import footage  # bench/footage.py: decode-only reference for video
import numpy as np
from timing import timed

from recog import models, preprocess, storage
from recog.storage import StorageOptions

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
CLIPS = ["ahmetozlu_input_video.mp4", "bgslibrary_video02.avi", "intel_car-detection.mp4"]


def hd_frames(per_clip: int = 8) -> list[bytes]:
    """Frames spread over each shared clip, scaled to 1920x1080, as JPEG files' bytes."""
    import av
    from PIL import Image

    out = []
    for name in CLIPS:
        with av.open(str(SHARED / "videos" / name)) as c:
            step = max(1, (c.streams.video[0].frames or 8 * per_clip) // per_clip)  # keep 8, not all 900
            frames = [f.to_image() for i, f in enumerate(c.decode(video=0)) if i % step == 0]
        for f in frames[:per_clip]:
            buf = io.BytesIO()
            f.resize((1920, 1080), Image.Resampling.BICUBIC).save(buf, "JPEG", quality=90)
            out.append(buf.getvalue())
    return out


def image_set(which: str) -> list[bytes]:
    if which == "hd":
        return hd_frames()
    folder = SHARED / "photos" / "imagenet" if which == "photos" else Path(which)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower().lstrip(".") in ("jpg", "jpeg", "png", "webp"))
    if not files:
        raise SystemExit(f"{folder}: no images")
    return [p.read_bytes() for p in files]


def cycle(images: list[bytes], count: int) -> list[bytes]:
    return [images[i % len(images)] for i in range(count)]


# --- the two references -----------------------------------------------------------------------

def model_only(classifier, pixels: np.ndarray, batch: int) -> None:
    for i in range(0, len(pixels), batch):
        classifier.probabilities(pixels[i:i + batch])


def _core_worker(conn, model: str, pixels: np.ndarray, batch: int, compile: bool) -> None:
    """One single-threaded model process: runs its share of the images on each "go"."""
    from recog.models.classifier import Classifier

    classifier = Classifier(models.resolve(model), StorageOptions(), "cpu", threads=1, compile=compile)
    model_only(classifier, pixels[:batch], batch)
    conn.send("ready")
    while conn.recv() == "go":
        conn.send(timed(lambda: model_only(classifier, pixels, batch))[1])


class PerCoreModel:
    """model-only as one single-threaded process per core, each with its share of the images: on
    CPUs this can beat one process with a thread per core, so the limit is the better of the two."""

    def __init__(self, model: str, pixels: np.ndarray, batch: int, compile: bool):
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        n = os.cpu_count() or 1
        self.conns, self.procs = [], []
        for share in np.array_split(pixels, n):
            here, there = ctx.Pipe()
            self.procs.append(ctx.Process(target=_core_worker, args=(there, model, share, batch, compile), daemon=True))
            self.procs[-1].start()
            self.conns.append(here)
        assert all(c.recv() == "ready" for c in self.conns)

    def run(self) -> float:
        t0 = time.perf_counter()
        for c in self.conns:
            c.send("go")
        for c in self.conns:
            c.recv()
        return time.perf_counter() - t0

    def close(self) -> None:
        for c in self.conns:
            c.send("stop")
        for p in self.procs:
            p.join()


def plain_loop(model, files: list[Path], prep: preprocess.Preprocessing, batch: int, device: str) -> None:
    """The loop from a tutorial: PIL + torchvision transforms + the model, one process."""
    import torch
    from PIL import Image
    from torchvision import transforms

    tf = transforms.Compose([
        transforms.Resize(prep.resize_size, interpolation=transforms.InterpolationMode(prep.interpolation)),
        transforms.CenterCrop(prep.input_size), transforms.ToTensor(), transforms.Normalize(prep.mean, prep.std)])
    with torch.inference_mode():
        for i in range(0, len(files), batch):
            x = torch.stack([tf(Image.open(f).convert("RGB")) for f in files[i:i + batch]]).to(device)
            torch.softmax(model(x), dim=1).cpu().numpy()


# --- recog end to end -------------------------------------------------------------------------

def upload(images: list[bytes], prefix: str, per_shard: int, opts: StorageOptions) -> None:
    """The images as WebDataset tar shards under `prefix`, as an archive would hold them."""
    from recog.shards import tar_bytes

    for n in range(0, len(images), per_shard):
        members = [(f"{i:08d}", {"jpg": images[i]}) for i in range(n, min(n + per_shard, len(images)))]
        storage.write_bytes(f"{prefix}shard-{n // per_shard:06d}.tar", tar_bytes(members), opts)


def recog_job(input_: str, output: str, **cfg) -> dict:
    from recog.config import InferConfig
    from recog.pipeline import run_inference

    t0 = time.perf_counter()
    with open(os.devnull, "w") as quiet:
        m = run_inference(InferConfig(input=input_, output=output, force=True, **cfg), out=quiet)
    return {"rows": m["summary"]["rows"], "errors": m["summary"]["errors"], "wall_s": time.perf_counter() - t0,
            "resources": m["resources"]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", default="hd", help="hd | photos | a folder of images (default hd)")
    p.add_argument("--count", type=int, default=480, help="images per measurement (default 480)")
    p.add_argument("--repeat", type=int, default=3, help="interleaved repetitions; medians are reported (default 3)")
    p.add_argument("--per-shard", type=int, default=64, help="images per tar shard (default 64)")
    p.add_argument("--batch-size", type=int, default=None, help="model batch, all three (default: the job's)")
    p.add_argument("--scale", default="1,10,100", help="multiples of --scale-base images for the scaling figures")
    p.add_argument("--scale-base", type=int, default=96, help="images at scale 1 (default 96)")
    p.add_argument("--model", default="efficientnet_lite0", help="the model, all three (default efficientnet_lite0, at "
                   "224 px; bench/models.py compares models)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (model-only and recog alike)")
    p.add_argument("--video", type=Path, default=SHARED / "videos" / CLIPS[0], help="clip for the footage figures")
    p.add_argument("--no-footage", action="store_true", help="skip the footage figures")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = p.parse_args()

    import torch

    from recog.models.classifier import Classifier
    from recog.objectstore import EmbeddedStore
    from recog.runtime import CPU_BATCH, GPU_BATCH, init_ray

    opts0 = StorageOptions()
    spec = models.resolve(args.model, None, None, opts0)
    prep = spec.preprocessing
    device = "cuda" if torch.cuda.is_available() else "cpu"
    batch = args.batch_size or (GPU_BATCH if device == "cuda" else CPU_BATCH)
    images = cycle(image_set(args.images), args.count)
    sizes = sorted({preprocess.decode_image(b, prep)[1:] for b in set(images)})
    figures: dict = {"images": args.images, "count": args.count, "distinct": len(set(images)), "sizes": sizes[:3] + sizes[-3:],
                     "device": device, "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(), "batch": batch,
                     "model": spec.name, "input_size": prep.input_size, "compile": args.compile}
    print(f"{args.count} images ({args.images}: {len(set(images))} distinct, {sizes[0][0]}x{sizes[0][1]} .. "
          f"{sizes[-1][0]}x{sizes[-1][1]}), {spec.name} at {prep.input_size} px on {device}, "
          f"{torch.get_num_threads()} threads, batch {batch}", flush=True)

    pixels = np.stack([preprocess.decode_image(b, prep)[0] for b in images])
    classifier = Classifier(spec, opts0, device, compile=args.compile)
    model = models.build(spec, opts0).eval().to(device)  # as a user loads it: no channels_last, no autocast
    model_only(classifier, pixels[:batch], batch)  # warm-up: first calls allocate

    with tempfile.TemporaryDirectory() as tmp, EmbeddedStore(Path(tmp) / "store") as store:
        folder = Path(tmp) / "files"
        folder.mkdir()
        files = []
        for i, b in enumerate(images):
            files.append(folder / f"{i:08d}.jpg")
            files[-1].write_bytes(b)
        os.environ.update(store.env())
        opts = StorageOptions.from_env()
        upload(images, "s3://bench/base/", args.per_shard, opts)
        init_ray(None)
        job = {"model": args.model, "batch_size": args.batch_size, "compile": args.compile}
        recog_job("s3://bench/base/", "s3://bench/warm/", **job)  # warm-up: Ray workers start, imports load

        per_core = PerCoreModel(args.model, pixels, batch, args.compile) if device == "cpu" and (os.cpu_count() or 1) > 1 else None
        runs: dict[str, list[float]] = {"model_only_threads": [], "model_only_per_core": [], "plain_loop": [], "recog": [],
                                        "decode_only": []}
        if not per_core:
            del runs["model_only_per_core"]
        for r in range(args.repeat):
            runs["model_only_threads"].append(timed(lambda: model_only(classifier, pixels, batch))[1])
            if per_core:
                runs["model_only_per_core"].append(per_core.run())
            runs["plain_loop"].append(timed(lambda: plain_loop(model, files, prep, batch, device))[1])
            done = recog_job("s3://bench/base/", f"s3://bench/out-{r}/", **job)
            assert done["rows"] == args.count and not done["errors"], done
            runs["recog"].append(done["wall_s"])
            runs["decode_only"].append(timed(lambda: [preprocess.decode_image(b, prep) for b in images])[1])
            print(f"  round {r + 1}: " + "  ".join(f"{k} {args.count / v[-1]:.1f}/s" for k, v in runs.items()), flush=True)
        if per_core:
            per_core.close()
        rate = {k: args.count / statistics.median(v) for k, v in runs.items()}
        rate["model_only"] = max(v for k, v in rate.items() if k.startswith("model_only_"))
        figures["runs_s"] = {k: [round(x, 3) for x in v] for k, v in runs.items()}
        figures["recog_layout"] = done["resources"]
        # decode_only is PIL on one core, as a decode task does it. On CPU the cores are shared, so
        # the most recog can reach is the model's limit less the core time decoding takes.
        cores = os.cpu_count() or 1
        rate["bound"] = 1 / (1 / rate["model_only"] + 1 / (rate["decode_only"] * cores)) if device == "cpu" else rate["model_only"]
        figures["images_per_s"] = {k: round(v, 2) for k, v in rate.items()}
        figures["ratios"] = {"recog_vs_model_only": round(rate["recog"] / rate["model_only"], 3),
                             "recog_vs_plain_loop": round(rate["recog"] / rate["plain_loop"], 3)}
        print(f"\n{'':20s}{'images/s':>10s}   (median of {args.repeat})")
        for k, v in rate.items():
            print(f"{k:20s}{v:10.1f}")
        print(f"recog / model-only  {figures['ratios']['recog_vs_model_only']:.2f}x\n"
              f"recog / plain loop  {figures['ratios']['recog_vs_plain_loop']:.2f}x\n"
              f"recog layout: {done['resources']}", flush=True)

        if device == "cpu" and (os.cpu_count() or 1) >= 2:
            figures["actors"] = {}
            for n in (1, 2):
                done = recog_job("s3://bench/base/", f"s3://bench/actors-{n}/", **job, actors=n, cpus_per_actor=1)
                figures["actors"][n] = round(args.count / done["wall_s"], 2)
                print(f"recog, {n} actor(s) x 1 CPU   {figures['actors'][n]:8.1f} images/s", flush=True)

        figures["scaling"] = {}
        for k in [int(s) for s in args.scale.split(",") if s]:
            n = args.scale_base * k
            upload(cycle(images, n), f"s3://bench/scale-{k}/", args.per_shard, opts)
            done = recog_job(f"s3://bench/scale-{k}/", f"s3://bench/scale-out-{k}/", **job)
            figures["scaling"][k] = {"images": n, "wall_s": round(done["wall_s"], 2),
                                     "ms_per_image": round(1000 * done["wall_s"] / n, 2)}
            print(f"recog, {k:3d}x = {n:6d} images  {done['wall_s']:8.1f} s  {1000 * done['wall_s'] / n:7.2f} ms/image",
                  flush=True)

        if len(figures["scaling"]) >= 2:  # the job's own rate, its start-up taken out
            (_, a), (_, b) = sorted(figures["scaling"].items())[-2:]
            marginal = (b["images"] - a["images"]) / (b["wall_s"] - a["wall_s"])
            figures["marginal_images_per_s"] = round(marginal, 2)
            figures["ratios"]["marginal_vs_model_only"] = round(marginal / rate["model_only"], 3)
            figures["ratios"]["marginal_vs_plain_loop"] = round(marginal / rate["plain_loop"], 3)
            print(f"recog marginal rate (between the two largest runs) {marginal:.1f} images/s = "
                  f"{marginal / rate['model_only']:.2f}x model-only, {marginal / rate['plain_loop']:.2f}x plain loop", flush=True)

        if not args.no_footage:
            figures["footage"] = footage_figures(args.video, opts, job)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    return 0


def footage_figures(path: Path, opts: StorageOptions, job: dict) -> dict:
    """Every frame of one clip: labeled by the footage job vs decoded alone by PyAV."""
    storage.write_bytes(f"s3://bench/clips/{path.name}", path.read_bytes(), opts)
    frames, decode_s = timed(lambda: footage.pyav_decode(path, 0), 3)
    done = recog_job("s3://bench/clips/", "s3://bench/clips-out/", **job, media="video", fps=None, every_n=1,
                     segment_seconds=10)
    out = {"video": path.name, "frames": frames, "decode_only_fps": round(frames / decode_s, 1),
           "job_fps": round(done["rows"] / done["wall_s"], 1)}
    out["job_vs_decode"] = round(out["job_fps"] / out["decode_only_fps"], 3)
    print(f"footage {path.name}: decode-only {out['decode_only_fps']:.0f} frames/s, job (every frame, labeled) "
          f"{out['job_fps']:.1f} frames/s = {out['job_vs_decode']:.3f}x", flush=True)
    return out


if __name__ == "__main__":
    sys.exit(main())
