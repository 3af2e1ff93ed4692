"""Live curves in TensorBoard (``--tensorboard DIR``, study key ``[study] tensorboard``).

One folder per run, named by its run id and a readable label (``3f2a...-full-aug-n1000-x0.5-seed0``):
each epoch's training loss and accuracy, test loss and accuracy (on evaluated epochs) and LR, at the epoch
as step; after the probe, the frozen weights' loss against epoch age (step = age in epochs). A run's
curves are written by its own progress hooks (`RunCurves`, a `train.Callbacks` beside the progress
lines'), in whichever process or node trains it, so they grow while it trains; the folder must be on a
disk those processes share (a local Ray, a SLURM cluster's shared disk).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from forgetting.errors import UserError
from forgetting.train import Callbacks

EPOCH_TAGS = {  # history row column -> tag
    "train_loss": "train/loss",
    "train_acc": "train/accuracy",
    "test_loss": "test/loss",
    "test_acc": "test/accuracy",
    "lr": "lr",
}
PROBE_TAGS = {"loss_now": "probe/loss", "acc_now": "probe/accuracy"}  # probe.csv column -> tag, by epoch age


def _summary_writer():
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UserError("--tensorboard needs TensorBoard: pip install 'forgetting[tensorboard]'") from None
    return SummaryWriter


def _writer(folder: Path):
    return _summary_writer()(log_dir=str(folder))


def run_label(spec) -> str:
    """A run's folder name: its id, then condition, subset, LR multiplier and seed."""
    cond = f"{spec.meta['condition']}-" if spec.meta.get("condition") else ""
    label = f"{cond}n{spec.config.subset}-x{spec.meta['multiplier']:g}-seed{spec.config.seed}"
    return f"{spec.id}-{re.sub(r'[^A-Za-z0-9_.-]', '_', label)}"


class RunCurves(Callbacks):
    """One run's per-epoch curves: picklable, it travels with the run and opens its writer where it trains."""

    def __init__(self, folder: Path, epochs: int):
        self.folder, self.epochs = Path(folder), epochs
        self._writer = None

    def __getstate__(self) -> dict:
        return dict(vars(self), _writer=None)

    def end_epoch(self, row: dict) -> None:
        if self._writer is None:
            self._writer = _writer(self.folder)
        for column, tag in EPOCH_TAGS.items():
            value = row.get(column)
            if value is not None and math.isfinite(value):  # test loss: only on evaluated epochs
                self._writer.add_scalar(tag, value, global_step=int(row["epoch"]))
        self._writer.flush()  # live: TensorBoard shows the epoch now, not when the run ends
        if int(row["epoch"]) >= self.epochs:
            self.close()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class Board:
    """A TensorBoard folder for a study's runs."""

    def __init__(self, root: Path):
        self.root = Path(root)
        _summary_writer()  # a missing TensorBoard is one line before any run starts

    def folder(self, spec) -> Path:
        return self.root / run_label(spec)

    def reporter(self, spec) -> RunCurves:
        return RunCurves(self.folder(spec), spec.config.epochs)

    def probe(self, spec, steps) -> None:
        """The probe's loss (and accuracy) against epoch age: the mean over each epoch's batches, by images."""
        writer = _writer(self.folder(spec))
        weighted = steps.assign(**{c: steps[c] * steps["n"] for c in PROBE_TAGS})
        by_age = weighted.groupby("epoch_age")[[*PROBE_TAGS, "n"]].sum()
        for age, row in by_age.iterrows():
            for column, tag in PROBE_TAGS.items():
                writer.add_scalar(tag, row[column] / row["n"], global_step=int(age))
        writer.close()
