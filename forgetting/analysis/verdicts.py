"""The pre-registered readings of results/README.md ("Pre-registered readings", fixed on 2026-11-23),
every constant and rule in one file: claim (a) on an LR sweep (turn-up, divergence, the verdict), claim
(b) on a forgetting probe (gap and tau over seeds, the verdict), and the tau-LR law set against a sweep.

Change a rule only with a new, dated pre-registration; never to make a result agree. The readings of
forgetting's clock against batch size (fixed on 2026-12-01) are in forgetting/clock.py.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

from forgetting.analysis import intervals, probe_fits, sweep_fits, tables

# Fixed in results/README.md before the runs they decide (cpu-lr-sweep and cpu-probe are read post hoc).
FULL_AUG = "full-aug"  # the probe condition the paper's forgetting claim is checked on
TURN_UP_RISE = 0.10  # (a) turn-up: seed-mean test loss >= (1 + this) x the curve's minimum
TURN_UP_RATIO = 2.0  # (a) turn-up(smallest subset) / turn-up(largest) must be at least this
BOOT_SHARE = 0.80  # (a) ... in at least this share of the bootstrap resamples over seeds
DIVERGENCE_FACTOR = 2.0  # (a) the two divergence multipliers within this factor of each other
N_BOOT = 1000  # resamples of every pre-registered bootstrap
RNG_SEED = 0  # the bootstraps' seed, so that summary.json repeats to the digit
CONSISTENT_FACTOR = 2.0  # tau law: turn-up within this factor of m* (tau(m*) = N / B) is "consistent"
LOSS_READINGS = {"final": "test_loss", "last5": "test_loss_tail"}  # (a) is read on both


# ---------------------------------------------------------------- (a) LR sweep


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


def turn_up(grid: np.ndarray, losses: np.ndarray, rise: float = TURN_UP_RISE) -> float:
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


def _curves(runs: pd.DataFrame):
    """Per subset of ``runs`` (tables.sweep_runs'): the subset, its runs, and _seed_matrix of test_loss."""
    for subset, df in runs.groupby("subset", sort=True):
        yield (int(subset), df, *_seed_matrix(df, "test_loss"))


def turn_ups(results: pd.DataFrame) -> pd.DataFrame:
    """Per subset: the test loss's turn-up multiplier by the pre-registered rule (turn_up), and whether
    it lies past the grid."""
    rows = []
    for subset, _, grid, losses in _curves(tables.sweep_runs(results)):
        turn = turn_up(grid, losses)
        rows.append(dict(subset=subset, turn_up=turn, turn_up_past_grid=bool(turn > grid[-1])))
    return pd.DataFrame(rows, columns=["subset", "turn_up", "turn_up_past_grid"])


def turn_up_levels(results: pd.DataFrame) -> pd.DataFrame:
    """Per subset, what the pre-registered turn-up rule reads on the test loss, for drawing it: the
    seed-mean curve's minimum (a blow-up counting as infinite) and its multiplier, the threshold
    (1 + TURN_UP_RISE) x that minimum, and the turn-up multiplier (past_grid: one step past the grid)."""
    rows = []
    for subset, _, grid, losses in _curves(tables.sweep_runs(results)):
        mean = _seed_mean(grid, losses)
        if not np.isfinite(mean).any():
            continue
        i = int(np.argmin(np.where(np.isfinite(mean), mean, np.inf)))
        turn = turn_up(grid, losses)
        rows.append(
            dict(
                subset=subset,
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


def _read_on(runs: pd.DataFrame, col: str) -> pd.DataFrame:
    """``runs`` (tables.sweep_runs') with test_loss taken from the loss column ``col``, a non-finite
    value counting as a blow-up: the optimum fit and the blow-up test read test_loss."""
    if col == "test_loss":
        return runs
    runs = runs.assign(test_loss=pd.to_numeric(runs[col], errors="coerce"))
    runs["blew_up"] = runs["blew_up"] | ~np.isfinite(runs["test_loss"])
    return runs


def sweep_readings(
    results: pd.DataFrame, col: str = "test_loss", n_boot: int = N_BOOT, rng_seed: int = RNG_SEED
) -> pd.DataFrame:
    """Per subset, on the loss column ``col``: turn-up and divergence multipliers (pre-registered
    rules), whether each lies past the grid, the fitted optimum and its bootstrap interval (``n_boot``
    resamples over seeds, seeded with ``rng_seed``), n_seeds."""
    runs = _read_on(tables.sweep_runs(results), col)
    optimum = sweep_fits.optimum_by_subset(runs.drop(columns="blew_up"), n_boot=n_boot, rng_seed=rng_seed)
    optimum = optimum.set_index("subset")
    rows = []
    for subset, df, grid, losses in _curves(runs):
        turn, div = turn_up(grid, losses), _divergence(grid, losses)
        o = optimum.loc[subset]
        rows.append(
            dict(
                subset=subset,
                turn_up=turn,
                turn_up_past_grid=bool(turn > grid[-1]),
                divergence=div,
                divergence_past_grid=bool(div > grid[-1]),
                grid_max=float(grid[-1]),
                minimum_at_lower_edge=_minimum_at_lower_edge(grid, losses),
                m_opt=o["m_opt"],
                m_opt_lo=o["m_opt_lo"],
                m_opt_hi=o["m_opt_hi"],
                n_seeds=int(df["seed"].nunique()),
            )
        )
    return pd.DataFrame(rows)


ONE_SEED = "one seed: the rule reads resamples over seeds, so it needs two or more"


def sweep_verdict(
    results: pd.DataFrame, col: str = "test_loss", n_boot: int = N_BOOT, rng_seed: int = RNG_SEED
) -> dict:
    """Pre-registered verdict on claim (a), read on the loss column ``col`` (see results/README.md).

    (a) holds when turn-up(smallest) / turn-up(largest) >= 2 on the seed-mean curves and in >= 80% of
    bootstrap resamples over seeds (independently per subset), and the two divergence multipliers are
    within a factor of 2. ``holds`` is None when there are not two subset sizes with data, or when a
    subset has one seed (the numbers are still given). ``n_boot`` and ``rng_seed`` set both bootstraps:
    of the turn-up ratio and of each subset's fitted optimum.
    """
    runs = tables.sweep_runs(results)
    if col not in runs or not np.isfinite(pd.to_numeric(runs[col], errors="coerce")).any():
        return dict(holds=None, reason=f"no finite {col} in the table")
    readings = sweep_readings(results, col, n_boot, rng_seed)
    if len(readings) < 2:
        return dict(holds=None, reason="needs two or more subset sizes", readings=tables.records(readings))
    small, large = readings.iloc[0], readings.iloc[-1]
    ratio = float(small["turn_up"] / large["turn_up"])
    rng = np.random.default_rng(rng_seed)
    on_col = _read_on(runs, col)
    mats = {s: _seed_matrix(on_col[on_col["subset"] == s], "test_loss") for s in (small["subset"], large["subset"])}
    ratios = np.empty(n_boot)
    for k in range(n_boot):
        t = []
        for grid, losses in mats.values():
            t.append(turn_up(grid, losses[rng.integers(0, len(losses), len(losses))]))
        ratios[k] = t[0] / t[1]
    share = float((ratios >= TURN_UP_RATIO).mean()) if n_boot else math.nan
    n_units = int(min(len(m[1]) for m in mats.values()))
    ratio_lo, ratio_hi = intervals.percentile_interval(ratios, n_units) if n_boot else (math.nan, math.nan)
    div_ratio = float(max(small["divergence"], large["divergence"]) / min(small["divergence"], large["divergence"]))
    holds = bool(ratio >= TURN_UP_RATIO and share >= BOOT_SHARE and div_ratio <= DIVERGENCE_FACTOR)
    # One seed: every resample is that seed, so the 80%-of-resamples half of the rule is read on nothing.
    one_seed = dict(holds=None, reason=ONE_SEED) if n_units < 2 else {}
    return dict(
        holds=holds,
        loss=col,
        subset_smallest=int(small["subset"]),
        subset_largest=int(large["subset"]),
        turn_up_smallest=float(small["turn_up"]),
        turn_up_largest=float(large["turn_up"]),
        turn_up_ratio=ratio,
        boot_share_ratio_ge_2=share,
        turn_up_ratio_lo=ratio_lo,  # the resamples' interval (read by forgetting/analysis/regime.py)
        turn_up_ratio_hi=ratio_hi,
        divergence_smallest=float(small["divergence"]),
        divergence_largest=float(large["divergence"]),
        divergence_ratio=div_ratio,
        n_boot=n_boot,
        truncated_subsets=[int(r) for r in readings.loc[readings["minimum_at_lower_edge"], "subset"]],
        readings=tables.records(readings),
    ) | one_seed


# ---------------------------------------------------------------- (b) forgetting probe


def seed_timescale(
    probe: pd.DataFrame,
    condition: str = FULL_AUG,
    age: str = "epoch",
    n_boot: int = N_BOOT,
    rng_seed: int = RNG_SEED,
    keep_draws: bool = False,
    rules: str = probe_fits.AS_REGISTERED,
) -> pd.DataFrame:
    """Per multiplier in ``condition``: gap and tau with intervals over seeds (pre-registered (b)).

    ``age`` is "epoch" (epoch_age) or "step" (SGD steps before the end of training: the run's last
    step minus the step). gap: per seed, mean loss of the oldest probed epoch minus the final epoch's;
    mean over seeds and its t interval. tau: fit of a - b exp(-age/tau) to the seed-mean curve;
    interval from refitting on seeds drawn with replacement (expanded percentile interval).
    ``rules``: as registered, or amended (probe_fits.FIT_CHECKS: the fit check a point fit must pass).
    """
    df = tables.probe_rows(probe)
    df = df[(df["condition"] == condition) & np.isfinite(df["loss_now"])]
    if age == "step":
        df = df.assign(step_age=df.groupby("run")["step"].transform("max") - df["step"])
    age_col = "epoch_age" if age == "epoch" else "step_age"
    rng = np.random.default_rng(rng_seed)
    rows, draws = [], {}
    for mult, g in df.groupby("multiplier", sort=True):
        ages, per_seed = probe_fits.per_seed_age_means(g, age_col)
        min_tau = probe_fits.FIT_CHECKS[rules] * probe_fits.one_step(g, age)
        fit = probe_fits.fit_timescale(ages, np.nanmean(per_seed, axis=0), min_tau)
        taus = probe_fits.seed_boot_taus(ages, per_seed, n_boot, rng)
        tau_lo, tau_hi = (
            intervals.percentile_interval(taus, n_units=len(per_seed)) if fit["fit_ok"] else (math.nan, math.nan)
        )
        e_ages, e_seed = probe_fits.per_seed_age_means(g, "epoch_age")
        seed_gaps = (
            e_seed[:, -1] - e_seed[:, 0] if len(e_ages) >= 2 and e_ages[0] == 0 else np.full(len(e_seed), np.nan)
        )
        n = int(np.isfinite(seed_gaps).sum())
        gap = float(np.nanmean(seed_gaps)) if n else math.nan
        h = float(intervals.t_halfwidth(np.nanstd(seed_gaps, ddof=1), n)) if n >= 2 else math.nan
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
    probe: pd.DataFrame,
    condition: str = FULL_AUG,
    n_boot: int = N_BOOT,
    rng_seed: int = RNG_SEED,
    rules: str = probe_fits.AS_REGISTERED,
    age: str = "epoch",
) -> dict:
    """Pre-registered verdict on claim (b) in ``condition`` (see results/README.md), on epoch ages as
    registered (``age`` "step": the same rule with tau fitted on SGD-step ages, reported beside it).

    (b) holds when every LR's gap interval (over seeds) lies above 0 and the bootstrap interval of
    tau(highest LR) / tau(lowest LR) lies below 1. None (undecided) when a point fit of tau fails, when
    there are fewer than two LRs, or fewer than two seeds (no interval over seeds).
    """
    t = seed_timescale(probe, condition, age, n_boot, rng_seed, keep_draws=True, rules=rules)
    if len(t) < 2:
        return dict(holds=None, reason=f"needs two or more LRs in {condition}")
    lo, hi = t.iloc[0], t.iloc[-1]
    draws = t.attrs["draws"]
    ratio = float(hi["tau"] / lo["tau"]) if lo["fit_ok"] and hi["fit_ok"] else math.nan
    r_lo, r_hi = intervals.percentile_interval(
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


# ---------------------------------------------------------------- the tau-LR law, against a sweep


def tau_lr_law(
    probe: pd.DataFrame,
    condition: str = FULL_AUG,
    n_boot: int = N_BOOT,
    rng_seed: int = RNG_SEED,
    rules: str = probe_fits.AS_REGISTERED,
) -> dict:
    """tau in SGD steps per LR, and the fit log tau = c - alpha log LR with a seed-bootstrap interval.

    Every bootstrap draw resamples the seeds at each LR, refits every tau and the line. Returns the
    per-LR table (``taus``), alpha, c (natural logs, LR in absolute units), their intervals, and the
    LRs used (those whose point fit succeeded); alpha is None with fewer than two such LRs.
    """
    t = seed_timescale(probe, condition, "step", n_boot, rng_seed, keep_draws=True, rules=rules)
    out = dict(condition=condition, taus=tables.records(t.drop(columns=["condition"])), n_boot=n_boot)
    ok = t[t["fit_ok"]]
    if len(ok) < 2:
        return dict(out, alpha=None, reason="needs a tau fit at two or more LRs")
    x = np.log(ok["lr"].to_numpy(dtype=float))
    slope, intercept = np.polyfit(x, np.log(ok["tau"].to_numpy(dtype=float)), 1)
    draws = np.column_stack([t.attrs["draws"][m] for m in ok["multiplier"]])  # (n_boot, LRs)
    with np.errstate(divide="ignore", invalid="ignore"):
        boot = np.array([np.polyfit(x, np.log(d), 1)[0] if np.isfinite(np.log(d)).all() else np.nan for d in draws])
    a_lo, a_hi = intervals.percentile_interval(-boot, n_units=int(ok["n_seeds"].min()))
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
    return tables.clean(rows)
