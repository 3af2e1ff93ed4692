"""A study from end to end: its runs trained (`sweep.run_sweep`, on the chosen executor), then its
kind's stage after training (a probe study's probe, on the same executor), with TensorBoard's live
curves when asked for."""

from __future__ import annotations

import functools
from pathlib import Path

from forgetting import curves, sweep
from forgetting.execution.settings import ExecutorSettings


def run_study(
    study,
    store_root: Path,
    data,
    executor: ExecutorSettings | None = None,
    events=None,
    shard=None,
    stage_events=None,
    tensorboard: str | Path | None = None,
    **stage_options,
):
    """Train every unfinished run of ``study`` (or of its ``shard``) into ``store_root``, then run its kind's
    stage after training; ``stage_options`` are that stage's own (a probe's ``last_epochs``, ``bn``).

    ``tensorboard`` (default: the study's ``[study] tensorboard``): a folder for each run's curves."""
    executor = executor if executor is not None else ExecutorSettings()
    folder = tensorboard if tensorboard is not None else study.tensorboard
    board = curves.Board(Path(folder)) if folder else None
    store = sweep.StudyStore(Path(store_root), study.name)
    plan = functools.partial(sweep.plan_sweep, study, Path(store_root), shard, data.identity)  # read only if needed
    study.experiment.before_training(study, plan, store, **stage_options)
    outcome = sweep.run_sweep(study, Path(store_root), data, executor, events=events, shard=shard, board=board)
    notice = events.notice if events is not None else None
    return study.experiment.after_training(outcome, data, executor, stage_events, board, notice, **stage_options)
