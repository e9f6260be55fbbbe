"""Models: which architectures recog knows, where their weights come from, and how a worker builds one.

A `ModelSpec` is everything a worker needs to rebuild a model: architecture, class names, how the
classes map to vehicle labels, preprocessing, and the weights' location and hash. The driver
resolves it once (`resolve`), checking that the weights load, and ships it to the predictor
actors, which `build` the network. Weights are always loaded with `weights_only=True`.

- `registry`: the architectures and the spec (facts only, no I/O);
- `weights`: checkpoints and model packages on storage (built-in weights, `model.json` + `weights.pt`);
- `builder`: `resolve` a name or package into a spec, `build` the network of a spec;
- `named`: packages registered in MLflow's model registry (models:/NAME@ALIAS), `recog train --register`;
- `finetune`: the starting point of a fine-tune (pretrained weights, a new head);
- `classifier`: a built model on a device (uint8 pixels -> probabilities), and its batch probe.

Importing this package imports no torch: a job's driver resolves models (`resolve`, by names and
hashes) without it; what needs torch (`build`, the fine-tune helpers) loads on first use.
"""

import importlib

from recog.errors import ModelError
from recog.models.builder import package_location, resolve
from recog.models.registry import ARCHITECTURES, BUILTIN_ARCH, BUILTIN_PACKAGES, DEFAULT_MODEL, ModelSpec, imagenet_classes, is_package
from recog.models.weights import read_package, save_package, state_dict_from_bytes

_NEED_TORCH = {"batch_norms": "finetune", "build": "builder", "own_state": "builder", "frozen_modules": "finetune",
               "init_from": "finetune", "pretrained_state": "finetune", "trainable_state": "finetune"}


def __getattr__(name: str):
    """The torch-bound parts (`build`, the fine-tune helpers), imported when first asked for."""
    if name in _NEED_TORCH:
        return getattr(importlib.import_module(f"recog.models.{_NEED_TORCH[name]}"), name)
    raise AttributeError(f"module 'recog.models' has no attribute {name!r}")


__all__ = ["ARCHITECTURES", "BUILTIN_ARCH", "BUILTIN_PACKAGES", "DEFAULT_MODEL", "ModelError", "ModelSpec", "batch_norms", "build",
           "frozen_modules", "imagenet_classes", "init_from", "is_package", "own_state", "package_location", "pretrained_state",
           "read_package", "resolve", "save_package", "state_dict_from_bytes", "trainable_state"]
