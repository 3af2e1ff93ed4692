"""The in-process executor: jobs one after another in this process, sharing its prepared data.

The one to debug with: a breakpoint or a debugger reaches the job, and progress bars follow each epoch.
"""

from __future__ import annotations

import time

from forgetting.execution.base import Executor, Job, Sink, Worker
from forgetting.timelimit import TimeBudget


class InProcessExecutor(Executor):
    name = "inprocess"
    in_process = True

    def run(self, jobs: list[Job], sink: Sink, budget: TimeBudget | None = None) -> None:
        cache: dict = {}
        for job in jobs:
            if budget is not None and not budget.allows(job.work):
                return
            sink.started(job.spec)
            t0 = time.monotonic()
            worker = Worker(self.data, self.device, cache, sink.callbacks(job.spec))
            if self.deliver(job.spec, lambda job=job: job.fn(worker, **job.kwargs), sink) and budget is not None:
                budget.finished(job.work, time.monotonic() - t0)
