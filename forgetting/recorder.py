"""Forgetting measured inside your own training loop: `Recorder`.

Fed once per step, it keeps what the toolkit's trainer records of a run: every presentation (the example's
index, epoch, step, correctness and loss) and the batch plan (which presentations made each step, with its
LR and mean loss). Afterwards it gives the same per-example scores as `forgetting scores` and replays the
recorded batches through the frozen final weights as `forgetting probe-epochs` does::

    recorder = forgetting.Recorder(seed=0)
    for epoch in range(epochs):
        for indices, x, y in loader:           # indices: the images' positions in the training set
            out = model(x)
            ...                                 # loss, backward, step: your own
            recorder.step(indices, out, y, epoch=epoch, lr=scheduler.get_last_lr()[0])
    recorder.scores()                           # one row per example: forgetting events, first learned, ...
    recorder.replay(model, make_batch)          # the probe's table: loss now on each step's batch

``make_batch(indices, epoch)`` rebuilds a batch from its indices and epoch: your augmentation, seeded per
epoch (and per example), so that the batch is the one trained on.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from forgetting.analysis import scores as fs
from forgetting.errors import UserError
from forgetting.evaluation import EVAL_BATCH, per_example, per_step_mean
from forgetting.replay import _batch_stat_mode, _restore_bn, check_bn

PRESENTATION_COLUMNS = ["index", "epoch", "step", "label", "correct", "loss"]
STEP_COLUMNS = ["epoch", "step", "lr", "loss", "acc", "n"]


def _digest(x: torch.Tensor) -> str:
    """16 hex digits of a batch's inputs: a replay that rebuilds other images is caught."""
    return hashlib.blake2b(x.detach().cpu().contiguous().numpy().tobytes(), digest_size=8).hexdigest()


class Recorder:
    """The per-example record of one training run, fed by `step` once per optimizer step. ``seed`` names
    the run among those `scores` pools."""

    def __init__(self, seed: int = 0):
        self.seed = seed
        self._parts: dict[str, list] = {k: [] for k in ("index", "label", "correct", "loss")}
        self._steps: list[dict] = []  # per step: epoch, lr, its batch-mean loss (a tensor), n, digest
        self._cache: dict | None = None

    def step(self, indices, outputs, labels, *, epoch: int, lr: float | None = None, correct=None, inputs=None):
        """One step's batch: ``indices`` (each example's position in the training arrays), ``outputs`` (the
        model's logits, (B, classes); or per-example losses, (B,), with ``correct`` saying which were
        classified correctly), ``labels``; ``epoch`` (from 0), ``lr`` (kept for the replay's table) and
        ``inputs`` (the batch's images: `replay` then checks that it rebuilds the very same ones)."""
        labels = torch.as_tensor(labels).detach()
        outputs = outputs.detach()
        if outputs.ndim == 2:
            loss = F.cross_entropy(outputs.float(), labels.to(outputs.device), reduction="none")
            correct = outputs.argmax(1) == labels.to(outputs.device)
        elif correct is None:
            raise UserError("Recorder.step: per-example losses need correct= (which examples were right)")
        else:
            loss, correct = outputs.float(), torch.as_tensor(correct).detach().bool()
        index = torch.as_tensor(indices).detach().long().reshape(-1)
        if not len(index) == len(labels) == len(loss) == len(correct):
            raise UserError(f"Recorder.step: {len(index)} indices, {len(labels)} labels, {len(loss)} outputs")
        if self._steps and epoch < self._steps[-1]["epoch"]:
            raise UserError(f"Recorder.step: epoch {epoch} after epoch {self._steps[-1]['epoch']}")
        for key, value in zip(self._parts, (index, labels.long(), correct, loss)):
            self._parts[key].append(value)
        digest = _digest(inputs) if inputs is not None else None
        lr = float("nan") if lr is None else float(lr)
        self._steps.append(dict(epoch=int(epoch), lr=lr, loss=loss.mean(), n=len(index), digest=digest))
        self._cache = None

    def _records(self) -> dict:
        """Everything recorded as host arrays, made once per state (the steps' tensors stay on their device
        until asked for: no host sync per step)."""
        if self._cache is None:
            if not self._steps:
                raise UserError("the Recorder has recorded no step")
            arrays = {k: torch.cat([v.reshape(-1).cpu() for v in parts]).numpy() for k, parts in self._parts.items()}
            sizes = np.array([s["n"] for s in self._steps])
            arrays["step"] = np.repeat(np.arange(len(sizes)), sizes)
            arrays["epoch"] = np.repeat([s["epoch"] for s in self._steps], sizes)
            arrays["step_loss"] = torch.stack([s["loss"].cpu() for s in self._steps]).numpy()
            self._cache = arrays
        return self._cache

    def presentations(self) -> pd.DataFrame:
        """One row per presentation, in training order: index, epoch, step, label, correct, loss."""
        return pd.DataFrame({k: self._records()[k] for k in PRESENTATION_COLUMNS})

    def plan(self) -> pd.DataFrame:
        """One row per step, as the trainer's steps.csv: epoch, step, lr, loss (the batch's mean when trained
        on), acc, n (and the digest of its inputs where recorded)."""
        r, rows = self._records(), []
        for epoch in np.unique(r["epoch"]):
            steps = np.flatnonzero([s["epoch"] == epoch for s in self._steps])
            sizes = np.array([self._steps[s]["n"] for s in steps])
            acc = per_step_mean(r["correct"][r["epoch"] == epoch], sizes)  # the trainer's arithmetic
            for k, s in enumerate(steps):
                row = dict(epoch=int(epoch), step=int(s), lr=self._steps[s]["lr"], loss=float(r["step_loss"][s]))
                rows.append(dict(row, acc=float(acc[k]), n=int(sizes[k]), digest=self._steps[s]["digest"]))
        return pd.DataFrame(rows, columns=[*STEP_COLUMNS, "digest"])

    def examples(self) -> dict[str, np.ndarray]:
        """The trainer's examples.npz: order, loss and correct, (epochs, presentations per epoch) each."""
        r = self._records()
        epochs, counts = np.unique(r["epoch"], return_counts=True)
        if len(set(counts)) != 1:
            raise UserError(f"the epochs presented different numbers of examples ({sorted(set(counts))})")
        shape = (len(epochs), int(counts[0]))
        return dict(
            order=r["index"].astype(np.int32).reshape(shape),
            loss=r["loss"].astype(np.float32).reshape(shape),
            correct=r["correct"].reshape(shape),
        )

    def forgetting(self) -> pd.DataFrame:
        """Toneva's statistics of the run (`analysis.scores.presentation_stats`), one row per example with
        its label: the columns of the probe's probe_examples.csv that come from training."""
        r = self._records()
        stats = fs.presentation_stats(r["index"], r["epoch"], np.arange(len(r["index"])), r["correct"])
        first = np.unique(r["index"], return_index=True)[1]  # the label at each example's first presentation
        return stats.assign(label=r["label"][first])

    def scores(self, *others: "Recorder", n_boot: int = fs.N_BOOT) -> pd.DataFrame:
        """The table `forgetting scores` writes, pooled over this run and ``others`` (runs of other seeds)."""
        runs = (self, *others)
        if len({r.seed for r in runs}) != len(runs):
            raise UserError("the Recorders pooled need distinct seeds: Recorder(seed=...)")
        per_run = pd.concat([r.forgetting().assign(seed=r.seed) for r in runs], ignore_index=True)
        return fs.pooled_scores(per_run, n_boot=n_boot)

    def replay(self, model: torch.nn.Module, make_batch, bn: str = "eval", precision: str = "fp32",
               last_epochs: int = 0) -> pd.DataFrame:
        """The frozen ``model`` on every recorded step's batch, rebuilt by ``make_batch(indices, epoch)`` (an
        (inputs, labels) pair): the probe's per-step table (step, epoch, epoch_age, step_lr, loss_now, acc_now,
        loss_when_seen, n). ``bn``: eval (running statistics) or batch (each batch's own, the running ones
        left as they are); ``last_epochs``: only the last K epochs (0: all)."""
        check_bn(bn)
        plan = self.plan()
        last = int(plan["epoch"].max())
        first = 0 if last_epochs <= 0 else last + 1 - last_epochs
        device = next(model.parameters()).device
        was = model.training
        saved = _batch_stat_mode(model) if bn == "batch" else model.eval()
        try:
            rows = []
            for epoch in range(first, last + 1):
                steps = plan[plan["epoch"] == epoch]
                loss, acc = self._replay_epoch(model, make_batch, epoch, steps, device, bn, precision)
                rows += _step_rows(steps, last, loss, acc)
        finally:
            if bn == "batch":
                _restore_bn(model, saved)
            model.train(was)
        return pd.DataFrame(rows)

    def _replay_epoch(self, model, make_batch, epoch: int, steps: pd.DataFrame, device, bn: str, precision: str):
        """Each presentation's loss and correctness in the epoch, evaluated as the probe does: in eval mode in
        chunks of EVAL_BATCH from the epoch's start, in batch mode batch by batch."""
        r = self._records()
        chunk = EVAL_BATCH.get(device.type, 256)
        xs, ys, out = [], [], []
        for step in steps.itertuples():
            x, y = self._rebuilt(make_batch, r, step, epoch, device)
            if bn == "batch":
                out.append(per_example(model, x, y, batch=len(y), precision=precision))
                continue
            xs.append(x)
            ys.append(y)
            if sum(len(b) for b in ys) >= chunk:  # evaluate whole chunks now; the rest waits for more batches
                x_all, y_all = torch.cat(xs), torch.cat(ys)
                whole = len(y_all) // chunk * chunk
                out.append(per_example(model, x_all[:whole], y_all[:whole], precision=precision))
                xs, ys = [x_all[whole:]], [y_all[whole:]]
        if ys and sum(len(b) for b in ys):
            out.append(per_example(model, torch.cat(xs), torch.cat(ys), precision=precision))
        loss = torch.cat([o[0] for o in out]).float().cpu().numpy()
        return loss, torch.cat([o[1] for o in out]).cpu().numpy()

    def _rebuilt(self, make_batch, r: dict, step, epoch: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        """``make_batch``'s rebuild of one recorded step, checked against what was recorded of it."""
        where = r["step"] == step.step
        x, y = make_batch(r["index"][where], epoch)
        x, y = torch.as_tensor(x).to(device), torch.as_tensor(y).to(device)
        if not np.array_equal(y.cpu().numpy(), r["label"][where]):
            raise UserError(f"make_batch's labels for step {step.step} (epoch {epoch}) are not the ones trained on")
        if isinstance(step.digest, str) and _digest(x) != step.digest:
            raise UserError(
                f"make_batch's images for step {step.step} (epoch {epoch}) are not the ones trained on (digest "
                f"{_digest(x)} vs {step.digest}): seed its augmentation by epoch and example"
            )
        return x, y


def _step_rows(steps: pd.DataFrame, last: int, loss: np.ndarray, acc: np.ndarray) -> list[dict]:
    """The probe's rows (`replay._step_rows`) of one epoch's steps."""
    sizes = steps["n"].to_numpy()
    by_loss, by_acc = per_step_mean(loss, sizes), per_step_mean(acc, sizes)
    return [
        dict(
            step=int(s.step),
            epoch=int(s.epoch),
            epoch_age=last - int(s.epoch),
            step_lr=s.lr,
            loss_now=float(by_loss[k]),
            acc_now=float(by_acc[k]),
            loss_when_seen=s.loss,
            n=int(s.n),
        )
        for k, s in enumerate(steps.itertuples())
    ]
