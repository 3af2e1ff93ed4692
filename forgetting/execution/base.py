"""The executor interface: where a study's jobs run (a run's training, a run's probe), behind one shape.

In the spirit of submitit's `Executor`: every backend takes the same jobs and hands each outcome to the
same sink, and owns what is its own: its settings (a dataclass whose fields carry their command-line
options), their checks, whether it honours ``--time-limit``, and how its failures read as a `RunFailure`.
A backend joins the registry with `register`, the built-ins the same way (`execution.settings`).
"""

from __future__ import annotations

import traceback
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, ClassVar, Protocol

from forgetting.errors import UserError
from forgetting.timelimit import TimeBudget


@dataclass(frozen=True)
class RunFailure:
    """Why a job failed, as every executor records it (a run's failed.json)."""

    type: str  # the exception's class name
    message: str
    traceback: str  # where it was raised: the worker's or the task's own traceback where there is one

    @classmethod
    def of(cls, error: BaseException) -> "RunFailure":
        # A worker process's exception carries the worker's traceback as its cause: format_exception shows it.
        return cls(type(error).__name__, str(error), "".join(traceback.format_exception(error)))

    @property
    def line(self) -> str:
        """One line for the terminal: 'Type: message'."""
        first = self.message.strip().splitlines()[0] if self.message.strip() else ""
        return f"{self.type}: {first}" if first else self.type

    def to_dict(self) -> dict:
        return dict(type=self.type, message=self.message, traceback=self.traceback)


@dataclass(frozen=True)
class Job:
    """One unit of work: ``fn(worker, **kwargs)`` where the backend runs it. ``fn`` is a module-level
    function (it travels by pickle to other processes and machines); ``spec`` is the run it is about."""

    spec: Any  # grid.RunSpec
    fn: Callable[..., Any]
    kwargs: dict = field(default_factory=dict)

    @property
    def work(self) -> float:
        return self.spec.work


@dataclass
class Worker:
    """What a job finds where it runs: the data, the device, and what that place offers."""

    data: Any  # datasets.Dataset
    device: str
    cache: dict | None = None  # prepared data shared by the jobs of one process
    callbacks: Any = None  # progress hooks of a job run in the driver's own process
    shares_disk: bool = True  # the store is on this machine's disk (checkpoints, run folders)


@dataclass(frozen=True)
class Kept:
    """The outcome of a job that stored what it made itself, where it ran (a shared disk): its report."""

    report: Any


class Sink(Protocol):
    """Where outcomes go, in the driver (the sweep's or the probe's)."""

    heartbeat_seconds: float | None
    scratch: Path  # a folder of the store for a backend's own files (submitit's job files and logs)

    def started(self, spec) -> None: ...
    def finished(self, spec, outcome) -> None: ...
    def failed(self, spec, failure: RunFailure) -> None: ...
    def heartbeat(self) -> None: ...
    def callbacks(self, spec) -> Any: ...  # progress hooks when the job runs in the driver's process
    def keeper(self, spec) -> Callable | None: ...  # picklable: stores a job's outcome where it ran (-> Kept)


@dataclass(frozen=True)
class BackendSettings:
    """A backend's own settings; each field's ``metadata["option"]`` is its command-line option."""

    def check(self) -> None:
        """Refuse, with the command line's words, settings this backend cannot follow."""


class Executor(ABC):
    """Runs jobs and hands each outcome to the sink: `deliver` records a finished job or a `RunFailure`."""

    name: ClassVar[str]
    Settings: ClassVar[type[BackendSettings]] = BackendSettings
    # None: --time-limit is honoured (no job starts that would not end in time); else the one line refusing it
    time_limit_refusal: ClassVar[str | None] = None
    in_process: ClassVar[bool] = False  # jobs run in this process: progress bars can follow each one
    shares_disk: ClassVar[bool] = True  # jobs read and write the store where they run
    on_this_machine: ClassVar[bool] = True  # jobs run here: the device is resolved before they start

    def __init__(self, settings: BackendSettings, data, device: str):
        self.settings, self.data, self.device = settings, data, device

    @classmethod
    def create(cls, settings: BackendSettings, data, device: str) -> "Executor":
        """The executor for ``settings`` (a backend may hand the jobs to another, as local does with one worker)."""
        return cls(settings, data, device)

    @classmethod
    def runs_in_process(cls, settings: BackendSettings) -> bool:
        return cls.in_process

    @abstractmethod
    def run(self, jobs: list[Job], sink: Sink, budget: TimeBudget | None = None) -> None:
        """Run ``jobs``, deliver each outcome to ``sink``; with a budget, start no job it does not allow."""

    def failure(self, error: BaseException) -> RunFailure:
        """The backend's own error shapes as the toolkit's record of a failed job."""
        return RunFailure.of(error)

    def deliver(self, spec, outcome: Callable[[], Any], sink: Sink) -> bool:
        """Get a job's outcome and hand it to the sink, or record why it failed; True if it finished."""
        try:
            value = outcome()
        except UserError:  # a full disk: the user's to fix, so the sweep stops with its one line
            raise
        except Exception as e:
            failure = self.failure(e)
            sink.failed(spec, failure)
            return False
        sink.finished(spec, value)
        return True


BACKENDS: dict[str, type[Executor]] = {}


def register(backend: type[Executor]) -> type[Executor]:
    """Make ``backend`` available as ``--executor NAME`` (and ``ExecutorSettings(executor=NAME)``)."""
    BACKENDS[backend.name] = backend
    return backend


def backend_named(name: str) -> type[Executor]:
    if name not in BACKENDS:
        raise UserError(f"executor must be one of {', '.join(BACKENDS)}, not {name!r}")
    return BACKENDS[name]


def option_names(settings_type: type) -> list[str]:
    return [f.name for f in fields(settings_type)]
