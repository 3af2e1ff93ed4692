"""The Ray executor: each job a Ray task asking for its CPUs and GPU fraction; outcomes come back to the
driver, which alone writes the store, so the cluster needs no shared disk (a probe ships the run's files)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional

import typer

from forgetting.errors import UserError
from forgetting.execution.base import BackendSettings, Executor, Job, RunFailure, Sink, Worker
from forgetting.timelimit import TimeBudget

RETRIES = 2  # a failed Ray task is retried this many times, then recorded as failed
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # Ray colours the task line of its tracebacks


def _option(default, text: str, shown: str | bool = True):
    """A setting and its command-line option; ``shown``: what a default of None stands for."""
    option = typer.Option(default, help=f"ray executor: {text}", show_default=shown)
    return field(default=default, metadata={"option": option})


@dataclass(frozen=True)
class RaySettings(BackendSettings):
    address: Optional[str] = _option(None, "cluster address", "start a local Ray")
    gpus_per_run: float = _option(0.0, "GPU fraction per run (0 = CPU)")
    cpus_per_run: float = _option(1.0, "CPUs per run")

    def check(self) -> None:
        if self.gpus_per_run < 0 or self.cpus_per_run <= 0:
            raise UserError("--gpus-per-run must be at least 0 and --cpus-per-run above 0")


def run_job(fn, data, device: str, threads: int, kwargs: dict, roots: tuple[str, ...] = ()):
    """A job as a Ray task (Ray names its worker process ``ray::run_job`` while it runs)."""
    import torch

    from forgetting.execution.jobs import find_networks

    torch.set_num_threads(threads)
    find_networks(roots)  # a Ray worker does not share the driver's sys.path
    return fn(Worker(data, device, cache={}, shares_disk=False), **kwargs)


class RayExecutor(Executor):
    name = "ray"
    Settings = RaySettings
    on_this_machine = False
    time_limit_refusal = "--time-limit needs the local executor (a Ray cluster schedules runs itself)"
    shares_disk = False

    def run(self, jobs: list[Job], sink: Sink, budget: TimeBudget | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise UserError("--executor ray needs Ray: pip install 'forgetting[ray]'") from None
        s = self.settings
        if not ray.is_initialized():
            # A cluster's own settings stand when joining one; a local Ray gets no dashboard.
            ray.init(address=s.address, log_to_driver=False) if s.address else ray.init(
                include_dashboard=False, log_to_driver=False
            )
        from forgetting.execution.jobs import network_roots

        roots = network_roots(jobs)
        device = "cuda" if s.gpus_per_run > 0 else "cpu"
        data_ref = ray.put(self.data)  # shipped once to the object store: no shared filesystem needed
        task = ray.remote(run_job).options(
            num_cpus=s.cpus_per_run, num_gpus=s.gpus_per_run, max_retries=RETRIES, retry_exceptions=True
        )
        pending = {}
        for job in jobs:
            pending[task.remote(job.fn, data_ref, device, max(1, int(s.cpus_per_run)), job.kwargs, roots)] = job.spec
            sink.started(job.spec)
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            self.deliver(pending.pop(done[0]), lambda: _get(ray, done[0]), sink)  # failed RETRIES + 1 times

    def failure(self, error: BaseException) -> RunFailure:
        cause = getattr(error, "cause", None)  # a Ray task's error wraps the task's own exception ...
        if isinstance(cause, BaseException) and cause is not error:
            # ... and prints its traceback
            return RunFailure(type(cause).__name__, str(cause), _ANSI.sub("", str(error)))
        return RunFailure.of(error)


def _get(ray, ref):
    try:
        return ray.get(ref)
    except Exception as e:
        cause = getattr(e, "cause", None)
        if isinstance(cause, UserError):  # a task's own one-line error, not Ray's wrapper (its text is a traceback)
            raise cause from None
        raise
