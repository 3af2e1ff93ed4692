"""The fit check of claim (a) in Page's regime (forgetting/analysis/regime.py): does each subset fit its
data? Styling as plots.py."""

from __future__ import annotations

import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from forgetting.errors import UserError
from forgetting.plotkit import LOSS_UNIT, SavedFigure, multiplier_label, save, style


def plot_fit_check(fit: dict, path_stem, scale: str) -> SavedFigure:
    """Seed-mean clean (unaugmented) training loss against epoch, one panel per subset, one line per LR
    multiplier; the multiplier of each subset's last-5 minimum drawn thick, with its last-5 test loss
    and the fit threshold (FIT_SHARE x that test loss) as dotted lines."""
    curves = pd.DataFrame(fit.get("curves") or [])
    if curves.empty:
        raise UserError("the fit check has no clean training losses to plot")
    minima = {r["subset"]: r for r in fit.get("readings", []) if r.get("multiplier") is not None}
    subsets = sorted(curves["subset"].unique())
    mults = sorted(curves["multiplier"].unique())
    colours = dict(zip(mults, sns.color_palette("viridis", len(mults))))
    with style():
        fig = Figure(figsize=(1.5 + 5.0 * len(subsets), 5.6), layout="constrained")
        axes = fig.subplots(1, len(subsets), sharey=True, squeeze=False)[0]
        for ax, subset in zip(axes, subsets):
            best = minima.get(int(subset), {})
            for m, g in curves[curves["subset"] == subset].groupby("multiplier"):
                thick = m == best.get("multiplier")
                ax.plot(g["epoch"], g["clean_train_loss"], "o-", ms=3, lw=2.5 if thick else 1,
                        color=colours[m], label=f"x{multiplier_label(m)}")
            if best:
                ax.axhline(best["test_loss_last5"], ls=":", color="black", lw=1, label="test loss (last 5) at the minimum")
                ax.axhline(best["test_loss_last5"] / 2, ls=":", color="grey", lw=1, label="fit threshold (half of it)")
            verdict = "fits" if best.get("fits") else "does not fit"
            verdict += ", settled" if best.get("settled") else ", not settled"
            ax.set_title(f"{subset:,} images: {verdict}" if best else f"{subset:,} images")
            ax.set_xlabel("epoch")
        axes[0].set_ylabel(f"clean training loss ({LOSS_UNIT})")
        # Outside the panels: inside, it hid the high-LR curves of the large subset.
        labelled = {}
        for ax in axes:
            for handle, label in zip(*ax.get_legend_handles_labels()):
                labelled.setdefault(label, handle)
        lines = [f"x{multiplier_label(m)}" for m in mults]
        order = [k for k in lines if k in labelled] + [k for k in labelled if k not in lines]
        fig.legend([labelled[k] for k in order], order, loc="outside lower center", ncol=6, fontsize="x-small")
        fig.suptitle(f"Does each subset fit its data? Clean training loss against epoch, per LR multiplier\n{scale}")
    return save(fig, path_stem)
