"""Tidy tables -> fits and summaries for Part 2's two experiments (docs/protocol.md, section 4). No plotting.

Inputs are the sweep table (one row per run), the probe tables (one row per replayed step, per probed
run, per (run, example)) and nothing else. Every interval is a 95% interval. Pass one study's rows at
a time: runs are grouped by subset and multiplier only, so mixing nets or epoch counts would average
them together.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from scipy import optimize, stats

CONFIDENCE = 0.95
FULL_AUG = "full-aug"  # the probe condition the paper's forgetting claim is checked on
TAU_MIN = 0.05  # epochs; below this every age but 0 looks the same, so tau is not identifiable
TAU_MAX_FACTOR = 100.0  # tau is bounded by this times the oldest age (beyond it the rise is a line)


# ---------------------------------------------------------------- helpers


def _norm_multiplier(s: pd.Series) -> pd.Series:
    """6 significant digits, so that lr / base_lr round-off (0.12500000001) groups with 0.125."""
    return pd.to_numeric(s.astype(float).map(lambda m: f"{m:.6g}"))


def _flag(s: pd.Series) -> pd.Series:
    """A bool column that may have come back from CSV as text."""
    if s.dtype == bool:
        return s
    return s.astype(str).str.strip().str.lower().isin(("true", "1", "yes"))


def _runs(results: pd.DataFrame) -> pd.DataFrame:
    """Finished runs with a normalised multiplier and a ``blew_up`` flag.

    Failed runs (a crash, not a divergence) say nothing about the LR and are dropped. A run counts as
    blown up when it is flagged diverged or its test loss is not finite.
    """
    df = results.copy()
    if "status" in df:
        df = df[df["status"].astype(str) == "finished"]
    df["multiplier"] = _norm_multiplier(df["multiplier"])
    test = pd.to_numeric(df["test_loss"], errors="coerce")
    diverged = _flag(df["diverged"]) if "diverged" in df else pd.Series(False, index=df.index)
    df["blew_up"] = diverged | ~np.isfinite(test)
    return df


def _t_halfwidth(std, n):
    """Half-width of the t interval of a mean; NaN below two observations."""
    std = np.asarray(std, dtype=float)
    n = np.asarray(n, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = stats.t.ppf(0.5 + CONFIDENCE / 2, np.where(n >= 2, n - 1, np.nan))
        return q * std / np.sqrt(n)


def _mean_ci(df: pd.DataFrame, keys: list[str], col: str) -> pd.DataFrame:
    """Per group: mean of ``col``, its t interval (``col_lo``, ``col_hi``) and the count ``n``."""
    g = df.groupby(keys, sort=True)[col].agg(["mean", "std", "count"]).reset_index()
    h = _t_halfwidth(g["std"], g["count"])
    return (
        g.assign(lo=g["mean"] - h, hi=g["mean"] + h)
        .rename(columns={"mean": col, "lo": f"{col}_lo", "hi": f"{col}_hi", "count": "n"})
        .drop(columns="std")
    )


def _welch_diff(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
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


def _percentile_interval(values: np.ndarray, n_units: int | None = None) -> tuple[float, float]:
    """Percentile interval of bootstrap draws; with ``n_units`` (resampled units, e.g. seeds) the
    expanded percentile interval (Hesterberg 2015): plain percentiles from a handful of seeds are too
    narrow (plug-in variance, z instead of t), so the tail level is widened to match
    sqrt(n / (n - 1)) * t_{n-1}. With 2 seeds that is the range of the draws."""
    values = values[np.isfinite(values)]
    if len(values) < 2:
        return math.nan, math.nan
    tail = (1 - CONFIDENCE) / 2
    if n_units is not None and n_units >= 2:
        z = math.sqrt(n_units / (n_units - 1)) * stats.t.ppf(1 - tail, n_units - 1)
        tail = float(stats.norm.sf(z))
    lo, hi = np.percentile(values, [100 * tail, 100 * (1 - tail)])
    return float(lo), float(hi)


# ---------------------------------------------------------------- (a) LR sweep


def sweep_aggregates(results: pd.DataFrame) -> pd.DataFrame:
    """Per (subset, multiplier): mean test and clean train loss over the runs that did not blow up,
    with t intervals over seeds, and how many runs there were and how many blew up. The LR-sweep
    figure draws this. Columns: subset, multiplier, base_lr, test_loss, test_loss_lo, test_loss_hi,
    clean_train_loss, clean_train_loss_lo, clean_train_loss_hi, n_runs, n_diverged."""
    runs = _runs(results)
    if "base_lr" not in runs:
        runs["base_lr"] = math.nan
    keys = ["subset", "multiplier"]
    counts = runs.groupby(keys).agg(
        n_runs=("blew_up", "size"), n_diverged=("blew_up", "sum"), base_lr=("base_lr", "mean")
    )
    ok = runs[~runs["blew_up"]]
    out = counts.reset_index()
    for col in ("test_loss", "clean_train_loss"):
        out = out.merge(_mean_ci(ok, keys, col).drop(columns="n"), on=keys, how="left")
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
    runs = _runs(results)
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
                lo, hi = _percentile_interval(draws, n_units=len(losses))
                row.update(m_opt_lo=2.0**lo, m_opt_hi=2.0**hi)
        rows.append(row)
    return pd.DataFrame(
        rows, columns=["subset", "m_opt", "m_opt_lo", "m_opt_hi", "m_argmin", "test_loss_min", "n_seeds"]
    )


def _per_multiplier(df: pd.DataFrame) -> pd.DataFrame:
    """One subset's runs -> per multiplier: mean clean train and test loss of the survivors, any blow-up."""
    ok = df[~df["blew_up"]]
    means = ok.groupby("multiplier")[["clean_train_loss", "test_loss"]].mean()
    blown = df.groupby("multiplier")["blew_up"].any()
    return means.reindex(blown.index).assign(blew_up=blown).sort_index()


def curvature_limit(results: pd.DataFrame, rise: float = 0.1) -> pd.DataFrame:
    """Per subset: where training stops working (curvature) and where test loss turns up (forgetting).

    curvature_limit: the smallest multiplier at which the mean clean train loss exceeds (1 + rise) x its
    minimum over smaller-or-equal multipliers, or any run blew up. turn_up: the first multiplier past
    the test-loss argmin whose mean test loss exceeds (1 + rise) x the minimum, a blow-up counting as
    infinitely high. first_diverged: the smallest multiplier with a blown-up run. NaN where none.
    """
    rows = []
    for subset, df in _runs(results).groupby("subset", sort=True):
        t = _per_multiplier(df)
        m = t.index.to_numpy(dtype=float)
        clean = t["clean_train_loss"].to_numpy(dtype=float)
        test = np.where(t["blew_up"], np.inf, t["test_loss"].to_numpy(dtype=float))
        blown = t["blew_up"].to_numpy()

        running_min = np.fmin.accumulate(np.where(np.isfinite(clean), clean, np.nan))
        with np.errstate(invalid="ignore"):
            broke = blown | (clean > (1 + rise) * running_min)
        turn_up = math.nan
        if np.isfinite(test).any():
            i = int(np.nanargmin(np.where(np.isfinite(test), test, np.nan)))
            with np.errstate(invalid="ignore"):
                above = np.flatnonzero(test[i + 1 :] > (1 + rise) * test[i])
            turn_up = float(m[i + 1 + above[0]]) if len(above) else math.nan
        rows.append(
            dict(
                subset=int(subset),
                curvature_limit=float(m[broke][0]) if broke.any() else math.nan,
                turn_up=turn_up,
                first_diverged=float(m[blown][0]) if blown.any() else math.nan,
            )
        )
    return pd.DataFrame(rows, columns=["subset", "curvature_limit", "turn_up", "first_diverged"])


# ---------------------------------------------------------------- (b) forgetting probe


def _probe(probe: pd.DataFrame) -> pd.DataFrame:
    df = probe.copy()
    df["multiplier"] = _norm_multiplier(df["multiplier"])
    return df


def epoch_aggregates(probe: pd.DataFrame) -> pd.DataFrame:
    """Per (condition, multiplier, epoch_age): the frozen model's loss on that epoch's batches.

    The unit is the replayed step (pooled over seeds), unweighted by its image count. Columns:
    condition, multiplier, lr, epoch_age, loss_now, loss_now_lo, loss_now_hi, loss_when_seen,
    acc_now, n_steps. loss_when_seen and acc_now are NaN when the probe lacks them.
    """
    df = _probe(probe)
    keys = ["condition", "multiplier", "epoch_age"]
    out = _mean_ci(df, keys, "loss_now").rename(columns={"n": "n_steps"})
    extra = {c: df.groupby(keys)[c].mean() if c in df else math.nan for c in ("lr", "loss_when_seen", "acc_now")}
    out = out.join(pd.DataFrame(extra, index=pd.MultiIndex.from_frame(out[keys])), on=keys)
    cols = keys[:2] + [
        "lr",
        "epoch_age",
        "loss_now",
        "loss_now_lo",
        "loss_now_hi",
        "loss_when_seen",
        "acc_now",
        "n_steps",
    ]
    return out[cols].reset_index(drop=True)


def epoch_seed_aggregates(probe: pd.DataFrame) -> pd.DataFrame:
    """As epoch_aggregates, but over seeds, the unit of the pre-registered verdicts: the mean of each
    seed's mean over the epoch's steps, and a within-seed 95% interval over seeds (Cousineau 2005 with
    Morey's 2008 correction): each seed's own level over the ages is removed first, because seeds
    differ in level far more than in how the loss changes with age, and the verdicts read the change.
    NaN interval with one seed. Columns as epoch_aggregates, with n_seeds in place of n_steps."""
    df = _probe(probe)
    keys = ["condition", "multiplier", "epoch_age"]
    cols = [c for c in ("lr", "loss_now", "loss_when_seen", "acc_now") if c in df]
    s = df.groupby(keys + ["seed"], as_index=False)[cols].mean()
    cell = s.groupby(keys[:2])["loss_now"]
    s["centred"] = s["loss_now"] - s.groupby(keys[:2] + ["seed"])["loss_now"].transform("mean") + cell.transform("mean")
    s["n_ages"] = s.groupby(keys[:2])["epoch_age"].transform("nunique")
    g = s.groupby(keys).agg(
        loss_now=("loss_now", "mean"), sd=("centred", "std"), n_seeds=("seed", "nunique"), n_ages=("n_ages", "first")
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        h = _t_halfwidth(g["sd"], g["n_seeds"]) * np.sqrt(g["n_ages"] / (g["n_ages"] - 1))
    g = g.assign(loss_now_lo=g["loss_now"] - h, loss_now_hi=g["loss_now"] + h)
    g = g.join(s.groupby(keys)[[c for c in cols if c != "loss_now"]].mean()).reset_index()
    for c in ("lr", "loss_when_seen", "acc_now"):
        if c not in g:
            g[c] = math.nan
    cols = keys[:2] + ["lr", "epoch_age", "loss_now", "loss_now_lo", "loss_now_hi", "loss_when_seen", "acc_now"]
    return g[cols + ["n_seeds"]]


def _rise(age, a, b, tau):
    """Loss of a batch seen ``age`` epochs before the end: a when long forgotten, a - b when fresh."""
    return a - b * np.exp(-age / tau)


def _profile_fit(ages: np.ndarray, ys: np.ndarray, tau_max: float) -> tuple[np.ndarray, ...]:
    """Least-squares (a, b >= 0, tau) for each row of ``ys`` over a log grid of tau, all at once.

    For fixed tau the model is linear in (a, b), so the best (a, b) and residual are closed-form; this
    starts curve_fit away from local minima and makes a bootstrap of hundreds of refits cheap (the
    grid step, 1%, is far finer than any bootstrap spread).
    """
    taus = np.geomspace(TAU_MIN, tau_max, int(np.ceil(np.log(tau_max / TAU_MIN) / np.log(1.01))) + 1)
    basis = np.exp(-ages[None, :] / taus[:, None])  # (n_tau, n_age)
    xc = basis - basis.mean(axis=1, keepdims=True)
    sxx = (xc**2).sum(axis=1)
    ym = ys.mean(axis=1, keepdims=True)
    yc = ys - ym
    s = yc @ xc.T  # (n_rows, n_tau); b = -s / sxx, so b >= 0 where s <= 0
    with np.errstate(divide="ignore", invalid="ignore"):
        gain = np.where((s < 0) & (sxx > 0), s**2 / sxx, 0.0)
    best = gain.argmax(axis=1)
    rows = np.arange(len(ys))
    with np.errstate(divide="ignore", invalid="ignore"):
        b = np.where(gain[rows, best] > 0, -s[rows, best] / sxx[best], 0.0)
    a = ym[:, 0] + b * basis[best].mean(axis=1)
    return a, b, taus[best]


def _fit_timescale(ages: np.ndarray, y: np.ndarray) -> dict:
    """curve_fit of a - b exp(-age/tau) to per-age means; tau is NaN unless the fit is trustworthy.

    Trustworthy (fit_ok): at least 4 ages, curve_fit converged with a finite covariance, b is more than
    two standard errors above 0 (there is a rise to time), and tau is not stuck at a bound.
    """
    out = dict(a=float(np.mean(y)) if len(y) else math.nan, b=math.nan, tau=math.nan, tau_se=math.nan, fit_ok=False)
    if len(ages) < 4:
        return out
    tau_max = TAU_MAX_FACTOR * float(ages.max())
    a0, b0, t0 = (v[0] for v in _profile_fit(ages, y[None, :], tau_max))
    try:
        p, cov = optimize.curve_fit(
            _rise, ages, y, p0=[a0, max(b0, 1e-9), t0], bounds=([-np.inf, 0.0, TAU_MIN], [np.inf, np.inf, tau_max])
        )
    except (RuntimeError, ValueError, optimize.OptimizeWarning):
        return out
    se = np.sqrt(np.diag(cov)) if np.all(np.isfinite(cov)) else np.full(3, np.nan)
    a, b, tau = (float(v) for v in p)
    out.update(a=a, b=b)
    inside = TAU_MIN * 1.01 < tau < tau_max * 0.99
    if np.all(np.isfinite(se)) and b > 2 * se[1] and inside:
        out.update(tau=tau, tau_se=float(se[2]), fit_ok=True)
    return out


def forgetting_timescale(probe: pd.DataFrame, n_boot: int = 500, rng_seed: int = 0) -> pd.DataFrame:
    """Per (condition, multiplier): how fast the frozen model forgets, in epochs, and by how much.

    Fits loss_now(epoch_age) = a - b exp(-epoch_age / tau) to the mean over steps (and seeds) at each
    age. tau_lo/tau_hi: percentile interval from resampling steps within each age (n_boot refits), or
    with n_boot=0 a covariance interval taken on log tau. gap: mean loss_now on the oldest probed epoch
    minus the final epoch (age 0), with Welch's t interval over steps. Columns: condition, multiplier,
    lr, a, b, tau, tau_lo, tau_hi, gap, gap_lo, gap_hi, oldest_age, fit_ok.
    """
    df = _probe(probe)
    rng = np.random.default_rng(rng_seed)
    rows = []
    for (condition, mult), g in df.groupby(["condition", "multiplier"], sort=True):
        g = g[np.isfinite(g["loss_now"])]
        by_age = {int(age): v["loss_now"].to_numpy(dtype=float) for age, v in g.groupby("epoch_age", sort=True)}
        ages = np.array(sorted(by_age), dtype=float)
        y = np.array([by_age[int(a)].mean() for a in ages])
        fit = _fit_timescale(ages, y)
        tau_lo = tau_hi = math.nan
        if fit["fit_ok"] and n_boot > 0:
            boot = np.column_stack([v[rng.integers(0, len(v), (n_boot, len(v)))].mean(axis=1) for v in by_age.values()])
            _, _, taus = _profile_fit(ages, boot, TAU_MAX_FACTOR * float(ages.max()))
            tau_lo, tau_hi = _percentile_interval(taus)
        elif fit["fit_ok"]:
            z = stats.norm.ppf(0.5 + CONFIDENCE / 2) * fit["tau_se"] / fit["tau"]
            tau_lo, tau_hi = fit["tau"] * math.exp(-z), fit["tau"] * math.exp(z)
        oldest = int(ages.max()) if len(ages) else -1
        gap = _welch_diff(by_age[oldest], by_age[0]) if oldest > 0 and 0 in by_age else (math.nan,) * 3
        rows.append(
            dict(
                condition=condition,
                multiplier=float(mult),
                lr=float(g["lr"].mean()) if "lr" in g else math.nan,
                a=fit["a"],
                b=fit["b"],
                tau=fit["tau"],
                tau_lo=tau_lo,
                tau_hi=tau_hi,
                gap=gap[0],
                gap_lo=gap[1],
                gap_hi=gap[2],
                oldest_age=oldest,
                fit_ok=bool(fit["fit_ok"]),
            )
        )
    return pd.DataFrame(rows, columns=TIMESCALE_COLUMNS)


def recency_bin_edges(steps_max: float, bins: int = 12, log: bool = True) -> np.ndarray:
    """Bin edges over steps_since_seen >= 0; log bins are even in log(1 + steps), so 0 gets a bin."""
    top = float(steps_max) + 1
    if log:
        return np.unique(np.round(np.geomspace(1, top + 1, bins + 1))) - 1  # whole steps, strictly increasing
    return np.linspace(0, top, bins + 1)


def recency_aggregates(recency: pd.DataFrame, bins: int | np.ndarray = 12, log: bool = True) -> pd.DataFrame:
    """Per (condition, multiplier): loss_now binned by steps since the example was last presented.

    ``bins`` is a count (log bins when ``log``, see recency_bin_edges) or explicit edges; bins are
    [lo, hi). Unit: the example, pooled over seeds. Columns: condition, multiplier, lr, bin_lo, bin_hi,
    steps (mean steps_since_seen in the bin), loss_now, loss_now_lo, loss_now_hi, n.
    """
    df = _probe(recency)
    df = df[np.isfinite(df["loss_now"])]
    steps = df["steps_since_seen"].to_numpy(dtype=float)
    edges = (
        np.asarray(bins, dtype=float)
        if np.ndim(bins)
        else recency_bin_edges(steps.max() if len(steps) else 0, int(bins), log)
    )
    idx = np.searchsorted(edges, steps, side="right") - 1
    df = df.assign(bin=idx)[(idx >= 0) & (idx < len(edges) - 1)]
    keys = ["condition", "multiplier", "bin"]
    out = _mean_ci(df, keys, "loss_now")
    extra = df.groupby(keys).agg(steps=("steps_since_seen", "mean"), lr=("lr", "mean"))
    out = out.join(extra, on=keys)
    out["bin_lo"], out["bin_hi"] = edges[out["bin"]], edges[out["bin"] + 1]
    cols = ["condition", "multiplier", "lr", "bin_lo", "bin_hi", "steps", "loss_now", "loss_now_lo", "loss_now_hi", "n"]
    return out[cols].reset_index(drop=True)


def probe_reference(probe_runs: pd.DataFrame) -> pd.DataFrame:
    """Per (condition, multiplier): the probed runs' test loss (the "never seen" line) and train loss."""
    df = _probe(probe_runs)
    keys = ["condition", "multiplier"]
    out = _mean_ci(df, keys, "test_loss").rename(columns={"n": "n_runs"})
    cols = [c for c in ("lr", "train_loss", "test_acc") if c in df]
    return out.join(df.groupby(keys)[cols].mean(), on=keys).reset_index(drop=True)


# ---------------------------------------------------------------- summary


def _clean(obj):
    """JSON-ready: numpy scalars to Python, NaN and infinities to None."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _records(df: pd.DataFrame) -> list[dict]:
    return _clean(df.to_dict("records"))


# ---------------------------------------------------------------- pre-registered verdicts
# The rules below were fixed in results/README.md ("Pre-registered readings") before the runs they
# decide. Change them only with a new, dated pre-registration; never to make a result agree.

TURN_UP_RISE = 0.10  # (a) turn-up: seed-mean test loss >= (1 + this) x the curve's minimum
TURN_UP_RATIO = 2.0  # (a) turn-up(smallest subset) / turn-up(largest) must be at least this
BOOT_SHARE = 0.80  # (a) ... in at least this share of the bootstrap resamples over seeds
DIVERGENCE_FACTOR = 2.0  # (a) the two divergence multipliers within this factor of each other
N_BOOT = 1000  # resamples of every pre-registered bootstrap
RNG_SEED = 0  # the bootstraps' seed, so that summary.json repeats to the digit
CONSISTENT_FACTOR = 2.0  # tau law: turn-up within this factor of m* (tau(m*) = N / B) is "consistent"
TIMESCALE_COLUMNS = ["condition", "multiplier", "lr", "a", "b", "tau", "tau_lo", "tau_hi", "gap", "gap_lo", "gap_hi"]
TIMESCALE_COLUMNS += ["oldest_age", "fit_ok"]  # forgetting_timescale's table, as printed
LOSS_READINGS = {"final": "test_loss", "last5": "test_loss_tail"}  # (a) is read on both


def _past_grid(grid: np.ndarray) -> float:
    """One grid step past the last multiplier (the step of the last two, on a log grid)."""
    return float(grid[-1] * (grid[-1] / grid[-2])) if len(grid) >= 2 else float(grid[-1] * 2)


def _seed_matrix(df: pd.DataFrame, col: str) -> tuple[np.ndarray, np.ndarray]:
    """(multipliers, seeds x multipliers losses) of one subset with +inf where a run blew up, NaN where
    a run is missing; the multiplier grid is every multiplier the subset was run at."""
    loss = pd.to_numeric(df[col], errors="coerce").where(~df["blew_up"], np.inf)
    table = df.assign(_loss=loss).pivot_table(
        index="seed", columns="multiplier", values="_loss", aggfunc="mean", dropna=False
    )
    return table.columns.to_numpy(dtype=float), table.to_numpy(dtype=float)


def _seed_mean(grid: np.ndarray, losses: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():  # an all-missing multiplier is NaN, not a warning
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(losses, axis=0) if losses.size else np.full(len(grid), np.nan)


def _minimum_at_lower_edge(grid: np.ndarray, losses: np.ndarray) -> bool:
    """The seed-mean curve is lowest at the grid's first multiplier: the true minimum may lie below the
    grid, so the optimum and the turn-up read from this curve are truncated."""
    mean = _seed_mean(grid, losses)
    finite = np.isfinite(mean)
    return bool(finite.any() and int(np.argmin(np.where(finite, mean, np.inf))) == 0)


def _turn_up(grid: np.ndarray, losses: np.ndarray, rise: float = TURN_UP_RISE) -> float:
    """First multiplier past the seed-mean curve's minimum whose mean is >= (1 + rise) x that minimum.

    A multiplier where any seed blew up has an infinite mean (counts as above). A curve that never
    turns up inside the grid turns up one grid step past its last multiplier."""
    mean = _seed_mean(grid, losses)
    finite = np.isfinite(mean)
    if not finite.any():
        return float(grid[0])  # every multiplier blew up: the curve is up from the first one
    i = int(np.argmin(np.where(finite, mean, np.inf)))
    above = np.flatnonzero(mean[i + 1 :] >= (1 + rise) * mean[i])
    return float(grid[i + 1 + above[0]]) if len(above) else _past_grid(grid)


def turn_up_levels(results: pd.DataFrame) -> pd.DataFrame:
    """Per subset, what the pre-registered turn-up rule reads on the test loss, for drawing it: the
    seed-mean curve's minimum (a blow-up counting as infinite) and its multiplier, the threshold
    (1 + TURN_UP_RISE) x that minimum, and the turn-up multiplier (past_grid: one step past the grid)."""
    rows = []
    for subset, df in _runs(results).groupby("subset", sort=True):
        grid, losses = _seed_matrix(df, "test_loss")
        mean = _seed_mean(grid, losses)
        if not np.isfinite(mean).any():
            continue
        i = int(np.argmin(np.where(np.isfinite(mean), mean, np.inf)))
        turn = _turn_up(grid, losses)
        rows.append(
            dict(
                subset=int(subset),
                m_min=float(grid[i]),
                loss_min=float(mean[i]),
                threshold=float((1 + TURN_UP_RISE) * mean[i]),
                turn_up=turn,
                past_grid=bool(turn > grid[-1]),
            )
        )
    return pd.DataFrame(rows, columns=["subset", "m_min", "loss_min", "threshold", "turn_up", "past_grid"])


def _divergence(grid: np.ndarray, losses: np.ndarray) -> float:
    """Smallest multiplier with any blown-up seed; one grid step past the last if none."""
    blown = np.isinf(losses).any(axis=0)
    return float(grid[blown][0]) if blown.any() else _past_grid(grid)


def sweep_readings(results: pd.DataFrame, col: str = "test_loss") -> pd.DataFrame:
    """Per subset, on the loss column ``col``: turn-up and divergence multipliers (pre-registered
    rules), whether each lies past the grid, the fitted optimum and its bootstrap interval, n_seeds."""
    runs = _runs(results)
    if col != "test_loss":  # the optimum fit and blow-up test read test_loss; point them at ``col``
        runs = runs.assign(test_loss=pd.to_numeric(runs[col], errors="coerce"))
        runs["blew_up"] = runs["blew_up"] | ~np.isfinite(runs["test_loss"])
    optimum = optimum_by_subset(runs.drop(columns="blew_up"), n_boot=N_BOOT, rng_seed=RNG_SEED).set_index("subset")
    rows = []
    for subset, df in runs.groupby("subset", sort=True):
        grid, losses = _seed_matrix(df, "test_loss")
        turn, div = _turn_up(grid, losses), _divergence(grid, losses)
        o = optimum.loc[subset]
        rows.append(
            dict(
                subset=int(subset),
                turn_up=turn,
                turn_up_past_grid=bool(turn > grid[-1]),
                divergence=div,
                divergence_past_grid=bool(div > grid[-1]),
                minimum_at_lower_edge=_minimum_at_lower_edge(grid, losses),
                m_opt=o["m_opt"],
                m_opt_lo=o["m_opt_lo"],
                m_opt_hi=o["m_opt_hi"],
                n_seeds=int(df["seed"].nunique()),
            )
        )
    return pd.DataFrame(rows)


def sweep_verdict(
    results: pd.DataFrame, col: str = "test_loss", n_boot: int = N_BOOT, rng_seed: int = RNG_SEED
) -> dict:
    """Pre-registered verdict on claim (a), read on the loss column ``col`` (see results/README.md).

    (a) holds when turn-up(smallest) / turn-up(largest) >= 2 on the seed-mean curves and in >= 80% of
    bootstrap resamples over seeds (independently per subset), and the two divergence multipliers are
    within a factor of 2. ``holds`` is None when there are not two subset sizes with data.
    """
    runs = _runs(results)
    if col not in runs or not np.isfinite(pd.to_numeric(runs[col], errors="coerce")).any():
        return dict(holds=None, reason=f"no finite {col} in the table")
    readings = sweep_readings(results, col)
    if len(readings) < 2:
        return dict(holds=None, reason="needs two or more subset sizes", readings=_records(readings))
    small, large = readings.iloc[0], readings.iloc[-1]
    ratio = float(small["turn_up"] / large["turn_up"])
    rng = np.random.default_rng(rng_seed)
    mats = {}
    for subset in (small["subset"], large["subset"]):
        df = runs[runs["subset"] == subset]
        if col != "test_loss":
            df = df.assign(test_loss=pd.to_numeric(df[col], errors="coerce"))
            df["blew_up"] = df["blew_up"] | ~np.isfinite(df["test_loss"])
        mats[subset] = _seed_matrix(df, "test_loss")
    ratios = np.empty(n_boot)
    for k in range(n_boot):
        t = []
        for grid, losses in mats.values():
            t.append(_turn_up(grid, losses[rng.integers(0, len(losses), len(losses))]))
        ratios[k] = t[0] / t[1]
    share = float((ratios >= TURN_UP_RATIO).mean()) if n_boot else math.nan
    div_ratio = float(max(small["divergence"], large["divergence"]) / min(small["divergence"], large["divergence"]))
    holds = bool(ratio >= TURN_UP_RATIO and share >= BOOT_SHARE and div_ratio <= DIVERGENCE_FACTOR)
    return dict(
        holds=holds,
        loss=col,
        subset_smallest=int(small["subset"]),
        subset_largest=int(large["subset"]),
        turn_up_smallest=float(small["turn_up"]),
        turn_up_largest=float(large["turn_up"]),
        turn_up_ratio=ratio,
        boot_share_ratio_ge_2=share,
        divergence_smallest=float(small["divergence"]),
        divergence_largest=float(large["divergence"]),
        divergence_ratio=div_ratio,
        n_boot=n_boot,
        truncated_subsets=[int(r) for r in readings.loc[readings["minimum_at_lower_edge"], "subset"]],
        readings=_records(readings),
    )


def _per_seed_age_means(g: pd.DataFrame, age_col: str) -> tuple[np.ndarray, np.ndarray]:
    """(ages, seeds x ages) mean loss_now of each seed's run at each age (NaN where missing)."""
    t = g.pivot_table(index="seed", columns=age_col, values="loss_now", aggfunc="mean")
    return t.columns.to_numpy(dtype=float), t.to_numpy(dtype=float)


def _seed_boot_taus(ages: np.ndarray, per_seed: np.ndarray, n_boot: int, rng) -> np.ndarray:
    """tau refitted to the mean curve of seeds drawn with replacement, n_boot times (profile fit)."""
    if n_boot <= 0 or len(per_seed) < 2:
        return np.full(max(n_boot, 0), np.nan)
    draws = per_seed[rng.integers(0, len(per_seed), (n_boot, len(per_seed)))].mean(axis=1)  # (n_boot, ages)
    return _profile_fit(ages, draws, TAU_MAX_FACTOR * float(ages.max()))[2]


def seed_timescale(
    probe: pd.DataFrame,
    condition: str = FULL_AUG,
    age: str = "epoch",
    n_boot: int = N_BOOT,
    rng_seed: int = RNG_SEED,
    keep_draws: bool = False,
) -> pd.DataFrame:
    """Per multiplier in ``condition``: gap and tau with intervals over seeds (pre-registered (b)).

    ``age`` is "epoch" (epoch_age) or "step" (SGD steps before the end of training: the run's last
    step minus the step). gap: per seed, mean loss of the oldest probed epoch minus the final epoch's;
    mean over seeds and its t interval. tau: fit of a - b exp(-age/tau) to the seed-mean curve;
    interval from refitting on seeds drawn with replacement (expanded percentile interval).
    """
    df = _probe(probe)
    df = df[(df["condition"] == condition) & np.isfinite(df["loss_now"])]
    if age == "step":
        df = df.assign(step_age=df.groupby("run")["step"].transform("max") - df["step"])
    age_col = "epoch_age" if age == "epoch" else "step_age"
    rng = np.random.default_rng(rng_seed)
    rows, draws = [], {}
    for mult, g in df.groupby("multiplier", sort=True):
        ages, per_seed = _per_seed_age_means(g, age_col)
        fit = _fit_timescale(ages, np.nanmean(per_seed, axis=0))
        taus = _seed_boot_taus(ages, per_seed, n_boot, rng)
        tau_lo, tau_hi = _percentile_interval(taus, n_units=len(per_seed)) if fit["fit_ok"] else (math.nan, math.nan)
        e_ages, e_seed = _per_seed_age_means(g, "epoch_age")
        seed_gaps = (
            e_seed[:, -1] - e_seed[:, 0] if len(e_ages) >= 2 and e_ages[0] == 0 else np.full(len(e_seed), np.nan)
        )
        n = int(np.isfinite(seed_gaps).sum())
        gap = float(np.nanmean(seed_gaps)) if n else math.nan
        h = float(_t_halfwidth(np.nanstd(seed_gaps, ddof=1), n)) if n >= 2 else math.nan
        rows.append(
            dict(
                condition=condition,
                multiplier=float(mult),
                lr=float(g["lr"].mean()),
                age_unit=age,
                tau=fit["tau"],
                tau_lo=tau_lo,
                tau_hi=tau_hi,
                a=fit["a"],
                b=fit["b"],
                fit_ok=bool(fit["fit_ok"]),
                gap=gap,
                gap_lo=gap - h,
                gap_hi=gap + h,
                oldest_epoch_age=int(e_ages.max()) if len(e_ages) else -1,
                n_seeds=len(per_seed),
            )
        )
        draws[float(mult)] = taus
    out = pd.DataFrame(rows)
    if keep_draws:
        out.attrs["draws"] = draws
    return out


def probe_verdict(
    probe: pd.DataFrame, condition: str = FULL_AUG, n_boot: int = N_BOOT, rng_seed: int = RNG_SEED
) -> dict:
    """Pre-registered verdict on claim (b) in ``condition`` (see results/README.md).

    (b) holds when every LR's gap interval (over seeds) lies above 0 and the bootstrap interval of
    tau(highest LR) / tau(lowest LR) lies below 1. None (undecided) when a point fit of tau fails, when
    there are fewer than two LRs, or fewer than two seeds (no interval over seeds).
    """
    t = seed_timescale(probe, condition, "epoch", n_boot, rng_seed, keep_draws=True)
    if len(t) < 2:
        return dict(holds=None, reason=f"needs two or more LRs in {condition}")
    lo, hi = t.iloc[0], t.iloc[-1]
    draws = t.attrs["draws"]
    ratio = float(hi["tau"] / lo["tau"]) if lo["fit_ok"] and hi["fit_ok"] else math.nan
    r_lo, r_hi = _percentile_interval(
        draws[hi["multiplier"]] / draws[lo["multiplier"]], n_units=int(min(lo["n_seeds"], hi["n_seeds"]))
    )
    gaps_above = bool((t["gap_lo"] > 0).all())
    out = dict(
        condition=condition,
        multipliers=t["multiplier"].tolist(),
        gaps=t["gap"].tolist(),
        gap_lo=t["gap_lo"].tolist(),
        gap_hi=t["gap_hi"].tolist(),
        gaps_above_zero=gaps_above,
        taus=t["tau"].tolist(),
        tau_lo=t["tau_lo"].tolist(),
        tau_hi=t["tau_hi"].tolist(),
        tau_ratio=ratio,
        tau_ratio_lo=r_lo,
        tau_ratio_hi=r_hi,
        n_seeds=int(t["n_seeds"].min()),
        n_boot=n_boot,
    )
    if not (lo["fit_ok"] and hi["fit_ok"]):
        return dict(holds=None, reason="a point fit of tau failed (no rise, or tau at a bound)", **out)
    if out["n_seeds"] < 2:
        return dict(holds=None, reason="needs two or more seeds for intervals over seeds", **out)
    return dict(holds=bool(gaps_above and r_hi < 1), **out)


def tau_lr_law(probe: pd.DataFrame, condition: str = FULL_AUG, n_boot: int = N_BOOT, rng_seed: int = RNG_SEED) -> dict:
    """tau in SGD steps per LR, and the fit log tau = c - alpha log LR with a seed-bootstrap interval.

    Every bootstrap draw resamples the seeds at each LR, refits every tau and the line. Returns the
    per-LR table (``taus``), alpha, c (natural logs, LR in absolute units), their intervals, and the
    LRs used (those whose point fit succeeded); alpha is None with fewer than two such LRs.
    """
    t = seed_timescale(probe, condition, "step", n_boot, rng_seed, keep_draws=True)
    out = dict(condition=condition, taus=_records(t.drop(columns=["condition"])), n_boot=n_boot)
    ok = t[t["fit_ok"]]
    if len(ok) < 2:
        return dict(out, alpha=None, reason="needs a tau fit at two or more LRs")
    x = np.log(ok["lr"].to_numpy(dtype=float))
    slope, intercept = np.polyfit(x, np.log(ok["tau"].to_numpy(dtype=float)), 1)
    draws = np.column_stack([t.attrs["draws"][m] for m in ok["multiplier"]])  # (n_boot, LRs)
    with np.errstate(divide="ignore", invalid="ignore"):
        boot = np.array([np.polyfit(x, np.log(d), 1)[0] if np.isfinite(np.log(d)).all() else np.nan for d in draws])
    a_lo, a_hi = _percentile_interval(-boot, n_units=int(ok["n_seeds"].min()))
    return dict(
        out,
        alpha=float(-slope),
        alpha_lo=a_lo,
        alpha_hi=a_hi,
        c=float(intercept),
        lrs=ok["lr"].tolist(),
        multipliers=ok["multiplier"].tolist(),
    )


def tau_vs_turn_up(law: dict, readings: pd.DataFrame | list, batch_size: int, base_lr: float) -> list[dict]:
    """Per subset of an LR sweep at ``batch_size``: the multiplier m* (of ``base_lr``) at which the tau
    law gives tau = N / B steps, against the sweep's turn-up multiplier; consistent when within 2x."""
    if not law.get("alpha"):
        return []
    rows = []
    for r in pd.DataFrame(readings).to_dict("records"):
        revisit = r["subset"] / batch_size
        lr_star = math.exp((law["c"] - math.log(revisit)) / law["alpha"])
        m_star = lr_star / base_lr
        ratio = r["turn_up"] / m_star
        rows.append(
            dict(
                subset=int(r["subset"]),
                revisit_steps=revisit,
                lr_star=lr_star,
                m_star=m_star,
                turn_up=r["turn_up"],
                turn_up_past_grid=r.get("turn_up_past_grid"),
                turn_up_over_m_star=ratio,
                consistent=bool(1 / CONSISTENT_FACTOR <= ratio <= CONSISTENT_FACTOR),
            )
        )
    return _clean(rows)


def summarise(results=None, probe=None, probe_runs=None, recency=None, n_boot: int = 1000) -> dict:
    """Everything above as one JSON-ready dict (tables as lists of records, NaN as None), with the
    pre-registered verdicts under ``verdicts``: (a) on the final and on the last-5-epoch test loss,
    (b) in full-aug, and the tau-LR law (``holds`` / ``alpha`` None where not computable)."""
    out: dict = {"verdicts": {}}
    if results is not None and len(results):
        optimum = optimum_by_subset(results, n_boot=n_boot)
        out["optimum"] = _records(optimum)
        out["curvature"] = _records(curvature_limit(results))
        for name, col in LOSS_READINGS.items():
            out["verdicts"][f"a_{name}"] = sweep_verdict(results, col, n_boot=n_boot)
    if probe is not None and len(probe):
        timescale = forgetting_timescale(probe, n_boot=max(n_boot // 2, 0))
        out["forgetting"] = _records(timescale)
        out["epochs"] = _records(epoch_aggregates(probe))
        if (probe["condition"] == FULL_AUG).any():
            out["verdicts"]["b"] = probe_verdict(probe, n_boot=n_boot)
            out["verdicts"]["tau_law"] = tau_lr_law(probe, n_boot=n_boot)
    if probe_runs is not None and len(probe_runs):
        out["reference"] = _records(probe_reference(probe_runs))
    if recency is not None and len(recency):
        out["recency"] = _records(recency_aggregates(recency))
    return _clean(out)
