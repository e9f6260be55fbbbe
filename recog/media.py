"""What an inference job reads, as one small object per kind of input: how the listing becomes
units of work, which settings make a unit's result differ (they go into its id), the CPU stage
that turns a unit into model input, how the predictor pool is sized, which tables a complete
unit becomes, and how the job talks about what it found. The pipeline is the same for every kind.

- `Images`: tar shards and loose images -> one unit per shard or group of images -> `results`;
- `Footage`: video files -> one unit per time segment, the frames the sampling keeps -> `results`;
- `Vehicles`: video files -> one unit per time segment, every frame tracked -> crops of each
  vehicle -> `vehicles` and `crossings`.
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, replace
from fractions import Fraction

from recog import runtime, sink, sources, storage, table, video
from recog.config import InferConfig
from recog.errors import ConfigError
from recog.sources import Inputs
from recog.storage import FileEntry
from recog.taxonomy import NOT_VEHICLE

UNIT_PROPERTY = "recog.imagesPerUnit"  # the results table property that keeps an output's unit size
SEGMENT_PROPERTY = "recog.segmentSeconds"  # the vehicles table property that keeps an output's segment length
LEGACY_SEGMENT_SECONDS = 60.0  # the length of outputs written before it was recorded (the default then)


class Media:
    job: str  # the job's name in its run manifest
    noun: str  # what one labeled row is, for progress lines
    row_noun: str  # what one row of the job's (first) table is
    wanted: str  # what the job looks for, for "found nothing"
    jpegs = False  # whether its inputs are JPEG files, which --decode can send to the predictors

    def settings(self, cfg: InferConfig) -> dict:
        """Settings beyond the model's that change a unit's rows (part of its id)."""
        return {}

    def sized(self, cfg: InferConfig, files: list[FileEntry], ray_job: runtime.JobRay,
              out) -> tuple[InferConfig, dict | None, dict[str, str]]:
        """`cfg` with the size of its units settled, what the job chose and why (None if it did not
        choose), and the properties its first table must record before the job commits (the size,
        for a new output): for inputs that the job groups into units of a size it may choose.
        Writes nothing: a job that stops before any work leaves its output as it was."""
        return cfg, None, {}

    def find_units(self, cfg: InferConfig, files: list[FileEntry], fingerprint: str) -> Inputs:
        raise NotImplementedError

    def describe(self, cfg: InferConfig, found: Inputs) -> str:
        raise NotImplementedError

    def read_stage(self, cfg: InferConfig, spec, pool: runtime.PredictorPool, balance=None) -> dict:
        """The map_batches arguments of the stage before the predictor: read a unit, make model input
        (`balance`: where JPEGs are decoded, under --decode auto)."""
        from recog import preprocess

        return {"fn": preprocess.load_units, "num_cpus": pool.decode_cpus,
                "fn_kwargs": {"opts": cfg.storage, "prep": spec.preprocessing, "sampling": self.sampling(cfg),
                              "defer_jpeg": cfg.decode == "predictor", "balance": balance}}

    def sampling(self, cfg: InferConfig):
        return None

    def pool(self, cluster: dict, cfg: InferConfig, node_cpus: float) -> runtime.PredictorPool:
        return runtime.predictor_pool(cluster, cfg, node_cpus)

    def tables(self, cfg: InferConfig):
        """What a complete unit's labeled rows become: the sink's table maker."""
        return sink.results_table

    def report(self, cfg: InferConfig, manifest: dict) -> list[str]:
        """Lines to print at the end of a run, beyond its summary."""
        return []

    def warnings(self, cfg: InferConfig) -> list[str]:
        """What to warn of at the start: settings that work, but less well."""
        return []


class Images(Media):
    job, noun, row_noun = "infer", "images", "images"
    jpegs = True
    wanted = "tar shards or images (" + ", ".join(sources.IMAGE_EXTS) + ")"

    def sized(self, cfg: InferConfig, files: list[FileEntry], ray_job: runtime.JobRay,
              out) -> tuple[InferConfig, dict | None, dict[str, str]]:
        """--images-per-unit: a unit's id hashes its images, so one output keeps one grouping, or a
        rerun would add rows beside the old instead of resuming. The first run over an output with
        loose images records the size in its results table (auto: chosen from the cluster,
        runtime.choose_unit_size); later runs keep it, and refuse another. (Outputs written before
        recog recorded it grouped loose images otherwise: a rerun labels them once more.)"""
        root = storage.listing_root(cfg.source, files, cfg.input_list is not None)
        loose = len({key for key, ext in (sources.split_key(storage.relative(f.uri, root)) for f in files)
                     if ext in sources.IMAGE_EXTS})
        if not loose:  # shards only: one unit each
            return replace(cfg, images_per_unit=runtime.UNIT_IMAGES[0]) if cfg.images_per_unit == "auto" else cfg, None, {}
        results = table.uri(cfg.output, self.tables(cfg).names[0])
        props = table.properties(results, cfg.storage) or {}
        held = int(props[UNIT_PROPERTY]) if UNIT_PROPERTY in props else None
        chosen, record = None, {}
        if held is not None:
            if cfg.images_per_unit not in ("auto", held):
                raise ConfigError(f"--images-per-unit {cfg.images_per_unit}: {cfg.output} groups loose images {held} a unit "
                                  f"(its results table records it), and another grouping would add their rows again "
                                  f"beside the old ones. Use --images-per-unit {held} (or auto), or another --output")
            size = held
            print(f"[recog] --images-per-unit: {size} loose images a unit, as {cfg.output} was written with",
                  file=out, flush=True)
        else:
            if cfg.images_per_unit == "auto":
                cluster = ray_job.cluster()
                chosen = runtime.choose_unit_size(cluster, self.pool(cluster, cfg, runtime.largest_node_cpus()), loose)
                print(f"[recog] --images-per-unit auto: {chosen.images} loose images a unit ({chosen.describe()}); the "
                      f"output's results table records it, and later runs keep it", file=out, flush=True)
            size = chosen.images if chosen else cfg.images_per_unit
            record = {UNIT_PROPERTY: str(size)}
        return replace(cfg, images_per_unit=size), chosen and asdict(chosen), record

    def find_units(self, cfg: InferConfig, files: list[FileEntry], fingerprint: str) -> Inputs:
        """Units of `cfg.images_per_unit` loose images: a number (`sized` settles auto)."""
        root = storage.listing_root(cfg.source, files, cfg.input_list is not None)
        return sources.image_units(files, root, fingerprint, cfg.images_per_unit)

    def describe(self, cfg: InferConfig, found: Inputs) -> str:
        return f"{found.shards} shard(s), {found.images} loose image(s) -> {len(found.units)} unit(s)"


class Footage(Media):
    job, noun, row_noun = "footage", "frames", "frames"
    wanted = "videos (" + ", ".join(video.VIDEO_EXTS) + ")"
    numbered = False

    def settings(self, cfg: InferConfig) -> dict:
        return {"sampling": cfg.sampling.describe()}

    def sampling(self, cfg: InferConfig):
        return cfg.sampling

    def segment_length(self, cfg: InferConfig) -> Fraction:
        return cfg.sampling.segment_length(cfg.segment_seconds)

    def videos(self, cfg: InferConfig, files: list[FileEntry], sidecars: bool = True):
        """The videos among `files` (key, files by extension), the other files, and each video's
        header (by URI) and sidecar text; headers and sidecars are read here, a few at a time."""
        root = storage.listing_root(cfg.source, files, cfg.input_list is not None)
        videos, ignored = sources.video_samples(files, root)
        uris = [by_ext[sources.pick(by_ext, video.VIDEO_EXTS)] for _, by_ext in videos]
        jsons = [by_ext.get("json") if sidecars else None for _, by_ext in videos]
        opts = cfg.storage
        with ThreadPoolExecutor(16) as pool:  # header reads are small and latency-bound
            infos = dict(zip(uris, pool.map(lambda u: video.probe(u, opts), uris)))
            metas = dict(zip(uris, pool.map(
                lambda u: storage.read_bytes(u, opts).decode("utf-8", "replace") if u else None, jsons)))
        return videos, ignored, infos, metas

    def find_units(self, cfg: InferConfig, files: list[FileEntry], fingerprint: str) -> Inputs:
        """Videos cut into segments."""
        videos, ignored, infos, metas = self.videos(cfg, files)
        units = sources.segment_units(videos, infos, metas, fingerprint, self.segment_length(cfg), cfg.name_pattern,
                                      numbered=self.numbered)
        return Inputs(units=units, videos=len(videos), ignored=ignored)

    def describe(self, cfg: InferConfig, found: Inputs) -> str:
        return (f"{found.videos} video(s) -> {len(found.units)} segment(s) of {float(self.segment_length(cfg)):g} s, "
                f"sampling {cfg.sampling.describe()}")


class Vehicles(Footage):
    """Every frame of every video: vehicles found (motion or a detector), tracked and counted on
    CPU workers (or GPU actors, for a learned detector); their best crops to the predictor."""

    job, noun, row_noun = "vehicles", "crops", "vehicles"
    numbered = True  # a segment's number makes its tracks' ids unique within the video

    def tracking(self, cfg):
        from recog.track import TrackingSettings

        return TrackingSettings(lines=tuple(cfg.line), roi=cfg.roi, detector=cfg.detector,
                                detector_weights=cfg.detector_weights, analyze_fps=cfg.analyze_fps)

    def warnings(self, cfg) -> list[str]:
        from recog.track import COUNTS_HOLD_FPS

        if cfg.analyze_fps is not None and cfg.analyze_fps < COUNTS_HOLD_FPS:
            return [f"--analyze-fps {cfg.analyze_fps:g} is below {COUNTS_HOLD_FPS:g}, the lowest rate at which the "
                    f"counts on the shared clips held (README, How well it counts): expect vehicles missed, most "
                    f"where they are small or close together"]
        return []

    def sized(self, cfg, files: list[FileEntry], ray_job: runtime.JobRay,
              out) -> tuple[InferConfig, dict | None, dict[str, str]]:
        """--segment-seconds: a unit's id holds its segment's bounds, so one output keeps one length, or a
        rerun would add rows beside the old instead of resuming. The first run over an output records
        it in its vehicles table (auto: chosen from the cluster and the videos' total duration,
        runtime.choose_segment_seconds); later runs keep it, and refuse another. An output written
        before recog recorded it keeps the length that was the default then, 60 s."""
        vehicles = table.uri(cfg.output, self.tables(cfg).names[0])
        props = table.properties(vehicles, cfg.storage)
        held = float(props[SEGMENT_PROPERTY]) if props and SEGMENT_PROPERTY in props else None
        if held is None and props is not None:
            held = LEGACY_SEGMENT_SECONDS
        if held is not None:
            if cfg.segment_seconds not in ("auto", held):
                raise ConfigError(f"--segment-seconds {cfg.segment_seconds:g}: {cfg.output} cuts videos into segments "
                                  f"of {held:g} s (its vehicles table records it), and other segments would add "
                                  f"their rows again beside the old ones. Use --segment-seconds {held:g} (or auto), "
                                  f"or another --output")
            print(f"[recog] --segment-seconds: {held:g} s, as {cfg.output} was written with", file=out, flush=True)
            return replace(cfg, segment_seconds=held), None, ({} if SEGMENT_PROPERTY in (props or {}) else
                                                              {SEGMENT_PROPERTY: f"{held:g}"})
        chosen = None
        if cfg.segment_seconds == "auto":
            cluster = ray_job.cluster()
            pool = self.pool(cluster, cfg, runtime.largest_node_cpus())
            slots = int(runtime.decode_slots(cluster, pool)) if cfg.detector == "motion" else pool.actors
            videos, _, infos, _ = self.videos(cfg, files, sidecars=False)
            chosen = runtime.choose_segment_seconds([i.duration_s for i in infos.values()], slots,
                                                    self.tracking(cfg).warmup_s())
            print(f"[recog] --segment-seconds auto: {chosen.seconds:g} s ({chosen.describe()}); the output's vehicles "
                  f"table records it, and later runs keep it", file=out, flush=True)
        seconds = chosen.seconds if chosen else cfg.segment_seconds
        return replace(cfg, segment_seconds=seconds), chosen and asdict(chosen), {SEGMENT_PROPERTY: f"{seconds:g}"}

    def detector_version(self, cfg) -> str:
        """A hash of the tracking settings, and of the detector's weights when it has some."""
        h = hashlib.sha256(json.dumps(self.tracking(cfg).to_dict(), sort_keys=True).encode())
        if cfg.detector_weights:
            from recog.models.weights import read_weights

            h.update(read_weights(cfg.detector_weights, cfg.storage))
        return h.hexdigest()[:12]

    def settings(self, cfg) -> dict:
        return {"tracking": self.tracking(cfg).to_dict(), "detector_version": self.detector_version(cfg)}

    def segment_length(self, cfg) -> Fraction:
        return Fraction(cfg.segment_seconds).limit_denominator(1000)

    def describe(self, cfg, found: Inputs) -> str:
        lines = ", ".join(cfg.line) if cfg.line else "no counting lines"
        rate = "every frame" if cfg.analyze_fps is None else f"every frame decoded, about {cfg.analyze_fps:g} a second analysed"
        return (f"{found.videos} video(s) -> {len(found.units)} segment(s) of {float(self.segment_length(cfg)):g} s "
                f"(+{self.tracking(cfg).warmup_s():g} s warm-up each), {rate}, detector {cfg.detector}; {lines}")

    def read_stage(self, cfg, spec, pool: runtime.PredictorPool, balance=None) -> dict:
        from recog import track

        kwargs = {"opts": cfg.storage, "prep": spec.preprocessing, "settings": self.tracking(cfg).to_dict()}
        if cfg.detector == "motion":
            return {"fn": track.track_units, "num_cpus": pool.decode_cpus, "fn_kwargs": kwargs}
        import ray.data

        return {"fn": track.DetectingTracker, "fn_constructor_kwargs": kwargs, "num_gpus": pool.gpus_per_actor,
                "num_cpus": 1, "compute": ray.data.ActorPoolStrategy(size=pool.actors)}

    def pool(self, cluster: dict, cfg, node_cpus: float) -> runtime.PredictorPool:
        return runtime.crop_classifier_pool(cluster, cfg)

    def tables(self, cfg):
        from recog.vehicles import VehicleTables

        return VehicleTables(cfg.detector, self.detector_version(cfg))

    def report(self, cfg, manifest: dict) -> list[str]:
        """Vehicles (error rows and tracks the classifier called background apart), then crossings per
        line, direction and type, from the files the run committed."""
        import pyarrow.compute as pc

        vehicles = sink.read_run(cfg.output, manifest, cfg.storage, "vehicles").select(["track_id", "label"])
        crossings = sink.read_run(cfg.output, manifest, cfg.storage, "crossings")
        tracked = vehicles.filter(pc.is_valid(vehicles.column("track_id")))
        background = pc.sum(pc.equal(tracked.column("label"), NOT_VEHICLE)).as_py() or 0
        problems = vehicles.num_rows - tracked.num_rows
        lines = [f"{tracked.num_rows - background} vehicle(s), {crossings.num_rows} crossing(s)"
                 + (f"; {background} track(s) of background, not counted" if background else "")
                 + (f"; {problems} video(s) or segment(s) with errors (recog errors lists them)" if problems else "")]
        if crossings.num_rows:
            counts = crossings.group_by(["line", "direction", "label"]).aggregate([("track_id", "count")])
            for r in sorted(counts.to_pylist(), key=lambda r: (r["line"], r["direction"], -r["track_id_count"])):
                lines.append(f"  {r['line']} {r['direction']}: {r['track_id_count']} {r['label'] or '(no label)'}")
        return lines


MEDIA: dict[str, Media] = {"images": Images(), "video": Footage(), "vehicles": Vehicles()}


def fingerprint(cfg: InferConfig, model: dict) -> str:
    """What makes two runs' rows for the same input differ: the model and the job's settings."""
    media = MEDIA[cfg.media]
    settings = {"model": model, "topk": cfg.topk, "min_vehicle_score": cfg.min_vehicle_score, **media.settings(cfg)}
    return json.dumps(settings, sort_keys=True)
