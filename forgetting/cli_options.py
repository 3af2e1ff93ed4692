"""The command line's options that several commands share, each declared once, and their parsing.

`study_options` gives sweep-lr and probe-epochs the StudyOptions fields as options of their own, and
hands them to the command as one object; the parsers turn option text into study overrides.

One command language: an option is named after the setting it sets (a study file's key, or a
TrainConfig field for the commands that train one network), singular for one value and plural for a
comma-separated list. So --lr (one run's peak LR) and --base-lr (the LR a study's multipliers scale),
--seed (one run's) and --seeds (a list), --subset (one size) and --sizes (an lr-sweep's list of subset
sizes) are different settings, as are --store (a run store: a folder per study, resumed and merged) and
--out (the folder a command writes its own files into). Every option's help ends with its default.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Optional, get_type_hints

import typer
from typer.core import TyperCommand, TyperGroup

from forgetting.errors import UserError

STUDY_FILE = "from the study file"  # the default of an option that overrides a study file's value

# typer (0.2x) shows each parameter's Python type beside it (<str>, <list[Path]>); a plain metavar says
# what to type instead, a switch needs none, and an argument's name is its own.
_METAVARS = {int: "N", float: "FLOAT", Path: "PATH", str: "TEXT"}


def _plain(param) -> None:
    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    if annotation is None:  # an older typer: click's plain names (TEXT, INTEGER) already
        return
    if param.param_type_name == "argument":
        param.metavar = param.metavar or param.name.upper()
        param.display_type_rich = lambda ctx: None  # typer shows an argument's type whatever its metavar
    elif param.metavar is None:
        param.metavar = "" if param.is_flag else _METAVARS.get(annotation, "TEXT")


class _PlainHelp:
    def get_params(self, ctx):
        params = super().get_params(ctx)
        for p in params:
            _plain(p)
        return params


class Command(_PlainHelp, TyperCommand):
    """A command whose help shows plain metavars (N, PATH) where typer would show Python types."""


class Group(_PlainHelp, TyperGroup):
    """The command group, its help as plain as its commands'."""


def option(default, *names: str, help: str, shown: str | bool = True, metavar: str | None = None):
    """An option whose help shows its default: the value itself, or ``shown`` where the value is None (or
    a switch's False) and stands for something (the study file's value, the preset's, ...)."""
    return typer.Option(default, *names, help=help, show_default=shown, metavar=metavar)


def switch(name: str, help: str):
    """An option that is off unless given."""
    return option(False, name, help=help, shown="off")


def net_option(default: Optional[str], shown: str | bool = True):
    text = "dawn18, resnet9, airbench94, or your own network as 'package.module:factory'"
    return option(default, "--net", help=text, shown=shown, metavar="NAME")


def width_option(default: Optional[float], shown: str | bool = True):
    return option(default, "--width", help="channel multiplier (0.25 = a quarter of the channels)", shown=shown)


def batch_size_option(default: Optional[int], shown: str | bool = True):
    return option(default, "--batch-size", help="images per step", shown=shown)


def seeds_option(default: Optional[str], shown: str | bool = True):
    return option(default, "--seeds", help="seeds, comma-separated (e.g. 0,1,2)", shown=shown, metavar="N,N,...")


def precision_option(default: Optional[str], shown: str | bool = True):
    text = "auto (bf16/fp16 on CUDA, fp32 on CPU), fp32, bf16 or fp16"
    return option(default, "--precision", help=text, shown=shown, metavar="NAME")


def optimizer_option(default: Optional[str], shown: str | bool = True):
    text = "sgd (Page's Nesterov SGD) or adamw; its settings: the study file's train keys"
    return option(default, "--optimizer", help=text, shown=shown, metavar="NAME")


def compile_option(shown: str):
    return option(None, "--compile/--no-compile", help="torch.compile the training step", shown=shown)


def drop_last_option(shown: str):
    return option(None, "--drop-last/--keep-last", help="drop or keep each epoch's partial batch", shown=shown)


def dataset_option(shown: str):
    text = "cifar10, cifar100, svhn, mnist, fashion-mnist, or a name of your own for the .npz that --data names"
    return option(None, "--dataset", help=text, shown=shown, metavar="NAME")


def data_option(shown: str):
    text = "the data set's .npz or folder in torchvision's format"
    return option(None, "--data", help=text, shown=shown, metavar="PATH")


# Where a data set is found when neither a study nor --data names it (`datasets.load_dataset`).
DATA_FOUND = "for CIFAR-10 $FORGETTING_DATA, then the user cache `forgetting data NAME --download` fills"
COMPILE_DEFAULT = "on for CUDA, off on CPU"
KEEP_LAST = "keep-last, as Page's loader"

DeviceOpt = option("auto", "--device", help="auto, cpu or cuda", metavar="DEVICE")
StoreOpt = option(Path("store"), "--store", help="run store (one folder per study)")
ShardOpt = option(
    None,
    "--shard",
    help="K/N: run only the K-th of N pieces of equal work (then `forgetting merge` the stores)",
    shown="the whole study",
    metavar="K/N",
)
DryRunOpt = switch("--dry-run", "list the runs (of the shard) and their work; train nothing")
TimeLimitOpt = option(
    None,
    "--time-limit",
    help="start no run that would not end within this time (90m, 2h, 3600s or seconds); the rest is left "
    "for the same command again",
    shown="none",
    metavar="DURATION",
)


def _print_version(asked: bool) -> None:
    if asked:
        from forgetting.console import console

        console.print(f"forgetting {package_version()}", highlight=False)
        raise typer.Exit()


def package_version() -> str:
    """The installed package's version; the source's own where it runs uninstalled (PYTHONPATH)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("forgetting")
    except PackageNotFoundError:
        from forgetting import __version__

        return __version__


VersionOpt = typer.Option(
    False, "--version", help="print the version and exit", callback=_print_version, is_eager=True
)

# The order of each command's overrides: an overridden study's scale line names them so.
SWEEP_OVERRIDES = (
    *("multipliers", "sizes", "epochs", "warmup", "batch_size", "seeds", "base_lr", "width"),
    *("precision", "compile", "drop_last", "net", "optimizer", "dataset", "data"),
)
# What `run` overrides in a study of any kind: the options every kind's training reads.
RUN_OVERRIDES = (
    *("multipliers", "epochs", "warmup", "batch_size", "seeds", "base_lr", "width"),
    *("precision", "compile", "drop_last", "net", "optimizer", "dataset", "data"),
)
PROBE_OVERRIDES = (
    *("epochs", "warmup", "width", "subset", "batch_size", "multipliers", "base_lr", "seeds", "last_epochs", "bn"),
    *("precision", "compile", "drop_last", "net", "optimizer", "dataset", "data"),
)


def parse_floats(text: Optional[str], name: str) -> Optional[list[float]]:
    if text is None:
        return None
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"--{name} must be a comma-separated list of numbers, not {text!r}") from None


def parse_ints(text: Optional[str], name: str) -> Optional[list[int]]:
    values = parse_floats(text, name)
    if values is not None and any(v != int(v) for v in values):
        raise UserError(f"--{name} must be a comma-separated list of integers, not {text!r}")
    return None if values is None else [int(v) for v in values]


def parse_base_lr(text: Optional[str]):
    if text is None or text == "find":
        return text
    try:
        return float(text)
    except ValueError:
        raise UserError(f"--base-lr must be 'find' or a number, not {text!r}") from None


def _study(info):
    return field(default=info.default, metadata={"option": info})


@dataclass(frozen=True)
class StudyOptions:
    """The options sweep-lr and probe-epochs share, each declared once here (`study_options` adds them)."""

    multipliers: Optional[str] = _study(
        option(None, help="LR multipliers of the base LR, comma-separated", shown=STUDY_FILE, metavar="X,X,...")
    )
    epochs: Optional[int] = _study(option(None, help="epochs per run", shown=STUDY_FILE))
    warmup: Optional[float] = _study(
        option(None, help="epochs of linear warm-up before the constant LR", shown=STUDY_FILE)
    )
    batch_size: Optional[int] = _study(batch_size_option(None, STUDY_FILE))
    seeds: Optional[str] = _study(seeds_option(None, STUDY_FILE))
    base_lr: Optional[str] = _study(
        option(None, help="'find' (LR range test) or the LR the multipliers scale", shown=STUDY_FILE, metavar="LR")
    )
    net: Optional[str] = _study(net_option(None, STUDY_FILE))
    width: Optional[float] = _study(width_option(None, STUDY_FILE))
    optimizer: Optional[str] = _study(optimizer_option(None, STUDY_FILE))
    precision: Optional[str] = _study(precision_option(None, STUDY_FILE))
    compile: Optional[bool] = _study(compile_option(STUDY_FILE))
    drop_last: Optional[bool] = _study(drop_last_option(STUDY_FILE))
    store: Path = _study(StoreOpt)
    executor: str = _study(
        option("local", help="local (this process, or --workers processes), inprocess, ray or slurm", metavar="NAME")
    )
    tensorboard: Optional[Path] = _study(
        option(
            None,
            help="write each run's curves into this folder for TensorBoard",
            shown="the study file's tensorboard key, else none",
        )
    )
    shard: Optional[str] = _study(ShardOpt)
    dry_run: bool = _study(DryRunOpt)
    time_limit: Optional[str] = _study(TimeLimitOpt)
    device: str = _study(DeviceOpt)
    dataset: Optional[str] = _study(dataset_option(STUDY_FILE))
    data: Optional[str] = _study(data_option(f"{STUDY_FILE}, else {DATA_FOUND}"))

    def load(self, name: str, kind: str, order: tuple[str, ...], **own):
        """The study with these options and the command's ``own`` as overrides, parsed and applied in
        ``order`` (the order an overridden study's scale line names them in)."""
        from forgetting import studies

        study = studies.load_study(name, kind=kind)
        values = {**{f.name: getattr(self, f.name) for f in fields(self)}, **own}
        return study.with_overrides(**{k: _parsed(k, values[k]) for k in order})

    def piece(self):
        from forgetting.shards import Shard

        return None if self.shard is None else Shard.parse(self.shard)

    def executor_settings(self, backend: dict):
        """The settings of the chosen executor; ``backend``: every backend's options as given. An option of
        another backend that was set is refused (it would be ignored)."""
        from forgetting.execution.settings import ExecutorSettings, backend_options
        from forgetting.timelimit import parse_duration

        limit = None if self.time_limit is None else parse_duration(self.time_limit)
        own, options = {}, backend_options()
        for name, value in backend.items():
            owner, option = options[name]
            if owner == self.executor:
                own[name] = value
            elif value != option.default:
                raise UserError(f"--{name.replace('_', '-')} is an option of the {owner} executor, not {self.executor}")
        settings = ExecutorSettings(executor=self.executor, device=self.device, time_limit=limit, **own)
        settings.check()
        return settings


def _parsed(key: str, value):
    """An option's text as the study override it stands for: lists and base LRs parsed, the rest as typed."""
    if key == "multipliers":
        return parse_floats(value, key)
    if key in ("sizes", "seeds"):
        return parse_ints(value, key)
    return parse_base_lr(value) if key == "base_lr" else value


def _backend_parameters() -> list[inspect.Parameter]:
    """Every registered executor's own options (`execution.base.Executor.Settings`), as keyword parameters."""
    from forgetting.execution.base import BACKENDS
    from forgetting.execution.settings import backend_options

    hints = {name: hint for b in BACKENDS.values() for name, hint in get_type_hints(b.Settings).items()}
    kw = inspect.Parameter.KEYWORD_ONLY
    return [inspect.Parameter(n, kw, default=opt, annotation=hints[n]) for n, (_, opt) in backend_options().items()]


def study_options(command):
    """``command`` with StudyOptions' options and every executor's own after its own, handed to it as one
    ``opts`` and, for the executors' options, the command's ``opts.executor_settings(backend)``."""
    hints = get_type_hints(StudyOptions)
    shared = [
        inspect.Parameter(
            f.name, inspect.Parameter.KEYWORD_ONLY, default=f.metadata["option"], annotation=hints[f.name]
        )
        for f in fields(StudyOptions)
    ]
    backends = _backend_parameters()
    params = inspect.signature(command, eval_str=True).parameters.values()
    own = [p for p in params if p.name not in ("opts", "backend")]

    @functools.wraps(command)
    def with_options(**values):
        opts = StudyOptions(**{f.name: values.pop(f.name) for f in fields(StudyOptions)})
        backend = {p.name: values.pop(p.name) for p in backends}
        return command(**values, opts=opts, backend=backend)

    shared += backends
    with_options.__signature__ = inspect.Signature(own + shared)
    with_options.__annotations__ = {p.name: p.annotation for p in own + shared}
    return with_options
