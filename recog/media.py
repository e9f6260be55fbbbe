"""What an inference job reads, as one small object per kind of input: how the listing becomes
units of work, which settings make a unit's result differ (they go into its id), and how the job
talks about what it found. The pipeline is the same for every kind.

- `Images`: tar shards and loose images -> one unit per shard or group of images;
- `Footage`: video files -> one unit per time segment, with the frames the sampling keeps.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

from recog import sources, storage, video
from recog.config import InferConfig
from recog.sources import Inputs
from recog.storage import FileEntry


class Media:
    job: str  # the job's name in its run manifest
    noun: str  # what one row is, for progress lines
    wanted: str  # what the job looks for, for "found nothing"

    def settings(self, cfg: InferConfig) -> dict:
        """Settings beyond the model's that change a unit's rows (part of its id)."""
        return {}

    def find_units(self, cfg: InferConfig, files: list[FileEntry], fingerprint: str) -> Inputs:
        raise NotImplementedError

    def describe(self, cfg: InferConfig, found: Inputs) -> str:
        raise NotImplementedError


class Images(Media):
    job, noun = "infer", "images"
    wanted = "tar shards or images (" + ", ".join(sources.IMAGE_EXTS) + ")"

    def find_units(self, cfg: InferConfig, files: list[FileEntry], fingerprint: str) -> Inputs:
        root = storage.listing_root(cfg.source, files, cfg.input_list is not None)
        return sources.image_units(files, root, fingerprint, cfg.images_per_unit)

    def describe(self, cfg: InferConfig, found: Inputs) -> str:
        return f"{found.shards} shard(s), {found.images} loose image(s) -> {len(found.units)} unit(s)"


class Footage(Media):
    job, noun = "footage", "frames"
    wanted = "videos (" + ", ".join(video.VIDEO_EXTS) + ")"

    def settings(self, cfg: InferConfig) -> dict:
        return {"sampling": cfg.sampling.describe()}

    def find_units(self, cfg: InferConfig, files: list[FileEntry], fingerprint: str) -> Inputs:
        """Videos cut into segments; their headers (and sidecars) are read here, a few at a time."""
        root = storage.listing_root(cfg.source, files, cfg.input_list is not None)
        videos, ignored = sources.video_samples(files, root)
        uris = [by_ext[sources.pick(by_ext, video.VIDEO_EXTS)] for _, by_ext in videos]
        sidecars = [by_ext.get("json") for _, by_ext in videos]
        opts = cfg.storage
        with ThreadPoolExecutor(16) as pool:  # header reads are small and latency-bound
            infos = dict(zip(uris, pool.map(lambda u: video.probe(u, opts), uris)))
            metas = dict(zip(uris, pool.map(
                lambda u: storage.read_bytes(u, opts).decode("utf-8", "replace") if u else None, sidecars)))
        units = sources.segment_units(videos, infos, metas, fingerprint, self.segment_length(cfg), cfg.name_pattern)
        return Inputs(units=units, videos=len(videos), ignored=ignored)

    def segment_length(self, cfg: InferConfig):
        return cfg.sampling.segment_length(cfg.segment_seconds)

    def describe(self, cfg: InferConfig, found: Inputs) -> str:
        return (f"{found.videos} video(s) -> {len(found.units)} segment(s) of {float(self.segment_length(cfg)):g} s, "
                f"sampling {cfg.sampling.describe()}")


MEDIA: dict[str, Media] = {"images": Images(), "video": Footage()}


def fingerprint(cfg: InferConfig, model: dict) -> str:
    """What makes two runs' rows for the same input differ: the model and the job's settings."""
    media = MEDIA[cfg.media]
    settings = {"model": model, "topk": cfg.topk, "min_vehicle_score": cfg.min_vehicle_score, **media.settings(cfg)}
    return json.dumps(settings, sort_keys=True)
