"""The forgetting probe of one run: replay a finished run's batch plans through its frozen final weights.

For every probed epoch the plan is drawn again from the run's config and each batch's digest is
checked against the one recorded in training, so the loss is measured on exactly the images and
augmentation draws the network was trained on. Also: per-example forgetting events (Toneva et al.,
ICLR 2019) from the correctness recorded at every presentation during training.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from forgetting import augment
from forgetting.analysis import probe_fits
from forgetting.analysis.scores import count_forgetting
from forgetting.config import BN_MODES, TrainConfig, bind_data
from forgetting.datasets import Dataset
from forgetting.errors import UserError
from forgetting.store import RunFolder, check_zip, read_back, read_json_object, read_table_text
from forgetting.evaluation import per_example, per_step_mean
from forgetting.train import STEP_COLUMNS, Prepared, build_model, prepare


class ProbeError(UserError):
    """A replayed batch does not match what training recorded, or a run is incomplete."""


def check_bn(bn: str) -> None:
    if bn not in BN_MODES:
        raise UserError(f"--bn must be {' or '.join(BN_MODES)}, not {bn!r}")


@dataclass
class RunProbe:
    steps: pd.DataFrame  # one row per training step probed
    examples: pd.DataFrame  # one row per training example: forgetting statistics and loss now
    recency: pd.DataFrame  # one row per example: steps since its most recent presentation, loss now
    run: dict  # reference: test loss/acc of the same weights, run facts


def _read_steps(path: Path) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(read_table_text(path, tuple(STEP_COLUMNS))), dtype={"digest": str})


def _read_weights(path: Path) -> dict:
    state = torch.load(check_zip(path), map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError("not a model's weights")
    return state


def _read_examples(path: Path) -> dict:
    with np.load(check_zip(path)) as f:
        examples = {k: f[k] for k in f.files}
    if not {"order", "correct"} <= set(examples):
        raise ValueError("no order and correctness arrays")
    return examples


def load_run(run_dir: Path):
    """A finished run's config, steps, weights, examples and result, each read back whole: a damaged one is
    refused (`store.read_back`), as a probe cannot make a run's own weights and records again."""
    run = RunFolder(run_dir)
    for path in (run.result, run.config, run.steps, run.model, run.examples):
        if not path.exists():
            raise ProbeError(f"run {run.dir.name}: {path.name} missing; the run has not finished")
    cfg = read_back(run.config, lambda path: TrainConfig.from_dict(read_json_object(path)))
    steps, state = read_back(run.steps, _read_steps), read_back(run.model, _read_weights)
    return cfg, steps, state, read_back(run.examples, _read_examples), read_back(run.result, read_json_object)


def _batch_stat_mode(model: torch.nn.Module) -> dict:
    """BN uses each batch's own statistics, with momentum 0 so running statistics stay as they are."""
    saved = {}
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            saved[name] = (m.momentum, m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone())
            m.momentum = 0.0
    model.train()
    return saved


def _restore_bn(model: torch.nn.Module, saved: dict) -> None:
    for name, m in model.named_modules():
        if name in saved:
            m.momentum, rm, rv, nb = saved[name]
            m.running_mean.copy_(rm)
            m.running_var.copy_(rv)
            m.num_batches_tracked.copy_(nb)
    model.eval()


@dataclass
class _Frozen:
    """A finished run made ready to probe: its records, its data on the device, its final weights."""

    name: str  # the run id
    cfg: TrainConfig
    recorded: dict  # (epoch, step) -> that step's row of steps.csv
    examples: dict  # examples.npz: each presentation's order and correctness in training
    result: dict
    prep: Prepared
    model: torch.nn.Module


def _freeze(run_dir: Path, data: Dataset, device: torch.device, cache: dict | None) -> _Frozen:
    run_dir = Path(run_dir)
    cfg, steps, state, examples, result = load_run(run_dir)
    if result.get("diverged"):
        raise ProbeError(f"run {run_dir.name} diverged: there is nothing to probe")
    bind_data(cfg, data.identity, f"run {run_dir.name}")  # its weights are never probed on other images
    prep = prepare(cfg, data, device, cache)
    model = build_model(cfg, device, prep)
    model.load_state_dict(state)
    model.eval()
    recorded = {(int(r.epoch), int(r.step)): r for r in steps.itertuples()}
    return _Frozen(run_dir.name, cfg, recorded, examples, result, prep, model)


def _check_replay(run: _Frozen, epoch: int, plan: augment.EpochPlan) -> None:
    """Every batch of the epoch drawn again must be the one training recorded, digest for digest."""
    for s, d in enumerate(plan.digests()):
        rec = run.recorded.get((epoch, epoch * plan.steps + s))
        if rec is None or rec.digest != d:
            raise ProbeError(
                f"run {run.name}: batch at epoch {epoch} step {epoch * plan.steps + s} does not match the one "
                f"recorded in training (digest {d} vs {getattr(rec, 'digest', 'none')}); the replay is not exact"
            )


def _epoch_losses(run: _Frozen, plan: augment.EpochPlan, device: torch.device, bn: str):
    """Each presentation's loss and correctness under the frozen weights, in the plan's order (host arrays)."""
    cfg, prep, model = run.cfg, run.prep, run.model
    dplan = augment.DevicePlan(plan, device)
    if bn == "eval":  # per-example losses do not depend on batch composition: use big chunks
        idx = dplan.indices
        x = augment.apply_choices(
            prep.train_padded[idx], dplan.crop, dplan.flip, dplan.cutout, prep.augment.cutout, prep.augment.image
        )
        loss, correct = per_example(model, x, prep.train_labels[idx], precision=cfg.precision)
    else:  # batch statistics depend on the batch: replay the training batches as they were
        parts = [
            per_example(
                model,
                *dplan.batch(prep.train_padded, prep.train_labels, s),
                batch=cfg.batch_size,
                precision=cfg.precision,
            )
            for s in range(plan.steps)
        ]
        loss, correct = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    return loss.float().cpu().numpy(), correct.cpu().numpy()


def _step_rows(run: _Frozen, epoch: int, plan: augment.EpochPlan, loss: np.ndarray, acc: np.ndarray) -> list[dict]:
    """One row per step of the epoch: the loss now of its batch beside the loss when it was trained on."""
    n_epochs, n_steps, sizes = run.cfg.epochs, plan.steps, plan.sizes()
    by_step_loss = per_step_mean(loss, sizes)
    by_step_acc = per_step_mean(acc, sizes)
    rows = []
    for s in range(n_steps):
        rec = run.recorded[(epoch, epoch * n_steps + s)]
        rows.append(
            dict(
                step=epoch * n_steps + s,
                epoch=epoch,
                epoch_age=n_epochs - 1 - epoch,
                step_lr=rec.lr,
                loss_now=float(by_step_loss[s]),
                acc_now=float(by_step_acc[s]),
                loss_when_seen=rec.loss,
                n=int(sizes[s]),
            )
        )
    return rows


def _recency(index: list, step: list, loss: list, total_steps: int) -> pd.DataFrame:
    """Loss now on each example's most recent presentation, and how many steps ago that was."""
    idx_all, step_all, loss_all = map(np.concatenate, (index, step, loss))
    order = np.lexsort((step_all, idx_all))  # by index, then step: the last of each index is its newest
    last = np.r_[idx_all[order][1:] != idx_all[order][:-1], True]
    return pd.DataFrame(
        dict(
            index=idx_all[order][last],
            steps_since_seen=total_steps - 1 - step_all[order][last],
            loss_now=loss_all[order][last],
        )
    )


def _forgetting(run: _Frozen, data: Dataset, device: torch.device) -> pd.DataFrame:
    """Toneva statistics from training records; loss now on the clean (unaugmented) image."""
    prep = run.prep
    forget = count_forgetting(run.examples["order"], run.examples["correct"], data.train_size)
    clean_idx = torch.as_tensor(forget["index"].to_numpy().copy(), device=device)
    clean_x = prep.clean(clean_idx)
    clean_loss, _ = per_example(run.model, clean_x, prep.train_labels[clean_idx], precision=run.cfg.precision)
    forget["label"] = data.train_y[forget["index"].to_numpy()]
    forget["loss_now"] = clean_loss.float().cpu().numpy()
    forget["first_learned_epoch"] = forget["first_learned_epoch"].where(~forget["never_learned"], -1)
    return forget


def _reference(run: _Frozen) -> dict:
    """The reference line: the same weights on the test set, as training measured it in eval mode."""
    result = run.result
    return dict(
        test_loss=result["test_loss"],
        test_acc=result["test_acc"],
        train_loss=result.get("train_loss"),
        epochs=run.cfg.epochs,
        subset=run.cfg.subset,
        train_seconds=result.get("seconds"),
    )


def probe_run(
    run_dir: Path,
    data: Dataset,
    device: torch.device,
    last_epochs: int = 0,
    bn: str = "eval",
    cache: dict | None = None,
    callbacks=None,
) -> RunProbe:
    """Loss of the frozen final weights on every probed epoch's exact training batches."""
    check_bn(bn)
    if last_epochs < 0:
        raise UserError(f"--last-epochs must not be negative, not {last_epochs}")
    run = _freeze(run_dir, data, device, cache)
    cfg, n_epochs = run.cfg, run.cfg.epochs
    first = 0 if last_epochs == 0 else max(0, n_epochs - last_epochs)
    rows, pres_index, pres_step, pres_loss = [], [], [], []
    saved = _batch_stat_mode(run.model) if bn == "batch" else None
    total_steps = None
    for epoch in range(first, n_epochs):
        plan = augment.plan_epoch(run.prep.subset, cfg.seed, epoch, run.prep.augment, cfg.batch_size, cfg.drop_last)
        total_steps = n_epochs * plan.steps
        _check_replay(run, epoch, plan)
        loss, acc = _epoch_losses(run, plan, device, bn)
        rows += _step_rows(run, epoch, plan, loss, acc)
        pres_index.append(plan.indices)
        pres_step.append(epoch * plan.steps + np.arange(len(plan.indices)) // cfg.batch_size)
        pres_loss.append(loss)
        if callbacks is not None:
            callbacks.step(epoch, n_epochs)
    if saved is not None:
        _restore_bn(run.model, saved)
    recency = _recency(pres_index, pres_step, pres_loss, total_steps)
    return RunProbe(pd.DataFrame(rows), _forgetting(run, data, device), recency, _reference(run))
