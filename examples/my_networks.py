"""A network of your own, for `examples/own_network.toml` (`net = "my_networks:small_resnet"`).

The toolkit calls the factory as ``small_resnet(num_classes=..., in_channels=..., width=...)`` where the run
trains (in this process, a worker process or a Ray task, which import this module by its name), and names
the runs by "my_networks:small_resnet" plus a hash of this file: edit it and its runs are new runs.
"""

from torch import nn


def conv_bn(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())


class Residual(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(conv_bn(c, c), conv_bn(c, c))

    def forward(self, x):
        return x + self.body(x)


def small_resnet(num_classes: int, in_channels: int, width: float) -> nn.Module:
    """Two stages of conv-BN-ReLU and a residual block, global average pooling, a linear head."""
    c1, c2 = max(1, round(32 * width)), max(1, round(64 * width))
    return nn.Sequential(
        conv_bn(in_channels, c1),
        Residual(c1),
        nn.MaxPool2d(2),
        conv_bn(c1, c2),
        Residual(c2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(c2, num_classes),
    )
