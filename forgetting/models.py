"""Page's networks by the names the toolkit used before networks were open (`forgetting.nets` is the general
form): `dawn18` (Parts 1-3) and `resnet9` (Part 4 on), docs/protocol.md, sections 1-2."""

from __future__ import annotations

from torch import nn

from forgetting import nets
from forgetting.errors import UserError
from forgetting.nets.flops import forward_flops  # noqa: F401  (the names callers import from here)
from forgetting.nets.page import BN_INITS, SHORTCUTS, ConcatPool, PreActBlock, Residual, Scale  # noqa: F401
from forgetting.nets.page import channels, dawn18, resnet9  # noqa: F401

NETS = ("dawn18", "resnet9")


def build(
    net: str,
    width: float = 1.0,
    shortcut: str = "page",
    bn_init: str | None = None,
    num_classes: int = 10,
    in_channels: int = 3,
) -> nn.Module:
    """A network by name (`nets.build`); ``bn_init`` defaults to each net's faithful choice."""
    if bn_init is not None and bn_init not in BN_INITS:
        raise UserError(f"bn_init must be {' or '.join(BN_INITS)}, not {bn_init!r}")
    return nets.build(net, num_classes, in_channels, width, shortcut=shortcut, bn_init=bn_init)
