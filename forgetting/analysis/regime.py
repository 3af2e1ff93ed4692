"""Claim (a) in Page's regime (results/README.md, "Pre-registered readings: claim (a) in Page's regime",
fixed on 2026-12-05 before any run of cpu-lr-sweep-page): does the small subset fit its data, and the
turn-up ratio against the two accounts' predictions. No plotting.

Change a constant only with a new, dated pre-registration; never to make a result agree.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from forgetting.analysis import tables

FIT_SHARE = 0.5  # fits: seed-mean clean training loss at the last epoch <= this x its last-5 test loss
SETTLED_SHARE = 0.05  # settled: |final test loss - last-5 mean| <= this x the last-5 mean (seed means)


def clean_curves(results: pd.DataFrame, epochs: pd.DataFrame) -> pd.DataFrame:
    """Seed-mean clean training loss per subset, multiplier and evaluated epoch (runs' history rows
    ``epochs``: run, epoch, clean_train_loss), over the finished runs that did not blow up."""
    runs = tables.sweep_runs(results)
    runs = runs[~runs["blew_up"]][["run", "subset", "multiplier", "seed"]]
    rows = epochs.merge(runs, on="run")
    rows = rows[np.isfinite(pd.to_numeric(rows["clean_train_loss"], errors="coerce"))]
    keys = ["subset", "multiplier", "epoch"]
    return rows.groupby(keys, as_index=False).agg(clean_train_loss=("clean_train_loss", "mean"), n=("seed", "size"))


def _at_minimum(runs: pd.DataFrame, curves: pd.DataFrame, subset: int) -> dict:
    """The subset's readings at the multiplier of its seed-mean last-5 minimum (runs that blew up left out)."""
    ok = runs[(runs["subset"] == subset) & ~runs["blew_up"]]
    means = ok.groupby("multiplier")[["test_loss", "test_loss_tail"]].mean()
    means = means[np.isfinite(means["test_loss_tail"])]
    if means.empty:
        return dict(subset=subset, fits=None, settled=None, reason="no run of this subset finished its tail")
    m = float(means["test_loss_tail"].idxmin())
    last5, final = float(means.loc[m, "test_loss_tail"]), float(means.loc[m, "test_loss"])
    curve = curves[(curves["subset"] == subset) & (curves["multiplier"] == m)].sort_values("epoch")
    clean = float(curve["clean_train_loss"].iloc[-1]) if len(curve) else math.nan
    return dict(
        subset=subset,
        multiplier=m,
        test_loss_last5=last5,
        test_loss_final=final,
        clean_train_loss_final=clean,
        fits=bool(clean <= FIT_SHARE * last5) if np.isfinite(clean) else None,
        settled=bool(abs(final - last5) <= SETTLED_SHARE * last5),
    )


def fit_check(results: pd.DataFrame, epochs: pd.DataFrame) -> dict:
    """Per subset, at its last-5 minimum: does it fit its data (clean training loss at most FIT_SHARE
    of its test loss) and has it settled (final and last-5 test loss within SETTLED_SHARE)? The study
    decides (a) unless its smallest subset does neither; ``curves`` holds every seed-mean clean loss."""
    runs = tables.sweep_runs(results)
    curves = clean_curves(results, epochs)
    subsets = sorted(int(s) for s in runs["subset"].unique())
    readings = [_at_minimum(runs, curves, s) for s in subsets]
    small = readings[0] if readings else {}
    if small.get("fits") is None and small.get("settled") is None:
        decides, reason = None, "no reading of the smallest subset"
    else:
        decides = bool(small.get("fits") or small.get("settled"))
        reason = "" if decides else "undecided: the small subset did not fit its data"
    return tables.clean(dict(decides=decides, reason=reason, readings=readings, curves=tables.records(curves)))


def _holds(lo: float, hi: float, value: float) -> bool:
    return bool(np.isfinite([lo, hi, value]).all() and lo <= value <= hi)


def ratio_reading(verdict: dict, alpha: float | None, alpha_hi: float | None = None) -> dict:
    """The turn-up ratio (smallest / largest subset, from an (a) verdict with its resample interval)
    against the noise scale's N_largest / N_smallest and forgetting's (N_largest / N_smallest)^(1 /
    alpha) (tau ~ LR^-alpha, tau = N / B at the turn-up); which of the two its interval holds. The
    least forgetting predicts over alpha's interval is at its upper end ``alpha_hi``."""
    if verdict.get("holds") is None and "turn_up_ratio" not in verdict:
        return dict(reading=None, reason=verdict.get("reason", "no (a) reading"))
    size_ratio = verdict["subset_largest"] / verdict["subset_smallest"]
    lo, hi = verdict["turn_up_ratio_lo"], verdict["turn_up_ratio_hi"]
    forgetting = size_ratio ** (1 / alpha) if alpha and alpha > 0 else math.nan
    noise_holds, forget_holds = _holds(lo, hi, size_ratio), _holds(lo, hi, forgetting)
    reading = {(True, True): "both", (True, False): "noise", (False, True): "forgetting"}.get(
        (noise_holds, forget_holds), "neither"
    )
    return tables.clean(
        dict(
            reading=reading,
            turn_up_ratio=verdict["turn_up_ratio"],
            turn_up_ratio_lo=lo,
            turn_up_ratio_hi=hi,
            noise=size_ratio,
            forgetting=forgetting,
            forgetting_at_least=size_ratio ** (1 / alpha_hi) if alpha_hi and alpha_hi > 0 else None,
            alpha=alpha,
        )
    )
