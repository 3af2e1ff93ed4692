"""Piecewise-linear schedules in fractional epochs, as in Page's cifar10-fast."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from forgetting.errors import UserError


@dataclass(frozen=True)
class PiecewiseLinear:
    knots: tuple[tuple[float, float], ...]  # (epoch, value), epochs strictly increasing

    def __post_init__(self):
        epochs = [k[0] for k in self.knots]
        if len(epochs) < 2 or any(b <= a for a, b in zip(epochs, epochs[1:])):
            raise UserError(f"schedule knots need at least two strictly increasing epochs, got {epochs}")

    def __call__(self, epoch: float) -> float:
        xs, ys = zip(*self.knots)
        return float(np.interp(epoch, xs, ys))


def warmup_constant(peak: float, warmup: float, epochs: float) -> PiecewiseLinear:
    """Linear from 0 to ``peak`` over ``warmup`` epochs, then constant (Part 2's experiments)."""
    if warmup <= 0:
        return PiecewiseLinear(((0.0, peak), (float(epochs), peak)))
    if warmup >= epochs:
        return PiecewiseLinear(((0.0, 0.0), (float(epochs), peak)))
    return PiecewiseLinear(((0.0, 0.0), (float(warmup), peak), (float(epochs), peak)))


def triangle(peak: float, epochs: float, rise_fraction: float = 8 / 30) -> PiecewiseLinear:
    """Part 3's shape stretched to ``epochs``: 0 -> peak over the first 8/30, then linearly to 0."""
    return PiecewiseLinear(((0.0, 0.0), (rise_fraction * epochs, peak), (float(epochs), 0.0)))
