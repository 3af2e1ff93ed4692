"""Page's networks (docs/protocol.md, sections 1-2): `dawn18` (Parts 1-3) and `resnet9` (Part 4 on).

``width`` scales every channel count (0.25 = a quarter of the channels, at least 1); ``num_classes`` and
``in_channels`` fit them to a data set (CIFAR-10: 10 and 3).
"""

from __future__ import annotations

import torch
from torch import nn

from forgetting.errors import UserError

SHORTCUTS = ("page", "johnson")  # dawn18's identity shortcut: Page adds relu(bn(x)), Johnson adds x
BN_INITS = ("uniform", "ones")  # BN weights: uniform(0, 1) as PyTorch 0.4, or ones (PyTorch's current default)


def channels(c: int, width: float) -> int:
    return max(1, int(round(c * width)))


def _bn(c: int, bn_init: str) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(c, eps=1e-5, momentum=0.1)
    if bn_init == "uniform":  # PyTorch 0.4's default, which Page's results were trained with
        nn.init.uniform_(bn.weight, 0.0, 1.0)
    return bn


class PreActBlock(nn.Module):
    """o = relu(bn1(x)); out = conv2(relu(bn2(conv1(o)))) + shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int, shortcut: str, bn_init: str):
        super().__init__()
        self.bn1 = _bn(c_in, bn_init)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn2 = _bn(c_out, bn_init)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        needs_conv = stride != 1 or c_in != c_out
        self.proj = nn.Conv2d(c_in, c_out, 1, stride, bias=False) if needs_conv else None
        self.add_raw_input = shortcut == "johnson"  # Johnson adds x; Page adds the pre-activated o

    def forward(self, x):
        o = torch.relu(self.bn1(x))
        out = self.conv2(torch.relu(self.bn2(self.conv1(o))))
        if self.proj is not None:
            return out + self.proj(o)
        return out + (x if self.add_raw_input else o)


class ConcatPool(nn.Module):
    """Max-pool 4 and avg-pool 4 of the final 4x4 map, concatenated."""

    def forward(self, x):
        return torch.cat([nn.functional.adaptive_max_pool2d(x, 1), nn.functional.adaptive_avg_pool2d(x, 1)], 1).flatten(
            1
        )


def dawn18(
    width: float = 1.0, shortcut: str = "page", bn_init: str = "uniform", num_classes: int = 10, in_channels: int = 3
) -> nn.Module:
    """Ben Johnson's 18-layer pre-activation ResNet as Page trained it in Parts 1-3."""
    if shortcut not in SHORTCUTS:
        raise UserError(f"shortcut must be {' or '.join(map(repr, SHORTCUTS))}, not {shortcut!r}")
    c = [channels(k, width) for k in (64, 128, 256, 256)]
    layers: list[nn.Module] = [nn.Conv2d(in_channels, c[0], 3, 1, 1, bias=False)]  # prep: no BN-ReLU (Part 1)
    c_in = c[0]
    for i, c_out in enumerate(c):
        for j in range(2):
            stride = 2 if (i > 0 and j == 0) else 1
            layers.append(PreActBlock(c_in, c_out, stride, shortcut, bn_init))
            c_in = c_out
    layers += [ConcatPool(), nn.Linear(2 * c_in, num_classes, bias=True)]
    return nn.Sequential(*layers)


def _conv_bn(c_in: int, c_out: int, bn_init: str) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False), _bn(c_out, bn_init), nn.ReLU())


class Residual(nn.Module):
    def __init__(self, c: int, bn_init: str):
        super().__init__()
        self.body = nn.Sequential(_conv_bn(c, c, bn_init), _conv_bn(c, c, bn_init))

    def forward(self, x):
        return x + self.body(x)


class Scale(nn.Module):
    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return x * self.factor


def resnet9(width: float = 1.0, bn_init: str = "ones", num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """Page's ResNet-9 of Part 4: 3 conv stages with two residual blocks, logits scaled by 1/8."""
    c = [channels(k, width) for k in (64, 128, 256, 512)]
    return nn.Sequential(
        _conv_bn(in_channels, c[0], bn_init),
        _conv_bn(c[0], c[1], bn_init),
        nn.MaxPool2d(2),
        Residual(c[1], bn_init),
        _conv_bn(c[1], c[2], bn_init),
        nn.MaxPool2d(2),
        _conv_bn(c[2], c[3], bn_init),
        nn.MaxPool2d(2),
        Residual(c[3], bn_init),
        nn.AdaptiveMaxPool2d(1),
        nn.Flatten(),
        nn.Linear(c[3], num_classes, bias=False),
        Scale(0.125),
    )
