"""A data set's images as the device takes them: normalised once, the training images reflect-padded once."""

from __future__ import annotations

import numpy as np
import torch


def normalise(
    x_uint8_nhwc: np.ndarray | torch.Tensor, mean, std, device: torch.device, dtype=torch.float32
) -> torch.Tensor:
    """uint8 NHWC -> (x / 255 - mean) / std per channel, float NCHW on ``device``."""
    x = torch.as_tensor(x_uint8_nhwc).to(device)
    c = x.shape[3]
    m = torch.tensor(mean, device=device).view(1, c, 1, 1) * 255
    s = torch.tensor(std, device=device).view(1, c, 1, 1) * 255
    x = (x.permute(0, 3, 1, 2).float() - m) / s
    return x.to(dtype)


def prepare_train(x_uint8_nhwc: np.ndarray, mean, std, pad: int, device: torch.device, dtype=torch.float32):
    """Normalise and reflect-pad by ``pad`` once: (N, C, H + 2 pad, W + 2 pad) on ``device``, ready for batched
    crops."""
    x = normalise(x_uint8_nhwc, mean, std, device, torch.float32)
    x = torch.nn.functional.pad(x, (pad, pad, pad, pad), mode="reflect")
    return x.to(dtype).contiguous()
