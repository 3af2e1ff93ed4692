"""Executors: where a sweep's runs are trained, behind one interface, with one record of a failed run.

Every executor takes the runs, trains them with the same function (`execute_run`: in this process, in a
local worker process or as a Ray task) and hands each outcome to the store and the sweep's events the
same way (`_deliver`): the run's files, or a `RunFailure`. Only the driver's process writes the store.
The in-process executor is the one to debug with: its runs train in this process, where a breakpoint
or a debugger reaches them.
"""

from __future__ import annotations

import os
import re
import sys
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Callable, Protocol

import torch

from forgetting import datasets, nets
from forgetting.datasets import Dataset
from forgetting.errors import UserError
from forgetting.grid import RunSpec
from forgetting.store import RunFolder, json_bytes
from forgetting.timelimit import TimeBudget
from forgetting.config import TrainConfig
from forgetting.device import resolve_device
from forgetting.train import train

EXECUTORS = ("local", "ray")
RAY_RETRIES = 2  # a failed Ray task is retried this many times, then recorded as failed


@dataclass(frozen=True)
class ExecutorSettings:
    """How a sweep's runs are executed: one object from the command line or the API to the executor."""

    executor: str = "local"  # local (in this process, or ``workers`` processes) or ray
    workers: int = 1  # local: runs at once (the cores are split between them)
    device: str = "auto"  # auto, cpu or cuda (Ray: cuda when gpus_per_run > 0, else cpu)
    address: str | None = None  # ray: the cluster to join (None: start a local Ray)
    gpus_per_run: float = 0.0  # ray: GPU fraction per run
    cpus_per_run: float = 1.0  # ray: CPUs per run
    time_limit: float | None = None  # local: seconds from the sweep's start after which no run starts

    def check(self) -> None:
        """Refuse, with the command line's words, settings no executor can follow."""
        if self.executor not in EXECUTORS:
            raise UserError(f"executor must be local or ray, not {self.executor!r}")
        if self.workers < 1:
            raise UserError(f"--workers must be at least 1, not {self.workers}")
        if self.time_limit is not None and self.executor != "local":
            raise UserError("--time-limit needs the local executor (a Ray cluster schedules runs itself)")

    @property
    def in_process(self) -> bool:
        """The runs train one after another in this process (so a progress bar can follow each one)."""
        return self.executor == "local" and self.workers == 1


_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # Ray colours the task line of its tracebacks


@dataclass(frozen=True)
class RunFailure:
    """Why a run failed, as every executor records it in the run's failed.json."""

    type: str  # the exception's class name
    message: str
    traceback: str  # where it was raised: the worker's or the task's own traceback where there is one

    @classmethod
    def of(cls, error: BaseException) -> "RunFailure":
        cause = getattr(error, "cause", None)  # a Ray task's error wraps the task's own exception ...
        if isinstance(cause, BaseException) and cause is not error:
            return cls(type(cause).__name__, str(cause), _ANSI.sub("", str(error)))  # ... and prints its traceback
        # A worker process's exception carries the worker's traceback as its cause: format_exception shows it.
        return cls(type(error).__name__, str(error), "".join(traceback.format_exception(error)))

    @property
    def line(self) -> str:
        """One line for the terminal: 'Type: message'."""
        first = self.message.strip().splitlines()[0] if self.message.strip() else ""
        return f"{self.type}: {first}" if first else self.type

    def to_dict(self) -> dict:
        return dict(type=self.type, message=self.message, traceback=self.traceback)


def _portable_nets(specs: list[RunSpec]) -> tuple[str, ...]:
    """Refuse a network that another process cannot find by name; the folders its modules are found in."""
    for spec in specs:
        nets.check_portable(spec.config.net)
    return tuple(sorted({root for s in specs if (root := nets.import_root(s.config.net))}))


class RunStore(Protocol):
    """What an executor needs of the study's store (`sweep.StudyStore`)."""

    def checkpoint(self, spec: RunSpec) -> Path: ...
    def record(self, spec: RunSpec, files: dict[str, bytes]) -> dict: ...
    def record_failure(self, spec: RunSpec, failure: RunFailure) -> None: ...


def _deliver(spec: RunSpec, outcome: Callable[[], dict[str, bytes]], store: RunStore, events) -> bool:
    """Get a run's files from ``outcome`` and record them, or record why it failed; True if it finished."""
    try:
        files = outcome()
    except UserError as e:  # a full disk: the user's to fix, so the sweep stops with its one line
        cause = getattr(e, "cause", None)
        if isinstance(cause, UserError):  # a Ray task's own error, not Ray's wrapper (its text is a traceback)
            raise cause from None
        raise
    except Exception as e:
        failure = RunFailure.of(e)
        store.record_failure(spec, failure)
        events.run_failed(spec, failure)
        return False
    events.run_finished(spec, store.record(spec, files))
    return True


# ---------------------------------------------------------------------------------------------
# One run: the same function in-process, in a local worker process, or as a Ray task.

_WORKER: dict = {}


def _init_worker(data: Dataset | datasets.DataFile, threads: int) -> None:
    torch.set_num_threads(threads)
    _WORKER["data"] = data.load() if isinstance(data, datasets.DataFile) else data
    _WORKER["cache"] = {}


def execute_run(
    cfg_dict: dict,
    meta: dict,
    data=None,
    device: str = "auto",
    checkpoint: str | None = None,
    threads: int | None = None,
    callbacks=None,
    cache=None,
    import_paths: tuple[str, ...] = (),
) -> dict[str, bytes]:
    """Train one run and return its files (name -> bytes), ready for the driver to write (`RunFolder.write`).
    ``import_paths``: folders to find a user's network module in (a Ray worker does not share the driver's
    sys.path)."""
    if threads:
        torch.set_num_threads(threads)
    sys.path[:0] = [p for p in import_paths if p not in sys.path]
    data = data if data is not None else _WORKER["data"]
    cache = cache if cache is not None else _WORKER.get("cache")
    cfg = TrainConfig.from_dict(cfg_dict)
    out = train(
        cfg,
        data,
        resolve_device(device),
        checkpoint=Path(checkpoint) if checkpoint else None,
        callbacks=callbacks,
        cache=cache,
    )
    return {**out.files(), RunFolder.meta.name: json_bytes(meta)}  # RunFolder.write puts result.json last


# ---------------------------------------------------------------------------------------------
# The executors. run(specs, store, events, budget): train ``specs``, deliver each outcome; with a
# budget, start no run it does not allow. ``events`` are the sweep's hooks (`sweep.SweepEvents`).


class InProcessExecutor:
    """The runs one after another in this process, sharing its prepared data."""

    def __init__(self, data: Dataset, device: torch.device):
        self.data, self.device = data, device

    def run(self, specs: list[RunSpec], store: RunStore, events, budget: TimeBudget | None = None) -> None:
        cache: dict = {}
        for spec in specs:
            if budget is not None and not budget.allows(spec.work):
                return
            events.run_started(spec)
            t0 = time.monotonic()

            def outcome(spec=spec):
                return execute_run(
                    spec.config.to_dict(),
                    spec.meta,
                    self.data,
                    str(self.device),
                    checkpoint=str(store.checkpoint(spec)),
                    callbacks=events.train_callbacks(spec),
                    cache=cache,
                )

            if _deliver(spec, outcome, store, events) and budget is not None:
                budget.finished(spec.work, time.monotonic() - t0)


class LocalPoolExecutor:
    """``workers`` local processes, each with its share of the cores and its own copy of the data."""

    def __init__(self, data: Dataset, device: torch.device, workers: int):
        self.data, self.device, self.workers = datasets.shippable(data), device, workers

    def run(self, specs: list[RunSpec], store: RunStore, events, budget: TimeBudget | None = None) -> None:
        threads = max(1, (os.cpu_count() or 1) // self.workers)  # share the cores, do not oversubscribe them
        _portable_nets(specs)  # a spawned worker has the driver's sys.path
        with ProcessPoolExecutor(
            self.workers, mp_context=get_context("spawn"), initializer=_init_worker, initargs=(self.data, threads)
        ) as pool:
            try:
                self._feed(pool, specs, store, events, budget)
            except BaseException:
                # A SIGTERM or Ctrl-C meant for the sweep: its workers stop too (their checkpoints are whole
                # files), rather than the pool waiting for every run in flight to end.
                for proc in list((getattr(pool, "_processes", None) or {}).values()):
                    proc.terminate()
                raise

    def _feed(self, pool, specs, store: RunStore, events, budget: TimeBudget | None) -> None:
        """At most ``workers`` runs in flight, each submitted when a worker is free and the budget allows it."""
        queue, pending = list(specs), {}
        while queue or pending:
            while queue and len(pending) < self.workers and (budget is None or budget.allows(queue[0].work)):
                spec = queue.pop(0)
                checkpoint = store.checkpoint(spec)
                checkpoint.parent.mkdir(parents=True, exist_ok=True)
                fut = pool.submit(
                    execute_run, spec.config.to_dict(), spec.meta, None, str(self.device), str(checkpoint)
                )
                pending[fut] = (spec, time.monotonic())
                events.run_started(spec)
            if budget is not None and budget.stopped:
                queue = []
            if not pending:
                return
            done, _ = wait(pending, timeout=events.heartbeat_seconds, return_when=FIRST_COMPLETED)
            events.heartbeat()
            for fut in done:
                spec, t0 = pending.pop(fut)
                if _deliver(spec, fut.result, store, events) and budget is not None:
                    budget.finished(spec.work, time.monotonic() - t0)


class RayExecutor:
    """Each run a Ray task asking for its CPUs and GPU fraction; the files come back to the driver."""

    def __init__(self, data: Dataset, address: str | None, gpus_per_run: float, cpus_per_run: float):
        self.data, self.address, self.gpus, self.cpus = data, address, gpus_per_run, cpus_per_run

    def run(self, specs: list[RunSpec], store: RunStore, events, budget: TimeBudget | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise UserError("--executor ray needs Ray: pip install 'forgetting[ray]'") from None
        if not ray.is_initialized():
            # A cluster's own settings stand when joining one; a local Ray gets no dashboard.
            ray.init(address=self.address, log_to_driver=False) if self.address else ray.init(
                include_dashboard=False, log_to_driver=False
            )
        device = "cuda" if self.gpus > 0 else "cpu"
        paths = _portable_nets(specs)
        data_ref = ray.put(self.data)  # shipped once to the object store: no shared filesystem needed
        task = ray.remote(execute_run).options(
            num_cpus=self.cpus, num_gpus=self.gpus, max_retries=RAY_RETRIES, retry_exceptions=True
        )
        pending = {}
        for spec in specs:
            threads = max(1, int(self.cpus))
            ref = task.remote(spec.config.to_dict(), spec.meta, data_ref, device, None, threads, import_paths=paths)
            pending[ref] = spec
            events.run_started(spec)
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            _deliver(pending.pop(done[0]), lambda: ray.get(done[0]), store, events)  # failed RAY_RETRIES + 1 times


def make_executor(settings: ExecutorSettings, data: Dataset, device: torch.device):
    """The executor ``settings`` name (checked with `ExecutorSettings.check`)."""
    if settings.executor == "ray":
        return RayExecutor(data, settings.address, settings.gpus_per_run, settings.cpus_per_run)
    if settings.in_process:
        return InProcessExecutor(data, device)
    return LocalPoolExecutor(data, device, settings.workers)
