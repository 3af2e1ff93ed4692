"""LR range test (Smith 2015; fastai's ``lr_find``): find the "base LR" of docs/protocol.md, section 4(a).

One short pseudo-training run whose LR grows geometrically, step by step, exactly as the training
engine (`forgetting.train`) takes steps; afterwards the model and optimizer are put back exactly as
they were. `forgetting.lr_curve` reads the curve; docs/lr_finder.md says why the rules are as they are.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import time
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F

from forgetting import augment, train as train_mod
from forgetting.config import TrainConfig, bind_data
from forgetting.datasets import Dataset
from forgetting.device import amp_dtype, processor_name, resolve_device, use_compile
from forgetting.errors import UserError
from forgetting.lr_curve import LRFindCurve, LRFindResult, finder_scale, median_log, read_curves, read_suggestion
from forgetting.lr_settings import BETA, DEFAULT_METHOD, DIVERGE_FACTOR, END_LR, METHODS, NUM_STEPS, START_LR
from forgetting.store import StudyFolder, ensure_folder, json_bytes, read_back


def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy in fp32 (the training engine's loss)."""
    return F.cross_entropy(logits.float(), y)


def lr_schedule(start_lr: float, end_lr: float, num_steps: int) -> np.ndarray:
    """``num_steps`` LRs growing geometrically from ``start_lr`` to ``end_lr`` (both included)."""
    if num_steps == 1:
        return np.array([float(start_lr)])
    return start_lr * (end_lr / start_lr) ** (np.arange(num_steps) / (num_steps - 1))


# --------------------------------------------------------------------------------------------------
# The range test


def _batch_source(batches) -> Callable[[int], tuple | None]:
    """``batches`` as a function of the step: a callable(step) -> (x, y) is used as is; an iterable is
    iterated, and re-iterated from the start when exhausted if it can be (a list); None = no more."""
    if callable(batches) and not hasattr(batches, "__iter__"):
        return batches
    state = {"it": iter(batches), "fresh": True}

    def get(_step: int):
        for _ in range(2):
            try:
                item = next(state["it"])
                state["fresh"] = False
                return item
            except StopIteration:
                if state["fresh"]:
                    return None  # empty
                again = iter(batches)
                if again is state["it"]:  # a one-shot iterator/generator: really exhausted
                    return None
                state["it"], state["fresh"] = again, True
        return None

    return get


def _snapshot(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    return dict(
        model=copy.deepcopy(model.state_dict()),
        optimizer=copy.deepcopy(optimizer.state_dict()),
        grads=[None if p.grad is None else p.grad.detach().clone() for p in model.parameters()],
        training=model.training,
    )


def _restore(model: torch.nn.Module, optimizer: torch.optim.Optimizer, snap: dict) -> None:
    model.load_state_dict(snap["model"])
    optimizer.load_state_dict(snap["optimizer"])
    for p, g in zip(model.parameters(), snap["grads"]):
        p.grad = g
    model.train(snap["training"])


def _check_ramp(start_lr: float, end_lr: float, num_steps: int, beta: float, diverge_factor: float) -> None:
    if not (start_lr > 0 and end_lr > start_lr):
        raise UserError(f"need 0 < start_lr < end_lr, not {start_lr} .. {end_lr}")
    if num_steps < 2:
        raise UserError(f"num_steps must be at least 2, not {num_steps}")
    if not 0 <= beta < 1:
        raise UserError(f"beta must be in [0, 1), not {beta}")
    if diverge_factor <= 1:
        raise UserError(f"diverge_factor must be above 1, not {diverge_factor}")


def _step_at(lr: float, x, y, model, optimizer, scaler, loss_fn, device: torch.device, dt) -> float:
    """One optimizer step at ``lr`` on (x, y), as training takes it; the step's loss."""
    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
    if x.dim() == 4:  # channels-last as in training (train._to_device_batch)
        x = x.contiguous(memory_format=torch.channels_last)
    for g in optimizer.param_groups:
        g["lr"] = float(lr)
    with torch.autocast(device.type, dtype=dt, enabled=dt is not None):
        out = model(x)
    loss = loss_fn(out, y)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return float(loss.detach())  # one host sync per step: the stop rule needs it


def _ramp(step, get, schedule: np.ndarray, beta: float, diverge_factor: float, callbacks) -> tuple:
    """Steps along ``schedule`` -> (lrs, losses, smoothed losses, why it stopped)."""
    lrs, losses, smoothed = [], [], []
    avg, best = 0.0, math.inf
    for i, lr in enumerate(schedule):
        item = get(i)
        if item is None:
            return lrs, losses, smoothed, "exhausted"
        x, y = item
        value = step(lr, x, y)
        if not math.isfinite(value):
            return lrs, losses, smoothed, "nonfinite"
        avg = beta * avg + (1 - beta) * value
        sm = avg / (1 - beta ** (i + 1))
        lrs.append(float(lr))
        losses.append(value)
        smoothed.append(sm)
        if callbacks is not None:
            callbacks.step(i + 1, len(schedule))
        best = min(best, sm)
        if sm > diverge_factor * best:
            return lrs, losses, smoothed, "diverged"
    return lrs, losses, smoothed, "completed"


def range_test(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Iterable | Callable[[int], tuple[torch.Tensor, torch.Tensor]],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = cross_entropy,
    start_lr: float = START_LR,
    end_lr: float = END_LR,
    num_steps: int = NUM_STEPS,
    beta: float = BETA,
    diverge_factor: float = DIVERGE_FACTOR,
    device: torch.device | str | None = None,
    callbacks=None,
    precision: str = "auto",
) -> LRFindCurve:
    """Exponential LR range test: one optimizer step per LR, then restore everything exactly.

    ``batches`` yields (x, y) tensors: an iterable (a list is cycled when it runs out, a generator
    ends the test with ``stopped='exhausted'``) or a callable ``f(step) -> (x, y)``. ``loss_fn(out, y)``
    returns the mean loss (default: cross-entropy in fp32). ``device`` defaults to the model's; the
    forward pass runs under autocast with `device.amp_dtype(device, precision)` (fp16 with a fresh
    GradScaler), channels-last, as in training: with ``precision="auto"`` AMP on CUDA, fp32 on CPU.
    ``callbacks.step(i, n)`` is called after each step (i = steps done, n = num_steps), if given.

    The smoothed loss is fastai's: ``avg = beta * avg + (1 - beta) * loss``, reported as
    ``avg / (1 - beta ** (i + 1))``. The test stops after recording a step whose smoothed loss exceeds
    ``diverge_factor`` x the best so far, or before recording a step whose loss is not finite.
    """
    _check_ramp(start_lr, end_lr, num_steps, beta, diverge_factor)
    device = torch.device(next(model.parameters()).device if device is None else device)
    dt = amp_dtype(device, precision)
    scaler = torch.amp.GradScaler(device.type, enabled=dt == torch.float16)
    schedule = lr_schedule(start_lr, end_lr, num_steps)
    get = _batch_source(batches)
    step = functools.partial(
        _step_at, model=model, optimizer=optimizer, scaler=scaler, loss_fn=loss_fn, device=device, dt=dt
    )
    snap = _snapshot(model, optimizer)
    t0 = time.perf_counter()
    try:
        model.train()
        lrs, losses, smoothed, stopped = _ramp(step, get, schedule, beta, diverge_factor, callbacks)
    finally:
        optimizer.zero_grad(set_to_none=True)
        _restore(model, optimizer, snap)
    return LRFindCurve(
        np.array(lrs), np.array(losses), np.array(smoothed), num_steps, stopped, round(time.perf_counter() - t0, 3)
    )


# --------------------------------------------------------------------------------------------------
# The toolkit's entry point: a TrainConfig's model, optimizer and batches


class _Offset:
    """Maps a range test's step(i, n) onto the whole find_lr run (several seeds)."""

    def __init__(self, cb, offset: int, total: int):
        self.cb, self.offset, self.total = cb, offset, total

    def step(self, i: int, n: int) -> None:
        self.cb.step(self.offset + i, self.total)


def config_batches(cfg: TrainConfig, prep: train_mod.Prepared, device: torch.device):
    """The batches training with ``cfg`` would see, epoch 0, 1, 2, ... (same order and augmentation).

    Full batches only: a partial last batch would be a ramp step on fewer images, a noisier point."""
    spec = prep.augment
    epoch = 0
    while True:
        plan = augment.plan_epoch(prep.subset, cfg.seed, epoch, spec, cfg.batch_size, drop_last=True)
        dplan = augment.DevicePlan(plan, device)
        for s in range(plan.steps):
            yield dplan.batch(prep.train_padded, prep.train_labels, s)
        epoch += 1


def _check_seeds(method: str, seeds: Iterable[int]) -> tuple[int, ...]:
    if method not in METHODS:
        raise UserError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    seeds = tuple(int(s) for s in seeds)
    if not seeds:
        raise UserError("need at least one seed")
    if len(set(seeds)) != len(seeds):
        raise UserError(f"seeds must be distinct, not {seeds}")
    return seeds


def _seed_test(cfg: TrainConfig, data: Dataset, device: torch.device, cache: dict, ramp: dict, callbacks):
    """The range test of ``cfg``'s own model, optimizer and batches (one seed)."""
    prep = train_mod.prepare(cfg, data, device, cache)
    model = train_mod.build_model(cfg, device, prep)
    opt = train_mod.make_optimizer(cfg, model)
    # A compiled module shares the parameters and state of ``model``: the restore covers it.
    stepped = torch.compile(model, dynamic=False) if use_compile(cfg, device) else model
    batches = config_batches(cfg, prep, device)
    return range_test(
        stepped, opt, batches, cross_entropy, device=device, callbacks=callbacks, precision=cfg.precision, **ramp
    )


def _result(cfg, method: str, curves: dict[int, LRFindCurve], ramp: dict, device, seconds: float) -> LRFindResult:
    seeds = tuple(curves)
    per_seed = {s: curves[s].suggest(method) for s in seeds}
    vals = list(per_seed.values())
    return LRFindResult(
        method=method,
        seeds=seeds,
        curves=curves,
        suggestions=per_seed,
        suggestion=median_log(vals),
        spread=(min(vals), max(vals)),
        config={
            k: v
            for k, v in cfg.identity().items()
            if k not in ("seed", "epochs", "lr_knots", "eval_every", "eval_last", "eval_train")
        },
        settings=ramp,
        device=str(device),
        seconds=round(seconds, 3),
        processor=processor_name(device),
    )


def find_lr(
    cfg: TrainConfig,
    data: Dataset,
    device: torch.device | str = "auto",
    method: str = DEFAULT_METHOD,
    seeds: Iterable[int] = (0,),
    num_steps: int = NUM_STEPS,
    start_lr: float = START_LR,
    end_lr: float = END_LR,
    callbacks=None,
    beta: float = BETA,
    diverge_factor: float = DIVERGE_FACTOR,
    cache: dict | None = None,
) -> LRFindResult:
    """Range-test ``cfg``'s model and optimizer on ``cfg``'s training batches, once per seed.

    For each seed: the config with that seed (initial weights, subset and batch plans), its model
    (`train.build_model`), optimizer (`train.make_optimizer`: Nesterov SGD, momentum and weight
    decay as configured) and prepared data (`train.prepare`); batches are drawn from the epoch plans
    0, 1, 2, ... exactly as training would draw them. The schedule, epochs and LR knots of ``cfg``
    are ignored. ``callbacks.step(i, n)``: i steps done out of n = num_steps x seeds (a test that
    stops early jumps i to the end of its share).
    """
    seeds = _check_seeds(method, seeds)
    cfg = bind_data(cfg, data.identity)
    device = resolve_device(device) if isinstance(device, str) else device
    cache = {} if cache is None else cache
    ramp = dict(start_lr=start_lr, end_lr=end_lr, num_steps=num_steps, beta=beta, diverge_factor=diverge_factor)
    total = num_steps * len(seeds)
    curves: dict[int, LRFindCurve] = {}
    t0 = time.perf_counter()
    for k, seed in enumerate(seeds):
        cb = None if callbacks is None else _Offset(callbacks, k * num_steps, total)
        curves[seed] = _seed_test(dataclasses.replace(cfg, seed=seed), data, device, cache, ramp, cb)
        if callbacks is not None and len(curves[seed]) < num_steps:
            callbacks.step((k + 1) * num_steps, total)
    return _result(cfg, method, curves, ramp, device, time.perf_counter() - t0)


# --------------------------------------------------------------------------------------------------
# Its files: the curves, the suggestions and the plot


def write_files(found: LRFindResult, folder: Path, key: dict | None = None, figure: bool = False) -> None:
    """``found`` in ``folder``, each file written whole: lr_find.csv (the curves), lr_find.json (the
    suggestions; with ``key``, the setup a study's stored result must match to be reused) and, with
    ``figure``, the plot lr_find.png/.svg."""
    out = StudyFolder(folder)
    frame = found.curves_frame()
    record = found.to_dict() if key is None else dict(key=key, **found.to_dict())
    out.write({out.lr_find_csv.name: frame.to_csv(index=False).encode(), out.lr_find_json.name: json_bytes(record)})
    if figure:
        from forgetting import plots_lr_find  # matplotlib loads only when a plot is asked for

        scale = finder_scale(found.to_dict())
        plots_lr_find.plot_lr_find(frame, found.suggestion, found.method, out.lr_find_figure, scale)


def read_files(folder: Path, notice: Callable[[str], None] | None = None) -> dict | None:
    """``folder``'s lr_find.json, read back with lr_find.csv beside it under the store's policy on damaged
    files: None when there is none, or when (with ``notice``) one of the two was damaged and set aside, so
    that the finder runs again; without ``notice``, a damaged one is refused (`store.DamagedFile`)."""
    out = StudyFolder(folder)
    if not out.lr_find_json.exists():
        return None
    saved = read_back(out.lr_find_json, read_suggestion, notice)
    curves = read_back(out.lr_find_csv, read_curves, notice) if out.lr_find_csv.exists() else True
    return saved if saved is not None and curves is not None else None


def find_lr_into(folder: Path, cfg: TrainConfig, data: Dataset, device, **find_args) -> LRFindResult:
    """`find_lr`, with its files and plot written into ``folder`` (checked before the range test, not after)."""
    ensure_folder(folder, "--out folder")
    found = find_lr(cfg, data, device, **find_args)
    write_files(found, folder, figure=True)
    return found
