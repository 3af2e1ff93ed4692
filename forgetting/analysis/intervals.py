"""95% intervals: the t interval of a mean and of a difference of means, and percentile intervals of
bootstrap draws (expanded for few resampled units).

The bottom of forgetting/analysis/: numpy and scipy only, nothing of this package, so that every fit
and verdict takes its intervals from one place.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

CONFIDENCE = 0.95


def t_halfwidth(std, n):
    """Half-width of the t interval of a mean; NaN below two observations."""
    std = np.asarray(std, dtype=float)
    n = np.asarray(n, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = stats.t.ppf(0.5 + CONFIDENCE / 2, np.where(n >= 2, n - 1, np.nan))
        return q * std / np.sqrt(n)


def mean_ci(df: pd.DataFrame, keys: list[str], col: str) -> pd.DataFrame:
    """Per group: mean of ``col``, its t interval (``col_lo``, ``col_hi``) and the count ``n``."""
    g = df.groupby(keys, sort=True)[col].agg(["mean", "std", "count"]).reset_index()
    h = t_halfwidth(g["std"], g["count"])
    return (
        g.assign(lo=g["mean"] - h, hi=g["mean"] + h)
        .rename(columns={"mean": col, "lo": f"{col}_lo", "hi": f"{col}_hi", "count": "n"})
        .drop(columns="std")
    )


def welch_diff(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """mean(x) - mean(y) with Welch's t interval (unequal variances)."""
    x, y = x[np.isfinite(x)], y[np.isfinite(y)]
    if len(x) == 0 or len(y) == 0:
        return math.nan, math.nan, math.nan
    d = float(x.mean() - y.mean())
    if len(x) < 2 or len(y) < 2:
        return d, math.nan, math.nan
    vx, vy = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    se = math.sqrt(vx + vy)
    if se == 0:
        return d, d, d
    df = (vx + vy) ** 2 / (vx**2 / (len(x) - 1) + vy**2 / (len(y) - 1))
    h = float(stats.t.ppf(0.5 + CONFIDENCE / 2, df) * se)
    return d, d - h, d + h


def percentile_interval(values: np.ndarray, n_units: int | None = None) -> tuple[float, float]:
    """Percentile interval of bootstrap draws; with ``n_units`` (resampled units, e.g. seeds) the
    expanded percentile interval (Hesterberg 2015): plain percentiles from a handful of seeds are too
    narrow (plug-in variance, z instead of t), so the tail level is widened to match
    sqrt(n / (n - 1)) * t_{n-1}. With 2 seeds that is the range of the draws."""
    values = values[np.isfinite(values)]
    if len(values) < 2:
        return math.nan, math.nan
    tail = tail_level(n_units)
    lo, hi = np.percentile(values, [100 * tail, 100 * (1 - tail)])
    return float(lo), float(hi)


def tail_level(n_units: int | None = None) -> float:
    """The share of bootstrap draws cut from each end of a percentile interval: (1 - CONFIDENCE) / 2, and
    with ``n_units`` >= 2 resampled units the expanded level of `percentile_interval`."""
    tail = (1 - CONFIDENCE) / 2
    if n_units is not None and n_units >= 2:
        z = math.sqrt(n_units / (n_units - 1)) * stats.t.ppf(1 - tail, n_units - 1)
        tail = float(stats.norm.sf(z))
    return tail
