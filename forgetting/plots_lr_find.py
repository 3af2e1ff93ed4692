"""The LR finder's figure: a range test's loss against LR. Styling as plots.py."""

from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from forgetting.errors import UserError
from forgetting.plotkit import LOSS_UNIT, SavedFigure, save, style


def plot_lr_find(
    curves: pd.DataFrame, suggestion: float | None, method: str, path_stem, scale: str, study: str | None = None
) -> SavedFigure:
    """Range test: smoothed loss against LR (log), a line per seed, raw loss faint, and a vertical
    line at the suggested LR. The y range runs from the lowest smoothed loss to a little above the
    starting loss, so the blow-up at the end does not flatten the useful part. ``scale`` is the finder's
    own (lr_curve.finder_scale: its steps, seeds and subset), not the scale of the study it serves."""
    if curves.empty:
        raise UserError("the LR-finder table has no rows to plot")
    seeds = sorted(curves["seed"].unique())
    palette = sns.color_palette("colorblind", len(seeds))
    with style():
        fig = Figure(figsize=(7, 4.6), layout="constrained")
        ax = fig.subplots()
        starts, floors = [], []
        for seed, colour in zip(seeds, palette):
            d = curves[curves["seed"] == seed].sort_values("lr")
            ax.plot(d["lr"], d["loss"], "-", color=colour, alpha=0.25, lw=0.8, label="_raw")
            ax.plot(d["lr"], d["smoothed_loss"], "-", color=colour, lw=1.8, label=f"seed {seed}")
            s = d["smoothed_loss"].to_numpy(dtype=float)
            s = s[np.isfinite(s)]
            if len(s):
                starts.append(s[0])
                floors.append(s.min())
        if starts:
            lo, hi = min(floors), max(starts)
            pad = 0.08 * (hi - lo or 1.0)
            ax.set_ylim(lo - pad, hi + 4 * pad)
        if suggestion is not None and np.isfinite(suggestion):
            ax.axvline(suggestion, color="0.2", ls="--", lw=1.2, label=f"{method}: {suggestion:.3g}")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate (mean-loss convention, log scale)")
        ax.set_ylabel(f"training loss ({LOSS_UNIT})")
        ax.legend(loc="lower left", frameon=True)  # range-test curves start top left and end top right
        what = f"LR range test for {study}'s base LR" if study else "LR range test"
        fig.suptitle(f"{what}: smoothed training loss (raw faint), one line per seed\n{scale}")
    return save(fig, path_stem)
