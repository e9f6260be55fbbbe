import csv

import numpy as np
import pytest
import torch
import torchvision

from recog import models, preprocess, storage
from recog.models import ModelError
from recog.predict import Classifier
from recog.storage import StorageOptions

OPTS = StorageOptions()


def test_default_model_is_built_in_with_its_preprocessing():
    spec = models.resolve()
    assert spec.arch == "efficientnet_lite0" and len(spec.classes) == 1000 and spec.taxonomy == "imagenet"
    assert spec.preprocessing.interpolation == "bicubic" and spec.preprocessing.mean == (0.5, 0.5, 0.5)
    assert len(spec.version) == 12 and spec.version == models.resolve().version
    net = models.build(spec, StorageOptions())
    assert sum(p.numel() for p in net.parameters()) == 4_652_008  # 4.65 M: EfficientNet-Lite0


def test_default_model_recognises_the_imagenet_vehicle_photos(shared_data):
    """The packaged weights, mapped by position, give real ImageNet predictions."""
    with open(shared_data / "photos" / "labels.csv") as f:
        photos = [r for r in csv.DictReader(f) if r["source"] == "imagenet"]
    spec = models.resolve()
    pixels = np.stack([preprocess.decode_image((shared_data / p["path"]).read_bytes(), spec.preprocessing)[0]
                       for p in photos])
    probs = Classifier(spec, StorageOptions(), "cpu").probabilities(pixels)
    top1 = probs.argmax(axis=1)
    hits = sum(int(t) == int(p["split_or_index"]) for t, p in zip(top1, photos))
    assert hits >= 22, f"{hits}/{len(photos)} ImageNet classes right"


def _checkpoint(tmp_path, arch="resnet18", num_classes=3, wrap=False):
    net = torchvision.models.get_model(arch, weights=None, num_classes=num_classes)
    state = net.state_dict()
    path = tmp_path / f"{arch}.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}} if wrap else state, path)
    return path


def test_torchvision_arch_from_a_local_checkpoint(tmp_path):
    path = _checkpoint(tmp_path, wrap=True)  # a DDP training checkpoint: wrapped, 'module.' keys
    with pytest.raises(ModelError, match="has 3 classes: name them with --classes"):
        models.resolve("resnet18", str(path))
    spec = models.resolve("resnet18", str(path), ["bus", "car", "truck"])
    assert spec.taxonomy == "identity" and spec.preprocessing.interpolation == "bilinear"
    probs = Classifier(spec, StorageOptions(), "cpu").probabilities(np.zeros((2, 224, 224, 3), np.uint8))
    assert probs.shape == (2, 3) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)


def test_compiled_model_gives_the_same_probabilities(tmp_path):
    """--compile: torch.compile (inductor, C++ on CPU) in place of eager mode, same numbers."""
    spec = models.resolve("resnet18", str(_checkpoint(tmp_path)), ["bus", "car", "truck"])
    pixels = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    eager = Classifier(spec, StorageOptions(), "cpu").probabilities(pixels)
    compiled = Classifier(spec, StorageOptions(), "cpu", compile=True)
    assert compiled.model is not compiled.model._orig_mod  # really compiled
    assert np.allclose(compiled.probabilities(pixels), eager, atol=1e-4)


@pytest.mark.parametrize("arch", ["resnet50", "mobilenet_v3_large", "efficientnet_b0"])
def test_torchvision_imagenet_checkpoints_from_s3(tmp_path, bucket, opts, arch):
    path = _checkpoint(tmp_path, arch, num_classes=1000)
    uri = f"{bucket}/models/{arch}.pth"
    storage.write_bytes(uri, path.read_bytes(), opts)
    spec = models.resolve(arch, uri, opts=opts)
    assert spec.taxonomy == "imagenet" and spec.name == f"{arch}:{arch}.pth"
    assert isinstance(models.build(spec, opts), torch.nn.Module)


class NotATensor:
    pass


def test_checkpoints_are_loaded_weights_only(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"fc.weight": torch.zeros(3, 4), "payload": NotATensor()}, path)
    with pytest.raises(ModelError, match="not a loadable weights-only"):
        models.resolve("resnet18", str(path), ["a", "b", "c"])


def test_bad_requests_say_what_to_give():
    with pytest.raises(ModelError, match="unknown model 'vgg99'; known: efficientnet_b0"):
        models.resolve("vgg99")
    with pytest.raises(ModelError, match="resnet50 needs --weights"):
        models.resolve("resnet50")
    with pytest.raises(ModelError, match="weights not found"):
        models.resolve("resnet50", "/nonexistent/resnet50.pth")


def test_package_round_trip_and_tamper_check(tmp_path):
    prep = preprocess.Preprocessing(64, 73)
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
