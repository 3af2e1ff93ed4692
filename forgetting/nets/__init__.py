"""Networks: a registry of built-ins (dawn18, resnet9, airbench94) that a user's network joins by name, by
import path ("package.module:factory") or, in the Python API, as a callable. Nothing here imports more of
the toolkit than its errors."""

from forgetting.nets import airbench, page
from forgetting.nets.flops import forward_flops
from forgetting.nets.registry import (
    NetSpec,
    build,
    check_known,
    check_options,
    check_portable,
    import_root,
    is_import_path,
    lookup,
    name_of,
    register,
    source_hash,
)

BN_INITS = page.BN_INITS
SHORTCUTS = page.SHORTCUTS
BUILT_IN = ("dawn18", "resnet9", "airbench94")


def _dawn18(num_classes: int, in_channels: int, width: float, shortcut: str = "page", bn_init: str = "uniform"):
    return page.dawn18(width, shortcut, bn_init, num_classes, in_channels)


def _resnet9(num_classes: int, in_channels: int, width: float, bn_init: str = "ones"):
    return page.resnet9(width, bn_init, num_classes, in_channels)


register("dawn18", _dawn18, ("shortcut", "bn_init"))
register("resnet9", _resnet9, ("bn_init",))
register("airbench94", airbench.airbench94)

__all__ = [
    "BN_INITS",
    "BUILT_IN",
    "SHORTCUTS",
    "NetSpec",
    "build",
    "check_known",
    "check_options",
    "check_portable",
    "forward_flops",
    "import_root",
    "is_import_path",
    "lookup",
    "name_of",
    "register",
    "source_hash",
]
