"""The figures of per-example forgetting scores (forgetting/analysis/scores.py): Toneva's histogram of
forgetting events, the share unforgettable against the seeds pooled, per-class counts. Styling as plots.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from forgetting.analysis.scores import NEVER_LEARNED
from forgetting.plotkit import SavedFigure, save, style

KINDS = {"unforgettable": "unforgettable", "forgotten": "forgotten at least once", "never_learned": "never learned"}


def _errors(df: pd.DataFrame, col: str) -> np.ndarray:
    """Error bar lengths below and above ``col`` from its ``_lo``/``_hi`` (0 where there is no interval)."""
    low = (df[col] - df[f"{col}_lo"]).clip(lower=0).fillna(0)
    high = (df[f"{col}_hi"] - df[col]).clip(lower=0).fillna(0)
    return np.vstack([low.to_numpy(), high.to_numpy()])


def plot_events(hist: pd.DataFrame, path_stem, title: str) -> SavedFigure:
    """Share of a run's examples per number of forgetting events, mean over seeds with its 95% interval; the
    never learned as a bar of their own, right of the most forgotten."""
    df = hist.sort_values("forgetting_events")
    never = df["forgetting_events"] == NEVER_LEARNED
    df = pd.concat([df[~never], df[never]])
    labels = [("never\nlearned" if e == NEVER_LEARNED else str(int(e))) for e in df["forgetting_events"]]
    palette = sns.color_palette("colorblind")
    colours = [palette[3] if e == NEVER_LEARNED else palette[0] for e in df["forgetting_events"]]
    with style():
        fig = Figure(figsize=(1.2 + 0.55 * max(len(df), 6), 4.2), layout="constrained")
        ax = fig.subplots()
        x = np.arange(len(df))
        ax.bar(x, df["share"], color=colours, yerr=_errors(df, "share"), capsize=3, ecolor="black")
        ax.set_xticks(x, labels)
        ax.set_xlabel("forgetting events (a correct presentation followed by a wrong one)")
        ax.set_ylabel("share of a run's examples")
        n = int(df["n"].max()) if len(df) else 0
        ax.set_title(f"{title}\nmean over {n} seeds, 95% t interval")
    return save(fig, path_stem)


def plot_pooled(by_seeds: pd.DataFrame, path_stem, title: str) -> SavedFigure:
    """Share of examples unforgettable in every one of k seeds, against k: pooled over every k-seed set (line)
    with the range over the sets (bars), and the examples per set written at each point."""
    df = by_seeds[np.isfinite(by_seeds["share"])]
    with style():
        fig = Figure(figsize=(5.8, 4.2), layout="constrained")
        ax = fig.subplots()
        low = (df["share"] - df["share_min"]).clip(lower=0)
        high = (df["share_max"] - df["share"]).clip(lower=0)
        ax.errorbar(df["seeds"], df["share"], yerr=[low, high], fmt="o-", capsize=3, label="range over the seed sets")
        for _, r in df.iterrows():
            ax.annotate(f"{r['examples']:,.0f}", (r["seeds"], r["share"]), textcoords="offset points", xytext=(6, 4),
                        fontsize="x-small")
        ax.set_xticks(by_seeds["seeds"])
        ax.set_xlabel("seeds pooled (k)")
        ax.set_ylabel("share unforgettable in all k seeds")
        ax.set_ylim(bottom=0)
        ax.legend(loc="upper right", fontsize="small", title="numbers: examples every seed of a set presented",
                  title_fontsize="x-small")
        ax.set_title(f"{title}\nunforgettable examples as seeds are pooled")
    return save(fig, path_stem)


def plot_classes(counts: pd.DataFrame, path_stem, title: str, classes: list[str] | None = None) -> SavedFigure:
    """Per class, a run's examples unforgettable, forgotten at least once and never learned: mean over seeds
    with its 95% t interval."""
    labels = sorted(counts["label"].unique())
    names = [classes[int(c)] if classes and int(c) < len(classes) else str(c) for c in labels]
    palette = sns.color_palette("colorblind")
    width = 0.8 / len(KINDS)
    with style():
        fig = Figure(figsize=(1.5 + 0.8 * max(len(labels), 5), 4.4), layout="constrained")
        ax = fig.subplots()
        x = np.arange(len(labels))
        for k, (kind, text) in enumerate(KINDS.items()):
            df = counts[counts["kind"] == kind].set_index("label").reindex(labels)
            ax.bar(x + (k - 1) * width, df["count"], width, yerr=_errors(df, "count"), capsize=2, ecolor="black",
                   color=palette[[2, 0, 3][k]], label=text)
        ax.set_xticks(x, names, rotation=30 if max(map(len, names)) > 5 else 0)
        ax.set_xlabel("class")
        ax.set_ylabel("examples of a run")
        fig.legend(loc="outside lower center", ncol=len(KINDS), fontsize="small")  # outside: bars fill the panel
        n = int(counts["n"].max()) if len(counts) else 0
        ax.set_title(f"{title}\nper class, mean over {n} seeds, 95% t interval")
    return save(fig, path_stem)


def plot_scores(hist, by_seeds, counts, stem, title: str, classes=None) -> list[Path]:
    """The three figures beside ``stem``: STEM_events, STEM_pooled and STEM_classes, each .png and .svg."""
    stem = Path(stem)
    paths = []
    paths += plot_events(hist, stem.with_name(stem.name + "_events"), title)
    paths += plot_pooled(by_seeds, stem.with_name(stem.name + "_pooled"), title)
    paths += plot_classes(counts, stem.with_name(stem.name + "_classes"), title, classes)
    return paths
