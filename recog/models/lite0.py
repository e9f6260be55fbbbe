"""EfficientNet-Lite0 in plain torch, as timm builds it (`tf_efficientnet_lite0`): the same modules
under the same names, so its state dicts (the built-in weights, model packages) load unchanged,
and the same outputs (tests/test_models.py compares the two).

Why not timm itself: importing it imports torchvision and, through torchvision's ops, torch's
compiler (torch._dynamo), about 2.6 s of every predictor's and training worker's start that
inference does not use.

The `tf_` variant pads like TensorFlow's "same": a stride-2 convolution pads its input by what the
size needs, the extra pixel at the right and bottom (`SameConv2d`); batch norm eps is 1e-3.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

BN_EPS = 1e-3
# (block, repeats, kernel, stride, expansion, channels) per stage: timm's arch_def for Lite0
STAGES = [("ds", 1, 3, 1, 1, 16), ("ir", 2, 3, 2, 6, 24), ("ir", 2, 5, 2, 6, 40), ("ir", 3, 3, 2, 6, 80),
          ("ir", 3, 5, 1, 6, 112), ("ir", 4, 5, 2, 6, 192), ("ir", 1, 3, 1, 6, 320)]
STEM, FEATURES = 32, 1280


class SameConv2d(nn.Conv2d):
    """A convolution padded like TensorFlow's "same": output size ceil(input / stride)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s in zip(reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride)):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads))


def conv(cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    if stride == 1:  # "same" at stride 1 and an odd kernel is a fixed padding
        return nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False)
    return SameConv2d(cin, cout, kernel, stride, groups=groups, bias=False)


class BatchNormAct2d(nn.BatchNorm2d):
    """Batch norm, then ReLU6 if `act` (timm folds the activation into the norm layer)."""

    def __init__(self, channels: int, act: bool = True):
        super().__init__(channels, eps=BN_EPS)
        self.act = nn.ReLU6(inplace=True) if act else nn.Identity()
        self.folded = False  # into the convolution before it (`fold_batch_norms`): the activation alone is left

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x if self.folded else super().forward(x))


class DepthwiseSeparableConv(nn.Module):
    FOLDS = (("conv_dw", "bn1"), ("conv_pw", "bn2"))  # (convolution, the batch norm right after it)

    def __init__(self, cin: int, cout: int, kernel: int, stride: int):
        super().__init__()
        self.conv_dw = conv(cin, cin, kernel, stride, groups=cin)
        self.bn1 = BatchNormAct2d(cin)
        self.conv_pw = conv(cin, cout)
        self.bn2 = BatchNormAct2d(cout, act=False)
        self.has_skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv_pw(self.bn1(self.conv_dw(x))))
        return y + x if self.has_skip else y


class InvertedResidual(nn.Module):
    FOLDS = (("conv_pw", "bn1"), ("conv_dw", "bn2"), ("conv_pwl", "bn3"))

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expansion: int):
        super().__init__()
        mid = cin * expansion
        self.conv_pw = conv(cin, mid)
        self.bn1 = BatchNormAct2d(mid)
        self.conv_dw = conv(mid, mid, kernel, stride, groups=mid)
        self.bn2 = BatchNormAct2d(mid)
        self.conv_pwl = conv(mid, cout)
        self.bn3 = BatchNormAct2d(cout, act=False)
        self.has_skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn3(self.conv_pwl(self.bn2(self.conv_dw(self.bn1(self.conv_pw(x))))))
        return y + x if self.has_skip else y


class EfficientNetLite0(nn.Module):
    FOLDS = (("conv_stem", "bn1"), ("conv_head", "bn2"))

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.conv_stem = conv(3, STEM, 3, 2)
        self.bn1 = BatchNormAct2d(STEM)
        stages, cin = [], STEM
        for kind, repeats, kernel, stride, expansion, cout in STAGES:
            blocks = []
            for i in range(repeats):
                s = stride if i == 0 else 1
                blocks.append(DepthwiseSeparableConv(cin, cout, kernel, s) if kind == "ds"
                              else InvertedResidual(cin, cout, kernel, s, expansion))
                cin = cout
            stages.append(nn.Sequential(*blocks))
        self.blocks = nn.Sequential(*stages)
        self.conv_head = conv(cin, FEATURES)
        self.bn2 = BatchNormAct2d(FEATURES)
        self.global_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        self.classifier = nn.Linear(FEATURES, num_classes)
        for module in self.modules():
            _init(module)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn2(self.conv_head(self.blocks(self.bn1(self.conv_stem(x)))))
        return self.classifier(self.global_pool(x))


@torch.no_grad()
def fold_batch_norms(net: nn.Module) -> int:
    """For inference only: each batch norm of the EfficientNet-Lite0s in `net` folded into the
    convolution before it (weights scaled by gamma/sigma, a bias of beta - mu*gamma/sigma), so that
    no pass over the activations is left for it: 1.51x the images/s of vehicle-types on one core,
    1.15x efficientnet_lite0's at 224 px, the same probabilities to 1e-6 (`bench/models.py
    --unfolded --threads 1`, tests/test_models.py). Returns how many it folded."""
    folded = 0
    for module in net.modules():
        for conv_name, bn_name in getattr(module, "FOLDS", ()):
            conv, bn = getattr(module, conv_name), getattr(module, bn_name)
            if bn.folded:  # already: a second call, or a module two networks share (TwoHeads)
                continue
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            conv.weight.mul_(scale.view(-1, 1, 1, 1))
            conv.bias = nn.Parameter(bn.bias - bn.running_mean * scale, requires_grad=False)
            bn.folded = True
            folded += 1
    return folded


def _init(m: nn.Module) -> None:
    """timm's initialisation for EfficientNets (from Google's): fan-out normal for convolutions,
    uniform +-1/sqrt(classes) for the classifier."""
    if isinstance(m, nn.Conv2d):
        fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
        nn.init.normal_(m.weight, 0, math.sqrt(2.0 / fan_out))
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
    elif isinstance(m, nn.Linear):
        bound = 1.0 / math.sqrt(m.weight.size(0))
        nn.init.uniform_(m.weight, -bound, bound)
        nn.init.zeros_(m.bias)


class TwoHeads(nn.Module):
    """Two EfficientNets (timm) that share their stem and first `shared` stages: the backbone runs
    once, then the ImageNet tail and the fine-tuned tail each finish it. Returns (own, ImageNet) logits."""

    def __init__(self, imagenet, own, shared: int):
        super().__init__()
        self.shared = nn.Sequential(imagenet.conv_stem, imagenet.bn1, *imagenet.blocks[:shared])
        self.imagenet_tail = self._tail(imagenet, shared)
        self.own_tail = self._tail(own, shared)

    @staticmethod
    def _tail(net, shared: int) -> nn.Sequential:
        return nn.Sequential(*net.blocks[shared:], net.conv_head, net.bn2, net.global_pool, net.classifier)

    def forward(self, x):
        features = self.shared(x)
        return self.own_tail(features), self.imagenet_tail(features)
