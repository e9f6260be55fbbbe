"""Training pieces without Ray: the schedule, the input size, the network a fine-tune starts from."""

from __future__ import annotations

import math

import pytest
import torch

from recog import models
from recog.config import TrainConfig
from recog.storage import StorageOptions
from recog.train import build_network, class_index, fine_tune_recipe, lr_at, resized, training_spec

OPTS = StorageOptions()


def test_learning_rate_warms_up_then_decays_to_zero():
    lrs = [lr_at(s, 100, 10, 1.0) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:])) and lrs[-1] < 0.001


def test_training_size_keeps_the_crop_ratio():
    prep = resized(models.ARCHITECTURES["efficientnet_lite0"].preprocessing(), 96)
    assert (prep.input_size, prep.resize_size, prep.interpolation) == (96, 110, "bicubic")
    assert resized(prep, None) is prep


def test_a_new_head_on_the_pretrained_backbone():
    torch.manual_seed(0)
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


def test_a_frozen_backbone_trains_the_head_alone_and_frozen_stages_the_tail():
    spec = models.ModelSpec("x", "efficientnet_lite0", ("a", "b"), "identity", resized(models.ARCHITECTURES["efficientnet_lite0"].preprocessing(), 64), "", "")
    net, frozen = build_network(spec, TrainConfig(train="t", output="o", freeze_backbone=True))
    assert [n for n, p in net.named_parameters() if p.requires_grad] == ["classifier.weight", "classifier.bias"]
    assert frozen and all(not p.requires_grad for m in frozen for p in m.parameters())
    net, frozen = build_network(spec, TrainConfig(train="t", output="o", frozen_stages=6))
    trainable = {n.split(".")[0] + ("." + n.split(".")[1] if n.startswith("blocks.") else "") for n, p in net.named_parameters() if p.requires_grad}
    assert trainable == {"blocks.6", "conv_head", "bn2", "classifier"}


def test_a_label_trains_the_class_of_that_name_or_the_one_class_of_that_type():
    classes, types = ("bike", "car", "juggernaut", "minibus", "truck"), ("motorcycle", "car", "truck", "van", "truck")
    index = class_index(classes, types)
    assert index["van"] == index["minibus"] == 3 and index["motorcycle"] == 0 and index["truck"] == 4
    assert "bus" not in index and class_index(("a", "b"), None) == {"a": 0, "b": 1}


def test_a_fine_tune_of_the_shipped_model_takes_its_recipe_and_keeps_its_head():
    start = models.resolve("vehicle-types")
    cfg = fine_tune_recipe(TrainConfig(train="t", output="o/cam-7", init="vehicle-types", batch_size=16), start)
    assert (cfg.arch, cfg.image_size, cfg.frozen_stages) == (start.arch, start.preprocessing.input_size, start.shared_stages)
    # its learning rate per sample (1e-3 at batch 64), unless one is given
    assert cfg.lr == pytest.approx(2.5e-4) and fine_tune_recipe(TrainConfig(train="t", output="o", init="x", lr=0.01), start).lr == 0.01
    # the data's new labels become classes after the package's (its classes are its types: no type list)
    spec = training_spec(cfg, {"car": 5, "van": 3, "not_vehicle": 2, "bicycle": 4}, start)
    assert spec.classes == (*start.classes, "bicycle") and spec.types is None is start.types
    assert (spec.taxonomy, spec.base, spec.shared_stages) == (start.taxonomy, start.base, start.shared_stages)
    assert training_spec(fine_tune_recipe(TrainConfig(train="t", output="o", init="x", frozen_stages=0), start),
                         {"car": 1}, start).base is None  # every stage trained: nothing shared with the base
    net, frozen = build_network(spec, cfg, start)
    own = models.own_state(start, OPTS, like=models.ARCHITECTURES[start.arch].build(len(start.classes)).state_dict())
    head = net.state_dict()["classifier.weight"]
    assert torch.equal(head[:len(start.classes)], own["classifier.weight"])  # its classes as the package knew them
    assert head[len(start.classes):].abs().max() < 0.1  # the new class starts small
    assert torch.equal(net.state_dict()["blocks.6.0.conv_pw.weight"], own["blocks.6.0.conv_pw.weight"])
    assert len(frozen) == 2 + start.shared_stages
    # a fine-tune keeps every batch norm's statistics: the frozen stages' and the trained tail's
    norms = models.batch_norms(net)
    assert len(norms) > len(frozen) and any(m is net.bn2 for m in norms)
