"""Figures of forgetting's clock against batch size (forgetting/clock.py's readings). Styling as plots.py.

Two figures, drawn when a probe study has a reference study at a smaller batch size: the timescale
against LR at both batch sizes, in SGD steps and in images seen; and the loss-against-age curves of the
two batch sizes at each LR they share, side by side. Colours are fixed per batch size (the reference
first), so that the two figures read together.
"""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from forgetting.errors import UserError
from forgetting.plotkit import LOSS_UNIT, SavedFigure, save, style

UNITS = {"steps": "SGD steps", "images": "images seen"}
AGE_COLUMNS = {"steps": "step_age", "images": "image_age"}  # clock.age_curves' columns
# No text under 9 pt at the saved resolution (matplotlib's "small" is 8.3 pt at its 10-pt default).
READABLE = {"font.size": 10, "axes.titlesize": 10, "xtick.labelsize": 9, "ytick.labelsize": 9, "legend.fontsize": 9}


def batch_colours(batches) -> dict:
    palette = sns.color_palette("colorblind")
    return {b: palette[i % len(palette)] for i, b in enumerate(sorted({int(b) for b in batches}))}


def _taus(clock: dict) -> pd.DataFrame:
    taus = pd.DataFrame(clock.get("taus") or [])
    if taus.empty:
        raise UserError("the clock readings have no timescales to plot")
    fit_ok = taus["fit_ok"].astype(bool)
    return taus.drop(columns="fit_ok").apply(pd.to_numeric, errors="coerce").assign(fit_ok=fit_ok)


def _errorbars(ax, g: pd.DataFrame, col: str, **kwargs) -> None:
    g = g[g[col].notna()]
    err = np.vstack([g[col] - g[f"{col}_lo"].fillna(g[col]), g[f"{col}_hi"].fillna(g[col]) - g[col]])
    ax.errorbar(g["lr"], g[col], yerr=np.clip(err, 0, None), capsize=3, ls="none", **kwargs)


def plot_clock_taus(clock: dict, path_stem, scale: str) -> SavedFigure:
    """tau against LR (log-log) at both batch sizes, in SGD steps (left) and images seen (right): the
    exponential fits (filled) and the half-rise ages on each study's own window (open; they grow with
    the window, so only the clock readings' common windows compare them) with their 95% intervals,
    and each batch size's fitted law tau = e^c LR^-alpha. If the clock counts steps, the two batch
    sizes' points coincide on the left; if it counts images, on the right."""
    taus = _taus(clock)
    laws = {int(law["batch"]): law for law in clock.get("laws") or []}
    colours = batch_colours(taus["batch"])
    with style():
        fig = Figure(figsize=(12, 4.8), layout="constrained")
        axes = fig.subplots(1, 2, sharex=True)
        for ax, unit in zip(axes, UNITS):
            for batch, g in taus.groupby("batch"):
                colour = colours[int(batch)]
                _errorbars(ax, g[g["fit_ok"]], f"tau_{unit}", fmt="o", color=colour, label=f"batch {batch:g}: tau")
                _errorbars(ax, g, f"half_{unit}", fmt="s", mfc="none", color=colour, alpha=0.7, label="half-rise age")
                law = laws.get(int(batch)) or {}
                if law.get("alpha") is not None:
                    lrs = np.geomspace(g["lr"].min() / 1.5, g["lr"].max() * 1.5, 50)
                    per = batch if unit == "images" else 1
                    ax.plot(lrs, per * np.exp(law["c"]) * lrs ** -law["alpha"], "-", color=colour, alpha=0.6)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.xaxis.set_major_locator(FixedLocator(sorted(taus["lr"].unique())))  # the LRs run, not decades
            ax.xaxis.set_minor_locator(NullLocator())
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
            ax.set_xlabel("learning rate (mean-loss convention, log scale)")
            ax.set_ylabel(f"forgetting timescale ({UNITS[unit]}, log scale)")
            ax.set_title(f"age in {UNITS[unit]}")
        axes[0].legend(loc="best", fontsize="small", frameon=True)
        fig.suptitle(
            f"Forgetting's clock: tau against LR at batch {clock['reference_batch']} and {clock['batch']} "
            f"(lines: tau ∝ LR^-α per batch size; clock reading: {clock.get('reading')})\n{scale}"
        )
    return save(fig, path_stem)


def _fit_line(ax, row: dict, unit_scale: float, top: float, colour) -> None:
    """The exponential fit a - b exp(-age / tau), age in the panel's unit."""
    if not row.get("fit_ok"):
        return
    age = np.linspace(0, top, 200)
    ax.plot(age, row["a"] - row["b"] * np.exp(-age / (row["tau_steps"] * unit_scale)), "--", color=colour, lw=1)


def plot_clock_curves(curves: pd.DataFrame, clock: dict, path_stem, scale: str) -> SavedFigure:
    """The final weights' loss on earlier batches against their age, seed-mean per replayed step, at
    each LR both batch sizes were probed at: a row per LR, age in SGD steps (left) and in images seen
    (right), the exponential fit dashed. As in the forgetting figure, the oldest batches are at the left.
    Two columns keep the figure within page width however many LRs there are (a row of ten panels
    came out at 2,942 px with its text too small to read)."""
    taus = {(int(r["batch"]), float(r["lr"])): r for r in _taus(clock).to_dict("records")}
    shared = sorted(set.intersection(*(set(g["lr"]) for _, g in curves.groupby("batch"))))
    if curves.empty or not shared:
        raise UserError("no LR was probed at both batch sizes")
    colours = batch_colours(curves["batch"])
    with style(), matplotlib.rc_context(READABLE):
        fig = Figure(figsize=(10, 1.6 + 2.3 * len(shared)), layout="constrained")
        axes = fig.subplots(len(shared), 2, sharey=True, sharex="col", squeeze=False)
        for row, lr in enumerate(shared):
            for col, unit in enumerate(UNITS):
                ax, x = axes[row, col], AGE_COLUMNS[unit]
                for batch, g in curves[curves["lr"] == lr].groupby("batch"):
                    colour = colours[int(batch)]
                    ax.plot(g[x], g["loss_now"], color=colour, lw=0.8, alpha=0.6, label=f"_batch {batch:g}")
                    fit = taus.get((int(batch), float(lr)), {})
                    _fit_line(ax, fit, 1 if unit == "steps" else int(batch), float(g[x].max()), colour)
                ax.set_title(f"LR {lr:.3g}, age in {UNITS[unit]}")
            if row == len(shared) - 1:
                for col, unit in enumerate(UNITS):
                    axes[row, col].set_xlabel(f"{UNITS[unit]} before the end (0 = right)")
        for ax in axes[0]:
            ax.invert_xaxis()  # once per column: its panels share the x axis
        fig.supylabel(f"loss of the final weights ({LOSS_UNIT})")
        handles = [Line2D([], [], color=c, lw=1.5) for c in colours.values()]
        labels = [f"batch {b}: seed-mean loss per replayed batch" for b in colours]
        handles.append(Line2D([], [], color="0.3", ls="--", lw=1))
        labels.append("exponential fit a - b exp(-age / tau)")
        fig.legend(handles, labels, loc="outside lower center", ncol=2, frameon=False)
        fig.suptitle(f"Forgetting at batch {clock['reference_batch']} and {clock['batch']}, equal LR\n{scale}")
    return save(fig, path_stem)
