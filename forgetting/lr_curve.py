"""A range test's curve and what it suggests: fastai's rules (valley, steepest, min10), over seeds.

All rules read the EMA-smoothed curve after fastai's trimming; why valley is the default, and what the
suggestions mean, is in docs/lr_finder.md.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from forgetting.errors import UserError
from forgetting.lr_settings import DEFAULT_METHOD, METHODS
from forgetting.store import read_json_object, read_table_text

SKIP_END = 5  # points dropped from the end before suggesting (fastai)
STOP_REASONS = ("completed", "diverged", "nonfinite", "exhausted")


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


def median_log(values: list[float]) -> float:
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
    processor: str = ""  # the chip it ran on (device.processor_name): another one gives other digits

    def all_methods(self) -> dict[str, dict]:
        """Every method's per-seed suggestions, median and spread (not only ``method``'s)."""
        out = {}
        for m in METHODS:
            per = {s: self.curves[s].suggest(m) for s in self.seeds}
            vals = list(per.values())
            out[m] = dict(suggestion=median_log(vals), spread=[min(vals), max(vals)], per_seed=per)
        return out

    def curves_frame(self) -> pd.DataFrame:
        """All curves in long form: CURVE_COLUMNS."""
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
            processor=self.processor,
            seconds=self.seconds,
        )


# What a range test leaves in a folder (`lr_finder.write_files`), read back: a reader raises on a file
# that is not what it wrote, for the store's policy on damaged files (`store.read_back`).
CURVE_COLUMNS = ("seed", "step", "lr", "loss", "smoothed_loss")  # lr_find.csv


def read_suggestion(path: Path) -> dict:
    """lr_find.json: what the finder suggested (a number) by which rule."""
    saved = read_json_object(path)
    if not isinstance(saved.get("suggestion"), (int, float)) or not isinstance(saved.get("method"), str):
        raise ValueError("no suggestion and rule")
    return saved


def read_curves(path: Path) -> pd.DataFrame:
    """lr_find.csv: the curves, in long form."""
    return pd.read_csv(io.StringIO(read_table_text(path, CURVE_COLUMNS)))


def finder_scale(found: dict) -> str:
    """The scale of a range test, from its record (lr_find.json or `LRFindResult.to_dict`): its own
    network, subset, batch, steps and seeds, and what it ran on. Not the study's: a finder is one short
    ramp, whatever the training it picks a base LR for."""
    c, ramp = found.get("config") or {}, found.get("settings") or {}
    aug = "crop+flip" if c.get("augment") else "no augmentation"
    shape = f"{c.get('net')} width {c.get('width'):g}, batch {c.get('batch_size')}"
    images = f"{c['subset']:,} images with {aug}" if c.get("subset") else aug
    seeds = found.get("seeds") or []
    ran = ", ".join(str(x) for x in seeds)
    steps = f"{ramp.get('num_steps')} steps from LR {ramp.get('start_lr'):g} to {ramp.get('end_lr'):g}"
    machine = ", ".join(str(x) for x in (found.get("device"), found.get("processor")) if x)
    return f"finder: {shape}, {images}; {steps}, seed{'s' if len(seeds) > 1 else ''} {ran}" + (
        f"; on {machine}" if machine else ""
    )
