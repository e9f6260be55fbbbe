"""Models: which architectures recog knows, where their weights come from, and how a worker builds one.

A `ModelSpec` is everything a worker needs to rebuild a model: architecture, class names, how the
classes map to vehicle labels, preprocessing, and the weights' location and hash. The driver
resolves it once (`resolve`), checking that the weights load, and ships it to the predictor
actors, which `build` the network. Weights are always loaded with `weights_only=True`.

- `registry`: the architectures and the spec (facts only, no I/O);
- `weights`: checkpoints and model packages on storage (built-in weights, `model.json` + `weights.pt`);
- `builder`: `resolve` a name or package into a spec, `build` the network of a spec;
- `finetune`: the starting point of a fine-tune (pretrained weights, a new head).
"""

from recog.errors import ModelError
from recog.models.builder import build, resolve
from recog.models.finetune import frozen_modules, init_from, pretrained_state, trainable_state
from recog.models.registry import ARCHITECTURES, BUILTIN_ARCH, BUILTIN_PACKAGES, DEFAULT_MODEL, ModelSpec, imagenet_classes, is_package
from recog.models.weights import read_package, save_package, state_dict_from_bytes

__all__ = ["ARCHITECTURES", "BUILTIN_ARCH", "BUILTIN_PACKAGES", "DEFAULT_MODEL", "ModelError", "ModelSpec", "build",
           "frozen_modules", "imagenet_classes", "init_from", "is_package", "pretrained_state", "read_package", "resolve",
           "save_package", "state_dict_from_bytes", "trainable_state"]
