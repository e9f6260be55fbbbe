"""Evaluation: run a model over labeled shards and score its labels against theirs.

`recog eval --model M --data D` runs the inference job (same code, same output), then compares
each row with the sample's own label (its `.cls`, or a key of its `.json`): the model's top class
when the data is labeled with the model's own classes (a fine-tune's validation set), else the
vehicle label recog gives (data labeled with vehicle types): top-1 accuracy,
precision and recall per class, and the confusion matrix, printed and saved beside the results
in `_eval/metrics.json` and `_eval/confusion.parquet` (under `_`, so readers of the results skip them).
"""

from __future__ import annotations

import io
import json
import sys

import pyarrow as pa
import pyarrow.parquet as pq

from recog import models, sink, storage
from recog.config import InferConfig
from recog.errors import ModelError
from recog.sidecars import label_of


def scores(truth: list[str], predicted: list[str]) -> dict:
    """Accuracy, per-class precision/recall/support and the confusion matrix (rows: truth)."""
    labels = sorted(set(truth) | set(predicted))
    at = {lab: i for i, lab in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for t, p in zip(truth, predicted):
        matrix[at[t]][at[p]] += 1
    per_class = {}
    for lab, i in at.items():
        tp = matrix[i][i]
        predicted_as = sum(row[i] for row in matrix)
        support = sum(matrix[i])
        per_class[lab] = {"precision": tp / predicted_as if predicted_as else None,
                          "recall": tp / support if support else None, "support": support}
    correct = sum(matrix[i][i] for i in range(len(labels)))
    return {"samples": len(truth), "accuracy": correct / len(truth) if truth else None,
            "labels": labels, "confusion": matrix, "per_class": per_class}


def format_scores(m: dict) -> str:
    """A plain-text report: accuracy, a per-class table, the confusion matrix."""
    width = max([len(lab) for lab in m["labels"]] + [9])
    fmt = lambda v: "   -  " if v is None else f"{v:6.3f}"  # noqa: E731
    lines = [f"top-1 accuracy {m['accuracy']:.4f} on {m['samples']} samples" + (f", scoring {m['scored']}" if m.get("scored") else "")
             + (f" ({m['errors']} unreadable, not counted)" if m.get("errors") else ""),
             f"{'class':<{width}}  precision  recall  support"]
    for lab in m["labels"]:
        c = m["per_class"][lab]
        lines.append(f"{lab:<{width}}     {fmt(c['precision'])}  {fmt(c['recall'])}  {c['support']:7d}")
    lines.append("confusion (rows: true label, columns: predicted)")
    lines.append(" " * width + "  " + " ".join(f"{lab[:7]:>7}" for lab in m["labels"]))
    for lab, row in zip(m["labels"], m["confusion"]):
        lines.append(f"{lab:<{width}}  " + " ".join(f"{n:7d}" for n in row))
    return "\n".join(lines)


def default_output(model: str) -> str:
    """<the model package>/eval/ (a registered model's package, for models:/...)."""
    location = None if model in models.BUILTIN_PACKAGES else models.package_location(model)
    if location is None:
        raise ModelError(f"--output is needed to evaluate the built-in model {model!r}")
    return storage.join(location, "eval")


def run_eval(cfg: InferConfig, label_field: str | None = None, out=None) -> dict:
    """Label `cfg.input` with `cfg.model`, score against the samples' labels, save the scores."""
    out = out or sys.stdout  # looked up per call: a caller may have replaced it since import
    from recog.pipeline import run_inference

    manifest = run_inference(cfg, out=out)
    rows = sink.read_run(cfg.output, manifest, cfg.storage).to_pylist()
    truths = [label_of(r, label_field) for r in rows]
    # Data labeled with the model's own classes scores its top class; other data (vehicle types)
    # scores the label recog gives.
    own = manifest["model"]["taxonomy"] != "imagenet" and {t for t in truths if t} <= set(manifest["model"]["class_names"])
    pairs = [(t, (r["topk_labels"] or [None])[0] if own else r["label"]) for t, r in zip(truths, rows)]
    scored = [(t, p) for t, p in pairs if t is not None and p is not None]
    m = scores([t for t, _ in scored], [p for _, p in scored])
    m.update(errors=sum(1 for _, p in pairs if p is None), unlabeled=sum(1 for t, p in pairs if t is None and p is not None),
             scored="the model's own classes" if own else "labels", model=manifest["model"]["name"],
             model_version=manifest["model"]["version"], data=cfg.input, run_id=manifest["run_id"])
    where = storage.join(cfg.output, "_eval")
    storage.write_bytes(storage.join(where, "metrics.json"), json.dumps(m, indent=1).encode(), cfg.storage)
    table = pa.table({"true_label": m["labels"], **{p: [row[j] for row in m["confusion"]] for j, p in enumerate(m["labels"])}})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    storage.write_bytes(storage.join(where, "confusion.parquet"), buf.getvalue(), cfg.storage)
    print(format_scores(m), file=out)
    print(f"[eval] saved {where}/metrics.json and confusion.parquet", file=out, flush=True)
    return m
