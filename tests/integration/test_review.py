"""Every camera its own model, the whole loop through the `recog` command on a shared clip: count
vehicles, export their crops, correct them (a script moves files between class folders, as a
reviewer would), fine-tune the shipped model on the folder, register it in MLflow (a real SQLite
store), and count again with `--model models:/NAME@ALIAS`: the corrected types come back.

The clip is the motorway (bgslibrary_video02.avi, 30 s, the shipped model's held-out clip); the
reviewer's truth is its vehicles typed by hand (recog/dataset/clips.csv, by track number of a
whole-file run). The shipped model gets a few wrong: two vans (as car and truck), a cyclist (it
has no bicycle class) and a patch of road it calls a motorcycle.
"""

from __future__ import annotations

import csv
import json
import shutil

from recog.cli import main
from recog.models import BUILTIN_PACKAGES, read_package
from recog.query import Results
from recog.storage import StorageOptions
from tests.conftest import REPO

CLIP = "bgslibrary_video02.avi"


def hand_types() -> dict[int, str]:
    with open(REPO / "recog" / "dataset" / "clips.csv", newline="") as f:
        return {int(r["vehicle"]): r["type"] for r in csv.DictReader(f) if r["video"] == CLIP}


def labels(output) -> dict[int, tuple[str, str]]:
    rows = Results(str(output), StorageOptions()).sql("SELECT track_id, label, model FROM vehicles WHERE label IS NOT NULL")
    return {r["track_id"]: (r["label"], r["model"]) for r in rows.to_pylist()}


def test_review_correct_finetune_register_and_count_with_the_named_model(shared_data, tmp_path, monkeypatch, capsys, ray_local):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    (tmp_path / "in").mkdir()
    shutil.copy(shared_data / "videos" / CLIP, tmp_path / "in" / CLIP)
    (tmp_path / "in" / "bgslibrary_video02.json").write_text(json.dumps({"camera": "m-1", "start": "2026-11-03T08:00:00Z"}))
    # one segment: the track ids are the whole file's track numbers, as the hand types have them
    job = ["--input", str(tmp_path / "in"), "--line", "away=0.3,0.6,1.0,0.6", "--segment-seconds", "60"]

    assert main(["vehicles", *job, "--output", str(tmp_path / "before")]) == 0
    before, truth = labels(tmp_path / "before"), hand_types()
    misfiled = {t for t, (label, _) in before.items() if t in truth and truth[t] != label}
    assert len(misfiled) >= 3, before

    # the report says what to review and how to export it
    assert main(["report", str(tmp_path / "before"), "--output", str(tmp_path / "report.html")]) == 0
    page = (tmp_path / "report.html").read_text()
    assert "<h2>To review</h2>" in page and f"recog crops {tmp_path / 'before'} --to review/m-1 --camera m-1" in page

    review = tmp_path / "review"
    assert main(["crops", str(tmp_path / "before"), "--to", str(review)]) == 0
    assert f"--init vehicle-types --train {review}" in capsys.readouterr().out
    with open(review / "manifest.csv") as f:
        manifest = list(csv.DictReader(f))
    assert len(manifest) == len(list(review.glob("*/*.jpg"))) >= 2 * len(before)  # up to three crops a vehicle
    # the reviewer: each crop into its vehicle's type by hand; a vehicle they have no type for is not trained on
    for row in manifest:
        right = truth.get(int(row["track_id"]))
        if right is None:
            (review / row["file"]).unlink()
        elif right != row["label"]:
            (review / right).mkdir(exist_ok=True)
            (review / row["file"]).rename(review / right / row["file"].split("/")[1])

    model = tmp_path / "models" / "m-1"
    assert main(["train", "--init", "vehicle-types", "--train", str(review), "--output", str(model), "--epochs", "5",
                 "--batch-size", "8", "--workers", "1", "--register", "m-1"]) == 0
    package = read_package(str(model), StorageOptions())
    assert package["classes"][-1] == "bicycle" and package["training"]["init"]["model"] == "vehicle-types"
    # the tail alone, over the built-in backbone, as the shipped model's recipe trains it
    assert package["base"] and package["shared_stages"] == read_package(str(BUILTIN_PACKAGES["vehicle-types"]), StorageOptions())["shared_stages"]
    assert main(["models", "alias", "m-1", "1", "champion"]) == 0
    capsys.readouterr()
    assert main(["models", "list", "--format", "json"]) == 0
    (version,) = json.loads(capsys.readouterr().out)
    assert (version["aliases"], version["source"], version["model_version"]) == ("champion", str(model), package["version"])

    assert main(["vehicles", *job, "--output", str(tmp_path / "after"), "--model", "models:/m-1@champion"]) == 0
    after = labels(tmp_path / "after")
    fixed = {t for t in misfiled if after[t][0] == truth[t]}
    broken = {t for t, (label, _) in after.items() if t in truth and t not in misfiled and label != truth[t]}
    print(f"misfiled {sorted(misfiled)}, fixed {sorted(fixed)}, newly wrong {sorted(broken)}")
    # measured with the recipe's learning rate (1.25e-4 at batch 8): 4 of 4 fixed, none broken, in three runs of
    # three. At --lr 3e-3 (24x that per sample) a CI run broke two vans, and another called every vehicle car
    assert len(fixed) >= len(misfiled) - 1 and len(broken) <= 1, (misfiled, after)
    assert {m for _, m in after.values()} == {"m-1/1"}  # each row says which registered version typed it
