"""The command line's options that several commands share, each declared once, and their parsing.

`study_options` gives sweep-lr and probe-epochs the StudyOptions fields as options of their own, and
hands them to the command as one object; the parsers turn option text into study overrides.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Optional, get_type_hints

import typer

from forgetting.errors import UserError

DataOpt = typer.Option(
    None,
    "--data",
    help="the data set's .npz or folder in torchvision's format (default: the study's [data] path; for CIFAR-10 "
    "$FORGETTING_DATA; then the user cache `forgetting data NAME --download` fills)",
)
DatasetOpt = typer.Option(
    None,
    "--dataset",
    help="cifar10, cifar100, svhn, mnist, fashion-mnist, or a name of your own for the .npz that --data names "
    "(default: the study's [data] name, else cifar10)",
)
DeviceOpt = typer.Option("auto", "--device", help="auto, cpu or cuda")
PrecisionOpt = typer.Option(None, "--precision", help="auto (bf16/fp16 on CUDA, fp32 on CPU), fp32, bf16 or fp16")
CompileOpt = typer.Option(None, "--compile/--no-compile", help="torch.compile the training step (default: CUDA only)")
DropLastOpt = typer.Option(
    None, "--drop-last/--keep-last", help="drop or keep each epoch's partial batch (default: keep, as Page's loader)"
)

OptimizerOpt = typer.Option(
    None, "--optimizer", help="sgd (Page's Nesterov SGD) or adamw; its settings: the study's [train] keys"
)

StoreOpt = typer.Option(Path("store"), "--store", help="run store (one folder per study)")

ShardOpt = typer.Option(
    None, "--shard", help="K/N: run only the K-th of N pieces of equal work (then `forgetting merge` the stores)"
)
DryRunOpt = typer.Option(False, "--dry-run", help="list the runs (of the shard) and their work; train nothing")
TimeLimitOpt = typer.Option(
    None,
    "--time-limit",
    help="start no run that would not end within this time (90m, 2h, 3600s or seconds); the rest is left "
    "for the same command again",
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


def _option(info):
    return field(default=info.default, metadata={"option": info})


@dataclass(frozen=True)
class StudyOptions:
    """The options sweep-lr and probe-epochs share, each declared once here (`study_options` adds them)."""

    multipliers: Optional[str] = _option(typer.Option(None, help="LR multipliers of the base LR, comma-separated"))
    epochs: Optional[int] = _option(typer.Option(None, help="epochs per run"))
    warmup: Optional[float] = _option(typer.Option(None, help="epochs of linear warm-up before the constant LR"))
    batch_size: Optional[int] = _option(typer.Option(None, help="images per step"))
    seeds: Optional[str] = _option(typer.Option(None, help="seeds, comma-separated"))
    base_lr: Optional[str] = _option(typer.Option(None, help="'find' (LR range test) or a number"))
    net: Optional[str] = _option(
        typer.Option(None, help="dawn18, resnet9, airbench94, or your own network as 'package.module:factory'")
    )
    width: Optional[float] = _option(typer.Option(None, help="channel multiplier"))
    optimizer: Optional[str] = _option(OptimizerOpt)
    precision: Optional[str] = _option(PrecisionOpt)
    compile: Optional[bool] = _option(CompileOpt)
    drop_last: Optional[bool] = _option(DropLastOpt)
    store: Path = _option(StoreOpt)
    executor: str = _option(
        typer.Option("local", help="local (this process, or --workers processes), inprocess, ray or slurm")
    )
    tensorboard: Optional[Path] = _option(
        typer.Option(None, help="write each run's curves into this folder for TensorBoard (study key: tensorboard)")
    )
    shard: Optional[str] = _option(ShardOpt)
    dry_run: bool = _option(DryRunOpt)
    time_limit: Optional[str] = _option(TimeLimitOpt)
    device: str = _option(DeviceOpt)
    dataset: Optional[str] = _option(DatasetOpt)
    data: Optional[str] = _option(DataOpt)

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
