"""Training and evaluation pieces without Ray: schedule, labels, resources, packages, scores, shards."""

from __future__ import annotations

import io
import json
import math
import tarfile

import pytest
import torch

from recog import models, shards
from recog.config import TrainConfig
from recog.evaluate import format_scores, scores
from recog.storage import StorageError, StorageOptions
from recog.train import label_of, lr_at, plan_workers, training_preprocessing
from tests.traindata import disc_folder

OPTS = StorageOptions()


def test_learning_rate_warms_up_then_decays_to_zero():
    lrs = [lr_at(s, 100, 10, 1.0) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:])) and lrs[-1] < 0.001


def test_labels_come_from_cls_or_a_json_field():
    rec = {"cls": "car", "meta": json.dumps({"type": "truck", "n": 3})}
    assert label_of(rec, None) == "car" and label_of(rec, "type") == "truck" and label_of(rec, "n") == "3"
    assert label_of({"cls": None, "meta": None}, None) is None and label_of(rec, "missing") is None


def test_training_size_keeps_the_crop_ratio():
    prep = training_preprocessing("efficientnet_lite0", 96)
    assert (prep.input_size, prep.resize_size, prep.interpolation) == (96, 110, "bicubic")
    assert training_preprocessing("resnet18", None).input_size == 224


def test_workers_leave_a_cpu_for_data_and_gpus_are_checked():
    cfg = TrainConfig(train="t", output="o", workers=2)
    assert plan_workers({"CPU": 2}, cfg).resources == {"CPU": 0.5}
    assert plan_workers({"CPU": 16}, cfg).resources == {"CPU": 4.0}
    assert plan_workers({"CPU": 16}, cfg, node_cpus=2).resources == {"CPU": 2.0}  # 8 nodes of 2
    gpu = TrainConfig(train="t", output="o", workers=4, gpus_per_worker=1)
    assert plan_workers({"CPU": 32, "GPU": 4}, gpu).use_gpu
    with pytest.raises(RuntimeError, match="need 4 GPUs; the cluster has 2"):
        plan_workers({"CPU": 32, "GPU": 2}, gpu)


def test_a_new_head_on_the_pretrained_backbone():
    net = models.ARCHITECTURES["efficientnet_lite0"].build(3)
    head = models.init_from(net, models.pretrained_state("efficientnet_lite0", None, OPTS))
    assert head == ["classifier.weight", "classifier.bias"]
    # The new head starts near chance, so the first steps learn instead of undoing a bad init.
    net.eval()
    with torch.no_grad():
        logits = net(torch.rand(8, 3, 64, 64))
    assert logits.abs().max() < 1.0
    first_loss = torch.nn.functional.cross_entropy(logits, torch.zeros(8, dtype=torch.int64))
    assert abs(first_loss.item() - math.log(3)) < 0.2
    assert models.pretrained_state("resnet18", None, OPTS) is None  # no built-in weights: from scratch


def test_package_round_trip_and_tamper_check(tmp_path):
    prep = training_preprocessing("resnet18", 64)
    spec = models.ModelSpec("gate", "resnet18", ("bus", "car"), "identity", prep, "", "")
    net = models.ARCHITECTURES["resnet18"].build(2)
    saved = models.save_package(str(tmp_path / "gate"), spec, net.state_dict(), {"training": {"epochs": 1}}, OPTS)
    loaded = models.resolve(str(tmp_path / "gate"))
    assert loaded.classes == ("bus", "car") and loaded.preprocessing == prep and loaded.version == saved.version
    assert loaded.weights == str(tmp_path / "gate" / "weights.pt")
    assert torch.equal(models.build(loaded, OPTS).state_dict()["fc.weight"], net.state_dict()["fc.weight"])
    (tmp_path / "gate" / "weights.pt").write_bytes((tmp_path / "gate" / "weights.pt").read_bytes()[:-10] + b"0" * 10)
    with pytest.raises(models.ModelError, match="does not match the version"):
        models.resolve(str(tmp_path / "gate"))
    with pytest.raises(models.ModelError, match="not a model package"):
        models.resolve(str(tmp_path / "nothing-here"))


def test_scores_per_class_and_confusion():
    m = scores(["car", "car", "bus", "bus", "van"], ["car", "bus", "bus", "bus", "car"])
    assert m["accuracy"] == pytest.approx(0.6) and m["labels"] == ["bus", "car", "van"]
    assert m["confusion"] == [[2, 0, 0], [1, 1, 0], [0, 1, 0]]
    assert m["per_class"]["bus"] == {"precision": pytest.approx(2 / 3), "recall": 1.0, "support": 2}
    assert m["per_class"]["van"]["recall"] == 0.0 and m["per_class"]["van"]["precision"] is None
    text = format_scores(m)
    assert "top-1 accuracy 0.6000 on 5 samples" in text and "van" in text


def test_shards_from_a_class_folder_tree(tmp_path):
    disc_folder(tmp_path / "photos", per_class=5, seed=0)
    uris = shards.write_shards(tmp_path / "photos", str(tmp_path / "out" / "train"), OPTS, per_shard=6)
    assert [u.rsplit("/", 1)[-1] for u in uris] == ["train-000000.tar", "train-000001.tar", "train-000002.tar"]
    labels = []
    for uri in uris:
        with tarfile.open(uri) as tar:
            names = tar.getnames()
            labels += [tar.extractfile(n).read().decode() for n in names if n.endswith(".cls")]
            meta = json.loads(tar.extractfile([n for n in names if n.endswith(".json")][0]).read())
            assert set(meta) == {"class", "file"}
    assert sorted(labels) == sorted(["red", "green", "blue"] * 5)
    assert labels[:5] != sorted(labels[:5]) or labels[5:10] != sorted(labels[5:10])  # shuffled across shards
    with pytest.raises(StorageError, match="no <class>/<image> files"):
        shards.folder_samples(tmp_path / "out")
