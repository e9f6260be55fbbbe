"""Training: fine-tune a registry model on labeled shards with Ray Train, export a model package.

`run_training(cfg)` is what `recog train` and `python -m jobs.train` call:

1. find the units of the shards and scan their labels once (the class list, unless given; the
   count of samples, for the learning-rate schedule), cached in `<output>/_train/dataset.json`;
2. build Ray Data pipelines: decode + augment (torchvision transforms v2) on CPU tasks for
   training, the inference crop for validation;
3. run a TorchTrainer (`fit`): `workers` DDP replicas (NCCL on GPUs, gloo on CPUs), each fed by its
   shard of the pipelines; AdamW or SGD, warmup then cosine decay, label smoothing, bf16 autocast
   on GPU, optionally the head alone (`freeze_backbone`); a checkpoint every epoch to
   `<output>/_train/`, the best few kept by validation accuracy;
4. export the best epoch as the model package at `<output>` (`export_package`, see recog.models).

A lost worker restarts the group from the last checkpoint (FailureConfig), and running the same
command again continues the run found in `<output>/_train/` instead of starting over.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pyarrow as pa
import torch

from recog import models, runtime, sources, storage, taxonomy
from recog.config import BUILTIN_ARCH, DEFAULT_LR, TrainConfig
from recog.errors import ConfigError, DecodeError, ModelError, StorageError
from recog.models import ModelSpec, named
from recog.models.weights import BUILTIN_WEIGHTS, package_folder
from recog.preprocess import Preprocessing, decode_image
from recog.sidecars import label_of

RUN_NAME = "run"  # the Ray Train run inside <output>/_train/: fixed, so a rerun finds it


def lr_at(step: int, total_steps: int, warmup_steps: int, base_lr: float) -> float:
    """Linear warmup to `base_lr`, then cosine decay to zero at `total_steps`."""
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return base_lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def resized(prep: Preprocessing, image_size: int | None) -> Preprocessing:
    """A preprocessing at another input size if asked (same crop ratio)."""
    if image_size is None:
        return prep
    ratio = prep.resize_size / prep.input_size
    return Preprocessing(image_size, round(image_size * ratio), prep.interpolation, prep.mean, prep.std)


# ---- data --------------------------------------------------------------------------------------

def class_index(classes: tuple[str, ...], types: tuple[str, ...] | None) -> dict[str, int]:
    """Which class each label trains: a class by its name, and a type by the one class of that type
    (a fine-tune of vehicle-types on a van/ folder trains its minibus class); a type that several
    classes share is no label (name the class)."""
    index = {c: i for i, c in enumerate(classes)}
    of_type: dict[str, list[int]] = {}
    for i, t in enumerate(types or classes):
        of_type.setdefault(t, []).append(i)
    return {**{t: ids[0] for t, ids in of_type.items() if len(ids) == 1}, **index}


def scan_labels(units: pa.Table, opts: storage.StorageOptions, label_field: str | None) -> Iterator[dict]:
    """Ray Data stage: the label of every readable sample (no decoding)."""
    for row in units.to_pylist():
        labels = [label_of(r, label_field) for block in sources.read_unit(sources.Unit.from_row(row), opts)
                  for r in block if not r["end"] and r["error"] is None]
        yield {"label": np.array([lab or "" for lab in labels], dtype=object)}


def augmentation(kind: str, size: int):
    """The training transform of uint8 CHW tensors at `size` px: `photos` crops at random from 35 %
    of the picture up; `crops` (a detector's crops of vehicles: small, blurred, compressed, at night
    grey) keeps most of the crop and makes it look like a far, poor one: lower resolution, blur, JPEG,
    colour and grey."""
    from torchvision.transforms import v2

    if kind == "photos":
        return v2.Compose([v2.RandomResizedCrop(size, scale=(0.35, 1.0), antialias=True), v2.RandomHorizontalFlip(),
                           v2.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3)])
    lower = v2.RandomChoice([v2.Compose([v2.Resize(side, antialias=True), v2.Resize(size, antialias=True)])
                             for side in (12, 16, 24, 32, 48)])  # as small as a far vehicle's box, then back up
    return v2.Compose([
        v2.RandomResizedCrop(size, scale=(0.6, 1.0), ratio=(0.8, 1.25), antialias=True), v2.RandomHorizontalFlip(),
        v2.RandomApply([lower], p=0.5), v2.RandomApply([v2.GaussianBlur(5, sigma=(0.3, 1.2))], p=0.3),
        v2.RandomApply([v2.JPEG(quality=(20, 70))], p=0.4),
        v2.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3), v2.RandomGrayscale(p=0.15),
    ])


def examples(units: pa.Table, opts: storage.StorageOptions, prep: Preprocessing, index: dict[str, int],
             label_field: str | None, augment: str | None) -> Iterator[dict]:
    """Ray Data stage: decoded (and, for training, augmented: `augment` names the kind) uint8 images
    with class indices (`index`: label -> class). Samples that do not decode or carry no known
    label are left out."""
    # Training crops at random from the full resized square; validation uses the inference crop.
    source = Preprocessing(prep.resize_size, prep.resize_size, prep.interpolation) if augment else prep
    transform = augmentation(augment, prep.input_size) if augment else None
    for row in units.to_pylist():
        for block in sources.read_unit(sources.Unit.from_row(row), opts):
            images, labels = [], []
            for r in block:
                label = label_of(r, label_field) if not r["end"] and r["error"] is None else None
                if label not in index:
                    continue
                try:
                    pixels = decode_image(r["data"], source)[0]
                except DecodeError:
                    continue
                if transform:  # random per process and call: every epoch sees other crops
                    pixels = transform(torch.from_numpy(pixels).permute(2, 0, 1)).permute(1, 2, 0).numpy()
                images.append(pixels)
                labels.append(index[label])
            if images:
                yield {"image": np.stack(images), "label": np.asarray(labels, dtype=np.int64)}


def describe_data(cfg: TrainConfig, units: list[sources.Unit]) -> dict:
    """Class names and sample counts of the training shards (one pass, no decoding)."""
    counts: dict[str, int] = {}
    ds = runtime.units_dataset(units).map_batches(scan_labels, batch_size=1, batch_format="pyarrow",
                                            fn_kwargs={"opts": cfg.storage, "label_field": cfg.label_field})
    for batch in ds.iter_batches(batch_format="numpy", batch_size=None):
        for label in batch["label"]:
            counts[label] = counts.get(label, 0) + 1
    unlabeled = counts.pop("", 0)
    return {"counts": dict(sorted(counts.items())), "unlabeled": unlabeled}


def build_datasets(cfg: TrainConfig, train_units, val_units, prep: Preprocessing, index: dict[str, int]) -> dict:
    """The training pipeline (decode + augment on CPU tasks) and the validation pipeline."""
    common = {"opts": cfg.storage, "prep": prep, "index": index, "label_field": cfg.label_field}
    datasets = {"train": runtime.units_dataset(train_units).map_batches(
        examples, batch_size=1, batch_format="pyarrow", fn_kwargs={**common, "augment": cfg.augment})}
    if val_units:
        datasets["val"] = runtime.units_dataset(val_units).map_batches(
            examples, batch_size=1, batch_format="pyarrow", fn_kwargs={**common, "augment": None})
    return datasets


# ---- the loop on each worker ------------------------------------------------------------------

def _save_state(directory: str, state: dict) -> None:
    torch.save(state, os.path.join(directory, "state.pt"))


def _load_state(checkpoint) -> dict:
    with checkpoint.as_directory() as d:
        return torch.load(os.path.join(d, "state.pt"), map_location="cpu", weights_only=True)


def build_network(spec: ModelSpec, cfg: TrainConfig, start: ModelSpec | None = None) -> tuple[torch.nn.Module, list[torch.nn.Module]]:
    """The architecture with its pretrained weights and a new head (or, from a package `start`, its
    weights and its head, grown by the classes it lacks), and the parts of it that stay frozen
    (`--freeze-backbone`, `--frozen-stages`): the caller keeps those in eval mode."""
    arch = models.ARCHITECTURES[spec.arch]
    net = arch.build(len(spec.classes))
    if start is None:
        models.init_from(net, models.pretrained_state(spec.arch, cfg.init_weights, cfg.storage))
    else:
        models.init_from(net, models.own_state(start, cfg.storage, like=arch.build(len(start.classes)).state_dict()))
    return net, models.frozen_modules(net, cfg.frozen_stages, cfg.freeze_backbone)


def make_optimizer(params: list, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


@dataclass
class Schedule:
    """Where training stands: the learning rate of each step, and how far it got."""

    total_steps: int
    warmup_steps: int
    base_lr: float
    step: int = 0

    def lr(self) -> float:
        return lr_at(self.step, self.total_steps, self.warmup_steps, self.base_lr)


def train_one_epoch(model, optimizer, loss_fn, batches, schedule: Schedule, normalize, amp: bool) -> tuple[int, float]:
    """One pass over this worker's batches; returns (samples seen, summed loss)."""
    seen, loss_sum = 0, 0.0
    for batch in batches:
        for group in optimizer.param_groups:
            group["lr"] = schedule.lr()
        with torch.autocast(batch["image"].device.type, dtype=torch.bfloat16, enabled=amp):
            loss = loss_fn(model(normalize(batch["image"])).float(), batch["label"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step += 1
        seen += len(batch["label"])
        loss_sum += loss.item() * len(batch["label"])
    return seen, loss_sum


@torch.inference_mode()
def evaluate(model, loss_fn, batches, normalize, amp: bool) -> tuple[int, int, float]:
    """Accuracy on this worker's validation batches: (correct, samples, summed loss)."""
    model.eval()
    correct, n, loss_sum = 0, 0, 0.0
    for batch in batches:
        with torch.autocast(batch["image"].device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(normalize(batch["image"])).float()
        correct += (logits.argmax(dim=1) == batch["label"]).sum().item()
        n += len(batch["label"])
        loss_sum += loss_fn(logits, batch["label"]).item() * len(batch["label"])
    return correct, n, loss_sum


def train_loop(config: dict) -> None:
    """One DDP replica: build the model, resume if a checkpoint exists, then per epoch train,
    validate, and report the metrics with a checkpoint."""
    import ray.train
    import ray.train.torch

    from recog.models.classifier import normalizer, to_model_input

    logging.getLogger().setLevel(logging.WARNING)  # Ray Train's per-report INFO lines; ours are prints
    cfg, spec = TrainConfig(**config["cfg"]), ModelSpec.from_dict(config["spec"])
    start = ModelSpec.from_dict(config["start"]) if config["start"] else None  # --init: resolved by the driver
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.manual_seed(cfg.seed + rank)
    torch.set_num_threads(config["threads"])
    device = ray.train.torch.get_device()

    net, frozen = build_network(spec, cfg, start)
    # what runs in eval mode while training: the frozen stages, and for a fine-tune of a package
    # (a camera's few crops) every batch norm, whose statistics it keeps (models.batch_norms)
    steady = frozen + (models.batch_norms(net) if start else [])
    steps_per_epoch = max(1, math.ceil(config["samples"] / (cfg.batch_size * world)))
    schedule = Schedule(steps_per_epoch * cfg.epochs, max(1, int(steps_per_epoch * cfg.warmup_epochs)), cfg.lr)
    start_epoch, history = 0, []
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:
        state = _load_state(checkpoint)
        net.load_state_dict(state["model"])
        start_epoch, schedule.step, history = state["epoch"] + 1, state["step"], state["history"]
    model = ray.train.torch.prepare_model(net.to(memory_format=torch.channels_last))
    optimizer = make_optimizer([p for p in model.parameters() if p.requires_grad], cfg)
    if checkpoint:
        optimizer.load_state_dict(state["optimizer"])
        if rank == 0:
            print(f"[train] resuming after epoch {start_epoch} (step {schedule.step}) from {checkpoint.path}", flush=True)

    mean, std = normalizer(spec.preprocessing, device)
    normalize = lambda pixels: to_model_input(pixels, mean, std)  # noqa: E731
    weights = torch.tensor(config["class_weights"], device=device) if config.get("class_weights") else None
    loss_fn = torch.nn.CrossEntropyLoss(weight=weights, label_smoothing=cfg.label_smoothing)
    amp = device.type == "cuda"
    dtypes = {"image": torch.uint8, "label": torch.int64}
    train_shard = ray.train.get_dataset_shard("train")
    val_shard = ray.train.get_dataset_shard("val") if config["has_val"] else None
    join = model.join if isinstance(model, torch.nn.parallel.DistributedDataParallel) else contextlib.nullcontext

    for epoch in range(start_epoch, cfg.epochs):
        # Frozen parts run in inference mode: their batch-norm statistics stay as pretrained (what
        # lets inference share them with the ImageNet head).
        model.train()
        for module in steady:
            module.eval()
        t0 = time.perf_counter()
        with join():
            batches = train_shard.iter_torch_batches(batch_size=cfg.batch_size, local_shuffle_buffer_size=4 * cfg.batch_size,
                                                     dtypes=dtypes, device=device)
            seen, loss_sum = train_one_epoch(model, optimizer, loss_fn, batches, schedule, normalize, amp)
        train_seconds = time.perf_counter() - t0
        correct, val_n, val_loss = evaluate(model, loss_fn, val_shard.iter_torch_batches(
            batch_size=cfg.batch_size, dtypes=dtypes, device=device), normalize, amp) if val_shard else (0, 0, 0.0)
        totals = torch.tensor([seen, loss_sum, correct, val_n, val_loss], dtype=torch.float64)
        if world > 1:
            torch.distributed.all_reduce(totals)
        seen_all, loss_all, correct, val_n, val_loss = totals.tolist()
        metrics = {
            "epoch": epoch, "step": schedule.step, "lr": optimizer.param_groups[0]["lr"],
            "train_loss": loss_all / max(seen_all, 1), "train_samples": int(seen_all),
            "samples_per_s_per_worker": seen / train_seconds if train_seconds else 0.0,
            "val_acc": correct / val_n if val_n else None, "val_loss": val_loss / val_n if val_n else None,
        }
        history.append(metrics)
        if rank == 0:
            val = f" val_acc {metrics['val_acc']:.3f}" if val_n else ""
            print(f"[train] epoch {epoch + 1}/{cfg.epochs} loss {metrics['train_loss']:.4f}{val} "
                  f"{metrics['samples_per_s_per_worker']:.1f} samples/s/worker", flush=True)
        _report(metrics, rank, {"model": (model.module if hasattr(model, "module") else model).state_dict(),
                                "optimizer": optimizer.state_dict(), "epoch": epoch, "step": schedule.step,
                                "history": history})


def _report(metrics: dict, rank: int, state: dict) -> None:
    """Report an epoch's metrics to Ray Train; rank 0 adds the checkpoint."""
    import ray.train
    from ray.train import Checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        report = {k: v for k, v in metrics.items() if v is not None}
        if rank == 0:
            _save_state(tmp, state)
            ray.train.report(report, checkpoint=Checkpoint.from_directory(tmp))
        else:
            ray.train.report(report)


# ---- the driver ---------------------------------------------------------------------------------

def training_units(cfg: TrainConfig, uri: str, fingerprint: str) -> list[sources.Unit]:
    """The units of labeled shards (or loose images) at `uri`."""
    files = storage.list_files(uri, cfg.storage, max_attempts=1)
    if not files:
        raise StorageError(f"{uri}: no shards found")
    units = sources.image_units(files, storage.listing_root(uri, files), fingerprint).units
    if not units:
        raise StorageError(f"{uri}: no tar shards or images found")
    return units


def _train_dir(cfg: TrainConfig) -> str:
    return storage.join(cfg.output, "_train")


def _dataset_info(cfg: TrainConfig, units: list[sources.Unit], out) -> dict:
    """Classes and counts of the training data, from the cache in _train/ when it describes these shards."""
    cache = storage.join(_train_dir(cfg), "dataset.json")
    key = {"train": cfg.train, "units": sorted(u.unit_id for u in units), "label_field": cfg.label_field}
    try:
        cached = json.loads(storage.read_bytes(cache, cfg.storage))
        if cached.get("key") == key:
            return cached
    except FileNotFoundError:
        pass
    print(f"[train] scanning the labels of {len(units)} unit(s)", file=out, flush=True)
    info = {"key": key, **describe_data(cfg, units)}
    storage.write_bytes(cache, json.dumps(info, indent=1).encode(), cfg.storage)
    return info


def run_training(cfg: TrainConfig, out=None) -> dict:
    """Train, checkpoint, export the package (and register it, with --register); return its model.json."""
    out = out or sys.stdout  # looked up per call: a caller may have replaced it since import
    print(f"[train] {json.dumps(cfg.to_dict())}", file=out, flush=True)
    opts = cfg.storage
    storage.check_access(cfg.train, cfg.output, opts)
    if cfg.register:
        named.require()  # not after an hour of training
    start = models.resolve(cfg.init, opts=opts) if cfg.init else None  # once, here: workers never ask MLflow
    if start is not None:
        cfg = fine_tune_recipe(cfg, start)
        print(f"[train] --init {cfg.init}: {start.name} {start.version}, {start.arch} at {cfg.image_size} px, classes "
              f"{list(start.classes)}, " + (f"stem and {cfg.frozen_stages} stage(s) frozen" if cfg.frozen_stages else
                                            "every layer trained") + f", batch norms kept, lr {cfg.lr:.3g}", file=out, flush=True)
    cfg = dataclasses.replace(cfg, augment=cfg.augment or "photos", lr=cfg.lr or DEFAULT_LR)
    if cfg.arch not in models.ARCHITECTURES:
        raise ModelError(f"unknown architecture {cfg.arch!r}; known: {', '.join(sorted(models.ARCHITECTURES))}")
    if start is None:
        models.pretrained_state(cfg.arch, cfg.init_weights, opts)  # fail now, not on every worker, if it cannot load
    train_units = training_units(cfg, cfg.train, "train")
    val_units = training_units(cfg, cfg.val, "val") if cfg.val else []
    if cfg.restart:
        _forget_run(cfg)
    with runtime.ray_messages("train", cfg.verbose, out):
        runtime.init_ray(cfg.ray_address, dashboard=True)
        data = _dataset_info(cfg, train_units, out)
        spec = training_spec(cfg, data["counts"], start)
        index = class_index(spec.classes, spec.types)
        samples = sum(n for label, n in data["counts"].items() if label in index)
        if len(spec.classes) < 2 or samples == 0:
            raise StorageError(f"{cfg.train}: found {len(spec.classes)} class(es) with {samples} labeled sample(s); "
                               "need labels (.cls files, --label-field, or a folder per class) for at least two classes")
        _check_same_run(cfg, spec)
        t0 = time.monotonic()
        class_counts = Counter()  # samples per class: a label counts for the class it trains
        for label, n in data["counts"].items():
            if label in index:
                class_counts[spec.classes[index[label]]] += n
        result = fit(cfg, spec, start, samples, class_counts, build_datasets(cfg, train_units, val_units, spec.preprocessing, index),
                     out, f"{len(train_units)} train unit(s), {len(val_units)} val unit(s)")
    package = export_package(cfg, spec, start, result, bool(val_units), data, time.monotonic() - t0, out)
    if cfg.register:
        version = named.register(cfg.register, cfg.output, package)
        print(f"[train] registered as {version.name} version {version.version} in {named.tracking_uri()}: "
              f"--model models:/{version.label}; to make it the current one, e.g.: "
              f"recog models alias {version.name} {version.version} champion", file=out, flush=True)
    return package


def fine_tune_recipe(cfg: TrainConfig, start: ModelSpec) -> TrainConfig:
    """`cfg` with what the package `start` was trained as (--init): its architecture, input size,
    frozen part, augmentation, class balance and learning rate per sample (unless given here), and
    its classes' types under the given --types."""
    training = models.read_package(package_folder(start), cfg.storage).get("training", {}).get("config", {})
    if cfg.arch not in (start.arch, BUILTIN_ARCH):
        raise ConfigError(f"--init {cfg.init} is a {start.arch} model: --arch {cfg.arch} does not apply")
    frozen = next((n for n in (cfg.frozen_stages, training.get("frozen_stages"), start.shared_stages) if n is not None), None)
    own = [f"{c}={t}" for c, t in zip(start.classes, start.types or start.classes) if c != t]
    given = {pair.split("=", 1)[0] for pair in cfg.types or ()}
    # the package's learning rate per sample (the linear scaling rule, Goyal et al. 2017): at 24x that
    # (--lr 3e-3 at batch 8) a camera's hundred crops collapsed the model to one class (tests/integration/test_review.py)
    lr = cfg.lr or training.get("lr", DEFAULT_LR) * cfg.batch_size / training.get("batch_size", cfg.batch_size)
    return dataclasses.replace(cfg, arch=start.arch, image_size=cfg.image_size or start.preprocessing.input_size, lr=lr,
                               frozen_stages=frozen, freeze_backbone=cfg.freeze_backbone or bool(training.get("freeze_backbone")),
                               augment=cfg.augment or training.get("augment"),
                               balance_classes=cfg.balance_classes or bool(training.get("balance_classes")),
                               types=tuple(p for p in own if p.split("=", 1)[0] not in given) + tuple(cfg.types or ()) or None)


def training_spec(cfg: TrainConfig, counts: dict[str, int], start: ModelSpec | None = None) -> ModelSpec:
    """The spec of the model being trained, its classes those of --classes or of the data (`counts`:
    samples per label). Trained from the built-in ImageNet weights with the early stages frozen, it
    keeps the ImageNet head beside its own (taxonomy "two-heads") and its package stores only the
    rest (`base`). A fine-tune of a package (`start`) keeps its classes, then the labels the data
    adds (a label that names one of its classes' types trains that class), its taxonomy, and its
    base for as many stages as stay frozen."""
    if start is not None:
        known = class_index(start.classes, start.types)
        classes = [*start.classes, *sorted(label for label in counts if label not in known)]
    else:
        classes = list(cfg.classes) if cfg.classes else sorted(counts)
    mapping = dict(pair.split("=", 1) for pair in cfg.types or ())
    unknown = sorted(set(mapping) - set(classes)) + sorted(set(mapping.values()) - set(taxonomy.LABELS))
    if unknown or any("=" not in pair for pair in cfg.types or ()):
        raise ConfigError(f"--types {','.join(cfg.types)}: give CLASS=TYPE pairs, classes from {', '.join(classes)}, "
                          f"types from {', '.join(taxonomy.LABELS)} (not {', '.join(unknown)})")
    types = tuple(mapping.get(c, c) for c in classes) if mapping else None
    name = cfg.name or cfg.output.rstrip("/").rsplit("/", 1)[-1]
    # A model with a not_vehicle class of its own judges vehicle or not alone; without one, a model
    # whose early stages are the built-in ImageNet weights' also keeps the ImageNet head beside its
    # own, on the same backbone pass, for that judgement ("two-heads").
    judges_itself = taxonomy.NOT_VEHICLE in (types or classes)
    if start is not None:
        # the stages frozen now are the base's as far as the package's were: those two heads can share
        shared = min(cfg.frozen_stages or 0, start.shared_stages or 0) if start.base else 0
        return ModelSpec(name, start.arch, tuple(classes), start.taxonomy if shared and not judges_itself else "identity",
                         resized(start.preprocessing, cfg.image_size), weights="", version="", types=types,
                         base=start.base if shared else None, shared_stages=shared or None)
    shares = cfg.frozen_stages is not None and cfg.init_weights is None and cfg.arch == models.BUILTIN_ARCH
    return ModelSpec(name, cfg.arch, tuple(classes), "two-heads" if shares and not judges_itself else "identity",
                     resized(models.ARCHITECTURES[cfg.arch].preprocessing(), cfg.image_size),
                     weights="", version="", types=types,
                     base=BUILTIN_WEIGHTS if shares else None, shared_stages=cfg.frozen_stages if shares else None)


def class_weights(counts: dict[str, int], classes: list[str]) -> list[float]:
    """Loss weights 1/sqrt(share of the samples), scaled to 1 on average over the samples: a class
    of a hundred samples beside thousands still counts, without the noise of full inverse weights."""
    n = [max(1, counts.get(c, 0)) for c in classes]
    w = [1 / (k / sum(n)) ** 0.5 for k in n]
    mean = sum(wi * k for wi, k in zip(w, n)) / sum(n)
    return [round(wi / mean, 4) for wi in w]


def fit(cfg: TrainConfig, spec: ModelSpec, start: ModelSpec | None, samples: int, counts: dict[str, int], datasets: dict,
        out, units: str):
    """Run the TorchTrainer: `cfg.workers` DDP replicas, checkpoints to <output>/_train/."""
    import ray
    from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    workers = runtime.training_workers(ray.cluster_resources(), cfg, runtime.largest_node_cpus())
    print(f"[train] {samples} samples in {len(spec.classes)} classes {list(spec.classes)}; {units}; "
          f"{workers.describe(cfg.workers)}", file=out, flush=True)
    fs, path = storage.filesystem(_train_dir(cfg), cfg.storage)
    os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")  # worker prints once, to stdout
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={"cfg": cfg.to_dict(), "spec": spec.to_dict(), "start": start and start.to_dict(), "samples": samples,
                           "has_val": "val" in datasets, "threads": workers.threads,
                           "class_weights": class_weights(counts, list(spec.classes)) if cfg.balance_classes else None},
        scaling_config=ScalingConfig(num_workers=cfg.workers, use_gpu=workers.use_gpu,
                                     resources_per_worker=workers.resources),
        run_config=RunConfig(
            name=RUN_NAME, storage_path=path, storage_filesystem=fs if storage.is_s3(cfg.output) else None,
            checkpoint_config=CheckpointConfig(num_to_keep=3,
                                               checkpoint_score_attribute="val_acc" if "val" in datasets else "epoch"),
            failure_config=FailureConfig(max_failures=cfg.max_failures),
            logging_config=LoggingConfig(log_level="WARNING"),  # recog prints a line per epoch
        ),
        datasets=datasets,
    )
    return trainer.fit()


def export_package(cfg: TrainConfig, spec: ModelSpec, start: ModelSpec | None, result, has_val: bool, data: dict,
                   seconds: float, out) -> dict:
    """Write the best epoch (by validation accuracy, else the last) as the model package at --output."""
    best = result.get_best_checkpoint("val_acc", "max") if has_val else result.checkpoint
    state = _load_state(best)
    history = _load_state(result.checkpoint)["history"]  # every epoch, also those after the best
    metrics = state["history"][-1]
    weights = state["model"]
    if spec.base:  # only what training changed, in half precision: the base ships elsewhere
        net = models.ARCHITECTURES[spec.arch].build(len(spec.classes))
        net.load_state_dict(weights)
        weights = {k: v.half() if v.is_floating_point() else v
                   for k, v in models.trainable_state(net, models.frozen_modules(net, spec.shared_stages)).items()}
    about = {"data_source": cfg.data_source} if cfg.data_source else {}
    init = {"init": {"model": start.name, "version": start.version}} if start else {}  # what it was fine-tuned from
    packaged = models.save_package(cfg.output, spec, weights, {**about, "training": {
        "config": cfg.to_dict(), **init, "best_epoch": state["epoch"], "best": metrics, "history": history,
        "classes_found": data["counts"], "elapsed_s": round(seconds, 1),
    }}, cfg.storage)
    acc = f", val_acc {metrics['val_acc']:.3f}" if metrics.get("val_acc") is not None else ""
    print(f"[train] model package {cfg.output} (version {packaged.version}): best epoch {state['epoch'] + 1}{acc}",
          file=out, flush=True)
    return models.read_package(cfg.output, cfg.storage)


def _run_fingerprint(spec: ModelSpec) -> dict:
    return {"arch": spec.arch, "classes": list(spec.classes), "input_size": spec.preprocessing.input_size}


def _check_same_run(cfg: TrainConfig, spec: ModelSpec) -> None:
    """Resuming only makes sense for the same model: refuse a run in --output for another one."""
    marker = storage.join(_train_dir(cfg), "run.json")
    try:
        earlier = json.loads(storage.read_bytes(marker, cfg.storage))
    except FileNotFoundError:
        storage.write_bytes(marker, json.dumps(_run_fingerprint(spec)).encode(), cfg.storage)
        return
    if earlier != _run_fingerprint(spec):
        raise ModelError(f"{cfg.output} holds a training run of another model ({earlier}); "
                                "pass --restart to replace it, or choose another --output")


def _forget_run(cfg: TrainConfig) -> None:
    fs, path = storage.filesystem(_train_dir(cfg), cfg.storage)
    try:
        fs.delete_dir_contents(path, missing_dir_ok=True)
    except OSError as e:
        raise storage.explain(e, _train_dir(cfg), cfg.storage) from e
