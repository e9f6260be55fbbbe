"""Job configurations: one dataclass per job, built from the command line, printed at start and
stored in the run manifest. They hold no secrets: credentials come from each process's environment.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from recog.storage import StorageOptions
from recog.video import Sampling


@dataclass(frozen=True)
class InferConfig:
    input: str  # prefix or object to read; or, with input_list, a file listing the objects
    output: str  # prefix for the Parquet files and the run manifest
    input_list: bool = False
    endpoint_url: str | None = None  # S3-compatible endpoint; default AWS_ENDPOINT_URL or AWS
    model: str = "efficientnet_lite0"
    weights: str | None = None  # checkpoint for a non-built-in model (local or s3://)
    classes: tuple[str, ...] | None = None  # class names of such a checkpoint, if not ImageNet's
    device: str = "auto"  # auto | cpu | cuda
    actors: int | None = None  # predictor actors; default: one per GPU, or from the CPU count
    cpus_per_actor: float | None = None  # default: from the CPU count
    batch_size: int | None = None  # images per model call; default by device
    decode: str = "workers"  # JPEGs decoded by the CPU "workers", or by the "predictor" on its device (nvJPEG)
    compile: bool = False  # torch.compile the model in each predictor actor
    topk: int = 5
    min_vehicle_score: float = 0.1  # vehicle types must hold this much probability, else not_vehicle
    images_per_unit: int = 256  # loose images per output file
    media: str = "images"  # "images": tar shards and loose images; "video": video files
    fps: float | None = 1.0  # video: frames per second of video time (or every_n, or keyframes)
    every_n: int | None = None
    keyframes: bool = False
    segment_seconds: float = 60.0  # video: length of the pieces a video is cut into
    name_pattern: str | None = None  # video: e.g. "{camera}_{start:%Y%m%dT%H%M%S}.mp4"
    ray_address: str | None = None  # None: RAY_ADDRESS, else a private local Ray
    force: bool = False  # redo units an earlier run of the same job committed

    @property
    def sampling(self) -> Sampling:
        return Sampling(self.fps if not (self.every_n or self.keyframes) else None, self.every_n, self.keyframes)

    @property
    def storage(self) -> StorageOptions:
        return StorageOptions.from_env(self.endpoint_url)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class TrainConfig:
    train: str  # labeled shards: prefix, file, or pattern like s3://ds/train-{000..031}.tar
    output: str  # where the model package goes (checkpoints under <output>/_train/)
    val: str | None = None  # labeled shards to pick the best epoch by; none: the last epoch
    endpoint_url: str | None = None
    arch: str = "efficientnet_lite0"
    init_weights: str | None = None  # ImageNet checkpoint or package to start from (built in for lite0)
    classes: tuple[str, ...] | None = None  # default: every label found in the training shards
    label_field: str | None = None  # take labels from this .json key instead of .cls
    image_size: int | None = None  # model input size; default the architecture's (224)
    epochs: int = 10
    batch_size: int = 64  # per worker
    optimizer: str = "adamw"  # adamw | sgd
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    freeze_backbone: bool = False  # train the new head only
    workers: int = 2
    gpus_per_worker: float = 0.0
    cpus_per_worker: float | None = None  # default: from the cluster, leaving CPUs for data loading
    max_failures: int = 3  # worker losses survived (each restarts from the last checkpoint)
    restart: bool = False  # ignore an earlier run's checkpoints in --output
    seed: int = 0
    ray_address: str | None = None

    @property
    def storage(self) -> StorageOptions:
        return StorageOptions.from_env(self.endpoint_url)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
