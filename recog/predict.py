"""Predict: the model as a callable class, one instance per Ray actor (GPU or CPU).

The heavy set-up happens once in `__init__`; `__call__` takes a batch of preprocessed rows
(uint8 pixels), classifies the rows without an error, and returns every row with its label,
score and raw top-k classes. Normalisation happens on the device, after the uint8 copy.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import torch

from recog import models, preprocess, taxonomy
from recog.models import ModelSpec
from recog.storage import StorageOptions


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def normalizer(prep, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std scaled to uint8 range: x_norm = (x_uint8 - 255*mean) / (255*std)."""
    mean = torch.tensor(prep.mean, device=device).view(1, 3, 1, 1) * 255
    std = torch.tensor(prep.std, device=device).view(1, 3, 1, 1) * 255
    return mean, std


def to_model_input(pixels: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """(N, H, W, 3) uint8 on the device -> normalised float NCHW, channels-last in memory."""
    x = pixels.permute(0, 3, 1, 2).float().sub_(mean).div_(std)
    return x.contiguous(memory_format=torch.channels_last)


class Classifier:
    """A model on a device that turns uint8 NHWC pixels into class probabilities."""

    def __init__(self, spec: ModelSpec, opts: StorageOptions, device: str = "auto", threads: int | None = None,
                 compile: bool = False):
        if threads:
            torch.set_num_threads(threads)
        self.device = pick_device(device)
        self.model = models.build(spec, opts).to(self.device, memory_format=torch.channels_last)
        if compile:
            self.model = torch.compile(self.model)
        self.mean, self.std = normalizer(spec.preprocessing, self.device)
        self.amp = self.device.type == "cuda"

    def upload(self, pixels: np.ndarray) -> torch.Tensor:
        """uint8 pixels onto the device: a quarter of the bytes a float copy would be."""
        x = torch.from_numpy(pixels)
        if self.device.type == "cuda":
            x = x.pin_memory().to(self.device, non_blocking=True)
        return x

    @torch.inference_mode()
    def probabilities(self, pixels: np.ndarray | torch.Tensor) -> np.ndarray:
        """(N, H, W, 3) uint8, in memory or on the device -> (N, classes) float32 probabilities."""
        x = self.upload(pixels) if isinstance(pixels, np.ndarray) else pixels
        x = to_model_input(x, self.mean, self.std)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            logits = self.model(x)
        return torch.softmax(logits.float(), dim=1).cpu().numpy()


class Predictor:
    """Ray Data map_batches class: preprocessed rows in, labeled rows out (pixels dropped)."""

    def __init__(self, spec: ModelSpec, opts: StorageOptions, device: str = "auto", topk: int = 5,
                 min_vehicle_score: float = 0.1, threads: int | None = None, compile: bool = False):
        self.spec = spec
        self.min_vehicle_score = min_vehicle_score
        self.classifier = Classifier(spec, opts, device, threads, compile)
        self.matrix, self.labels = spec.label_matrix()
        self.classes = np.asarray(spec.classes, dtype=object)
        self.topk = min(topk, len(spec.classes))

    def __call__(self, batch: pa.Table) -> pa.Table:
        n = batch.num_rows
        errors = batch.column("error").to_pylist()
        ok = np.asarray(batch.column("error").is_null()) & ~np.asarray(batch.column("end").to_numpy(zero_copy_only=False))
        pixels = batch.column("image").combine_chunks().to_numpy()
        deferred, decoded = self._decode_deferred(batch, ok, errors)
        label = np.full(n, None, dtype=object)
        score = np.full(n, np.nan, dtype=np.float32)
        top_labels, top_scores = [None] * n, [None] * n
        if ok.any():
            x = self.classifier.upload(np.ascontiguousarray(pixels[ok]))
            if deferred:
                x[(np.cumsum(ok) - 1)[deferred]] = decoded  # their places among the rows that go in
            probs = self.classifier.probabilities(x)
            names, best = taxonomy.labels_from_probs(probs, self.matrix, self.labels, self.min_vehicle_score)
            top = np.argsort(-probs, axis=1)[:, : self.topk]
            rows = np.flatnonzero(ok)
            label[rows] = names
            score[rows] = best
            for j, i in enumerate(rows):
                top_labels[i] = self.classes[top[j]].tolist()
                top_scores[i] = probs[j, top[j]].tolist()
        now = dt.datetime.now(dt.timezone.utc)
        out = batch.drop_columns(["image", "encoded"])
        out = out.set_column(out.schema.get_field_index("error"), "error", pa.array(errors, pa.string()))
        columns = {
            "label": pa.array(label, pa.string()),
            "score": pa.array(score, pa.float32(), mask=~ok),
            "topk_labels": pa.array(top_labels, pa.list_(pa.string())),
            "topk_scores": pa.array(top_scores, pa.list_(pa.float32())),
            "model": pa.array([self.spec.name] * n, pa.string()),
            "model_version": pa.array([self.spec.version] * n, pa.string()),
            "processed_at": pa.array([now] * n, pa.timestamp("ms", tz="UTC")),
        }
        for name, col in columns.items():
            out = out.append_column(name, col)
        return out

    def _decode_deferred(self, batch: pa.Table, ok: np.ndarray, errors: list) -> tuple[list[int], torch.Tensor | None]:
        """JPEGs the CPU stage left encoded (`--decode predictor`), decoded on this actor's device.
        Rows that turn out not to decode get their error and leave `ok`; returns the rows decoded."""
        encoded = batch.column("encoded")
        if encoded.null_count == len(encoded):
            return [], None
        data = encoded.to_pylist()
        rows = [i for i in np.flatnonzero(ok) if data[i] is not None]
        if not rows:
            return [], None
        pixels, failed = preprocess.decode_jpegs([data[i] for i in rows], self.spec.preprocessing, self.classifier.device)
        for i, error in zip(rows, failed):
            if error:
                errors[i], ok[i] = error, False
        keep = [j for j, error in enumerate(failed) if error is None]
        return [rows[j] for j in keep], pixels[keep]
