"""One training run: batch plans -> steps -> history, records, weights, result.

The recipe is docs/protocol.md, section 3: Nesterov SGD, a piecewise-linear LR set at every step, and
each epoch ending with its partial batch, as Page's loader does. Data stay on the device, channels-last,
with no host sync per step. Besides the per-epoch history a run records what the forgetting probe
needs: each batch's digest and loss at the time, and every example's loss and correctness at each
presentation. What a run is: `forgetting.config`; where and in what precision it runs: `forgetting.device`.
"""

from __future__ import annotations

import dataclasses
import io
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from forgetting import augment
from forgetting.config import TrainConfig, bind_data, check_fits, is_test_epoch
from forgetting.datasets import Dataset
from forgetting.device import amp_dtype, execution, machine_load, resolve_device, use_compile
from forgetting.evaluation import channels_last, epoch_mean, evaluate, per_step_mean
from forgetting.run_start import Prepared, build_model, make_optimizer, prepare  # noqa: F401 (the names callers use)
from forgetting.store import RunFolder, atomic_write_bytes, check_zip, csv_bytes, ensure_folder, json_bytes
from forgetting.store import read_back, warn

HISTORY_COLUMNS = [
    "epoch",
    "lr",
    "train_loss",
    "train_acc",
    "test_loss",
    "test_acc",
    "clean_train_loss",
    "clean_train_acc",
    "seconds",
]
STEP_COLUMNS = ["epoch", "step", "lr", "digest", "loss", "acc", "n"]


@dataclass
class RunOutput:
    """What a run produces; `store.RunFolder.write` puts a finished one on disk (result.json last)."""

    config: dict
    history: list[dict]
    steps: list[dict]
    examples: dict[str, np.ndarray]  # order/loss/correct: (epochs, n) each
    state_dict: dict
    result: dict = field(default_factory=dict)
    stopped: bool = False  # a callback stopped it short: not a finished run, nothing to write

    def files(self) -> dict[str, bytes]:
        """The run's files as bytes, by name, in the order they are written (result.json last)."""
        buf_model, buf_ex = io.BytesIO(), io.BytesIO()
        torch.save(self.state_dict, buf_model)
        np.savez_compressed(buf_ex, **self.examples)
        return {
            RunFolder.config.name: json_bytes(self.config),
            RunFolder.history.name: csv_bytes(self.history, HISTORY_COLUMNS),
            RunFolder.steps.name: csv_bytes(self.steps, STEP_COLUMNS),
            RunFolder.examples.name: buf_ex.getvalue(),
            RunFolder.model.name: buf_model.getvalue(),
            RunFolder.result.name: json_bytes(self.result),
        }


class Callbacks:
    """Progress hooks; the command line passes one that draws bars. All optional. ``step`` returning
    True stops the run after that step (a benchmark's timed window is over): see `train`."""

    def start_epoch(self, epoch: int, steps: int) -> None: ...
    def step(self, epoch: int, step: int) -> bool | None: ...
    def end_epoch(self, row: dict) -> None: ...


@dataclass
class Records:
    """What a run has recorded so far: all that a checkpoint holds besides the weights."""

    history: list[dict] = field(default_factory=list)  # one row per epoch (HISTORY_COLUMNS)
    steps: list[dict] = field(default_factory=list)  # one row per step (STEP_COLUMNS)
    ex_order: list[np.ndarray] = field(default_factory=list)  # per epoch: the images in presentation order
    ex_loss: list[np.ndarray] = field(default_factory=list)  # per epoch: each image's loss as presented
    ex_correct: list[np.ndarray] = field(default_factory=list)
    epoch: int = 0  # epochs finished
    elapsed: float = 0.0  # training seconds, compiling excluded
    compile_secs: float = 0.0


@dataclass
class Loop:
    """What trains: the model, its optimizer and the run's data on the device."""

    cfg: TrainConfig
    device: torch.device
    prep: Prepared
    model: torch.nn.Module
    step_model: torch.nn.Module  # the model, or what torch.compile made of it
    opt: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    dt: torch.dtype | None  # the autocast dtype; None = fp32
    compiled: bool
    shapes_seen: set = field(default_factory=set)  # batch sizes compiled so far


class EpochSteps:
    """One epoch's per-step and per-example records, kept on the device until it ends: no host sync per step."""

    def __init__(self, plan: augment.EpochPlan, device: torch.device):
        self.plan, self.compile_secs = plan, 0.0
        self.lr = np.empty(plan.steps)
        self.loss = torch.zeros(plan.steps, device=device)
        self.ex_loss = torch.empty(len(plan.indices), device=device)
        self.ex_correct = torch.empty(len(plan.indices), dtype=torch.bool, device=device)


def _start(cfg: TrainConfig, data: Dataset, device: torch.device, cache: dict | None) -> Loop:
    """The run's data on the device, its freshly initialised model (seeded) and optimizer."""
    dt = amp_dtype(device, cfg.precision)
    prep = prepare(cfg, data, device, cache)
    model = build_model(cfg, device, prep)
    compiled = use_compile(cfg, device)
    # dynamic=False: one static graph per batch shape (a partial last batch is a second one).
    step_model = torch.compile(model, dynamic=False) if compiled else model
    opt = make_optimizer(cfg, model)
    scaler = torch.amp.GradScaler(device.type, enabled=dt == torch.float16)
    return Loop(cfg, device, prep, model, step_model, opt, scaler, dt, compiled)


def _resume(loop: Loop, checkpoint: Path | None) -> Records:
    """The checkpoint's records, its weights and optimizer loaded; fresh records without one of this run,
    or when it is damaged (set aside, with one warning line: `store.read_back`)."""
    if checkpoint is None or not Path(checkpoint).exists():
        return Records()

    def load(path: Path) -> dict:
        state = torch.load(check_zip(path), map_location=loop.device, weights_only=False)  # a cut-off zip: named
        records = {f.name for f in dataclasses.fields(Records)} - {"compile_secs"}  # older checkpoints lack it
        if not isinstance(state, dict) or not {"config", "model", "optimizer", "scaler", *records} <= set(state):
            raise ValueError("not a checkpoint of a run")
        return state

    state = read_back(Path(checkpoint), load, warn)
    if state is None:
        return Records()
    saved_cfg = TrainConfig.from_dict(state["config"])
    bind_data(saved_cfg, loop.cfg.data, f"the checkpoint {checkpoint}")  # never resumed on other data
    if saved_cfg.identity() != loop.cfg.identity():  # compiled or not: the same run
        return Records()
    loop.model.load_state_dict(state["model"])
    loop.opt.load_state_dict(state["optimizer"])
    loop.scaler.load_state_dict(state["scaler"])
    saved = {f.name: state[f.name] for f in dataclasses.fields(Records) if f.name != "compile_secs"}
    return Records(**saved, compile_secs=state.get("compile_secs", 0.0))  # older checkpoints lack it


def _save_checkpoint(loop: Loop, records: Records, checkpoint: Path) -> None:
    """After a finished epoch: what `_resume` continues from."""
    state = dict(config=loop.cfg.to_dict(), model=loop.model.state_dict(), optimizer=loop.opt.state_dict())
    buf = io.BytesIO()
    torch.save(dict(state, scaler=loop.scaler.state_dict(), **vars(records)), buf)
    atomic_write_bytes(Path(checkpoint), buf.getvalue())


def _train_step(loop: Loop, batches: augment.DevicePlan, steps: EpochSteps, s: int) -> None:
    """Step ``s`` of the epoch at the LR already in ``steps.lr[s]``; its records go into ``steps``."""
    cfg, device = loop.cfg, loop.device
    for g in loop.opt.param_groups:
        g["lr"] = steps.lr[s]
    x, y = batches.batch(loop.prep.train_padded, loop.prep.train_labels, s)
    x = channels_last(x)
    compiles = loop.compiled and len(y) not in loop.shapes_seen
    tc = time.perf_counter()
    with torch.autocast(device.type, dtype=loop.dt, enabled=loop.dt is not None):
        logits = loop.step_model(x)
    losses = F.cross_entropy(logits.float(), y, reduction="none")
    loss = losses.mean()
    # Page sums the loss and divides the LR by the nominal batch size: a partial batch moves
    # the weights in proportion to the images it holds.
    grad_loss = loss if len(y) == cfg.batch_size else losses.sum() / cfg.batch_size
    loop.opt.zero_grad(set_to_none=True)
    loop.scaler.scale(grad_loss).backward()
    loop.scaler.step(loop.opt)
    loop.scaler.update()
    if compiles:  # the first step of a batch shape compiles it: timed apart from training
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        loop.shapes_seen.add(len(y))
        steps.compile_secs += time.perf_counter() - tc
    sl = steps.plan.batch(s)
    steps.ex_loss[sl] = losses.detach()
    steps.ex_correct[sl] = logits.detach().argmax(1) == y
    steps.loss[s] = loss.detach()


def _train_epoch(loop: Loop, epoch: int, cb: Callbacks) -> EpochSteps | None:
    """The steps of one epoch; None when a callback stopped the run part-way."""
    cfg = loop.cfg
    plan = augment.plan_epoch(loop.prep.subset, cfg.seed, epoch, loop.prep.augment, cfg.batch_size, cfg.drop_last)
    batches = augment.DevicePlan(plan, loop.device)
    sched = cfg.schedule
    cb.start_epoch(epoch, plan.steps)
    steps = EpochSteps(plan, loop.device)
    for s in range(plan.steps):
        steps.lr[s] = sched(epoch + (s + 1) / plan.steps)
        _train_step(loop, batches, steps, s)
        if cb.step(epoch, s):
            return None
    return steps


def _record_steps(records: Records, epoch: int, steps: EpochSteps) -> tuple[float, float]:
    """An epoch's step and example records, on the host; its training loss and accuracy."""
    plan, sizes = steps.plan, steps.plan.sizes()
    step_loss = steps.loss.cpu().numpy()
    correct = steps.ex_correct.cpu().numpy()
    records.ex_order.append(plan.indices.astype(np.int32))
    records.ex_loss.append(steps.ex_loss.cpu().numpy().astype(np.float32))
    records.ex_correct.append(correct)
    step_acc = per_step_mean(correct, sizes)
    for s, d in enumerate(plan.digests()):
        row = dict(epoch=epoch, step=epoch * plan.steps + s, lr=steps.lr[s], digest=d, loss=float(step_loss[s]))
        records.steps.append(dict(row, acc=float(step_acc[s]), n=int(sizes[s])))
    return epoch_mean(step_loss, sizes), epoch_mean(step_acc, sizes)


def _finish_epoch(loop: Loop, records: Records, epoch: int, steps: EpochSteps, t0: float) -> tuple[dict, bool]:
    """Record a trained epoch and evaluate it on the test set when due: its history row, and whether
    the run diverged (a non-finite training or test loss)."""
    cfg = loop.cfg
    train_loss, train_acc = _record_steps(records, epoch, steps)
    diverged = not np.isfinite(train_loss)
    test_loss = test_acc = clean_loss = clean_acc = float("nan")
    if not diverged and is_test_epoch(cfg, epoch):
        test_loss, test_acc = evaluate(loop.model, loop.prep.test_x, loop.prep.test_y, cfg.precision)
        diverged = not np.isfinite(test_loss)  # weights can blow up on an epoch's final steps
        if cfg.eval_train and not diverged:
            clean_loss, clean_acc = _evaluate_clean_subset(loop)
    secs = time.perf_counter() - t0 - steps.compile_secs
    records.elapsed += secs
    records.compile_secs += steps.compile_secs
    records.epoch = epoch + 1
    row = dict(
        epoch=epoch + 1,
        lr=float(steps.lr[-1]),
        train_loss=train_loss,
        train_acc=train_acc,
        test_loss=test_loss,
        test_acc=test_acc,
        clean_train_loss=clean_loss,
        clean_train_acc=clean_acc,
        seconds=round(secs, 3),
    )
    records.history.append(row)
    return row, diverged


def _evaluate_clean_subset(loop: Loop) -> tuple[float, float]:
    """Loss and accuracy on the run's training subset without augmentation (the padded images' centres)."""
    prep = loop.prep
    subset = torch.as_tensor(prep.subset, device=loop.device)
    return evaluate(loop.model, prep.clean(subset), prep.train_labels[subset], loop.cfg.precision)


def _final_result(loop: Loop, records: Records, diverged: bool, resumed_from: int, load_start: float | None) -> dict:
    """result.json: the final epoch, the evaluated tail, the clean training subset, and how it ran."""
    cfg, device, history = loop.cfg, loop.device, records.history
    final = history[-1]
    clean_loss = clean_acc = float("nan")
    if not diverged:
        clean_loss, clean_acc = _evaluate_clean_subset(loop)
    images = sum(len(o) for o in records.ex_order)
    # Mean over the evaluated last epochs: at a constant LR the final snapshot alone is noisy.
    tail = [r["test_loss"] for r in history[-max(cfg.eval_last, 1) :]]
    tail_acc = [r["test_acc"] for r in history[-max(cfg.eval_last, 1) :]]
    return dict(
        train_loss=final["train_loss"],
        train_acc=final["train_acc"],
        test_loss=final["test_loss"],
        test_acc=final["test_acc"],
        test_loss_tail=float("nan") if diverged else float(np.nanmean(tail)),
        test_acc_tail=float("nan") if diverged else float(np.nanmean(tail_acc)),
        tail_epochs=int(np.isfinite(tail).sum()) if not diverged else 0,
        clean_train_loss=clean_loss,
        clean_train_acc=clean_acc,
        diverged=diverged,
        epochs_completed=len(history),
        seconds=round(records.elapsed, 3),
        train_images_per_second=round(images / max(records.elapsed, 1e-9), 2),
        **execution(device, loop.dt, loop.compiled),
        compile_seconds=round(records.compile_secs, 3),
        dataset=cfg.dataset,
        data_fingerprint=cfg.data_fingerprint,
        resumed_from_epoch=resumed_from,  # 0: trained from the start in one go
        load_start=load_start,  # of this process's part of the run, when it resumed from a checkpoint
        load_end=machine_load(),
    )


def _output(loop: Loop, records: Records, result: dict, stopped: bool = False) -> RunOutput:
    examples = {}
    if records.ex_order:
        examples = dict(
            order=np.stack(records.ex_order), loss=np.stack(records.ex_loss), correct=np.stack(records.ex_correct)
        )
    state_dict = {k: v.detach().cpu() for k, v in loop.model.state_dict().items()}
    return RunOutput(loop.cfg.to_dict(), records.history, records.steps, examples, state_dict, result, stopped)


def train(
    cfg: TrainConfig,
    data: Dataset,
    device: torch.device | str = "auto",
    checkpoint: Path | None = None,
    callbacks: Callbacks | None = None,
    cache: dict | None = None,
) -> RunOutput:
    """Train one run on ``data``. With ``checkpoint``, save after every epoch and resume from it if present.

    A config not yet bound to a data set is bound to ``data`` (`config.bind_data`); one bound to another
    data set, or a checkpoint of one, is refused.

    A non-finite loss ends the run early with ``diverged = True``; it is not raised. A callback's
    ``step`` that returns True stops the run after that step: the epoch in progress is dropped, nothing
    more is evaluated or saved, and the output has ``stopped = True``, the epochs finished before it
    and an empty result.
    """
    load_start = machine_load()
    cfg = bind_data(cfg, data.identity)
    check_fits(cfg, data)
    device = resolve_device(device) if isinstance(device, str) else device
    cb = callbacks or Callbacks()
    loop = _start(cfg, data, device, cache)
    records = _resume(loop, checkpoint)
    resumed_from, diverged = records.epoch, False
    loop.model.train()
    for epoch in range(records.epoch, cfg.epochs):
        t0 = time.perf_counter()
        steps = _train_epoch(loop, epoch, cb)
        if steps is None:
            return _output(loop, records, {}, stopped=True)
        row, diverged = _finish_epoch(loop, records, epoch, steps, t0)
        if checkpoint is not None and not diverged and epoch < cfg.epochs - 1:
            _save_checkpoint(loop, records, checkpoint)
        cb.end_epoch(row)  # after the checkpoint: an interrupt while printing loses no finished epoch
        if diverged:
            break
    return _output(loop, records, _final_result(loop, records, diverged, resumed_from, load_start))


def train_to_dir(cfg: TrainConfig, data: Dataset, out_dir: Path, device="auto", callbacks=None, cache=None) -> dict:
    """Train into ``out_dir``: resumable from its epoch checkpoint, result.json written last. A run
    that a callback stopped writes nothing more (its checkpoint stays) and returns an empty result."""
    check_fits(bind_data(cfg, data.identity), data)  # before the folder is made
    run = RunFolder(ensure_folder(out_dir, "--out folder"))
    output = train(cfg, data, device, checkpoint=run.checkpoint, callbacks=callbacks, cache=cache)
    if output.stopped:
        return output.result
    run.write(output.files())
    run.checkpoint.unlink(missing_ok=True)
    return output.result
