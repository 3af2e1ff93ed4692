"""The local executor: ``--workers N`` processes on this machine, each with its share of the cores and
its own copy of the data; with one worker, the jobs run in this process (`InProcessExecutor`)."""

from __future__ import annotations

import os
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from multiprocessing import get_context

import typer

from forgetting.errors import UserError
from forgetting.execution.base import BackendSettings, Executor, Job, Sink, Worker
from forgetting.execution.inprocess import InProcessExecutor
from forgetting.execution.jobs import network_roots, shippable
from forgetting.timelimit import TimeBudget


@dataclass(frozen=True)
class LocalSettings(BackendSettings):
    workers: int = field(
        default=1,
        metadata={"option": typer.Option(1, help="local executor: runs at once (cores are split between them)")},
    )

    def check(self) -> None:
        if self.workers < 1:
            raise UserError(f"--workers must be at least 1, not {self.workers}")


_WORKER: dict = {}  # this worker process's data and prepared-data cache


def _init_worker(shipped, device: str, threads: int) -> None:
    import torch

    from forgetting.execution.jobs import load_data

    torch.set_num_threads(threads)
    _WORKER["worker"] = Worker(load_data(shipped), device, cache={})


def _call(fn, kwargs: dict):
    return fn(_WORKER["worker"], **kwargs)


class LocalExecutor(Executor):
    name = "local"
    Settings = LocalSettings

    @classmethod
    def create(cls, settings: LocalSettings, data, device: str) -> Executor:
        if settings.workers == 1:  # one worker: no process to start, and bars can follow each epoch
            return InProcessExecutor(InProcessExecutor.Settings(), data, device)
        return cls(settings, data, device)

    @classmethod
    def runs_in_process(cls, settings: LocalSettings) -> bool:
        return settings.workers == 1

    @property
    def workers(self) -> int:
        return self.settings.workers

    def run(self, jobs: list[Job], sink: Sink, budget: TimeBudget | None = None) -> None:
        threads = max(1, (os.cpu_count() or 1) // self.workers)  # share the cores, do not oversubscribe them
        network_roots(jobs)  # a spawned worker has this process's sys.path: the check alone
        init = (shippable(self.data), self.device, threads)
        spawn = get_context("spawn")
        with ProcessPoolExecutor(self.workers, mp_context=spawn, initializer=_init_worker, initargs=init) as pool:
            try:
                self._feed(pool, jobs, sink, budget)
            except BaseException:
                # A SIGTERM or Ctrl-C meant for the sweep: its workers stop too (their checkpoints are whole
                # files), rather than the pool waiting for every run in flight to end.
                for proc in list((getattr(pool, "_processes", None) or {}).values()):
                    proc.terminate()
                raise

    def _feed(self, pool, jobs: list[Job], sink: Sink, budget: TimeBudget | None) -> None:
        """At most ``workers`` jobs in flight, each submitted when a worker is free and the budget allows it."""
        queue, pending = list(jobs), {}
        while queue or pending:
            while queue and len(pending) < self.workers and (budget is None or budget.allows(queue[0].work)):
                job = queue.pop(0)
                pending[pool.submit(_call, job.fn, job.kwargs)] = (job, time.monotonic())
                sink.started(job.spec)
            if budget is not None and budget.stopped:
                queue = []
            if not pending:
                return
            done, _ = wait(pending, timeout=sink.heartbeat_seconds, return_when=FIRST_COMPLETED)
            sink.heartbeat()
            for fut in done:
                job, t0 = pending.pop(fut)
                if self.deliver(job.spec, fut.result, sink) and budget is not None:
                    budget.finished(job.work, time.monotonic() - t0)
