"""The SLURM executor, through submitit: a study's jobs as one array job on a cluster with a shared disk.

Each array task loads the data from the driver's source, runs its job and, for a training, writes the
run's folder into the store itself (result.json last, as every backend writes it), so that a finished
run is safe even if the driver is gone; the rerun skips it. A task that SLURM preempts or that reaches
its time gets submitit's signal, and is requeued: the same call again, which resumes from the run's
last epoch checkpoint. A task that ends without a result (its node lost, a SIGKILL) is submitted again
up to RETRIES times, from its checkpoint too. ``--slurm-cluster local`` runs the same array through
submitit's local executor (real processes, no scheduler): how the tests check this backend, and how a
user tries a setup on a laptop.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import typer

from forgetting.errors import UserError
from forgetting.execution.base import BackendSettings, Executor, Job, Kept, RunFailure, Sink, Worker
from forgetting.timelimit import TimeBudget, parse_duration

RETRIES = 2  # an array task that ended without a result is submitted again this many times
CLUSTERS = ("slurm", "local")


def _option(default, text: str, shown: str | bool = True):
    """A setting and its command-line option; ``shown``: what a default of None stands for."""
    option = typer.Option(default, help=f"slurm executor: {text}", show_default=shown)
    return field(default=default, metadata={"option": option})


@dataclass(frozen=True)
class SlurmSettings(BackendSettings):
    partition: Optional[str] = _option(None, "the partition", "the cluster's")
    slurm_time: str = _option(
        "4h", "each array task's time (sbatch --time; 90m, 4h, ...): a task still running then is requeued"
    )
    gpus_per_task: int = _option(0, "GPUs per array task (one run each)")
    cpus_per_task: int = _option(1, "CPUs per array task (its torch threads)")
    array_parallelism: int = _option(32, "array tasks running at once")
    mem_gb: Optional[float] = _option(None, "memory per array task in GB", "the partition's")
    slurm_cluster: str = _option("slurm", "slurm, or local: submitit's local executor (no scheduler), to try a setup")

    def check(self) -> None:
        parse_duration(self.slurm_time, "--slurm-time")
        if self.slurm_cluster not in CLUSTERS:
            raise UserError(f"--slurm-cluster must be {' or '.join(CLUSTERS)}, not {self.slurm_cluster!r}")
        for name in ("gpus_per_task", "cpus_per_task", "array_parallelism"):
            low = 0 if name == "gpus_per_task" else 1
            if getattr(self, name) < low:
                raise UserError(f"--{name.replace('_', '-')} must be at least {low}, not {getattr(self, name)}")

    @property
    def parameters(self) -> dict:
        """submitit's names for them (AutoExecutor.update_parameters); None leaves the cluster's default."""
        return dict(
            name="forgetting",
            timeout_min=max(1, round(parse_duration(self.slurm_time, "--slurm-time") / 60)),
            slurm_partition=self.partition,
            gpus_per_node=self.gpus_per_task,  # one task per node: a task's GPUs
            cpus_per_task=self.cpus_per_task,
            tasks_per_node=1,
            nodes=1,
            mem_gb=self.mem_gb,
            slurm_array_parallelism=self.array_parallelism,
        )


@dataclass(frozen=True)
class RefusedInput:
    """A task's one-line refusal (a UserError): the driver stops with it, as it would for a job of its own."""

    message: str


@dataclass
class ArrayTask:
    """One array task: a job and what it needs to run on a node. submitit calls ``checkpoint`` when the task
    is preempted or times out, and requeues what it returns: this same task, which resumes from the run's
    epoch checkpoint in the store."""

    fn: Callable
    kwargs: dict
    data: Any  # the data set as it travels (`jobs.shippable`): its file, read by every node
    device: str
    threads: int
    keep: Callable | None  # stores the outcome where the task ran (a training: its run folder)
    roots: tuple[str, ...] = ()  # where a user's network module is found (`jobs.network_roots`)

    def __call__(self):
        import torch

        from forgetting.execution.jobs import find_networks, load_data

        torch.set_num_threads(self.threads)
        find_networks(self.roots)
        try:
            outcome = self.fn(Worker(load_data(self.data), self.device, cache={}), **self.kwargs)
        except UserError as e:
            return RefusedInput(str(e))
        return Kept(self.keep(outcome)) if self.keep is not None else outcome

    def checkpoint(self, *args, **kwargs):
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self)


class SlurmExecutor(Executor):
    name = "slurm"
    Settings = SlurmSettings
    on_this_machine = False
    time_limit_refusal = (
        "--time-limit needs the local executor (a SLURM array task has --slurm-time, and is requeued when it runs out)"
    )

    def run(self, jobs: list[Job], sink: Sink, budget: TimeBudget | None = None) -> None:
        try:
            import submitit
        except ImportError:
            raise UserError("--executor slurm needs submitit: pip install 'forgetting[slurm]'") from None
        if not jobs:
            return
        s = self.settings
        executor = submitit.AutoExecutor(folder=Path(sink.scratch) / "%j", cluster=s.slurm_cluster)
        executor.update_parameters(**s.parameters)
        from forgetting.execution.jobs import network_roots, shippable

        roots, shipped = network_roots(jobs), shippable(self.data)
        tasks = {job.spec.id: self._task(job, sink, shipped, roots) for job in jobs}
        specs = {job.spec.id: job.spec for job in jobs}
        with executor.batch():  # one array job, at most array_parallelism tasks at once
            submitted = [executor.submit(tasks[job.spec.id]) for job in jobs]
        submitted = [self._quick(job) for job in submitted]
        pending = {job: (spec_id, 0) for job, spec_id in zip(submitted, specs)}
        for spec in specs.values():
            sink.started(spec)
        try:
            self._wait(executor, pending, tasks, specs, sink)
        except BaseException:
            for job in pending:  # a SIGTERM or Ctrl-C meant for the sweep: its tasks stop too
                job.cancel(check=False)
            raise

    def _quick(self, job):
        """submitit waits 15 s for a result file a shared disk may show late; the local cluster has no such disk."""
        if self.settings.slurm_cluster == "local":
            job._results_timeout_s = 1
        return job

    def _task(self, job: Job, sink: Sink, shipped, roots: tuple[str, ...]) -> ArrayTask:
        keep = sink.keeper(job.spec)
        return ArrayTask(job.fn, job.kwargs, shipped, self.device, self.settings.cpus_per_task, keep, roots)

    def _wait(self, executor, pending: dict, tasks: dict, specs: dict, sink: Sink) -> None:
        from submitit.core.utils import UncompletedJobError

        poll = 0.5 if self.settings.slurm_cluster == "local" else 15.0
        while pending:
            done = [job for job in pending if job.done()]
            if not done:
                time.sleep(poll)
                sink.heartbeat()
                continue
            for job in done:
                spec_id, tries = pending.pop(job)
                error = job.exception()
                if isinstance(error, UncompletedJobError) and not _raised(error) and tries < RETRIES:
                    pending[self._quick(executor.submit(tasks[spec_id]))] = (spec_id, tries + 1)  # from its checkpoint
                    continue
                self.deliver(specs[spec_id], lambda job=job: _result(job), sink)

    def failure(self, error: BaseException) -> RunFailure:
        """A task's exception comes back as text (its traceback): its last line says what it was."""
        text = str(error)
        trace = text.split("-" * 22 + "\n")[1] if text.count("-" * 22 + "\n") >= 2 else text
        last = next((line for line in reversed(trace.strip().splitlines()) if re.match(r"^\w[\w.]*(: |$)", line)), "")
        kind, _, message = last.partition(": ")
        if not kind:
            return RunFailure(type(error).__name__, text.strip().splitlines()[0] if text.strip() else "", text)
        return RunFailure(kind.rsplit(".", 1)[-1], message, trace.strip())


def _raised(error: BaseException) -> bool:
    """The task itself raised (not: it was killed, or ran out of time too often)."""
    from submitit.core.utils import FailedJobError

    return isinstance(error, FailedJobError) and "Job not requeued" not in str(error)


def _result(job):
    value = job.result()
    if isinstance(value, RefusedInput):
        raise UserError(value.message)
    return value
