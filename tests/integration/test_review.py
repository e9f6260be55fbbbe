"""Every camera its own model, the whole loop through the `recog` command on a shared clip: count
vehicles, export their crops, correct them (a script moves files between class folders, as a
reviewer would), fine-tune the shipped model on the folder, register it in MLflow (a real SQLite
store), and count again with `--model models:/NAME@ALIAS`: the corrected types come back.

The clip is the parking lot seen from above (intel_car-detection.mp4, 377 frames): four cars that
the shipped model, trained on side views, mostly calls trucks and vans.
"""

from __future__ import annotations

import csv
import json
import shutil

from recog.cli import main
from recog.models import read_package
from recog.query import Results
from recog.storage import StorageOptions

CLIP = "intel_car-detection.mp4"


def labels(output) -> dict[int, tuple[str, str]]:
    rows = Results(str(output), StorageOptions()).sql("SELECT track_id, label, model FROM vehicles WHERE label IS NOT NULL")
    return {r["track_id"]: (r["label"], r["model"]) for r in rows.to_pylist()}


def test_review_correct_finetune_register_and_count_with_the_named_model(shared_data, tmp_path, monkeypatch, capsys, ray_local):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    (tmp_path / "in").mkdir()
    shutil.copy(shared_data / "videos" / CLIP, tmp_path / "in" / CLIP)
    (tmp_path / "in" / "intel_car-detection.json").write_text(json.dumps({"camera": "lot-1", "start": "2026-11-03T08:00:00Z"}))
    job = ["--input", str(tmp_path / "in"), "--line", "mid=0,0.5,1,0.5"]

    assert main(["vehicles", *job, "--output", str(tmp_path / "before")]) == 0
    before = labels(tmp_path / "before")
    misfiled = {t for t, (label, _) in before.items() if label in ("truck", "van")}
    assert misfiled, before  # side-view training: cars from above look like trucks and vans to it

    # the report says what to review and how to export it
    assert main(["report", str(tmp_path / "before"), "--output", str(tmp_path / "report.html")]) == 0
    page = (tmp_path / "report.html").read_text()
    assert "<h2>To review</h2>" in page and f"recog crops {tmp_path / 'before'} --to review/lot-1 --camera lot-1" in page

    review = tmp_path / "review"
    assert main(["crops", str(tmp_path / "before"), "--to", str(review)]) == 0
    assert f"--init vehicle-types --train {review}" in capsys.readouterr().out
    with open(review / "manifest.csv") as f:
        manifest = list(csv.DictReader(f))
    assert len(manifest) == len(list(review.glob("*/*.jpg"))) == 3 * len(before)  # three crops a vehicle
    # the reviewer: every truck and van is a car; the smallest "vehicle" (a road marking at the
    # frame's edge) is none
    def area(row):
        x0, y0, x1, y1 = map(int, row["box"].split(","))
        return (x1 - x0) * (y1 - y0)

    phantom = min(manifest, key=area)["track_id"]
    for row in manifest:
        right = "not_vehicle" if row["track_id"] == phantom else "car" if row["label"] in ("truck", "van") else None
        if right:
            (review / right).mkdir(exist_ok=True)
            (review / row["file"]).rename(review / right / row["file"].split("/")[1])

    model = tmp_path / "models" / "lot-1"
    assert main(["train", "--init", "vehicle-types", "--train", str(review), "--output", str(model), "--epochs", "3",
                 "--batch-size", "8", "--lr", "3e-3", "--workers", "1", "--register", "lot-1"]) == 0
    package = read_package(str(model), StorageOptions())
    assert package["classes"][-1] == "not_vehicle" and package["training"]["init"]["model"] == "vehicle-types"
    assert package["base"] and package["shared_stages"] == 6  # the tail alone, over the built-in backbone
    assert main(["models", "alias", "lot-1", "1", "champion"]) == 0
    capsys.readouterr()
    assert main(["models", "list", "--format", "json"]) == 0
    (version,) = json.loads(capsys.readouterr().out)
    assert (version["aliases"], version["source"], version["model_version"]) == ("champion", str(model), package["version"])

    assert main(["vehicles", *job, "--output", str(tmp_path / "after"), "--model", "models:/lot-1@champion"]) == 0
    after = labels(tmp_path / "after")
    assert {t: after[t][0] for t in misfiled} == {t: "car" for t in misfiled}, after
    assert {m for _, m in after.values()} == {"lot-1/1"}  # each row says which registered version typed it
