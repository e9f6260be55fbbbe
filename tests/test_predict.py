"""The predictor actor's callable, on a batch as the CPU stage hands it over: good rows, a row that
failed to decode, an end-of-unit record; every row comes out, pixels dropped."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from recog import models
from recog.predict import Predictor
from recog.preprocess import model_input
from recog.sources import RECORD_SCHEMA, blank_record
from recog.storage import StorageOptions
from tests.imagedata import jpeg


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor(models.resolve("efficientnet_lite0"), StorageOptions(), device="cpu", topk=3, threads=1, batch_size=16)


def batch(records: list[dict], prep) -> pa.Table:
    return model_input(records, prep, RECORD_SCHEMA)


def test_every_row_comes_out_labeled_or_with_its_error(predictor, shared_data):
    photo = (shared_data / "photos" / "imagenet" / "n04146614_school_bus.JPEG").read_bytes()
    records = [blank_record("s3://b/x.tar", key=f"k{i}", data=d, unit_id="u", record=i, end=False)
               for i, d in enumerate([photo, jpeg(), b"not an image"])]
    records.append(blank_record("s3://b/x.tar", unit_id="u", record=3, end=True))
    out = predictor(batch(records, predictor.spec.preprocessing))
    rows = out.to_pylist()
    assert out.num_rows == 4 and "image" not in out.column_names and "encoded" not in out.column_names
    assert rows[0]["label"] == "bus" and rows[0]["topk_labels"][0] == "school bus" and len(rows[0]["topk_scores"]) == 3
    assert rows[1]["label"] is not None and 0 <= rows[1]["score"] <= 1
    assert rows[2]["label"] is None and rows[2]["score"] is None and rows[2]["error"].startswith("not a recognised image")
    assert rows[3]["end"] and rows[3]["label"] is None and rows[3]["error"] is None
    assert [r["topk_labels"] is None for r in rows] == [False, False, True, True] and rows[2]["topk_scores"] is None
    assert {r["model"] for r in rows} == {"efficientnet_lite0"} and {r["model_version"] for r in rows} == {predictor.spec.version}
    assert all(r["processed_at"] is not None for r in rows)


def test_a_batch_with_nothing_to_label(predictor):
    records = [blank_record("s3://b/x.tar", unit_id="u", record=0, end=False, error="corrupt shard"),
               blank_record("s3://b/x.tar", unit_id="u", record=1, end=True)]
    rows = predictor(batch(records, predictor.spec.preprocessing)).to_pylist()
    assert [r["error"] for r in rows] == ["corrupt shard", None] and all(r["label"] is None for r in rows)


def test_top_classes_are_the_full_sorts_first_k():
    from recog.predict import top_classes

    probs = np.random.default_rng(0).random((64, 1000), dtype=np.float32)
    top, scores = top_classes(probs, 5)
    assert (top == np.argsort(-probs, axis=1)[:, :5]).all() and (scores == np.sort(probs, axis=1)[:, ::-1][:, :5]).all()
    assert (top_classes(probs[:, :3], 5)[0] == np.argsort(-probs[:, :3], axis=1)).all()  # fewer classes than k


def test_probabilities_sum_to_one(predictor):
    pixels = np.zeros((2, 224, 224, 3), dtype=np.uint8)
    probs = predictor.classifier.probabilities(pixels)
    assert probs.shape == (2, 1000) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-4)


def test_the_batch_probe_doubles_while_it_pays_and_says_why_it_stopped():
    from recog.models.classifier import Classifier, probe_batch_size

    c = Classifier(models.resolve("efficientnet_lite0"), StorageOptions(), "cpu", threads=1)
    greedy = probe_batch_size(c, 32, start=2, limit=8, gain=0.0, min_s=0.0)  # any rate is "faster"
    assert greedy.batch == 8 and [t[0] for t in greedy.tried] == [2, 4, 8] and "largest tried" in greedy.reason
    never = probe_batch_size(c, 32, start=2, limit=8, gain=1e9, min_s=0.0)  # nothing is fast enough
    assert never.batch == 2 and [t[0] for t in never.tried] == [2, 4] and "not" in never.reason
    assert never.to_dict()["tried"][0][2] is None  # no device memory to speak of on a CPU
    assert len(never.seconds) == 2 and all(t > 0 for t in never.seconds)  # each size's cost


def test_a_predictor_without_a_batch_size_probes_its_device_and_reports_it(tmp_path, monkeypatch):
    from recog import predict

    monkeypatch.setitem(predict.PROBE_RANGE, "cpu", (1, 2))  # a CPU core at 224 px: keep the probe short
    report = predict.probe_reports(str(tmp_path), "run-1")
    p = Predictor(models.resolve("efficientnet_lite0"), StorageOptions(), device="cpu", threads=1, report=report)
    assert p.batch_size in (1, 2)
    (probe,) = predict.read_probe_reports(report, StorageOptions())
    assert probe["device"] == "cpu" and probe["batch"] == p.batch_size and [t[0] for t in probe["tried"]][0] == 1
    assert probe["init_at"] + probe["model_s"] + probe["probe_s"] <= probe["ready_at"] + 0.01  # where its start went
    (line,) = predict.describe_probes([probe, probe])
    assert line.startswith(f"batch {p.batch_size} on cpu (2 actor(s); tried 1") and probe["reason"] in line


def test_a_predictor_tells_the_balance_its_model_time_and_its_own_decoding(predictor):
    from recog.balance import DecodeBalance

    records = [blank_record("s3://b/x.tar", key=f"k{i}", data=jpeg(320, 240), unit_id="u", record=i, end=False)
               for i in range(5)]
    records.append(blank_record("s3://b/x.tar", unit_id="u", record=5, end=True))
    prep = predictor.spec.preprocessing
    balance = DecodeBalance(slots=1, actors=1)
    predictor.balance = balance
    try:
        plain = predictor(batch(records, prep))
        deferred = predictor(model_input(records, prep, RECORD_SCHEMA, defer_jpeg=True))
    finally:
        predictor.balance = None
    assert balance.model[0] == 5 * balance.DECAY + 5 and balance.model[1] > 0  # both blocks' inputs, not the end records
    assert balance.device[0] == 5 and balance.device[1] > 0 and balance.images["device"] == 5  # the second block's JPEGs
    assert plain.column("label").to_pylist() == deferred.column("label").to_pylist()
