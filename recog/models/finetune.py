"""Where a fine-tune starts: pretrained weights for the backbone, a new classifier head."""

from __future__ import annotations

import torch
from torch import nn

from recog.models import weights
from recog.models.registry import ARCHITECTURES, DEFAULT_MODEL, is_package
from recog.storage import StorageOptions


def pretrained_state(arch: str, weights_uri: str | None, opts: StorageOptions) -> dict[str, torch.Tensor] | None:
    """ImageNet weights to start a fine-tune from: built in for efficientnet_lite0, else `weights_uri`
    (a checkpoint file, or a model package); None means training from scratch."""
    if weights_uri is None and arch != DEFAULT_MODEL:
        return None
    if weights_uri is not None and is_package(weights_uri) and not weights_uri.endswith((".pt", ".pth")):
        spec = weights.package_spec(weights_uri, opts)
        return weights.load_state(spec.weights, opts)
    uri = weights_uri or weights.BUILTIN_WEIGHTS
    return weights.load_state(uri, opts, like=ARCHITECTURES[arch].build(1000).state_dict())


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
