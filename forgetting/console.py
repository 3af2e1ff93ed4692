"""Terminal presentation: progress bars and Page-style per-epoch tables (rich). No logic here."""

from __future__ import annotations

import math

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from forgetting.train import Callbacks

console = Console(stderr=False, highlight=False)
err_console = Console(stderr=True, highlight=False)


def progress_bar(transient: bool = False) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        transient=transient,
    )


def _fmt(v) -> str:
    if isinstance(v, float):
        return "-" if math.isnan(v) else f"{v:.4f}"
    return str(v)


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
        desc = f"{self.prefix}epoch {epoch + 1}"
        if self.task is None:
            self.task = self.progress.add_task(desc, total=steps)
        else:
            self.progress.reset(self.task, total=steps, description=desc)

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
    """Bars for a sweep: one over runs (done/total, ETA) and one within the running run."""

    def __init__(self, progress: Progress, inner_bars: bool = True):
        self.progress = progress
        self.inner_bars = inner_bars
        self.task = None
        self.failed = 0
        self.current: EpochTable | None = None

    def _close_run(self) -> None:
        if self.current is not None:
            self.current.close()
            self.current = None

    def start(self, total: int, done: int) -> None:
        self.task = self.progress.add_task("runs", total=total, completed=done)
        if done:
            self.progress.console.print(f"{done} of {total} runs already finished in the store: skipped")

    def run_started(self, spec) -> None:
        pass

    def run_finished(self, spec, result: dict) -> None:
        self._close_run()
        self.progress.advance(self.task)
        state = "diverged" if result["diverged"] else f"test loss {result['test_loss']:.4f}"
        self.progress.console.print(f"  {spec.id}  {spec.describe():<32} {state}  ({result['seconds']:.0f} s)")

    def run_failed(self, spec, error: str) -> None:
        self.failed += 1
        self._close_run()
        self.progress.advance(self.task)
        last = error.strip().splitlines()[-1] if error.strip() else "unknown error"
        self.progress.console.print(f"  {spec.id}  {spec.describe():<32} [red]failed[/red]: {last}")

    def lr_find_callbacks(self):
        return LRFindProgress(self.progress)

    def train_callbacks(self, spec):
        if not self.inner_bars:
            return None
        self.current = EpochTable(self.progress, prefix=f"{spec.describe()} ", print_rows=False)
        return self.current


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
            elif (r["status"] != "finished").all():
                cells.append("failed")
            elif r["diverged"].fillna(False).astype(bool).all():
                cells.append("div")
            else:
                cells.append(f"{r['test_loss'].astype(float).mean():.4f}")
        out.add_row(f"{m:g}", *cells)
    return out


class ProbeProgress:
    """A bar over the probed epochs of each run."""

    def __init__(self, progress: Progress):
        self.progress = progress
        self.task = None

    def start_run(self, spec, epochs: int) -> None:
        desc = f"probe {spec.describe()}"
        if self.task is None:
            self.task = self.progress.add_task(desc, total=epochs)
        else:
            self.progress.reset(self.task, total=epochs, description=desc)

    def step(self, epoch: int, n_epochs: int) -> None:
        self.progress.advance(self.task)


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
