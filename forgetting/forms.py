"""Exponential or power law: which form of forgetting fits the probe's loss-against-age curves. No plotting.

The toolkit's timescale is the exponential a - b exp(-age / tau) (probe_fits.profile_fit); a power law
of forgetting in steps is reported in LLM pre-training (Chang et al. 2024), so the seed-mean curves are
also fitted with a - b (1 + age)^-p. Pre-registered in results/README.md ("Pre-registered readings:
forgetting's clock against batch size", 2026-12-01).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from forgetting.analysis import probe_fits, verdicts
from forgetting.analysis.verdicts import N_BOOT

FORM_SHARE = verdicts.BOOT_SHARE  # a form fits better when its RSS is smaller in this share of resamples
POWER_RANGE = (0.001, 10.0)  # exponents p of a - b (1 + age)^-p searched (1% grid); p -> 0 is a log rise


def _power_fit(ages: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least squares of a - b (1 + age)^-p (b >= 0) per row of ``ys`` over a 1% grid of p: the
    residual sum of squares and p. For fixed p it is linear in (a, b), so both are closed-form."""
    lo, hi = POWER_RANGE
    ps = np.geomspace(lo, hi, int(np.ceil(np.log(hi / lo) / np.log(1.01))) + 1)
    basis = (1 + ages[None, :]) ** -ps[:, None]
    xc = basis - basis.mean(axis=1, keepdims=True)
    yc = ys - ys.mean(axis=1, keepdims=True)
    s = yc @ xc.T
    gain = np.where(s < 0, s**2 / (xc**2).sum(axis=1), 0.0)  # b = -s / sxx >= 0 only where s < 0
    best = gain.argmax(axis=1)
    return (yc**2).sum(axis=1) - gain[np.arange(len(ys)), best], ps[best]


def _exp_rss(ages: np.ndarray, ys: np.ndarray) -> np.ndarray:
    a, b, tau = probe_fits.profile_fit(ages, ys, probe_fits.TAU_MAX_FACTOR * float(ages.max()))
    return ((ys - (a[:, None] - b[:, None] * np.exp(-ages[None, :] / tau[:, None]))) ** 2).sum(axis=1)


def power_degenerate(p: float) -> bool:
    """The power law's exponent sits at an end of its search range: the rival is a log rise (p -> 0)
    or a step (p large), not a fitted power law (the amendment of 2026-12-05)."""
    lo, hi = POWER_RANGE
    return bool(p <= lo * 1.01 or p >= hi / 1.01)


def form_readings(
    studies: list[tuple[pd.DataFrame, int]], n_boot: int = N_BOOT, rules: str = probe_fits.AS_REGISTERED
) -> list[dict]:
    """Per study and LR: does a - b exp(-age / tau) or a - b (1 + age)^-p (age in steps; three
    parameters each, so the residual sums of squares compare as they are) fit the seed-mean curve
    better? "exponential" or "power" when it has the smaller RSS in at least FORM_SHARE of seed
    resamples, else "either". Amended (``rules`` = probe_fits.AMENDED): "power degenerate" when the
    power law's point fit sits at its bound, whatever the resamples say."""
    rows = []
    for t, seed in studies:
        rng = np.random.default_rng(seed)
        for lr, per_seed in t.attrs["curves"].items():
            ages = np.arange(per_seed.shape[1], dtype=float)
            draws = per_seed[rng.integers(0, len(per_seed), (n_boot, len(per_seed)))].mean(axis=1)
            ys = np.vstack([np.nanmean(per_seed, axis=0), draws])
            ok = np.isfinite(ys).all(axis=1)
            rss_exp, (rss_pow, p) = _exp_rss(ages, ys[ok]), _power_fit(ages, ys[ok])
            share = float((rss_exp[1:] < rss_pow[1:]).mean()) if ok.sum() > 1 else math.nan
            form = "exponential" if share >= FORM_SHARE else "power" if share <= 1 - FORM_SHARE else "either"
            amended = {}
            if rules == probe_fits.AMENDED:  # added fields only: the registered reading keeps its bytes
                amended = dict(power_at_bound=power_degenerate(p[0]))
                form = "power degenerate" if amended["power_at_bound"] else form
            rows.append(
                dict(
                    batch=int(t["batch"].iloc[0]),
                    lr=lr,
                    rss_exponential=float(rss_exp[0]),
                    rss_power=float(rss_pow[0]),
                    power=float(p[0]),
                    share_exponential_better=share,
                    better=form,
                    **amended,
                )
            )
    return rows
