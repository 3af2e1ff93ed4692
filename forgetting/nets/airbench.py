"""airbench94: the network of Keller Jordan's cifar10-airbench (legacy/airbench94.py, commit f1c599c), a fast
modern CIFAR-10 net (94% in 3.8 s on an A100 with its own recipe; docs/protocol.md, section 5).

A 2x2 convolution whose filters whiten 2x2 patches of the training images (24 = 2 x 3 x 2 x 2 filters: the
patch covariance's eigenvectors scaled by 1 / sqrt(eigenvalue), and their negatives), GELU, then three
groups of conv-pool-BN-GELU-conv-BN-GELU of widths 64, 256 and 256, a global max-pool, a linear layer
without bias and logits x 1/9. BN weights are fixed at 1 (only the biases learn), eps 1e-12, momentum
0.4 (airbench's 0.6 in its own convention); each 3x3 convolution starts as the identity on its first
input channels (Dirac). Its parameter count is the reference's (1,972,792 for 10 classes); tests check it.

Here it is the network alone: the toolkit's recipe trains it (not airbench's label smoothing, Lookahead,
whitening-bias freeze after 3 epochs, alternating flips or test-time augmentation). The final 3x3
max-pool of the reference is a global max-pool here, the same on 28- and 32-pixel images (a 3x3 map)
and defined on other sizes.
"""

from __future__ import annotations

import torch
from torch import nn

from forgetting.nets.page import Scale, channels

WIDTHS = (64, 256, 256)
WHITEN_KERNEL = 2
BN_MOMENTUM = 0.4  # PyTorch's convention: airbench writes 0.6 for 1 - momentum
WHITEN_EPS = 5e-4


class Conv(nn.Conv2d):
    """3x3 'same' convolution without bias, initialised as the identity on its first input channels."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int = 3, padding="same", bias: bool = False):
        super().__init__(c_in, c_out, kernel_size=kernel_size, padding=padding, bias=bias)

    def reset_parameters(self):
        super().reset_parameters()
        if self.bias is not None:
            self.bias.data.zero_()
        w = self.weight.data
        torch.nn.init.dirac_(w[: w.size(1)])


class BatchNorm(nn.BatchNorm2d):
    def __init__(self, num_features: int):
        super().__init__(num_features, eps=1e-12, momentum=BN_MOMENTUM)
        self.weight.requires_grad = False  # PyTorch initialises it to 1: it stays 1


class ConvGroup(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv1 = Conv(c_in, c_out)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = BatchNorm(c_out)
        self.conv2 = Conv(c_out, c_out)
        self.norm2 = BatchNorm(c_out)
        self.activ = nn.GELU()

    def forward(self, x):
        x = self.activ(self.norm1(self.pool(self.conv1(x))))
        return self.activ(self.norm2(self.conv2(x)))


class Airbench94(nn.Sequential):
    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: float = 1.0):
        w1, w2, w3 = (channels(c, width) for c in WIDTHS)
        whiten = 2 * in_channels * WHITEN_KERNEL**2
        super().__init__(
            Conv(in_channels, whiten, WHITEN_KERNEL, padding=0, bias=True),
            nn.GELU(),
            ConvGroup(whiten, w1),
            ConvGroup(w1, w2),
            ConvGroup(w2, w3),
            nn.AdaptiveMaxPool2d(1),
            nn.Flatten(),
            nn.Linear(w3, num_classes, bias=False),
            Scale(1 / 9),
        )
        self[0].weight.requires_grad = False  # set from the data (`init_from_data`), then fixed

    @torch.no_grad()
    def init_from_data(self, images: torch.Tensor) -> None:
        """The whitening filters from normalised training images (N, C, H, W), as airbench's
        init_whitening_conv does with the first 5,000 training images."""
        layer = self[0]
        c, (h, w) = images.shape[1], layer.weight.shape[2:]
        patches = images.float().unfold(2, h, 1).unfold(3, w, 1).transpose(1, 3).reshape(-1, c, h, w)
        flat = patches.reshape(len(patches), -1)
        covariance = (flat.T @ flat) / len(flat)
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance, UPLO="U")
        eigenvalues = eigenvalues.flip(0).view(-1, 1, 1, 1)
        eigenvectors = eigenvectors.T.reshape(c * h * w, c, h, w).flip(0)
        scaled = eigenvectors / torch.sqrt(eigenvalues + WHITEN_EPS)
        layer.weight.data[:] = torch.cat((scaled, -scaled)).to(layer.weight.dtype)


def airbench94(num_classes: int = 10, in_channels: int = 3, width: float = 1.0) -> nn.Module:
    return Airbench94(num_classes, in_channels, width)
