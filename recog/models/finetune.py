"""Where a fine-tune starts: pretrained weights for the backbone, a new classifier head."""

from __future__ import annotations

import torch
from torch import nn

from recog.errors import ModelError
from recog.models import weights
from recog.models.builder import own_state
from recog.models.registry import ARCHITECTURES, BUILTIN_ARCH, is_package
from recog.storage import StorageOptions


def pretrained_state(arch: str, weights_uri: str | None, opts: StorageOptions) -> dict[str, torch.Tensor] | None:
    """ImageNet weights to start a fine-tune from: built in for efficientnet_lite0, else `weights_uri`
    (a checkpoint file, or a model package); None means training from scratch."""
    if weights_uri is None and arch != BUILTIN_ARCH:
        return None
    if weights_uri is not None and is_package(weights_uri) and not weights_uri.endswith((".pt", ".pth")):
        spec = weights.package_spec(weights_uri, opts)  # all of it, also where it stores only a fine-tune's tail
        return own_state(spec, opts, like=ARCHITECTURES[spec.arch].build(len(spec.classes)).state_dict())
    uri = weights_uri or weights.BUILTIN_WEIGHTS
    return weights.load_state(uri, opts, like=ARCHITECTURES[arch].build(1000).state_dict())


def init_from(net: nn.Module, state: dict[str, torch.Tensor] | None) -> list[str]:
    """Load every tensor of `state` whose name and shape fit `net`; return the names of the
    parameters left as initialised (the new classifier head, for a pretrained backbone). A head
    with more classes than `state`'s (a fine-tune of a package whose data adds classes, at the end)
    keeps the rows of the classes it had; only the new rows start afresh.

    A new linear head on a pretrained backbone starts small (std 0.01, zero bias), so the first
    loss is near chance: timm's init draws it from +-1/sqrt(classes), which for 3 classes gives
    logits with std ~7 and a first loss ~10 that a short fine-tune spends its steps undoing."""
    own = net.state_dict()
    fitting = {k: v for k, v in (state or {}).items() if k in own and own[k].shape == v.shape}
    grown = {k: v for k, v in (state or {}).items()
             if k in own and k not in fitting and v.ndim and own[k].shape[1:] == v.shape[1:] and own[k].shape[0] > v.shape[0]}
    net.load_state_dict(fitting, strict=False)
    if fitting:
        for name, module in net.named_modules():
            if isinstance(module, nn.Linear) and f"{name}.weight" not in fitting:
                nn.init.normal_(module.weight, std=0.01)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
    with torch.no_grad():
        for k, v in grown.items():
            own[k][:len(v)] = v  # a state dict's tensors are the network's own
    return [name for name, _ in net.named_parameters() if name not in fitting]


def frozen_modules(net: nn.Module, frozen_stages: int | None = None, freeze_backbone: bool = False) -> list[nn.Module]:
    """The parts of `net` a fine-tune leaves as they are: with `freeze_backbone` everything but the
    classifier; with `frozen_stages` N the stem and the first N stages of an EfficientNet-style
    backbone (timm's `blocks`; Lite0 has 7). Their parameters stop taking gradients; the caller
    keeps them in eval mode, so that their batch-norm statistics stay the pretrained ones too."""
    if freeze_backbone:
        frozen = [m for name, m in net.named_children() if name not in ("classifier", "fc", "head")]
    elif frozen_stages:
        blocks = getattr(net, "blocks", None)
        if blocks is None or frozen_stages > len(blocks):
            raise ModelError(f"--frozen-stages {frozen_stages}: this architecture has "
                             f"{len(blocks) if blocks is not None else 'no'} EfficientNet stages to freeze")
        frozen = [net.conv_stem, net.bn1, *blocks[:frozen_stages]]
    else:
        return []
    for module in frozen:
        module.requires_grad_(False)
    return frozen


def batch_norms(net: nn.Module) -> list[nn.Module]:
    """Every batch-norm layer of `net`. A fine-tune of a package keeps them in eval mode: a camera's
    hundred crops in batches of 8 would replace statistics learnt from thousands of crops of many
    cameras with their own noisy ones (their scale and shift still learn)."""
    return [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def trainable_state(net: nn.Module, frozen: list[nn.Module]) -> dict[str, torch.Tensor]:
    """The tensors of `net` (parameters and buffers) outside its frozen modules: what training changed."""
    frozen_names = {name for name, m in net.named_modules() if any(m is f for f in frozen)}
    return {k: v for k, v in net.state_dict().items()
            if not any(k == f or k.startswith(f + ".") for f in frozen_names)}
