"""A study kind: what a study of that kind is and does, in one class.

It owns its keys of the study file (its own ``[grid]`` keys and sections), its grid (the cells of runs
it trains: subset, augmentation, condition), the stage after training (the probe of a probe study) and
its part of the report. Adding a kind is a subclass and a `registry.register` call.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from forgetting.errors import UserError


class StudyError(UserError):
    pass


@dataclass
class ReportContext:
    """What a kind's part of the report works with: one study folder's tables and summary, and what the
    store's other studies share (``shared``: "sweeps", the LR sweeps' summaries; "probes", the probe
    studies' tables as `report.StudyTables`)."""

    study: dict  # study.json
    summary: dict  # summary.json as it is being written: a kind may add verdicts
    tables: dict  # name -> DataFrame or None: results, finished, probe, probe_runs, histories
    fig_dir: Path
    shared: dict = field(default_factory=dict)
    partners: list = field(default_factory=list)  # (study.json, probe table) of studies its clock is read against
    caption: str = ""  # under every figure's title: the study's scale and, where known, its runs' machine


class StudyKind(ABC):
    name: ClassVar[str]
    grid_schema: ClassVar[dict] = {}  # its own [grid] keys: key -> (check, default); ... = required
    sections: ClassVar[dict] = {}  # its own sections: name -> {key: (check, default)}
    report_rank: ClassVar[int] = 0  # the store's studies are reported lowest rank first (their summaries feed others)
    fits_results: ClassVar[bool] = False  # its results.csv feeds the summary's fits (test loss against LR)
    # Its [grid] keys and sections are in every study's record (study.json), defaulted: true of the kinds
    # that records were written with before a third kind joined; another kind's appear in its own studies'.
    in_every_record: ClassVar[bool] = False

    # ------------------------------------------------------------------ the study file and the grid

    def check(self, study, where: str) -> None:
        """Refuse, naming the file, a study of this kind that lacks what its grid needs."""

    @abstractmethod
    def cells(self, study) -> list[tuple[int, bool, str]]:
        """The cells of the grid: (training images, augmented, condition name); each gets every LR and seed."""

    def run_settings(self, study, condition: str, seed: int) -> dict:
        """The TrainConfig settings of the cell ``condition``'s run at ``seed`` beyond the grid's own (a
        pruned study's images, `TrainConfig.indices`)."""
        return {}

    def check_data(self, study, data) -> None:
        """Refuse, before training, what the study asks of ``data`` (a `Dataset`) that it lacks."""

    def largest_subset(self, study) -> int:
        """The subset the LR finder tests by default."""
        return max(subset for subset, _, _ in self.cells(study))

    @abstractmethod
    def scale_words(self, study) -> str:
        """Its part of the scale line read off the settings ("crop+flip", "5,000 images")."""

    # ------------------------------------------------------------------ after training

    def before_training(self, study, plan, store, **options) -> None:
        """Checks before anything is trained or written (``plan()``: the sweep's `SweepPlan`, ``store``: its
        `StudyStore`); ``options`` are the stage's own."""

    def after_training_work(self, study, config) -> float:
        """What the stage after training costs for the run of ``config``, in training-image equivalents (as
        `grid.run_work` counts a run's own): what `forgetting show` adds to its estimate."""
        return 0.0

    def after_training(self, outcome, data, executor, events=None, board=None, notice=None, **options):
        """The stage after the runs are trained (``outcome``: the sweep's), on ``executor`` (`ExecutorSettings`);
        ``events``: its progress, ``board``: TensorBoard's curves, ``notice``: a warning line's writer.
        Returns the study's outcome."""
        return outcome

    # ------------------------------------------------------------------ the report

    def reads_histories(self, study: dict) -> bool:
        """Its report reads the finished runs' history.csv (``ctx.tables["histories"]``)."""
        return False

    def figures(self, ctx: ReportContext) -> list[Path]:
        """Its own figures (and verdicts added to ``ctx.summary``)."""
        return []

    def before_reports(self, tables, shared: dict) -> None:
        """Before a store's studies are reported: what this study (its `report.StudyTables`) offers the others."""

    def after_report(self, summary: dict, shared: dict) -> None:
        """After this study's report: what its summary offers the reports that follow."""
