"""LR range test (Smith 2015; fastai's ``lr_find``): find the "base LR" of docs/protocol.md, section 4(a).

One short pseudo-training run whose LR grows geometrically, step by step, from ``start_lr`` to
``end_lr``. Each step is exactly a step of the training engine (`forgetting.train`): same model,
same Nesterov SGD with weight decay, AMP on CUDA, the same batches with the same augmentation draws.
The loss of every step is recorded and EMA-smoothed with bias correction (fastai's ``SmoothLoss``);
the test stops early once the smoothed loss exceeds ``diverge_factor`` times its best, or the loss
is not finite. Afterwards the model and optimizer are put back exactly as they were: weights, BN
running statistics, momentum buffers, param-group LRs, gradients and train/eval mode.

Suggestions (`METHODS`), all on the smoothed curve, with fastai's trimming of the first
``num_steps // 10`` and the last 5 points (the start is dominated by the EMA's warm-up, the end by
the divergence that stopped the test):

- ``valley`` (the default): fastai's ``valley`` (contributed by ESRI): the longest strictly
  decreasing subsequence of the smoothed loss, and the point ``int(L/3) + int(L/6)`` (about half-way;
  fastai's docs say "roughly 2/3") into it. Default because it is the most robust of the three:
  it depends on the whole descending stretch rather than on a single difference (``steepest`` is a
  derivative of a noisy curve and jumps between local kinks, especially with few steps), and it does
  not lean on where the curve bottoms out, which the EMA's lag pushes towards the divergence
  (``min10`` inherits that lag; the /10 is a rule of thumb). fastai made it its default for the
  same reasons. Caveat: where the smoothed curve falls from its first point (a smooth start), the
  valley spans the whole trimmed curve and the suggestion is about the log-midpoint of the first
  trimmed LR and the minimum, so it moves with ``start_lr``: keep the default 1e-4 when comparing.
- ``steepest``: the LR at the most negative slope d(smoothed loss)/d(log LR) (fastai's ``steep``:
  the left end of the steepest interval).
- ``min10``: the LR of the minimum smoothed loss, divided by 10 (fastai's ``minimum``).

The EMA (beta 0.98) averages over ~50 steps, so use ``num_steps`` >= 100 (fastai's default) or a
smaller ``beta`` for short tests; with a geometric ramp progress accumulates, so on a problem with one
curvature lambda the curve falls near lr ~ (r - 1) / (2 lambda) (r = the LR ratio per step), well
below the optimum 1 / lambda: suggestions are conservative by construction.

LRs are in the toolkit's mean-loss convention, so a suggestion is directly a peak LR for
``TrainConfig.lr_knots`` (and the "base LR" of the LR sweep). No plotting here: `forgetting.plots`
draws the curves.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from forgetting import augment, data as data_mod, train as train_mod
from forgetting.config import TrainConfig
from forgetting.device import amp_dtype, resolve_device, use_compile
from forgetting.errors import UserError

METHODS = ("valley", "steepest", "min10")
DEFAULT_METHOD = "valley"
SKIP_END = 5  # points dropped from the end before suggesting (fastai)
STOP_REASONS = ("completed", "diverged", "nonfinite", "exhausted")


def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy in fp32 (the training engine's loss)."""
    return F.cross_entropy(logits.float(), y)


def lr_schedule(start_lr: float, end_lr: float, num_steps: int) -> np.ndarray:
    """``num_steps`` LRs growing geometrically from ``start_lr`` to ``end_lr`` (both included)."""
    if num_steps == 1:
        return np.array([float(start_lr)])
    return start_lr * (end_lr / start_lr) ** (np.arange(num_steps) / (num_steps - 1))


# --------------------------------------------------------------------------------------------------
# Suggestion rules: each takes the trimmed (lrs, smoothed losses) and returns an index into them
# (min10 divides the LR at its index by 10 afterwards).


def _valley_index(losses: np.ndarray) -> int:
    """fastai's ``valley``: longest strictly decreasing subsequence, a point ~half-way along it."""
    n = len(losses)
    lds = [1] * n
    max_start, max_end = 0, 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and lds[i] < lds[j] + 1:
                lds[i] = lds[j] + 1
        if lds[max_end] < lds[i]:
            max_end = i
            max_start = max_end - lds[max_end]
    sections = (max_end - max_start) / 3
    idx = max_start + int(sections) + int(sections / 2)
    return int(min(max(idx, 0), n - 1))  # fastai's start can be -1 when the curve falls from its first point


def _steepest_index(lrs: np.ndarray, losses: np.ndarray) -> int:
    """fastai's ``steep``: the left end of the interval of most negative d loss / d log LR."""
    if len(losses) < 2:
        return 0
    grads = np.diff(losses) / np.diff(np.log(lrs))
    return int(np.argmin(grads))


def _min_index(losses: np.ndarray) -> int:
    return int(np.argmin(losses))


@dataclass
class LRFindCurve:
    """One range test: the LR of each step, its loss, and the bias-corrected EMA of the losses."""

    lrs: np.ndarray
    losses: np.ndarray
    smoothed: np.ndarray
    num_steps: int = 0  # steps planned (the curve is shorter when the test stopped early)
    stopped: str = "completed"  # completed, diverged (smoothed > factor x best), nonfinite, exhausted (no more batches)
    seconds: float = 0.0

    def __post_init__(self):
        self.lrs = np.asarray(self.lrs, dtype=np.float64)
        self.losses = np.asarray(self.losses, dtype=np.float64)
        self.smoothed = np.asarray(self.smoothed, dtype=np.float64)
        if not len(self.lrs) == len(self.losses) == len(self.smoothed):
            raise ValueError("lrs, losses and smoothed must have the same length")
        if not self.num_steps:
            self.num_steps = len(self.lrs)

    def __len__(self) -> int:
        return len(self.lrs)

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"lr": self.lrs, "loss": self.losses, "smoothed_loss": self.smoothed})

    def trimmed(self) -> tuple[np.ndarray, np.ndarray]:
        """The part of the curve the rules look at: fastai drops the first num_steps // 10 and the
        last 5 points; with a curve too short for that, less is dropped (at least 3 points remain
        when the curve has them). Non-finite points never occur (the test stops before recording one).
        """
        lrs, sm = self.lrs, self.smoothed
        n = len(lrs)
        if n == 0:
            raise UserError("the LR range test recorded no steps: nothing to suggest from")
        start, end = self.num_steps // 10, n - SKIP_END
        if end - start < 3:
            start, end = min(start, max(n - 3, 0)), n  # keep the end rather than lose the curve
            if end - start < 3:
                start = 0
        return lrs[start:end], sm[start:end]

    def suggest(self, method: str = DEFAULT_METHOD) -> float:
        """The suggested LR by ``method`` (one of `METHODS`)."""
        if method not in METHODS:
            raise UserError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
        lrs, sm = self.trimmed()
        if method == "valley":
            return float(lrs[_valley_index(sm)])
        if method == "steepest":
            return float(lrs[_steepest_index(lrs, sm)])
        return float(lrs[_min_index(sm)] / 10)

    def suggestions(self) -> dict[str, float]:
        return {m: self.suggest(m) for m in METHODS}


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


def range_test(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Iterable | Callable[[int], tuple[torch.Tensor, torch.Tensor]],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = cross_entropy,
    start_lr: float = 1e-4,
    end_lr: float = 10.0,
    num_steps: int = 100,
    beta: float = 0.98,
    diverge_factor: float = 4.0,
    device: torch.device | str | None = None,
    callbacks=None,
    precision: str = "auto",
) -> LRFindCurve:
    """Exponential LR range test: one optimizer step per LR, then restore everything exactly.

    ``batches`` yields (x, y) tensors: an iterable (a list is cycled when it runs out, a generator
    ends the test with ``stopped='exhausted'``) or a callable ``f(step) -> (x, y)``. ``loss_fn(out, y)``
    returns the mean loss (default: cross-entropy in fp32). ``device`` defaults to the model's; the
    forward pass runs under autocast with `forgetting.device.amp_dtype(device, precision)` (fp16 with a fresh
    GradScaler), channels-last, as in training: with ``precision="auto"`` AMP on CUDA, fp32 on CPU.
    ``callbacks.step(i, n)`` is called after each step (i = steps done, n = num_steps), if given.

    The smoothed loss is fastai's: ``avg = beta * avg + (1 - beta) * loss``, reported as
    ``avg / (1 - beta ** (i + 1))``. The test stops after recording a step whose smoothed loss exceeds
    ``diverge_factor`` x the best so far, or before recording a step whose loss is not finite.
    """
    if not (start_lr > 0 and end_lr > start_lr):
        raise UserError(f"need 0 < start_lr < end_lr, not {start_lr} .. {end_lr}")
    if num_steps < 2:
        raise UserError(f"num_steps must be at least 2, not {num_steps}")
    if not 0 <= beta < 1:
        raise UserError(f"beta must be in [0, 1), not {beta}")
    if diverge_factor <= 1:
        raise UserError(f"diverge_factor must be above 1, not {diverge_factor}")
    if device is None:
        device = next(model.parameters()).device
    device = torch.device(device)
    dt = amp_dtype(device, precision)
    scaler = torch.amp.GradScaler(device.type, enabled=dt == torch.float16)
    schedule = lr_schedule(start_lr, end_lr, num_steps)
    get = _batch_source(batches)

    snap = _snapshot(model, optimizer)
    lrs, losses, smoothed = [], [], []
    avg, best, stopped = 0.0, math.inf, "completed"
    t0 = time.perf_counter()
    try:
        model.train()
        for i, lr in enumerate(schedule):
            item = get(i)
            if item is None:
                stopped = "exhausted"
                break
            x, y = item
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if x.dim() == 4:  # channels-last as in training (evaluation.channels_last)
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
            value = float(loss.detach())  # one host sync per step: the stop rule needs it
            if not math.isfinite(value):
                stopped = "nonfinite"
                break
            avg = beta * avg + (1 - beta) * value
            sm = avg / (1 - beta ** (i + 1))
            lrs.append(float(lr))
            losses.append(value)
            smoothed.append(sm)
            if callbacks is not None:
                callbacks.step(i + 1, num_steps)
            best = min(best, sm)
            if sm > diverge_factor * best:
                stopped = "diverged"
                break
    finally:
        optimizer.zero_grad(set_to_none=True)
        _restore(model, optimizer, snap)
    return LRFindCurve(
        np.array(lrs), np.array(losses), np.array(smoothed), num_steps, stopped, round(time.perf_counter() - t0, 3)
    )


# --------------------------------------------------------------------------------------------------
# The toolkit's entry point: a TrainConfig's model, optimizer and batches


def _median_log(values: list[float]) -> float:
    """Median on the log scale (an LR's natural scale): the usual median for an odd count, the
    geometric mean of the middle two for an even one; always within [min, max]."""
    v = np.asarray(values, dtype=np.float64)
    return float(np.clip(np.exp(np.median(np.log(v))), v.min(), v.max()))  # clip: exp(log(x)) may miss x by an ulp


@dataclass
class LRFindResult:
    """Range tests of one config over several seeds and their suggestions by ``method``."""

    method: str
    seeds: tuple[int, ...]
    curves: dict[int, LRFindCurve]
    suggestions: dict[int, float]  # seed -> suggestion by ``method``
    suggestion: float  # median over seeds (log scale)
    spread: tuple[float, float]  # (min, max) over seeds
    config: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)  # start_lr, end_lr, num_steps, beta, diverge_factor
    device: str = ""
    seconds: float = 0.0

    def all_methods(self) -> dict[str, dict]:
        """Every method's per-seed suggestions, median and spread (not only ``method``'s)."""
        out = {}
        for m in METHODS:
            per = {s: self.curves[s].suggest(m) for s in self.seeds}
            vals = list(per.values())
            out[m] = dict(suggestion=_median_log(vals), spread=[min(vals), max(vals)], per_seed=per)
        return out

    def curves_frame(self) -> pd.DataFrame:
        """All curves in long form: seed, step, lr, loss, smoothed_loss."""
        frames = []
        for s in self.seeds:
            f = self.curves[s].to_frame()
            f.insert(0, "step", np.arange(len(f)))
            f.insert(0, "seed", s)
            frames.append(f)
        return pd.concat(frames, ignore_index=True)

    def to_dict(self) -> dict:
        """JSON-ready summary (the curves themselves go to a CSV via `curves_frame`)."""
        return dict(
            method=self.method,
            suggestion=self.suggestion,
            spread=list(self.spread),
            seeds=list(self.seeds),
            per_seed={str(s): self.suggestions[s] for s in self.seeds},
            methods={
                m: dict(v, per_seed={str(k): x for k, x in v["per_seed"].items()})
                for m, v in self.all_methods().items()
            },
            curves={
                str(s): dict(
                    steps=len(c),
                    planned=c.num_steps,
                    stopped=c.stopped,
                    last_lr=float(c.lrs[-1]) if len(c) else None,
                    seconds=c.seconds,
                )
                for s, c in self.curves.items()
            },
            settings=self.settings,
            config=self.config,
            device=self.device,
            seconds=self.seconds,
        )


class _Offset:
    """Maps a range test's step(i, n) onto the whole find_lr run (several seeds)."""

    def __init__(self, cb, offset: int, total: int):
        self.cb, self.offset, self.total = cb, offset, total

    def step(self, i: int, n: int) -> None:
        self.cb.step(self.offset + i, self.total)


def config_batches(cfg: TrainConfig, prep: train_mod.Prepared, device: torch.device):
    """The batches training with ``cfg`` would see, epoch 0, 1, 2, ... (same order and augmentation).

    Full batches only: a partial last batch would be a ramp step on fewer images, a noisier point."""
    spec = cfg.augment_spec
    epoch = 0
    while True:
        plan = augment.plan_epoch(prep.subset, cfg.seed, epoch, spec, cfg.batch_size, drop_last=True)
        dplan = augment.DevicePlan(plan, device)
        for s in range(plan.steps):
            yield dplan.batch(prep.train_padded, prep.train_labels, s)
        epoch += 1


def find_lr(
    cfg: TrainConfig,
    cifar: data_mod.Cifar10,
    device: torch.device | str = "auto",
    method: str = DEFAULT_METHOD,
    seeds: Iterable[int] = (0,),
    num_steps: int = 100,
    start_lr: float = 1e-4,
    end_lr: float = 10.0,
    callbacks=None,
    beta: float = 0.98,
    diverge_factor: float = 4.0,
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
    if method not in METHODS:
        raise UserError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    seeds = tuple(int(s) for s in seeds)
    if not seeds:
        raise UserError("need at least one seed")
    if len(set(seeds)) != len(seeds):
        raise UserError(f"seeds must be distinct, not {seeds}")
    device = resolve_device(device) if isinstance(device, str) else device
    cache = {} if cache is None else cache
    total = num_steps * len(seeds)
    curves: dict[int, LRFindCurve] = {}
    t0 = time.perf_counter()
    for k, seed in enumerate(seeds):
        c = dataclasses.replace(cfg, seed=seed)
        prep = train_mod.prepare(c, cifar, device, cache)
        model = train_mod.build_model(c, device)
        opt = train_mod.make_optimizer(c, model)
        # A compiled module shares the parameters and state of ``model``: the restore covers it.
        stepped = torch.compile(model, dynamic=False) if use_compile(c, device) else model
        cb = None if callbacks is None else _Offset(callbacks, k * num_steps, total)
        curves[seed] = range_test(
            stepped,
            opt,
            config_batches(c, prep, device),
            cross_entropy,
            start_lr,
            end_lr,
            num_steps,
            beta,
            diverge_factor,
            device,
            cb,
            c.precision,
        )
        if callbacks is not None and len(curves[seed]) < num_steps:
            callbacks.step((k + 1) * num_steps, total)
        del model, opt
    per_seed = {s: curves[s].suggest(method) for s in seeds}
    vals = list(per_seed.values())
    return LRFindResult(
        method=method,
        seeds=seeds,
        curves=curves,
        suggestions=per_seed,
        suggestion=_median_log(vals),
        spread=(min(vals), max(vals)),
        config={
            k: v
            for k, v in cfg.identity().items()
            if k not in ("seed", "epochs", "lr_knots", "eval_every", "eval_last")
        },
        settings=dict(start_lr=start_lr, end_lr=end_lr, num_steps=num_steps, beta=beta, diverge_factor=diverge_factor),
        device=str(device),
        seconds=round(time.perf_counter() - t0, 3),
    )
