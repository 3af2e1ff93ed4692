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
