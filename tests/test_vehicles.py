"""From labeled crops to the vehicles and crossings tables: the score-weighted vote, times from the
recording's start, flagged vehicles, and a segment that would not decode."""

from __future__ import annotations

import datetime as dt
import json

import pyarrow as pa
import pytest

from recog.vehicles import CROSSINGS_SCHEMA, VEHICLES_SCHEMA, VehicleTables, vote

START = "2026-11-03T08:00:00+00:00"


def crop(i: int, track: dict, label: str | None, score: float | None, fine: str = "car", error: str | None = None) -> dict:
    return {"unit_id": "u1", "record": i, "end": False, "source_uri": "s3://b/cam.mp4", "key": f"cam#{track['track_id']}",
            "meta": json.dumps(track), "camera": "cam-7", "error": error, "label": label, "score": score,
            "topk_labels": [fine] if label else None, "topk_scores": [score] if label else None,
            "model": "vehicle-types", "model_version": "abc"}


def track(track_id: int, crossings=(), suspect=False, crops=1) -> dict:
    return {"track_id": track_id, "first_t": 1.0 + track_id, "last_t": 3.0 + track_id, "first_frame": 25, "last_frame": 75,
            "frames_seen": 50, "entry": [0.5, 0.9], "exit": [0.5, 0.1], "direction": "up", "heading_deg": 270.0,
            "suspect": suspect, "crossings": list(crossings),
            "crops": [{"quality": 9.0, "t": 2.0, "frame": 50, "box": [10, 20, 60, 70]}] * crops}


def end(i: int, **segment) -> dict:
    meta = {"source_uri": "s3://b/cam.mp4", "camera": "cam-7", "recorded_at": START, "error": None, **segment}
    return {"unit_id": "u1", "record": i, "end": True, "source_uri": "s3://b/cam.mp4", "key": None, "meta": json.dumps(meta),
            "camera": None, "error": None, "label": None, "score": None, "topk_labels": None, "topk_scores": None,
            "model": "vehicle-types", "model_version": "abc"}


def test_the_label_is_the_score_weighted_vote_of_the_crops():
    crops = [{"label": "van", "score": 0.9, "topk_labels": ["minibus"], "topk_scores": [0.9]},
             {"label": "truck", "score": 0.5, "topk_labels": ["truck"], "topk_scores": [0.5]},
             {"label": "truck", "score": 0.6, "topk_labels": ["juggernaut"], "topk_scores": [0.6]}]
    label, score, votes, fine = vote(crops)
    assert (label, fine) == ("truck", "juggernaut") and score == pytest.approx(1.1 / 2.0)
    assert votes == {"truck": 1.1, "van": 0.9}
    assert vote([{"label": None, "score": None, "topk_labels": None, "topk_scores": None}]) == (None, None, {}, None)


def test_tables_from_a_units_crops():
    a = track(1, crossings=[{"line": "gate", "direction": "in", "track": 1, "t": 2.5, "frame": 62}], crops=2)
    b = track(2, suspect=True, crossings=[{"line": "gate", "direction": "out", "track": 2, "t": 3.5, "frame": 87}])
    c = track(3, crops=0)
    rows = pa.Table.from_pylist([crop(0, a, "car", 0.8), crop(1, a, "van", 0.3, fine="minibus"), crop(2, b, "truck", 0.9),
                                 crop(3, c, None, None, error="no usable crop (the vehicle was too small)"), end(4)])
    tables = VehicleTables("motion", "d1")(rows, "run-1")
    assert tables["vehicles"].schema == VEHICLES_SCHEMA and tables["crossings"].schema == CROSSINGS_SCHEMA
    vehicles = {v["track_id"]: v for v in tables["vehicles"].to_pylist()}
    assert (vehicles[1]["label"], vehicles[1]["crops"], vehicles[1]["lines"]) == ("car", 2, ["gate:in"])
    assert vehicles[1]["first_seen"] == dt.datetime(2026, 11, 3, 8, 0, 2, tzinfo=dt.timezone.utc)
    assert json.loads(vehicles[1]["votes"]) == {"car": 0.8, "van": 0.3} and vehicles[1]["best_box"] == [10, 20, 60, 70]
    assert vehicles[2]["warning"].startswith("phantom flood") and vehicles[3]["label"] is None
    assert vehicles[3]["error"].startswith("no usable crop") and {v["run_id"] for v in vehicles.values()} == {"run-1"}
    (gate,) = tables["crossings"].to_pylist()  # the suspect track's crossing was not counted upstream either
    assert (gate["line"], gate["direction"], gate["label"], gate["track_id"]) == ("gate", "in", "car", 1)
    assert gate["wall_time"] == dt.datetime(2026, 11, 3, 8, 0, 2, 500000, tzinfo=dt.timezone.utc)
    assert gate["date"] == dt.date(2026, 11, 3) and gate["camera"] == "cam-7"


def test_a_segment_that_would_not_decode_is_a_row_with_its_error():
    rows = pa.Table.from_pylist([end(0, error="cannot open video: Invalid data found")])
    tables = VehicleTables("motion", "d1")(rows, "run-1")
    (row,) = tables["vehicles"].to_pylist()
    assert row["error"] == "cannot open video: Invalid data found" and row["track_id"] is None
    assert tables["crossings"].num_rows == 0
