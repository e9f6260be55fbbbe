"""The GPU measurement in one run (bench/gpu.sh installs and calls this): what the model can do,
what decoding can do, and what recog does end to end, on this machine's GPU and all its cores.

    model-only   images/s of forward passes on uint8 batches already on the device, through recog's
                 Classifier (normalised on the device, channels-last, bf16 autocast): EfficientNet-Lite0
                 and ResNet-50 at 224 px, batch 256 and the batch recog's probe picks, with and
                 without torch.compile
    decode       JPEG images/s: PIL with recog's reduced-size decoding on every CPU core against
                 batched nvJPEG on the GPU (recog's --decode predictor path), on ImageNet-sized photos
                 and on 1080p frames
    recog        the image job end to end (Ray Data -> predictor actors -> Delta tables) on photos and
                 1080p frames, --decode workers, predictor and auto, GPU busy % sampled during the run
                 (NVML), where each run's start-up went and where auto decoded; skipped, with the
                 reason, where Ray is not installed
    footage      the footage job (frames sampled at --fps) and the vehicles job (every frame tracked)
                 on --clips copies of a shared clip, frames/s and GPU busy %
    ratios       end to end / model-only, end to end / decode ceiling

Each part's figures are written to --json as soon as it ends, so a run cut short keeps them; on a
GPU a part that fails is reported and the next one runs.

Weights are random (speed does not depend on them, and nothing is downloaded). Figures are medians.

    python bench/gpu.py --json gpu.json                         # on a GPU machine (bench/gpu.sh)
    python bench/gpu.py --device cpu --tiny --json out.json     # CI: every path on a tiny input
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from recog import models, preprocess
from recog.models.classifier import Classifier, probe_batch_size
from recog.storage import StorageOptions

PHOTOS = [Path(__file__).resolve().parents[2] / "shared" / "data" / "photos" / "imagenet",
          Path(__file__).resolve().parents[1] / ".gpu" / "photos"]  # where bench/gpu.sh puts a copy
VIDEOS = [PHOTOS[0].parents[1] / "videos", PHOTOS[1].parent / "videos"]  # bench/gpu.sh's copy: .gpu/videos
ARCHS = ("efficientnet_lite0", "resnet50")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def rate(fn, items: int, device: torch.device, min_s: float, repeat: int) -> float:
    """Median items/s of `fn` over `repeat` timings of at least `min_s` each (after one warm-up call)."""
    fn()
    sync(device)
    rates = []
    for _ in range(repeat):
        calls, t0 = 0, time.perf_counter()
        while True:
            fn()
            calls += 1
            sync(device)
            elapsed = time.perf_counter() - t0
            if elapsed >= min_s:
                break
        rates.append(calls * items / elapsed)
    return statistics.median(rates)


def spec_of(arch: str) -> models.ModelSpec:
    return models.ModelSpec(arch, arch, models.imagenet_classes(), "imagenet", models.ARCHITECTURES[arch].preprocessing(), "", "random")


def classifier(arch: str, device: str, compile: bool) -> Classifier:
    """recog's Classifier around an untrained network of `arch` (no weights needed for speed)."""
    return Classifier(spec_of(arch), None, device, compile=compile, net=models.ARCHITECTURES[arch].build(1000))


def model_only(args, device: torch.device) -> list[dict]:
    """Each architecture eager at --batch and at the batch the probe picks, then compiled at --batch
    (one shape: each new shape would compile again)."""
    rows = []

    def measure(c: Classifier, arch: str, batch: int, compiled: bool, tuned: bool) -> None:
        pixels = torch.randint(0, 256, (batch, 224, 224, 3), dtype=torch.uint8, device=device)
        r = rate(lambda: c.probabilities(pixels), batch, device, args.min_s, args.repeat)
        rows.append({"arch": arch, "compile": compiled, "batch": batch, "tuned": tuned, "images_per_s": round(r, 1)})
        print(f"[gpu] model-only {arch} batch {batch}{' compiled' if compiled else ''}: {r:,.0f} images/s", flush=True)

    for arch in ARCHS:
        c = classifier(arch, device.type, False)
        probe = probe_batch_size(c, 224, start=args.batch, limit=args.max_batch)
        print(f"[gpu] {arch}: probe picked batch {probe.batch} ({probe.reason}); tried {probe.tried}, "
              f"seconds each {probe.seconds}", flush=True)
        for batch in dict.fromkeys((args.batch, probe.batch)):
            measure(c, arch, batch, False, batch == probe.batch)
        rows[-1]["probe"] = probe.to_dict()
        if args.compile:
            measure(classifier(arch, device.type, True), arch, args.batch, True, args.batch == probe.batch)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def photos(count: int) -> list[bytes]:
    folder = next((p for p in PHOTOS if p.is_dir()), None)
    if folder is None:
        raise SystemExit(f"no photos: looked in {', '.join(map(str, PHOTOS))}")
    data = [p.read_bytes() for p in sorted(folder.iterdir()) if p.suffix.lower() in (".jpg", ".jpeg")]
    return [data[i % len(data)] for i in range(count)]


def hd_frames(count: int) -> list[bytes]:
    """1080p JPEG frames (quality 90), made from the photos scaled to 1920x1080."""
    from PIL import Image

    out = []
    for data in photos(min(count, 24)):
        buf = io.BytesIO()
        Image.open(io.BytesIO(data)).convert("RGB").resize((1920, 1080), Image.Resampling.BICUBIC).save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return [out[i % len(out)] for i in range(count)]


def _pil_decode(chunk: list[bytes]) -> int:
    prep = models.ARCHITECTURES["efficientnet_lite0"].preprocessing()
    for data in chunk:
        preprocess.decode_image(data, prep)
    return len(chunk)


def decode(args, device: torch.device) -> dict:
    """PIL on every core (a process each) vs nvJPEG in batches on the device, images/s."""
    prep = models.ARCHITECTURES["efficientnet_lite0"].preprocessing()
    cores = os.cpu_count() or 1
    out = {}
    for name, images in (("photos", photos(args.decode_count)), ("1080p", hd_frames(args.decode_count))):
        chunks = [images[i::cores] for i in range(cores)]
        with ProcessPoolExecutor(cores) as pool:
            list(pool.map(_pil_decode, [c[:2] for c in chunks]))  # start the processes
            t0 = time.perf_counter()
            done = sum(pool.map(_pil_decode, chunks))
            pil = done / (time.perf_counter() - t0)
        batch = images[:args.batch]
        gpu = rate(lambda b=batch: preprocess.decode_jpegs(b, prep, device), len(batch), device, args.min_s, args.repeat)
        out[name] = {"pil_all_cores": round(pil, 1), "cores": cores, "device_batched": round(gpu, 1), "batch": len(batch)}
        print(f"[gpu] decode {name}: PIL on {cores} cores {pil:,.0f} images/s, {device.type} batched {gpu:,.0f} images/s", flush=True)
    return out


class BusySampler:
    """GPU utilisation (NVML) every 0.2 s while a run lasts; nothing where there is no NVML."""

    def __init__(self):
        self.samples: list[int] = []
        self._stop = threading.Event()
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml, self._handle = pynvml, pynvml.nvmlDeviceGetHandleByIndex(0)
        except Exception:  # noqa: BLE001 - no NVML (CPU, or no driver): no samples
            self._nvml = None

    def __enter__(self):
        if self._nvml:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def _run(self):
        while not self._stop.wait(0.2):
            self.samples.append(self._nvml.nvmlDeviceGetUtilizationRates(self._handle).gpu)

    def __exit__(self, *exc):
        self._stop.set()

    def busy(self) -> float | None:
        return round(statistics.mean(self.samples), 1) if self.samples else None


def random_model(folder: Path) -> str:
    """A model package of EfficientNet-Lite0 with random weights: the jobs' speed without the
    weights package (a GPU node may not have it)."""
    model = str(folder / "lite0-random")
    models.save_package(model, dataclasses.replace(spec_of("efficientnet_lite0"), name="lite0-random"),
                        models.ARCHITECTURES["efficientnet_lite0"].build(1000).state_dict(), {}, StorageOptions())
    return model


def timed_run(cfg, args) -> tuple[dict, float, float | None]:
    """One recog run: its run record, its seconds, and the GPU's mean busy % meanwhile."""
    from recog.pipeline import run_inference

    with BusySampler() as sampler, open(os.devnull, "w") as quiet:
        t0 = time.perf_counter()
        manifest = run_inference(cfg, out=sys.stdout if args.job_output else quiet)
        return manifest, time.perf_counter() - t0, sampler.busy()


def job_figures(manifest: dict, rows: int, seconds: float, busy: float | None) -> dict:
    """A run's rate, GPU busy %, where its start-up went and (--decode auto) where it decoded."""
    figures = {"rows": rows, "seconds": round(seconds, 2), "per_s": round(rows / seconds, 1),
               "gpu_busy_pct": busy, "startup": manifest.get("startup")}
    if manifest.get("decoding"):
        figures["decoding"] = manifest["decoding"]
    return figures


def end_to_end(args, device: torch.device) -> dict:
    """recog infer on local files (an object store is not needed to load the GPU), each image set
    with each --decode, after one run that starts Ray and is not kept."""
    try:
        import ray  # noqa: F401
    except ImportError as e:
        return {"skipped": f"Ray is not installed here ({e}); bench/gpu.sh installs the project first"}
    from recog.config import InferConfig
    from recog.pipeline import run_inference
    from recog.shards import tar_bytes

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        model = random_model(Path(tmp))
        sets = {"photos": lambda: photos(args.count), "1080p": lambda: hd_frames(args.hd_count)}
        for name, images in ((n, sets[n]()) for n in args.sets.split(",")):
            folder = Path(tmp) / name
            folder.mkdir()
            per = 256
            for n in range(0, len(images), per):
                (folder / f"shard-{n // per:06d}.tar").write_bytes(
                    tar_bytes([(f"{i:08d}", {"jpg": images[i]}) for i in range(n, min(n + per, len(images)))]))
            for decode_at in args.decodes.split(",") if not args.tiny else ("auto",) if name == "photos" else ("predictor",):
                cfg = InferConfig(input=str(folder), output=str(Path(tmp) / f"out-{name}-{decode_at}"), decode=decode_at,
                                  model=model, device=device.type, force=True)
                if not out and not args.tiny:  # warm-up on one shard: Ray started, the model files cached
                    with open(os.devnull, "w") as quiet:
                        run_inference(dataclasses.replace(cfg, input=str(folder / "shard-000000.tar"),
                                                          output=f"{cfg.output}-warm-up"), out=quiet)
                manifest, seconds, busy = timed_run(cfg, args)
                run = out[f"{name}/{decode_at}"] = job_figures(manifest, manifest["summary"]["rows"], seconds, busy)
                share = f", {run['decoding']['share']:.0%} decoded on the device" if "decoding" in run else ""
                print(f"[gpu] recog {name} --decode {decode_at}: {run['per_s']:,.0f} images/s, GPU busy {run['gpu_busy_pct']} %"
                      f"{share}; first results at {run['startup']['first_results_s']} s", flush=True)
                save(args, "recog", out)
    return out


def scheduling(args, device: torch.device) -> dict:
    """Ray Data's per-unit rate on this node, and the unit size --images-per-unit auto takes from
    it for --count loose images (the image runs above read shards: one unit each)."""
    try:
        import ray
    except ImportError as e:
        return {"skipped": f"Ray is not installed here ({e})"}
    from recog.config import InferConfig
    from recog.runtime import choose_unit_size, init_ray, largest_node_cpus, predictor_pool, units_per_second

    init_ray(None)
    cluster = ray.cluster_resources()
    rate = units_per_second()
    pool = predictor_pool(cluster, InferConfig(input="", output="", device=device.type), largest_node_cpus())
    size = choose_unit_size(cluster, pool, args.count, measure=lambda: rate)
    print(f"[gpu] Ray Data moves {rate:,.0f} units/s here; --images-per-unit auto for {args.count:,} loose images: "
          f"{size.images} ({size.describe()})", flush=True)
    return {"units_per_s": round(rate, 1), "images_per_unit": size.images, "planned_images_per_s": size.planned_images_per_s}


def footage_jobs(args, device: torch.device) -> dict:
    """The footage job (frames sampled at --fps, classified) and the vehicles job (every frame
    tracked on CPU, crops classified) on copies of a shared clip, from local files."""
    try:
        import av  # noqa: F401
        import ray  # noqa: F401
    except ImportError as e:
        return {"skipped": f"PyAV or Ray is not installed here ({e})"}
    from recog.config import InferConfig, VehiclesConfig

    folder = next((p for p in VIDEOS if p.is_dir()), None)
    if folder is None:
        return {"skipped": f"no clips: looked in {', '.join(map(str, VIDEOS))}"}
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        model = random_model(Path(tmp))
        jobs = {"footage": ("ahmetozlu_input_video.mp4", lambda src, dst: InferConfig(
                    input=src, output=dst, media="video", fps=args.fps, model=model, device=device.type, force=True)),
                "vehicles": ("bgslibrary_video02.avi", lambda src, dst: VehiclesConfig(
                    input=src, output=dst, line=("away=0.3,0.6,1.0,0.6",), model=model, device=device.type, force=True,
                    segment_seconds=10))}
        for job, (clip, config) in jobs.items():
            src = Path(tmp) / job
            src.mkdir()
            for i in range(args.clips):
                (src / f"cam{i:02d}_{clip}").write_bytes((folder / clip).read_bytes())
            manifest, seconds, busy = timed_run(config(str(src), str(Path(tmp) / f"out-{job}")), args)
            frames = manifest["summary"]["rows"] if job == "footage" else args.clips * frames_of(folder / clip)  # all tracked
            run = out[job] = job_figures(manifest, frames, seconds, busy) | {"clips": args.clips, "clip": clip}
            print(f"[gpu] recog {job}: {args.clips} x {clip}, {run['per_s']:,.0f} frames/s, GPU busy {run['gpu_busy_pct']} %",
                  flush=True)
            save(args, "footage", out)
    return out


def frames_of(path: Path) -> int:
    import av

    with av.open(str(path)) as c:
        return c.streams.video[0].frames


def save(args, part: str, figures) -> None:
    """Write what is measured so far: a run cut short keeps its figures."""
    if args.json:
        done = json.loads(args.json.read_text()) if args.json.exists() else {}
        args.json.write_text(json.dumps(done | {part: figures}, indent=1))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", help="cuda or cpu (default cuda)")
    p.add_argument("--tiny", action="store_true", help="tiny inputs and short timings: checks every path, measures nothing")
    p.add_argument("--parts", default="model,decode,e2e,video", help="what to measure (default model,decode,e2e,video)")
    p.add_argument("--count", type=int, default=20000, help="photos per end-to-end run (default 20000)")
    p.add_argument("--hd-count", type=int, default=4000, help="1080p frames per end-to-end run (default 4000)")
    p.add_argument("--sets", default="photos,1080p", help="image sets of the end-to-end runs (default photos,1080p)")
    p.add_argument("--decodes", default="workers,predictor,auto", help="--decode values of the end-to-end runs "
                   "(default workers,predictor,auto)")
    p.add_argument("--clips", type=int, default=8, help="copies of the clip per footage job (default 8)")
    p.add_argument("--fps", type=float, default=5.0, help="the footage job's sampling (default 5 fps)")
    p.add_argument("--job-output", action="store_true", help="show the end-to-end jobs' own lines")
    p.add_argument("--decode-count", type=int, default=4096, help="images per decode measurement (default 4096)")
    p.add_argument("--batch", type=int, default=256, help="the fixed batch (default 256)")
    p.add_argument("--max-batch", type=int, default=2048, help="largest batch the probe tries (default 2048)")
    p.add_argument("--repeat", type=int, default=3, help="timings per figure; medians (default 3)")
    p.add_argument("--min-s", type=float, default=1.0, help="seconds per timing at least (default 1)")
    p.add_argument("--no-compile", dest="compile", action="store_false", help="skip the torch.compile figures")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    if args.tiny:  # every path, on a CPU, in about a minute
        args.count, args.hd_count, args.decode_count, args.batch, args.max_batch, args.repeat, args.min_s = 32, 16, 16, 8, 16, 1, 0.0
        args.clips, args.fps = 1, 1.0
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: --device cpu --tiny checks the script on a CPU")
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu"
    print(f"[gpu] {name}, torch {torch.__version__}, {os.cpu_count()} CPU cores", flush=True)
    figures = {"device": name, "torch": torch.__version__, "cpu_cores": os.cpu_count()}
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    parts = set(args.parts.split(","))
    steps = (("model_only", "model", model_only), ("decode", "decode", decode), ("recog", "e2e", end_to_end),
             ("scheduling", "e2e", scheduling), ("footage", "video", footage_jobs))
    for key, part, measure in steps:
        if part not in parts:
            figures[key] = {"skipped": "not in --parts"}
            continue
        try:
            figures[key] = measure(args, device)
        except Exception as e:  # noqa: BLE001 - one part failing must not lose the others' figures (GPU time is scarce)
            if args.tiny:
                raise
            figures[key] = {"failed": f"{type(e).__name__}: {e}"}
            print(f"[gpu] {part} failed: {type(e).__name__}: {e}", flush=True)
        save(args, key, figures[key])
    figures["ratios"] = ratios(figures)
    save(args, "ratios", figures["ratios"])
    print_table(figures, device)
    return 0


def ratios(figures: dict) -> dict:
    """Each end-to-end run against the model alone and against the faster decoder on its images."""
    model = [r for r in figures["model_only"] if isinstance(r, dict) and r.get("arch") == "efficientnet_lite0" and not r["compile"]] \
        if isinstance(figures["model_only"], list) else []
    decoders = figures["decode"] if "photos" in figures["decode"] else {}
    out = {}
    for key, run in figures["recog"].items():
        if isinstance(run, dict) and model and decoders:
            d = decoders[key.split("/")[0]]
            out[key] = {"vs_model_only": round(run["per_s"] / max(r["images_per_s"] for r in model), 3),
                        "vs_decode_ceiling": round(run["per_s"] / max(d["pil_all_cores"], d["device_batched"]), 3)}
    return out


def print_table(figures: dict, device: torch.device) -> None:
    print("\nmodel-only (images/s, 224 px, bf16 on GPU, channels-last)")
    for r in figures["model_only"] if isinstance(figures["model_only"], list) else []:
        print(f"  {r['arch']:<20} batch {r['batch']:>5}{' (probed)' if r['tuned'] else '':<9} {'compiled' if r['compile'] else 'eager':<9} "
              f"{r['images_per_s']:>10,.0f}")
    print("decode (images/s)")
    for k, d in figures["decode"].items() if "photos" in figures["decode"] else ():
        print(f"  {k:<8} PIL on {d['cores']} cores {d['pil_all_cores']:>8,.0f}   {device.type} batched {d['device_batched']:>8,.0f}")
    if "units_per_s" in figures["scheduling"]:
        sched = figures["scheduling"]
        print(f"scheduling: Ray Data moves {sched['units_per_s']:,.0f} units/s; --images-per-unit auto picks "
              f"{sched['images_per_unit']} for {sched['planned_images_per_s']:,.0f} images/s planned")
    for title, key, unit in (("recog end to end", "recog", "images"), ("footage jobs", "footage", "frames")):
        runs = {k: r for k, r in figures[key].items() if isinstance(r, dict)}
        print(f"{title} ({unit}/s)" + ("" if runs else f": {figures[key]}"))
        for k, r in runs.items():
            ratio = figures["ratios"].get(k)
            share = f", {r['decoding']['share']:.0%} decoded on the device" if r.get("decoding") else ""
            start = r["startup"] or {}
            print(f"  {k:<20} {r['per_s']:>8,.0f}  GPU busy {r['gpu_busy_pct']} %{share}; first results at "
                  f"{start.get('first_results_s')} s (Ray up {start.get('ray_up_s')} s, predictors ready "
                  f"{start.get('predictors_ready_s')} s)"
                  + (f"; x{ratio['vs_model_only']} of model-only, x{ratio['vs_decode_ceiling']} of the decode ceiling" if ratio else ""))


if __name__ == "__main__":
    sys.exit(main())
