"""`recog crops` without Ray: a vehicles table written as the job writes it, over a video whose frame
i is grey level (7 i) % 256, so that each crop tells which frame it was cut from."""

from __future__ import annotations

import csv
import datetime as dt

import numpy as np
import pytest
from PIL import Image

from recog.crops import MANIFEST, Selection, crop_name, export
from recog.errors import ConfigError
from recog.geometry import square_box
from recog.query import Results
from recog.storage import StorageOptions
from tests.resultsdata import vehicles_run
from tests.videodata import encode_video

OPTS = StorageOptions()
UTC = dt.timezone.utc


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Results:
    folder = tmp_path_factory.mktemp("crops")
    clip = str(encode_video(folder / "cam.7.mp4", frames=60, fps=10, gop=12, size=(96, 64)))
    box = [10, 10, 30, 40]
    vehicles_run(str(folder / "out"), clip, [  # vehicle scores (the label's share of the votes): 1.0, 0.6, 0.8
        {"track_id": 3, "crops": [(1.0, 10, box, "car", 0.9), (1.2, 12, [12, 10, 32, 40], "car", 0.9)]},
        {"track_id": 5, "crops": [(4.0, 40, [50, 20, 90, 60], "van", 0.6), (4.2, 42, box, "truck", 0.4)]},
        {"track_id": 9, "crops": [(2.5, 25, box, "truck", 0.5), (2.0, 20, box, "truck", 0.3), (3.0, 30, box, "car", 0.2)]},
    ])
    return Results(str(folder / "out"), OPTS)


def grey(path) -> float:
    return float(np.asarray(Image.open(path)).mean())


def test_every_crop_of_the_selected_vehicles_in_its_labels_folder_cut_from_its_frame(results, tmp_path):
    done = export(results, tmp_path / "review", Selection(), OPTS)
    assert (done["vehicles"], done["written"], done["labels"]) == (3, 7, {"truck": 3, "car": 2, "van": 2})
    best = tmp_path / "review" / "car" / "cam-7_20261103T080001Z_3.jpg"  # first seen 1.0 s after the recording began
    assert grey(best) == pytest.approx(10 * 7 % 256, abs=4)
    assert grey(best.with_name("cam-7_20261103T080001Z_3-2.jpg")) == pytest.approx(12 * 7 % 256, abs=4)
    x0, y0, x1, y1 = square_box([50, 20, 90, 60], (96, 64))  # squared with a margin, inside the frame, as the job cuts it
    assert Image.open(tmp_path / "review" / "van" / "cam-7_20261103T080004Z_5.jpg").size == (x1 - x0, y1 - y0)
    with open(tmp_path / "review" / MANIFEST) as f:
        rows = list(csv.DictReader(f))
    assert [r["track_id"] for r in rows] == ["5", "5", "9", "9", "9", "3", "3"]  # least sure first
    van = rows[0]
    assert (van["file"], van["label"], van["frame_index"], van["box"], van["model_version"]) == \
        ("van/cam-7_20261103T080004Z_5.jpg", "van", "40", "50,20,90,60", "abc")
    assert van["source_uri"].endswith("cam.7.mp4") and van["run_id"] and van["crop_box"] == f"{x0},{y0},{x1},{y1}"


def test_a_second_export_leaves_the_reviewed_crops_where_the_reviewer_put_them(results, tmp_path):
    to = tmp_path / "review"
    export(results, to, Selection(label="van"), OPTS)
    (to / "car").mkdir()
    (to / "van" / "cam-7_20261103T080004Z_5.jpg").rename(to / "car" / "cam-7_20261103T080004Z_5.jpg")  # a correction
    done = export(results, to, Selection(), OPTS)
    assert (done["written"], done["already"]) == (5, 2)
    assert not (to / "van" / "cam-7_20261103T080004Z_5.jpg").exists()
    with open(to / MANIFEST) as f:
        assert len(list(csv.DictReader(f))) == 7  # one header, a line per crop written


@pytest.mark.parametrize("selection, tracks", [
    (Selection(limit=2), [5, 9]),  # the least sure
    (Selection(max_score=0.85), [5, 9]),
    (Selection(label="car"), [3]),
    (Selection(camera="cam-8"), []),
    (Selection(camera="it's"), []),  # quoted, not SQL
    (Selection(since=dt.datetime(2026, 11, 3, 8, 0, 2, tzinfo=UTC)), [5, 9]),  # first seen at 8:00:04 and 8:00:02.5
    (Selection(until=dt.datetime(2026, 11, 3, 8, 0, 2, 500000, tzinfo=UTC)), [3]),
])
def test_filters(results, selection, tracks):
    assert [r["track_id"] for r in results.sql(selection.sql()).to_pylist()] == tracks


def test_names_and_refusals(results, tmp_path):
    vehicle = {"camera": None, "source_uri": "/v/gate.3.mp4", "first_seen": None, "first_pts_s": 12.5, "track_id": 7}
    assert crop_name(vehicle, 0) == "gate-3_gate-3-t12-50s_7.jpg" and crop_name(vehicle, 2) == "gate-3_gate-3-t12-50s_7-3.jpg"
    (tmp_path / "f").write_text("")
    with pytest.raises(ConfigError, match="is a file"):
        export(results, tmp_path / "f", Selection(), OPTS)
