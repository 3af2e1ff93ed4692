"""How a study's jobs are executed: one object from the command line or the API to the executor.

``ExecutorSettings(executor="ray", device="cpu", gpus_per_run=0.5)``: the backend by name, the device and
time limit every backend shares, and the backend's own settings (its `Settings` dataclass), checked by
the backend. The built-in backends join the registry here, as a user's own would (`base.register`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from forgetting.errors import UserError
from forgetting.execution.base import BACKENDS, BackendSettings, Executor, backend_named, option_names, register
from forgetting.execution.inprocess import InProcessExecutor
from forgetting.execution.local import LocalExecutor
from forgetting.execution.ray_backend import RayExecutor
from forgetting.execution.slurm import SlurmExecutor

for _builtin in (LocalExecutor, InProcessExecutor, RayExecutor, SlurmExecutor):
    register(_builtin)


def owner(option: str) -> str | None:
    """The backend whose settings have ``option`` (a field name)."""
    return next((name for name, b in BACKENDS.items() if option in option_names(b.Settings)), None)


@dataclass(frozen=True, init=False)
class ExecutorSettings:
    """The executor by name, the device and time limit all share, and that executor's own settings."""

    executor: str  # a registered backend: local (in this process, or --workers processes), inprocess, ray, slurm
    device: str  # auto, cpu or cuda, resolved where each job runs (Ray: cuda when gpus_per_run > 0, else cpu)
    time_limit: float | None  # seconds from the sweep's start after which no run starts, where honoured
    backend: BackendSettings

    def __init__(self, executor: str = "local", device: str = "auto", time_limit: float | None = None,
                 backend: BackendSettings | None = None, **options):
        kind = backend_named(executor)
        if backend is None:
            for name in options:
                if name not in option_names(kind.Settings):
                    where = owner(name)
                    whose = f"an option of the {where} executor" if where else "no executor's option"
                    raise UserError(f"--{name.replace('_', '-')} is {whose}, not of {executor}")
            backend = kind.Settings(**options)
        object.__setattr__(self, "executor", executor)
        object.__setattr__(self, "device", device)
        object.__setattr__(self, "time_limit", time_limit)
        object.__setattr__(self, "backend", backend)

    def __getattr__(self, name: str):
        """The backend's own settings read as the executor's (``settings.workers``, ``settings.gpus_per_run``)."""
        if name != "backend" and "backend" in self.__dict__ and name in option_names(type(self.backend)):
            return getattr(self.backend, name)
        raise AttributeError(name)

    @property
    def kind(self) -> type[Executor]:
        return backend_named(self.executor)

    def check(self) -> None:
        """Refuse, with the command line's words, settings the executor cannot follow."""
        self.backend.check()
        if self.time_limit is not None and self.kind.time_limit_refusal:
            raise UserError(self.kind.time_limit_refusal)

    @property
    def in_process(self) -> bool:
        """The jobs run one after another in this process (so a progress bar can follow each one)."""
        return self.kind.runs_in_process(self.backend)

    def make(self, data) -> Executor:
        """The executor, ready to run jobs on ``data`` (checked first)."""
        self.check()
        device = self.device
        if self.kind.on_this_machine:  # checked here, before any job starts (elsewhere: where each job runs)
            from forgetting.device import resolve_device

            device = str(resolve_device(device))
        return self.kind.create(self.backend, data, device)


def backend_options() -> dict[str, tuple[str, object]]:
    """Every registered backend's command-line options: field name -> (backend, typer option)."""
    return {f.name: (name, f.metadata["option"]) for name, b in BACKENDS.items() for f in fields(b.Settings)}
