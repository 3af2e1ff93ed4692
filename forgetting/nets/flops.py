"""Forward FLOPs of a network: what the throughput benchmarks divide by."""

from __future__ import annotations

import torch
from torch import nn


def forward_flops(model: nn.Module, image_size: int = 32, in_channels: int = 3) -> int:
    """Multiply-adds x 2 of the convolutions and linear layers for one image (forward only)."""
    total = 0

    def hook(mod, inp, out):
        nonlocal total
        if isinstance(mod, nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1] * mod.in_channels // mod.groups
            total += 2 * k * out[0].numel()
        elif isinstance(mod, nn.Linear):
            total += 2 * mod.in_features * mod.out_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        dev = next(model.parameters()).device
        model(torch.zeros(1, in_channels, image_size, image_size, device=dev))
    model.train(was_training)
    for h in handles:
        h.remove()
    return total
