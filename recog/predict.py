"""Predict: the model as a callable class, one instance per Ray actor (GPU or CPU).

The heavy set-up happens once in `__init__`; `__call__` takes a batch of preprocessed rows
(uint8 pixels), classifies the rows without an error, and returns every row with its label,
score and raw top-k classes. Normalisation happens on the device, after the uint8 copy
(recog.models.classifier, which the actor imports when it starts: this module imports no torch,
so a job's driver, which hands the class to Ray Data, does not either).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import time

import numpy as np
import pyarrow as pa

from recog import storage
from recog.models.registry import ModelSpec
from recog.storage import StorageOptions


def top_classes(probs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k most probable classes of each row, best first, and their probabilities: a partial
    sort (argpartition), a fifth of the time of sorting all 1000 ImageNet classes."""
    if k >= probs.shape[1]:
        top = np.argsort(-probs, axis=1)[:, :k]
    else:
        part = np.argpartition(-probs, k - 1, axis=1)[:, :k]
        top = np.take_along_axis(part, np.argsort(-np.take_along_axis(probs, part, axis=1), axis=1), axis=1)
    return top, np.take_along_axis(probs, top, axis=1)


# Where a probe starts and stops, per device kind: a GPU's batch is in the hundreds (on one H100,
# probing from 64 took 8-15 s of a job's start, and 64 was never kept); on a CPU core a
# batch past a few dozen images only adds latency.
PROBE_RANGE = {"cuda": (128, 1024), "cpu": (4, 32)}


def probe_reports(output: str, run_id: str) -> str:
    """Where a run's predictors write what their batch-size probes chose (one JSON file each)."""
    return storage.join(output, "_probes", run_id)


def read_probe_reports(uri: str, opts: StorageOptions) -> list[dict]:
    return [json.loads(storage.read_bytes(f.uri, opts)) for f in storage.list_files(uri + "/", opts)
            if f.uri.endswith(".json")]


def describe_probes(reports: list[dict]) -> list[str]:
    """One line per device kind and choice: `batch 512 on NVIDIA H100 (2 actors): batch 1024 was ...`
    (predictors given a batch size probe nothing)."""
    seen: dict[tuple, int] = {}
    for r in reports:
        if "tried" in r:
            key = (r["batch"], r["device"], r["reason"], tuple(b for b, _, _ in r["tried"]))
            seen[key] = seen.get(key, 0) + 1
    return [f"batch {batch} on {device} ({n} actor(s); tried {', '.join(map(str, tried))}): {reason}"
            for (batch, device, reason, tried), n in seen.items()]


class Predictor:
    """Ray Data map_batches class: preprocessed rows in, labeled rows out (pixels dropped).

    Without a `batch_size` it probes its device for one at start (`probe_batch_size`). It writes
    to `report` (a URI) how long its start took and what the probe chose and why, for the driver
    to print and keep in the run record. With a `balance` (`--decode auto`) it reports how long
    the model and the JPEGs it decodes take."""

    def __init__(self, spec: ModelSpec, opts: StorageOptions, device: str = "auto", topk: int = 5,
                 min_vehicle_score: float | None = 0.1, threads: int | None = None, compile: bool = False,
                 batch_size: int | None = None, report: str | None = None, balance=None):
        from recog.models.classifier import Classifier, device_name, probe_batch_size

        t0 = time.time()  # wall clock: the driver sets these times beside its own
        self.spec, self.batch_size, self.balance = spec, batch_size, balance
        self.classifier = Classifier(spec, opts, device, threads, compile)
        body = {"device": device_name(self.classifier.device), "host": socket.gethostname(),
                "init_at": t0, "model_s": round(time.time() - t0, 3)}
        if batch_size is None:
            t1 = time.time()
            start, limit = PROBE_RANGE[self.classifier.device.type]
            probe = probe_batch_size(self.classifier, spec.preprocessing.input_size, start, limit)
            self.batch_size = probe.batch
            body |= {"probe_s": round(time.time() - t1, 3), **probe.to_dict()}
        body["ready_at"] = time.time()
        if report:
            storage.write_bytes(f"{report}/{body['host']}-{os.getpid()}.json", json.dumps(body).encode(), opts)
        self.label = spec.labeler(min_vehicle_score)
        self.classes = np.asarray(spec.classes, dtype=object)
        self.topk = min(topk, len(spec.classes))
        self.decoding = [0, 0.0]  # JPEGs decoded here in the current block, seconds

    def __call__(self, block: pa.Table) -> pa.Table:
        """A whole block (one or more complete units, so that they reach the writer whole), labeled
        `batch_size` rows per model call."""
        t0, self.decoding = time.perf_counter(), [0, 0.0]
        step = self.batch_size or block.num_rows or 1
        parts = [self.classify(block.slice(i, step)) for i in range(0, block.num_rows, step)]
        out = pa.concat_tables(parts) if parts else self.classify(block)
        if self.balance is not None:
            inputs = block.num_rows - int(block.column("end").to_numpy(zero_copy_only=False).sum())
            decoded, decode_s = self.decoding
            self.balance.predicted(inputs, time.perf_counter() - t0 - decode_s, decoded, decode_s)
        return out

    def classify(self, batch: pa.Table) -> pa.Table:
        """One model call's rows: labeled, pixels dropped."""
        n = batch.num_rows
        errors = batch.column("error").to_pylist()
        ok = np.asarray(batch.column("error").is_null()) & ~np.asarray(batch.column("end").to_numpy(zero_copy_only=False))
        pixels = batch.column("image").combine_chunks().to_numpy()
        deferred, decoded = self._decode_deferred(batch, ok, errors)
        label = np.full(n, None, dtype=object)
        score = np.full(n, np.nan, dtype=np.float32)
        top = np.zeros((0, self.topk), dtype=np.int64)
        top_scores = np.zeros((0, self.topk), dtype=np.float32)
        if ok.any():
            x = self.classifier.upload(pixels if ok.all() else np.ascontiguousarray(pixels[ok]))  # all ok: no copy
            if deferred:
                x[(np.cumsum(ok) - 1)[deferred]] = decoded  # their places among the rows that go in
            probs = self.classifier.probabilities(x)
            label[ok], score[ok] = self.label(probs)
            top, top_scores = top_classes(probs[:, :len(self.classes)], self.topk)  # the model's own classes
        now = dt.datetime.now(dt.timezone.utc)
        out = batch.drop_columns(["image", "encoded"])
        out = out.set_column(out.schema.get_field_index("error"), "error", pa.array(errors, pa.string()))
        # top-k lists for the rows that went in, null for the others: offsets, not a Python list per row
        offsets = pa.array(np.concatenate([[0], np.cumsum(np.where(ok, self.topk, 0))]), pa.int32())
        columns = {
            "label": pa.array(label, pa.string()),
            "score": pa.array(score, pa.float32(), mask=~ok),
            "topk_labels": pa.ListArray.from_arrays(offsets, pa.array(self.classes[top].ravel(), pa.string()), mask=pa.array(~ok)),
            "topk_scores": pa.ListArray.from_arrays(offsets, pa.array(top_scores.ravel(), pa.float32()), mask=pa.array(~ok)),
            "model": pa.array([self.spec.name] * n, pa.string()),
            "model_version": pa.array([self.spec.version] * n, pa.string()),
            "processed_at": pa.array([now] * n, pa.timestamp("ms", tz="UTC")),
        }
        for name, col in columns.items():
            out = out.append_column(name, col)
        return out

    def _decode_deferred(self, batch: pa.Table, ok: np.ndarray, errors: list) -> tuple[list[int], object]:
        """JPEGs the CPU stage left encoded (`--decode predictor`), decoded on this actor's device.
        Rows that turn out not to decode get their error and leave `ok`; returns the rows decoded."""
        encoded = batch.column("encoded")
        if encoded.null_count == len(encoded):
            return [], None
        data = encoded.to_pylist()
        rows = [i for i in np.flatnonzero(ok) if data[i] is not None]
        if not rows:
            return [], None
        t0 = time.perf_counter()
        pixels, failed = self.classifier.decode_jpegs([data[i] for i in rows])
        self.decoding[0] += len(rows)
        self.decoding[1] += time.perf_counter() - t0
        for i, error in zip(rows, failed):
            if error:
                errors[i], ok[i] = error, False
        keep = [j for j, error in enumerate(failed) if error is None]
        return [rows[j] for j in keep], pixels[keep]
