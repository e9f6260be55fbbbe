"""Training pieces without Ray: the schedule, the input size, the network a fine-tune starts from."""

from __future__ import annotations

import math

import pytest
import torch

from recog import models
from recog.config import TrainConfig
from recog.storage import StorageOptions
from recog.train import build_network, lr_at, training_preprocessing

OPTS = StorageOptions()


def test_learning_rate_warms_up_then_decays_to_zero():
    lrs = [lr_at(s, 100, 10, 1.0) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:])) and lrs[-1] < 0.001


def test_training_size_keeps_the_crop_ratio():
    prep = training_preprocessing("efficientnet_lite0", 96)
    assert (prep.input_size, prep.resize_size, prep.interpolation) == (96, 110, "bicubic")
    assert training_preprocessing("resnet18", None).input_size == 224


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
    spec = models.ModelSpec("x", "efficientnet_lite0", ("a", "b"), "identity", training_preprocessing("efficientnet_lite0", 64), "", "")
    net, frozen = build_network(spec, TrainConfig(train="t", output="o", freeze_backbone=True))
    assert [n for n, p in net.named_parameters() if p.requires_grad] == ["classifier.weight", "classifier.bias"]
    assert frozen and all(not p.requires_grad for m in frozen for p in m.parameters())
    net, frozen = build_network(spec, TrainConfig(train="t", output="o", frozen_stages=6))
    trainable = {n.split(".")[0] + ("." + n.split(".")[1] if n.startswith("blocks.") else "") for n, p in net.named_parameters() if p.requires_grad}
    assert trainable == {"blocks.6", "conv_head", "bn2", "classifier"}
