"""A sweep's training as jobs (`training_jobs`), and where their outcomes go (`TrainSink`): the run's
folder in the store (written by the driver, or by the job itself on a shared disk), then the sweep's events."""

from __future__ import annotations

import functools

from forgetting.execution.base import Job, Kept, RunFailure
from forgetting.execution.jobs import train_job


class TrainSink:
    """Where a sweep's training jobs end (`execution.base.Sink`): the store, then the sweep's events."""

    def __init__(self, store, events):
        self.store, self.events = store, events
        self.heartbeat_seconds = getattr(events, "heartbeat_seconds", None)
        self.scratch = store.jobs

    def started(self, spec) -> None:
        self.events.run_started(spec)

    def callbacks(self, spec):
        return self.events.train_callbacks(spec)

    def heartbeat(self) -> None:
        self.events.heartbeat()

    def keeper(self, spec):
        return functools.partial(self.store.record, spec)  # a task on the store's disk writes its run itself

    def finished(self, spec, outcome) -> None:
        result = outcome.report if isinstance(outcome, Kept) else self.store.record(spec, outcome)
        self.events.run_finished(spec, result)

    def failed(self, spec, failure: RunFailure) -> None:
        self.store.record_failure(spec, failure)
        self.events.run_failed(spec, failure)


def training_jobs(specs: list, store, board=None) -> list[Job]:
    """Each run's training as a job; ``board`` (a `tensorboard.Board`) gives each its picklable reporter."""
    return [
        Job(
            spec,
            train_job,
            dict(
                cfg=spec.config.to_dict(),
                meta=spec.meta,
                checkpoint=str(store.checkpoint(spec)),
                reporter=board.reporter(spec) if board is not None else None,
            ),
        )
        for spec in specs
    ]
