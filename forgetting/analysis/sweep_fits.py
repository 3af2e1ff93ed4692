"""LR-sweep table -> fits (docs/protocol.md, section 4a): per (subset, multiplier) means with t
intervals, the fitted optimum with a bootstrap over seeds, and where clean train loss stops improving.

Descriptive fits only: the pre-registered readings and verdict of claim (a) are in verdicts.py.
Pass one study's runs at a time: runs are grouped by subset and multiplier only.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from forgetting.analysis import intervals, tables


def sweep_aggregates(results: pd.DataFrame) -> pd.DataFrame:
    """Per (subset, multiplier): mean test and clean train loss over the runs that did not blow up,
    with t intervals over seeds, and how many runs there were and how many blew up. The LR-sweep
    figure draws this. Columns: subset, multiplier, base_lr, test_loss, test_loss_lo, test_loss_hi,
    clean_train_loss, clean_train_loss_lo, clean_train_loss_hi, n_runs, n_diverged."""
    runs = tables.sweep_runs(results)
    if "base_lr" not in runs:
        runs["base_lr"] = math.nan
    keys = ["subset", "multiplier"]
    counts = runs.groupby(keys).agg(
        n_runs=("blew_up", "size"), n_diverged=("blew_up", "sum"), base_lr=("base_lr", "mean")
    )
    ok = runs[~runs["blew_up"]]
    out = counts.reset_index()
    for col in ("test_loss", "clean_train_loss"):
        out = out.merge(intervals.mean_ci(ok, keys, col).drop(columns="n"), on=keys, how="left")
    cols = keys + [
        "base_lr",
        "test_loss",
        "test_loss_lo",
        "test_loss_hi",
        "clean_train_loss",
        "clean_train_loss_lo",
        "clean_train_loss_hi",
        "n_runs",
        "n_diverged",
    ]
    return out[cols].astype({"n_diverged": int}).sort_values(keys).reset_index(drop=True)


def _vertex(x: np.ndarray, y: np.ndarray, half_window: int) -> tuple[float, int]:
    """Fitted minimum of y(x) near its argmin, and the argmin's index. ``x`` is sorted, y finite.

    A quadratic through the argmin and up to ``half_window`` points either side (at least 3 points,
    taken from one side at an edge). Local, because loss against log LR is not a parabola: it is flat
    on the left and climbs steeply into the blow-up on the right, and a global fit (or a spline
    through every point) is pulled about by that wall. Two points either side rather than one, because
    small subsets make single-point swings of several percent (docs/calibration.md) and a 3-point fit only
    moves the argmin by up to half a grid step. The vertex is clipped to the sampled range, and a
    fit that does not curve upwards falls back to the argmin.
    """
    i = int(np.argmin(y))
    n = len(x)
    if n < 3:
        return float(x[i]), i
    lo, hi = max(0, i - half_window), min(n, i + half_window + 1)
    while hi - lo < 3:  # at an edge: borrow from the side that has points
        lo, hi = (lo - 1, hi) if hi == n else (lo, hi + 1)
    c2, c1, _ = np.polyfit(x[lo:hi], y[lo:hi], 2)
    if not c2 > 0:
        return float(x[i]), i
    return float(np.clip(-c1 / (2 * c2), x[0], x[-1])), i


def _loss_matrix(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(seeds x multipliers) test losses of one subset, NaN where a run blew up or is missing."""
    ok = df[~df["blew_up"]]
    if ok.empty:
        return np.empty(0), np.empty((0, 0))
    table = ok.pivot_table(index="seed", columns="multiplier", values="test_loss", aggfunc="mean")
    table = table.reindex(index=sorted(df["seed"].unique()), columns=sorted(ok["multiplier"].unique()))
    return np.log2(table.columns.to_numpy(dtype=float)), table.to_numpy(dtype=float)


def _fit_rows(x: np.ndarray, losses: np.ndarray, half_window: int) -> tuple[float, int, np.ndarray]:
    """Vertex of the seed-mean curve; also returns the indices of x that had data."""
    has = np.isfinite(losses).any(axis=0)
    mean = np.nanmean(losses[:, has], axis=0)
    x_opt, i = _vertex(x[has], mean, half_window)
    return x_opt, i, np.flatnonzero(has)


def optimum_by_subset(
    results: pd.DataFrame, n_boot: int = 1000, rng_seed: int = 0, half_window: int = 2
) -> pd.DataFrame:
    """Per subset size, the LR multiplier of minimum test loss (fitted, with a bootstrap over seeds).

    Columns: subset, m_opt (2**vertex of the local quadratic in log2 multiplier), m_opt_lo, m_opt_hi
    (expanded percentile interval from refitting on seeds drawn with replacement; NaN with one seed;
    on synthetic tables it covers the truth about 95% of the time with 5 or more seeds, 80% with 3
    and 50% with 2, where it is just the spread of the two per-seed fits), m_argmin
    (multiplier of the lowest seed-mean test loss), test_loss_min (that loss), n_seeds.
    """
    runs = tables.sweep_runs(results)
    rng = np.random.default_rng(rng_seed)
    rows = []
    for subset, df in runs.groupby("subset", sort=True):
        x, losses = _loss_matrix(df)
        n_seeds = int(df["seed"].nunique())
        row = dict(
            subset=int(subset),
            m_opt=math.nan,
            m_opt_lo=math.nan,
            m_opt_hi=math.nan,
            m_argmin=math.nan,
            test_loss_min=math.nan,
            n_seeds=n_seeds,
        )
        if losses.size and np.isfinite(losses).any():
            x_opt, i, cols = _fit_rows(x, losses, half_window)
            mean = np.nanmean(losses[:, cols], axis=0)
            row.update(m_opt=2.0**x_opt, m_argmin=2.0 ** x[cols[i]], test_loss_min=float(mean[i]))
            if n_seeds >= 2 and n_boot > 0:
                draws = np.empty(n_boot)
                for k in range(n_boot):
                    sample = losses[rng.integers(0, len(losses), len(losses))]
                    draws[k] = _fit_rows(x, sample, half_window)[0] if np.isfinite(sample).any() else np.nan
                lo, hi = intervals.percentile_interval(draws, n_units=len(losses))
                row.update(m_opt_lo=2.0**lo, m_opt_hi=2.0**hi)
        rows.append(row)
    return pd.DataFrame(
        rows, columns=["subset", "m_opt", "m_opt_lo", "m_opt_hi", "m_argmin", "test_loss_min", "n_seeds"]
    )


def _per_multiplier(df: pd.DataFrame) -> pd.DataFrame:
    """One subset's runs -> per multiplier: mean clean train loss of the survivors, and any blow-up."""
    ok = df[~df["blew_up"]]
    means = ok.groupby("multiplier")[["clean_train_loss"]].mean()
    blown = df.groupby("multiplier")["blew_up"].any()
    return means.reindex(blown.index).assign(blew_up=blown).sort_index()


def curvature_limit(results: pd.DataFrame, rise: float = 0.1) -> pd.DataFrame:
    """Per subset: where training stops working (curvature), and the first blow-up.

    curvature_limit: the smallest multiplier at which the mean clean train loss exceeds (1 + rise) x its
    minimum over smaller-or-equal multipliers, or any run blew up. first_diverged: the smallest
    multiplier with a blown-up run. NaN where none. Where test loss turns up is the pre-registered
    rule's (verdicts.turn_up); summary.curvature_table sets the two side by side.
    """
    rows = []
    for subset, df in tables.sweep_runs(results).groupby("subset", sort=True):
        t = _per_multiplier(df)
        m = t.index.to_numpy(dtype=float)
        clean = t["clean_train_loss"].to_numpy(dtype=float)
        blown = t["blew_up"].to_numpy()
        running_min = np.fmin.accumulate(np.where(np.isfinite(clean), clean, np.nan))
        with np.errstate(invalid="ignore"):
            broke = blown | (clean > (1 + rise) * running_min)
        rows.append(
            dict(
                subset=int(subset),
                curvature_limit=float(m[broke][0]) if broke.any() else math.nan,
                first_diverged=float(m[blown][0]) if blown.any() else math.nan,
            )
        )
    return pd.DataFrame(rows, columns=["subset", "curvature_limit", "first_diverged"])
