"""Tidy tables -> fits and summaries for Part 2's two experiments (protocol section 4). No plotting.

Inputs are the sweep table (one row per run), the probe tables (one row per replayed step, per probed
run, per (run, example)) and nothing else. Every interval is a 95% interval. Pass one study's rows at
a time: runs are grouped by subset and multiplier only, so mixing nets or epoch counts would average
them together.
"""

from __future__ import annotations

import math

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
    return g.assign(lo=g["mean"] - h, hi=g["mean"] + h).rename(
        columns={"mean": col, "lo": f"{col}_lo", "hi": f"{col}_hi", "count": "n"}
    ).drop(columns="std")


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
    counts = runs.groupby(keys).agg(n_runs=("blew_up", "size"), n_diverged=("blew_up", "sum"), base_lr=("base_lr", "mean"))
    ok = runs[~runs["blew_up"]]
    out = counts.reset_index()
    for col in ("test_loss", "clean_train_loss"):
        out = out.merge(_mean_ci(ok, keys, col).drop(columns="n"), on=keys, how="left")
    cols = keys + ["base_lr", "test_loss", "test_loss_lo", "test_loss_hi", "clean_train_loss",
                   "clean_train_loss_lo", "clean_train_loss_hi", "n_runs", "n_diverged"]  # fmt: skip
    return out[cols].astype({"n_diverged": int}).sort_values(keys).reset_index(drop=True)


def _vertex(x: np.ndarray, y: np.ndarray, half_window: int) -> tuple[float, int]:
    """Fitted minimum of y(x) near its argmin, and the argmin's index. ``x`` is sorted, y finite.

    A quadratic through the argmin and up to ``half_window`` points either side (at least 3 points,
    taken from one side at an edge). Local, because loss against log LR is not a parabola: it is flat
    on the left and climbs steeply into the blow-up on the right, and a global fit (or a spline
    through every point) is pulled about by that wall. Two points either side rather than one, because
    small subsets make single-point swings of several percent (calibration.md) and a 3-point fit only
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


def optimum_by_subset(results: pd.DataFrame, n_boot: int = 1000, rng_seed: int = 0, half_window: int = 2) -> pd.DataFrame:
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
        row = dict(subset=int(subset), m_opt=math.nan, m_opt_lo=math.nan, m_opt_hi=math.nan,
                   m_argmin=math.nan, test_loss_min=math.nan, n_seeds=n_seeds)  # fmt: skip
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
    return pd.DataFrame(rows, columns=["subset", "m_opt", "m_opt_lo", "m_opt_hi", "m_argmin", "test_loss_min", "n_seeds"])


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
        rows.append(dict(
            subset=int(subset),
            curvature_limit=float(m[broke][0]) if broke.any() else math.nan,
            turn_up=turn_up,
            first_diverged=float(m[blown][0]) if blown.any() else math.nan,
        ))  # fmt: skip
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
    cols = keys[:2] + ["lr", "epoch_age", "loss_now", "loss_now_lo", "loss_now_hi", "loss_when_seen", "acc_now", "n_steps"]
    return out[cols].reset_index(drop=True)


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
        rows.append(dict(
            condition=condition, multiplier=float(mult), lr=float(g["lr"].mean()) if "lr" in g else math.nan,
            a=fit["a"], b=fit["b"], tau=fit["tau"], tau_lo=tau_lo, tau_hi=tau_hi,
            gap=gap[0], gap_lo=gap[1], gap_hi=gap[2], oldest_age=oldest, fit_ok=bool(fit["fit_ok"]),
        ))  # fmt: skip
    cols = ["condition", "multiplier", "lr", "a", "b", "tau", "tau_lo", "tau_hi", "gap", "gap_lo", "gap_hi", "oldest_age", "fit_ok"]
    return pd.DataFrame(rows, columns=cols)


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
    edges = np.asarray(bins, dtype=float) if np.ndim(bins) else recency_bin_edges(steps.max() if len(steps) else 0, int(bins), log)
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


def optimum_ratio_check(optimum: pd.DataFrame) -> dict:
    """Paper check (a): the smallest subset's optimal multiplier is at least twice the largest's."""
    ok = optimum.dropna(subset=["m_opt"]).sort_values("subset")
    if len(ok) < 2:
        return dict(optimum_ratio_ok=None, reason="needs fitted optima for two or more subset sizes")
    small, large = ok.iloc[0], ok.iloc[-1]
    ratio = float(small["m_opt"] / large["m_opt"])
    return dict(
        optimum_ratio_ok=bool(ratio >= 2), optimum_ratio=ratio,
        subset_smallest=int(small["subset"]), m_opt_smallest=float(small["m_opt"]),
        subset_largest=int(large["subset"]), m_opt_largest=float(large["m_opt"]),
    )  # fmt: skip


def forgetting_gap_check(timescale: pd.DataFrame, condition: str = FULL_AUG) -> dict:
    """Paper check (b): in ``condition``, old batches cost more than recent ones at every LR, and more so
    at the highest LR than at the lowest. Decided on the point estimates; gap_lo > 0 everywhere is
    reported too (gap_significant) because at CPU scale the effect is small (calibration.md)."""
    t = timescale[timescale["condition"] == condition].sort_values("multiplier")
    if len(t) < 2 or t["gap"].isna().any():
        return dict(forgetting_gap_ok=None, reason=f"needs a finite gap at two or more LRs in {condition}")
    gaps = t["gap"].to_numpy(dtype=float)
    return dict(
        forgetting_gap_ok=bool((gaps > 0).all() and gaps[-1] > gaps[0]),
        gap_significant=bool((t["gap_lo"] > 0).all()),
        condition=condition, multipliers=t["multiplier"].tolist(), gaps=gaps.tolist(),
        gap_lo=t["gap_lo"].tolist(), gap_hi=t["gap_hi"].tolist(),
    )  # fmt: skip


def summarise(results=None, probe=None, probe_runs=None, recency=None, n_boot: int = 1000) -> dict:
    """Everything above as one JSON-ready dict (tables as lists of records, NaN as None), with the two
    paper checks: checks.optimum_ratio_ok and checks.forgetting_gap_ok (None where not computable)."""
    out: dict = {"checks": {}}
    if results is not None and len(results):
        optimum = optimum_by_subset(results, n_boot=n_boot)
        out["optimum"] = _records(optimum)
        out["curvature"] = _records(curvature_limit(results))
        out["checks"].update(optimum_ratio_check(optimum))
    if probe is not None and len(probe):
        timescale = forgetting_timescale(probe, n_boot=max(n_boot // 2, 0))
        out["forgetting"] = _records(timescale)
        out["epochs"] = _records(epoch_aggregates(probe))
        out["checks"].update(forgetting_gap_check(timescale))
    if probe_runs is not None and len(probe_runs):
        out["reference"] = _records(probe_reference(probe_runs))
    if recency is not None and len(recency):
        out["recency"] = _records(recency_aggregates(recency))
    return _clean(out)


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _text_table(records: list[dict], columns: list[str]) -> str:
    cells = [columns] + [[_fmt(r.get(c)) for c in columns] for r in records]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    return "\n".join("  ".join(s.rjust(w) for s, w in zip(row, widths)) for row in cells)


def format_table(summary: dict) -> str:
    """The summary as plain text: one table per section present, then the checks."""
    sections = [
        ("LR sweep: fitted optimum (multiplier of base LR)", "optimum", ["subset", "m_opt", "m_opt_lo", "m_opt_hi", "m_argmin", "test_loss_min", "n_seeds"]),
        ("LR sweep: curvature limit and test-loss turn-up", "curvature", ["subset", "curvature_limit", "turn_up", "first_diverged"]),
        ("Forgetting probe: loss_now(age) = a - b exp(-age/tau), age in epochs", "forgetting", ["condition", "multiplier", "lr", "a", "b", "tau", "tau_lo", "tau_hi", "gap", "gap_lo", "gap_hi", "oldest_age", "fit_ok"]),
        ("Forgetting probe: probed runs on the test set", "reference", ["condition", "multiplier", "lr", "test_loss", "test_loss_lo", "test_loss_hi", "train_loss", "n_runs"]),
    ]  # fmt: skip
    parts = []
    for title, key, cols in sections:
        if summary.get(key):
            parts.append(f"{title}\n{_text_table(summary[key], cols)}")
    checks = summary.get("checks", {})
    lines = []
    if "optimum_ratio_ok" in checks:
        c = checks
        detail = (f"m_opt {_fmt(c.get('m_opt_smallest'))} at {_fmt(c.get('subset_smallest'))} images vs "
                  f"{_fmt(c.get('m_opt_largest'))} at {_fmt(c.get('subset_largest'))}, ratio {_fmt(c.get('optimum_ratio'))}"
                  if c["optimum_ratio_ok"] is not None else c.get("reason", ""))  # fmt: skip
        lines.append(f"(a) smallest subset's optimum >= 2x the largest's: {_fmt(c['optimum_ratio_ok'])}  ({detail})")
    if "forgetting_gap_ok" in checks:
        c = checks
        detail = (", ".join(f"x{_fmt(m)}: {_fmt(g)}" for m, g in zip(c["multipliers"], c["gaps"]))
                  + f"; every interval above 0: {_fmt(c['gap_significant'])}"
                  if c["forgetting_gap_ok"] is not None else c.get("reason", ""))  # fmt: skip
        lines.append(f"(b) {c.get('condition', FULL_AUG)}: oldest-minus-final gap > 0 everywhere, largest at top LR: "
                     f"{_fmt(c['forgetting_gap_ok'])}  ({detail})")  # fmt: skip
    if lines:
        parts.append("Paper checks\n" + "\n".join(lines))
    return "\n\n".join(parts)
