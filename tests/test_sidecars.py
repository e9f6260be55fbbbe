"""Sidecars: labels, cameras and times from the .cls and .json beside an input."""

from __future__ import annotations

import datetime as dt
import json

from recog.sidecars import label_of, sidecar_context


def test_labels_come_from_cls_or_a_json_field():
    rec = {"cls": "car", "meta": json.dumps({"type": "truck", "n": 3})}
    assert label_of(rec, None) == "car" and label_of(rec, "type") == "truck" and label_of(rec, "n") == "3"
    assert label_of({"cls": None, "meta": None}, None) is None and label_of(rec, "missing") is None


def test_camera_and_time_from_a_json_sidecar():
    text = json.dumps({"camera": 7, "timestamp": "2026-11-03T08:30:00", "start": "2026-11-03T08:00:00+01:00"})
    assert sidecar_context(text, "timestamp") == ("7", dt.datetime(2026, 11, 3, 8, 30, tzinfo=dt.timezone.utc))
    assert sidecar_context(text, "start") == ("7", dt.datetime(2026, 11, 3, 7, 0, tzinfo=dt.timezone.utc))
    assert sidecar_context('{"timestamp": "yesterday"}', "timestamp") == (None, None)
    assert sidecar_context("[1, 2]", "start") == (None, None) and sidecar_context("{not json", "start") == (None, None)


def test_a_loose_image_in_a_class_folder_is_labeled_by_the_folder():
    image = {"cls": None, "meta": None, "shard": None}
    assert label_of({**image, "key": "van/cam-7_20261103T080001Z_12"}) == "van"
    assert label_of({**image, "key": "van/x", "cls": "car"}) == "car"  # the sidecar says
    assert label_of({**image, "key": "x"}) is None  # not in a class folder
    assert label_of({**image, "key": "2026/van/x"}) is None  # deeper: not a class-folder tree
    assert label_of({**image, "key": "van/x", "shard": "s.tar"}) is None  # a shard's member names are not labels
    assert label_of({**image, "key": "van/x"}, "type") is None  # --label-field: the .json alone
