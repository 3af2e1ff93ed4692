"""The figure of a prune study (forgetting/analysis/prune.py): test accuracy and loss against the share of the
pool removed, one line per selection with its 95% t interval over seeds, and the paired difference the
pre-registered rule reads. Styling as plots.py."""

from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from forgetting.plotkit import SavedFigure, save, seeds_text, style

SELECTION_LABELS = {"forgetting": "least forgotten removed first", "random": "removed at random"}


def _band(ax, df: pd.DataFrame, col: str, colour, label: str) -> None:
    x = 100 * df["fraction"]
    ax.plot(x, df[col], "o-", color=colour, label=label)
    ax.fill_between(x, df[f"{col}_lo"], df[f"{col}_hi"], color=colour, alpha=0.2, linewidth=0)


def _difference(ax, verdict: dict) -> None:
    """Forgetting minus random per fraction, with the interval the rule reads and each fraction's reading."""
    diff = pd.DataFrame(verdict.get("fractions") or [])
    ax.axhline(0, color="black", linewidth=0.8)
    if diff.empty:
        ax.set_title("needs both selections")
        return
    diff = diff.astype({c: float for c in ("fraction", "diff", "diff_lo", "diff_hi")})
    x = 100 * diff["fraction"]
    low = (diff["diff"] - diff["diff_lo"]).clip(lower=0).fillna(0)
    high = (diff["diff_hi"] - diff["diff"]).clip(lower=0).fillna(0)
    ax.errorbar(x, 100 * diff["diff"], yerr=[100 * low, 100 * high], fmt="o", capsize=3, color="black")
    for xi, yi, word in zip(x, 100 * diff["diff"], diff["reading"]):
        ax.annotate(word, (xi, yi), textcoords="offset points", xytext=(6, 4), fontsize="x-small")
    ax.set_ylabel("forgetting − random, accuracy points")
    ax.set_title(f"paired by seed, 95% t interval: {verdict.get('verdict') or 'not read'}")


def plot_prune(table: pd.DataFrame, verdict: dict, path_stem, caption: str) -> SavedFigure:
    """Three panels: test accuracy, test loss (mean over seeds, 95% t interval) and the paired difference in
    accuracy, forgetting minus random, each against the percentage of the pool removed."""
    palette = sns.color_palette("colorblind")
    selections = sorted(table["selection"].unique())
    with style():
        fig = Figure(figsize=(14.5, 4.6), layout="constrained")
        acc, loss, diff = fig.subplots(1, 3)
        for k, selection in enumerate(selections):
            df = table[table["selection"] == selection].sort_values("fraction")
            label = SELECTION_LABELS.get(selection, selection)
            _band(acc, df, "test_acc", palette[k], label)
            _band(loss, df, "test_loss", palette[k], label)
        _difference(diff, verdict)
        acc.set_ylabel("final test accuracy")
        loss.set_ylabel("final test loss (cross-entropy, nats)")
        acc.legend(loc="lower left", fontsize="small")
        n = table["n"].dropna()
        acc.set_title(f"mean over {seeds_text(int(n.min()), int(n.max())) if len(n) else 'no seeds'}, 95% t interval")
        for ax in (acc, loss, diff):
            ax.set_xlabel("share of the pool removed (%)")
            ax.set_xticks(sorted(set(np.round(100 * table["fraction"], 6))))
        fig.suptitle(f"Pruning by forgetting score against random removal\n{caption}")
    return save(fig, path_stem)
