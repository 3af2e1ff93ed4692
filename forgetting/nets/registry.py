"""Networks by name: the built-ins, a user's registered factory, or a factory named by import path.

A factory is called as ``factory(num_classes=..., in_channels=..., width=...)`` (a built-in takes its own
settings besides: dawn18 ``shortcut`` and ``bn_init``, resnet9 ``bn_init``) and returns an ``nn.Module``.
A user's network named ``"package.module:factory"`` is imported where the run trains (a worker process,
a Ray task), and identified by that name plus a hash of the module's source file, so that editing the
module renames its runs. A network may define ``init_from_data(images)``: it is called once, before
training, with normalised training images of the run (airbench's whitening layer).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from torch import nn

from forgetting.errors import UserError

IMPORT_PATH = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")  # "package.module:factory"
OPTIONS = ("shortcut", "bn_init")  # the built-ins' own settings, and the value each has when unused
UNUSED = {"shortcut": "page", "bn_init": None}


@dataclass(frozen=True)
class NetSpec:
    name: str
    factory: Callable[..., nn.Module]
    options: tuple[str, ...] = ()  # which of OPTIONS the factory takes
    source: str = ""  # a hash of a user's factory's source: part of a run's identity ("" for built-ins)
    portable: bool = True  # worker processes find it by its name (a built-in, or an import path)


REGISTRY: dict[str, NetSpec] = {}


def register(name: str, factory: Callable[..., nn.Module], options: tuple[str, ...] = ()) -> NetSpec:
    """Add a network by name, as the built-ins are added. A user's factory registered so exists only in
    this process: worker processes and Ray tasks need it by import path ("package.module:factory")."""
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][\w.-]*", name):
        raise UserError(f"network name {name!r}: use letters, digits, '-', '_' and '.'")
    if name in REGISTRY and REGISTRY[name].factory is not factory:
        raise UserError(f"a network named {name!r} is already registered")
    module = getattr(factory, "__module__", "") or ""
    builtin = module == "forgetting.nets" or module.startswith("forgetting.nets.")  # the toolkit's own
    spec = NetSpec(name, factory, tuple(options), "" if builtin else _hash(_callable_source(factory)), builtin)
    REGISTRY[name] = spec
    return spec


def _hash(text: bytes) -> str:
    return hashlib.sha256(text).hexdigest()[:12]


def _callable_source(factory) -> bytes:
    try:
        return inspect.getsource(factory).encode()
    except (OSError, TypeError):  # defined at a prompt: its compiled code stands for its source
        return getattr(getattr(factory, "__code__", None), "co_code", repr(factory).encode())


def is_import_path(net: str) -> bool:
    return isinstance(net, str) and IMPORT_PATH.fullmatch(net) is not None


def _module_file(module: str) -> Path:
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError) as e:
        raise UserError(f"network module {module!r} cannot be found ({type(e).__name__}: {e})") from None
    if found is None or not found.origin or not Path(found.origin).is_file():
        raise UserError(f"network module {module!r} cannot be found: is its folder on PYTHONPATH?")
    return Path(found.origin)


def source_hash(net: str) -> str:
    """What identifies a network's code in a run's id: "" for a built-in; for an import path, a hash of the
    module's source file; for a registered factory, of its source."""
    if is_import_path(net):
        return _hash(_module_file(net.split(":")[0]).read_bytes())
    return lookup(net).source


def import_root(net: str) -> str | None:
    """The folder on sys.path that an import-path network's module is found under (None for others)."""
    if not is_import_path(net):
        return None
    module = net.split(":")[0]
    path = _module_file(module)
    depth = len(module.split(".")) + (path.name == "__init__.py")
    return str(path.parents[depth - 1])


_LOADED: dict[str, str] = {}  # module name -> hash of the source it was imported from


def _import(module: str):
    """The module, imported afresh when its file has changed since it was imported in this process."""
    digest = _hash(_module_file(module).read_bytes())
    try:
        loaded = sys.modules.get(module)
        mod = importlib.reload(loaded) if loaded is not None and _LOADED.get(module) != digest else None
        mod = mod or importlib.import_module(module)
    except Exception as e:
        raise UserError(f"network module {module!r} fails to import ({type(e).__name__}: {e})") from None
    _LOADED[module] = digest
    return mod


def lookup(net: str) -> NetSpec:
    """The network ``net`` names: a registered name, or an import path (imported here)."""
    if isinstance(net, str) and net in REGISTRY:
        return REGISTRY[net]
    if not is_import_path(net):
        raise UserError(f"unknown net {net!r} (choose from {', '.join(REGISTRY)}, or 'package.module:factory')")
    module, attr = net.split(":")
    factory = _import(module)
    for part in attr.split("."):
        factory = getattr(factory, part, None)
    if not callable(factory):
        raise UserError(f"net {net!r}: {module} has no callable {attr!r}")
    return NetSpec(net, factory, source=source_hash(net))


def check_known(net: str) -> None:
    """A name the registry knows or a well-formed import path; the module itself is looked for later."""
    if not (isinstance(net, str) and (net in REGISTRY or is_import_path(net))):
        raise UserError(f"unknown net {net!r} (choose from {', '.join(REGISTRY)}, or 'package.module:factory')")


def check_options(net: str, **options) -> None:
    """Refuse a built-in's own setting (``shortcut``, ``bn_init``) for a network that does not take it."""
    takes = REGISTRY[net].options if net in REGISTRY else ()
    for key in OPTIONS:
        if options.get(key, UNUSED[key]) != UNUSED[key] and key not in takes:
            raise UserError(f"net {net!r} takes no {key} setting (only {', '.join(takes) or 'none'})")


def check_portable(net: str) -> None:
    """Refuse, before any run starts, a network that worker processes cannot find by its name."""
    if net in REGISTRY and not REGISTRY[net].portable:
        raise UserError(
            f"net {net!r} is registered in this process only: worker processes and Ray tasks cannot import it; "
            f"put its factory in a module on PYTHONPATH and name it 'module:factory', or train in this process"
        )


def name_of(net) -> str:
    """A network given as a name or as a callable (the Python API): its name, registering a callable that
    cannot be imported by name (a closure, a function of a script) under its own name in this process."""
    if isinstance(net, str):
        return net
    if not callable(net):
        raise UserError(f"a network is a name or a callable returning an nn.Module, not {type(net).__name__}")
    module, qualname = getattr(net, "__module__", None), getattr(net, "__qualname__", "")
    if module and module != "__main__" and "<" not in qualname:
        path = f"{module}:{qualname}"
        try:
            if lookup(path).factory is net:
                return path
        except UserError:
            pass
    return register(getattr(net, "__name__", "net").strip("<>") or "net", net).name


def build(
    net: str, num_classes: int, in_channels: int, width: float = 1.0, source: str | None = None, **options
) -> nn.Module:
    """Network ``net`` for ``num_classes`` classes of ``in_channels``-channel images. ``source``: the hash a
    run recorded for a user's network; a module whose source has changed since is refused."""
    if not width > 0:
        raise UserError(f"width must be positive, not {width}")
    spec = lookup(net)
    if source and spec.source and source != spec.source:
        raise UserError(
            f"net {net!r}: its source has changed since the run was named (source {source}, now {spec.source}): "
            f"a changed network is another run"
        )
    check_options(net, **options)
    given = {k: v for k, v in options.items() if k in spec.options and v is not None}
    model = spec.factory(num_classes=num_classes, in_channels=in_channels, width=width, **given)
    if not isinstance(model, nn.Module):
        raise UserError(f"net {net!r} returned a {type(model).__name__}, not an nn.Module")
    return model
