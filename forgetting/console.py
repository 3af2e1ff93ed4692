"""Terminal presentation: progress bars and Page-style per-epoch tables (rich). No logic here."""

from __future__ import annotations

import math
import time
from datetime import datetime, timedelta
from typing import Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text

from forgetting.train import Callbacks

console = Console(stderr=False, highlight=False)
err_console = Console(stderr=True, highlight=False)


class WorkEta:
    """Remaining time of a sweep from the work done so far, not the runs done so far.

    Runs differ in cost by 10x and more (subset x epochs), and a sweep runs the small ones first, so
    a count of runs makes the first estimates several times too short. The rate is measured over
    finished work since the start; between two finishes the estimate counts down.
    """

    def __init__(self, total_work: float, clock: Callable[[], float] = time.monotonic):
        self.total = float(total_work)
        self.done = 0.0
        self.clock = clock
        self.t0 = clock()
        self.t_last = self.t0

    def finished(self, work: float) -> None:
        self.done += work
        self.t_last = self.clock()

    def remaining(self) -> float | None:
        """Seconds left, or None until the first run has finished."""
        if self.done <= 0 or self.t_last <= self.t0:
            return None
        rate = self.done / (self.t_last - self.t0)
        return max(0.0, (self.total - self.done) / rate - (self.clock() - self.t_last))


# A log file (nohup, sbatch) sees none of the bars: it gets a plain line at every finished run and at
# most this many seconds apart while a run or the LR finder is going.
PROGRESS_SECONDS = 180.0


def _clock_text(seconds: float | None) -> str:
    return "unknown" if seconds is None else str(timedelta(seconds=round(seconds)))


class PlainProgress:
    """Plain-text progress lines for output that is not a terminal: runs done/total, ETA, stage."""

    def __init__(self, write: Callable[[str], None], clock: Callable[[], float] = time.monotonic):
        self.write = write
        self.clock = clock
        self.last: float | None = None  # when the last line was written

    def line(self, runs: str, eta: float | None, stage: str, force: bool = False) -> None:
        """Write a line if ``force`` or PROGRESS_SECONDS have passed since the last one."""
        now = self.clock()
        if force or self.last is None or now - self.last >= PROGRESS_SECONDS:
            self.last = now
            stamp = datetime.now().strftime("%Y-%m-%d %H:%M:%S")
            self.write(f"[{stamp}] progress: {runs} runs done, eta {_clock_text(eta)}, {stage}")


class _PlainRun(Callbacks):
    """A training run's steps -> the sweep's stage ("n=1280 x2 seed 0 epoch 3 step 10/20")."""

    def __init__(self, sweep: "SweepProgress", name: str):
        self.sweep, self.name, self.epoch, self.steps = sweep, name, 0, 0

    def start_epoch(self, epoch: int, steps: int) -> None:
        self.epoch, self.steps = epoch, steps

    def step(self, epoch: int, step: int) -> None:
        self.sweep.stage(f"run {self.name} epoch {self.epoch + 1} step {step + 1}/{self.steps}")


class _PlainLRFind:
    """The LR finder's steps -> the sweep's stage, and an ETA from the finder's own pace."""

    def __init__(self, sweep: "SweepProgress"):
        self.sweep = sweep
        self.first: tuple[float, int] | None = None  # (time, step) after the first step, which also prepared the data
        self.paced = False

    def step(self, i: int, n: int) -> None:
        now = self.sweep.plain.clock()
        if self.first is None:
            self.first = (now, i)
            return
        t1, i1 = self.first
        if i > i1:
            self.sweep.finder_step(i, n, (now - t1) / (i - i1), force=not self.paced)  # the first paced one: a line
            self.paced = True


class CountColumn(MofNCompleteColumn):
    """done/total, or a task's own count when its bar measures something else (the sweep's work)."""

    def render(self, task) -> Text:
        count = task.fields.get("count")
        return Text(count, style="progress.download") if count else super().render(task)


class EtaColumn(TimeRemainingColumn):
    """A task's own WorkEta when it has one, else rich's estimate from the bar's recent speed."""

    def render(self, task) -> Text:
        eta = task.fields.get("eta")
        if eta is None:
            return super().render(task)
        left = eta.remaining()
        text = "-:--:--" if left is None else str(timedelta(seconds=round(left)))
        return Text(text, style="progress.remaining")


def progress_bar(transient: bool = False) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        CountColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        EtaColumn(),
        console=console,
        transient=transient,
    )


def _fmt(v) -> str:
    if isinstance(v, float):
        return "-" if math.isnan(v) else f"{v:.4f}"
    return str(v)


def _restart_task(progress: Progress, task, description: str, total: int):
    """The bar's one task, started anew for the next epoch or run (one line on screen, not one per run)."""
    if task is None:
        return progress.add_task(description, total=total)
    progress.reset(task, total=total, description=description)
    return task


class EpochTable(Callbacks):
    """Like Page's TableLogger: one row per epoch, plus a bar within the running epoch."""

    COLUMNS = ("epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "seconds")  # 7 x 11 fits 80 columns

    def __init__(self, progress: Progress | None = None, prefix: str = "", print_rows: bool = True):
        self.progress = progress
        self.prefix = prefix
        self.print_rows = print_rows
        self.task = None
        self.header_done = False

    def start_epoch(self, epoch: int, steps: int) -> None:
        if self.progress is None:
            return
        self.task = _restart_task(self.progress, self.task, f"{self.prefix}epoch {epoch + 1}", steps)

    def step(self, epoch: int, step: int) -> None:
        if self.progress is not None and self.task is not None:
            self.progress.advance(self.task)

    def end_epoch(self, row: dict) -> None:
        if not self.print_rows:
            return
        out = self.progress.console if self.progress is not None else console
        if not self.header_done:
            out.print("".join(f"{c:>11}" for c in self.COLUMNS))
            self.header_done = True
        out.print("".join(f"{_fmt(row[c]):>11}" for c in self.COLUMNS))

    def close(self) -> None:
        if self.progress is not None and self.task is not None:
            self.progress.remove_task(self.task)
            self.task = None


class SweepProgress:
    """Bars for a sweep: one over runs (done/total, ETA) and one within the running run. When the output
    is not a terminal (a log file), plain progress lines instead (see PlainProgress)."""

    def __init__(self, progress: Progress, inner_bars: bool = True, plain: PlainProgress | None = None):
        self.progress = progress
        self.inner_bars = inner_bars
        self.task = None
        self.failed = 0
        self.current: EpochTable | None = None
        if plain is None and not progress.console.is_terminal:
            plain = PlainProgress(lambda text: progress.console.print(text, soft_wrap=True, markup=False))
        self.plain = plain
        self.heartbeat_seconds = PROGRESS_SECONDS if plain else None
        self.runs_total, self.runs_done = 0, 0
        self.eta: WorkEta | None = None
        self.planned_work, self.batch_size = 0.0, 1
        self._stage = "starting"

    def _close_run(self) -> None:
        if self.current is not None:
            self.current.close()
            self.current = None

    def _line(self, force: bool = False, eta: float | None = None) -> None:
        if self.plain is not None:
            left = eta if eta is not None or self.eta is None else self.eta.remaining()
            self.plain.line(f"{self.runs_done}/{self.runs_total}", left, self._stage, force)

    def stage(self, text: str) -> None:
        self._stage = text
        self._line()

    def heartbeat(self) -> None:
        self._line()

    def planned(self, runs: int, work: float, batch_size: int) -> None:
        self.runs_total, self.planned_work, self.batch_size = runs, work, batch_size

    def finder_step(self, i: int, n: int, step_seconds: float, force: bool = False) -> None:
        """Until a run has finished, the finder's pace per training image is the best guess of the sweep's."""
        self._stage = f"lr-find step {i}/{n}"
        self._line(force, eta=(n - i) * step_seconds + self.planned_work * step_seconds / self.batch_size)

    def start(self, total: int, done: int, todo=None) -> None:
        # The bar measures work (subset x epochs + evaluation) of the runs left to do; the count is of runs.
        work = sum(spec.work for spec in todo or ())
        self.runs_total, self.runs_done = total, done
        self.eta = WorkEta(work)
        self.task = self.progress.add_task("runs", total=work or None, count=f"{done}/{total}", eta=self.eta)
        if done:
            self.progress.console.print(f"{done} of {total} runs already finished in the store: skipped")
        self._stage = "starting the runs"
        self._line(force=True)

    def _advance(self, spec) -> None:
        self.runs_done += 1
        self.eta.finished(spec.work)
        self.progress.update(self.task, advance=spec.work, count=f"{self.runs_done}/{self.runs_total}")

    def run_started(self, spec) -> None:
        self._stage = f"run {spec.describe()}"

    def run_finished(self, spec, result: dict) -> None:
        self._close_run()
        self._advance(spec)
        state = "diverged" if result["diverged"] else f"test loss {result['test_loss']:.4f}"
        self.progress.console.print(f"  {spec.id}  {spec.describe():<32} {state}  ({result['seconds']:.0f} s)")
        self._stage = f"finished {spec.describe()}"
        self._line(force=True)

    def run_failed(self, spec, failure) -> None:
        self.failed += 1
        self._close_run()
        self._advance(spec)
        self.progress.console.print(f"  {spec.id}  {spec.describe():<32} [red]failed[/red]: {failure.line}")
        self._stage = f"failed {spec.describe()}"
        self._line(force=True)

    def lr_find_callbacks(self):
        return _PlainLRFind(self) if self.plain is not None else LRFindProgress(self.progress)

    def train_callbacks(self, spec):
        if self.plain is not None:
            return _PlainRun(self, spec.describe())
        if not self.inner_bars:
            return None
        self.current = EpochTable(self.progress, prefix=f"{spec.describe()} ", print_rows=False)
        return self.current

    def notice(self, text: str) -> None:
        err_console.print(f"warning: {text}", soft_wrap=True, markup=False)


def lr_sweep_table(table, title: str):
    """Test loss by LR multiplier (rows) x subset size (columns), mean over seeds; 'div' for diverged."""
    from rich.table import Table

    out = Table(title=title, title_justify="left")
    sizes = sorted(table["subset"].unique())
    out.add_column("multiplier", justify="right")
    for size in sizes:
        out.add_column(f"{size:,}", justify="right")
    for m, rows in table.groupby("multiplier"):
        cells = []
        for size in sizes:
            r = rows[rows["subset"] == size]
            if r.empty:
                cells.append("")
            elif (r["status"] == "missing").all():  # another shard's, or not yet run
                cells.append("-")
            elif (r["status"] != "finished").all():
                cells.append("failed")
            elif r["diverged"].fillna(False).astype(bool).all():
                cells.append("div")
            else:
                cells.append(f"{r['test_loss'].astype(float).mean():.4f}")
        out.add_row(f"{m:g}", *cells)
    return out


class ProbeProgress:
    """A bar over the probed epochs of each run; plain lines (runs probed/total, stage) into a log file."""

    def __init__(self, progress: Progress, plain: PlainProgress | None = None):
        self.progress = progress
        self.task = None
        if plain is None and not progress.console.is_terminal:
            plain = PlainProgress(lambda text: progress.console.print(text, soft_wrap=True, markup=False))
        self.plain = plain
        self.name, self.runs, self.eta = "", "", None
        self.began: float | None = None  # when the first run's probe began: the pace of the rest
        self.skipped = 0  # runs probed by an earlier invocation: not part of this one's pace

    def start(self, total: int, done: int) -> None:
        """Before the first run: ``done`` of ``total`` runs were probed already (an earlier, interrupted probe)."""
        self.skipped = done
        if done:
            self.progress.console.print(f"{done} of {total} runs already probed in the store: skipped")

    def start_run(self, spec, epochs: int, done: int = 0, total: int = 0) -> None:
        self.task = _restart_task(self.progress, self.task, f"probe {spec.describe()}", epochs)
        self.name, self.runs = spec.describe(), f"{done}/{total}"
        if self.plain is not None:
            now = self.plain.clock()
            self.began = now if self.began is None else self.began
            probed = done - self.skipped  # by this invocation, so far
            self.eta = (now - self.began) / probed * (total - done) if probed > 0 else None
            self.plain.line(self.runs, self.eta, f"probing {self.name}", force=True)

    def step(self, epoch: int, n_epochs: int) -> None:
        self.progress.advance(self.task)
        if self.plain is not None:
            self.plain.line(self.runs, self.eta, f"probing {self.name} epoch {epoch + 1}/{n_epochs}")


def probe_table(epochs, runs, title: str):
    """Mean frozen-model loss by epoch age (rows) x condition and multiplier (columns), test loss last."""
    from rich.table import Table

    out = Table(title=title, title_justify="left")
    groups = sorted(epochs.groupby(["condition", "multiplier"]).groups)
    out.add_column("epoch age", justify="right")
    for cond, m in groups:
        out.add_column(f"{cond} x{m:g}", justify="right")
    ages = sorted(epochs["epoch_age"].unique())
    for age in ages:
        cells = []
        for cond, m in groups:
            r = epochs[(epochs["condition"] == cond) & (epochs["multiplier"] == m) & (epochs["epoch_age"] == age)]
            cells.append(f"{r['loss_now'].mean():.4f}" if len(r) else "")
        out.add_row(str(age), *cells)
    ref = [f"{runs[(runs['condition'] == c) & (runs['multiplier'] == m)]['test_loss'].mean():.4f}" for c, m in groups]
    out.add_row("test", *ref)
    return out


class LRFindProgress:
    """One bar over every step of the range tests (all seeds)."""

    def __init__(self, progress: Progress):
        self.progress = progress
        self.task = progress.add_task("lr range test", total=None)

    def step(self, i: int, n: int) -> None:
        self.progress.update(self.task, completed=i, total=n)


def plan_table(plan):
    """A dry run: the runs a sweep (or one shard) would train, their work and whether they are done."""
    from rich.table import Table

    mine, total = plan.work
    share = f"shard {plan.shard}: " if plan.shard else ""
    lr = f"base LR {plan.base_lr:.4g}" if plan.base_lr is not None else "base LR not yet found (run ids follow it)"
    out = Table(
        title=f"{plan.study.name}: {share}{len(plan.mine)} of {len(plan.specs)} runs, "
        f"{mine / total:.1%} of the work; {lr}",
        title_justify="left",
    )
    for name in ("run", "run id", "work", "state"):
        out.add_column(name, justify="left" if name in ("run", "run id") else "right")
    for spec in plan.mine:
        known = plan.base_lr is not None
        state = "finished" if spec.id in plan.finished else "to run"
        out.add_row(spec.describe(), spec.id if known else "-", f"{spec.work:,.0f}", state)
    return out
