"""Figures from tidy tables (seaborn styling on matplotlib's Agg backend). Aggregation lives in analysis.

Every figure is written as PNG and SVG next to each other (``path_stem`` + ".png" / ".svg"), carries
the scale of the experiment in its title, and comes back as a SavedFigure: the list of written paths,
with the Figure attached for inspection. Colours are fixed per subset size (ordered, light = small)
and per probe condition, so that figures of one study can be read side by side.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never open a window, also on machines without a display

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator  # noqa: E402

from forgetting import analysis  # noqa: E402
from forgetting.errors import UserError  # noqa: E402
from forgetting.store import atomic_write_bytes  # noqa: E402

DPI = 150
CONDITION_ORDER = ("half-noaug", "full-aug")
CONDITION_LABELS = {"half-noaug": "50% of data, no augmentation", "full-aug": "100% of data, crop + flip"}
LOSS_UNIT = "cross-entropy, nats"
# Above this a loss is worse than guessing among 10 classes (ln 10 = 2.30); the y range stops a
# little past it so that one broken run does not flatten every other curve.
CHANCE_LOSS = math.log(10)
STYLE = {"svg.hashsalt": "forgetting", "svg.fonttype": "none", "axes.titlesize": "medium"}


class SavedFigure(list):
    """The written paths (PNG, SVG), with the Figure kept as ``.figure`` for tests and notebooks."""

    def __init__(self, paths: list[Path], figure: Figure):
        super().__init__(paths)
        self.figure = figure


def _style():
    return sns.axes_style("whitegrid", rc=STYLE)


def _save(fig: Figure, path_stem) -> SavedFigure:
    stem = Path(path_stem)
    paths = []
    for ext, kwargs in ((".png", dict(dpi=DPI)), (".svg", dict(metadata={"Date": None}))):
        buf = io.BytesIO()
        fig.savefig(buf, format=ext[1:], bbox_inches="tight", **kwargs)
        path = stem.with_name(stem.name + ext)  # not with_suffix: "sweep_w0.25" would lose ".25"
        atomic_write_bytes(path, buf.getvalue())
        paths.append(path)
    return SavedFigure(paths, fig)


def multiplier_label(m: float) -> str:
    """0.125 -> "1/8", 2 -> "2", 0.3 -> "0.3"."""
    if m < 1 and abs(1 / m - round(1 / m)) < 1e-9:
        return f"1/{round(1 / m)}"
    return f"{m:g}"


def _log2_axis(ax, multipliers) -> None:
    ax.set_xscale("log", base=2)
    ticks = sorted(set(float(m) for m in multipliers))
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: multiplier_label(v)))


def subset_colours(subsets) -> dict:
    """Ordered palette: the smallest subset lightest. Viridis without its pale yellow end."""
    subsets = sorted(set(int(s) for s in subsets))
    cmap = sns.color_palette("viridis", as_cmap=True)
    points = np.linspace(0.8, 0.0, len(subsets)) if len(subsets) > 1 else [0.4]
    return {s: cmap(p) for s, p in zip(subsets, points)}


def condition_colours(conditions) -> dict:
    palette = sns.color_palette("colorblind")
    fixed = {"half-noaug": palette[1], "full-aug": palette[0]}
    others = [c for c in sorted(set(conditions)) if c not in fixed]
    return {**fixed, **{c: palette[2 + i % 8] for i, c in enumerate(others)}}


def _ordered_conditions(conditions) -> list[str]:
    present = set(conditions)
    return [c for c in CONDITION_ORDER if c in present] + sorted(present - set(CONDITION_ORDER))


def _capped_ylim(ax, lows, highs, minima, headroom=0.0, footroom=0.0) -> None:
    """y range over the data, its top capped near chance level (or 1.5x the worst curve's minimum)."""
    lows, highs = np.asarray(lows, float), np.asarray(highs, float)
    lows, highs = lows[np.isfinite(lows)], highs[np.isfinite(highs)]
    if not len(lows):
        return
    cap = max(CHANCE_LOSS * 1.15, 1.5 * np.nanmax(minima))
    lo, hi = float(lows.min()), float(min(highs.max(), cap))
    pad = 0.05 * (hi - lo or abs(hi) or 1.0)
    span = hi - lo + 2 * pad
    ax.set_ylim(lo - pad - footroom * span, hi + pad + headroom * span)


def _panel_title(mult: float, lr: float) -> str:
    return f"LR ×{multiplier_label(mult)}" + (f" (lr {lr:.3g})" if np.isfinite(lr) else "")


# ---------------------------------------------------------------- Figure 1: LR sweep


def plot_lr_sweep(results: pd.DataFrame, path_stem, scale: str, optimum: pd.DataFrame | None = None) -> SavedFigure:
    """Figure 1: test loss (left) and clean train loss (right) against LR multiplier, a line per subset.

    Lines are means over seeds of the runs that did not blow up, shaded with a 95% t interval when
    there are several seeds. An 'x' along the top marks multipliers where runs blew up. With
    ``optimum`` (analysis.optimum_by_subset), the fitted optimum and its interval are drawn along the
    bottom of the test-loss panel.
    """
    agg = analysis.sweep_aggregates(results)
    if agg.empty:
        raise UserError("no finished runs to plot")
    colours = subset_colours(agg["subset"])
    base = agg["base_lr"].dropna().unique()
    xlabel = f"LR multiplier (× base LR {base[0]:g})" if len(base) == 1 else "LR multiplier (× base LR)"
    with _style():
        # Fixed margins: constrained layout collapsed these axes when a panel had marks outside it.
        fig = Figure(figsize=(11, 5.4))
        fig.subplots_adjust(left=0.07, right=0.98, top=0.84, bottom=0.27, wspace=0.2)
        axes = fig.subplots(1, 2)
        panels = (
            ("test_loss", "test loss", "test loss (test set)"),
            ("clean_train_loss", "clean train loss", "clean train loss (training subset, no augmentation)"),
        )
        marks = optimum is not None and len(optimum)
        for ax, (col, name, title) in zip(axes, panels):
            minima = agg.groupby("subset")[col].min()
            n_rows = len(colours)
            for row, (subset, colour) in enumerate(colours.items()):
                d = agg[agg["subset"] == subset]
                ok = d[d[col].notna()]
                ax.plot(ok["multiplier"], ok[col], "o-", color=colour, ms=4, label=f"{subset:,} images")
                if ok[f"{col}_lo"].notna().any():
                    ax.fill_between(ok["multiplier"], ok[f"{col}_lo"], ok[f"{col}_hi"], color=colour, alpha=0.18, lw=0)
                blown = d[d["n_diverged"] > 0]
                y = 0.96 - 0.035 * row  # one row of marks per subset, in axes fraction
                ax.plot(
                    blown["multiplier"],
                    np.full(len(blown), y),
                    "x",
                    color=colour,
                    ms=7,
                    mew=2,
                    transform=ax.get_xaxis_transform(),
                    clip_on=False,
                    label="_diverged",
                )
            _capped_ylim(
                ax,
                agg[f"{col}_lo"].fillna(agg[col]),
                agg[f"{col}_hi"].fillna(agg[col]),
                minima,
                headroom=0.04 * n_rows + 0.04,
                footroom=0.04 * n_rows + 0.04 if marks and col == "test_loss" else 0,
            )
            _log2_axis(ax, agg["multiplier"])
            ax.set_xlabel(xlabel)
            ax.set_ylabel(f"{name} ({LOSS_UNIT})")
            ax.set_title(title)
        if marks:
            ax = axes[0]
            for row, r in enumerate(optimum.sort_values("subset").itertuples()):
                if r.subset not in colours or not np.isfinite(r.m_opt):
                    continue
                y = 0.04 + 0.035 * row
                tr = ax.get_xaxis_transform()
                if np.isfinite(r.m_opt_lo) and np.isfinite(r.m_opt_hi):
                    ax.plot(
                        [r.m_opt_lo, r.m_opt_hi],
                        [y, y],
                        "-",
                        color=colours[r.subset],
                        lw=2,
                        transform=tr,
                        label="_opt_ci",
                    )
                ax.plot([r.m_opt], [y], "v", color=colours[r.subset], ms=8, mec="white", transform=tr, label="_opt")
        handles, labels = axes[0].get_legend_handles_labels()
        if (agg["n_diverged"] > 0).any():
            handles.append(Line2D([], [], ls="", marker="x", color="0.3", mew=2))
            labels.append("runs diverged (top)")
        if marks:
            handles.append(Line2D([], [], ls="-", marker="v", color="0.3", mec="white", ms=8))
            labels.append("fitted optimum, 95% interval (bottom)")
        fig.legend(
            handles, labels, loc="lower center", bbox_to_anchor=(0.5, 0.0), ncol=min(len(labels), 3), frameon=False
        )
        fig.suptitle(f"Loss against learning rate, one line per training-set size\n{scale}")
    return _save(fig, path_stem)


# ---------------------------------------------------------------- Figure 2: forgetting probe


def _reference_lines(ax, probe_runs, mult, colours) -> list[float]:
    """Dashed test-loss line per condition (the "never seen" reference); returns their values."""
    if probe_runs is None or not len(probe_runs):
        return []
    ref = analysis.probe_reference(probe_runs)
    ref = ref[np.isclose(ref["multiplier"], mult)]
    for r in ref.itertuples():
        ax.axhline(r.test_loss, ls="--", lw=1.2, color=colours.get(r.condition, "0.4"), label=f"_test {r.condition}")
    return list(ref["test_loss"])


def _condition_legend(fig, conditions, colours, extra: list[tuple[str, dict]]) -> None:
    handles = [Line2D([], [], color=colours[c], marker="o", ms=4) for c in conditions]
    labels = [CONDITION_LABELS.get(c, c) for c in conditions]
    for label, style in extra:
        handles.append(Line2D([], [], color="0.35", **style))
        labels.append(label)
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 4), frameon=False)


def _condition_lines(ax, panel, x: str, conditions, colours, lows: list, highs: list, with_seen=False) -> None:
    """One line per condition (mean loss_now, 95% band) against ``x``; extends lows/highs for the y range."""
    for cond in conditions:
        d = panel[panel["condition"] == cond].sort_values(x)
        if d.empty:
            continue
        c = colours[cond]
        ax.plot(d[x], d["loss_now"], "o-", color=c, ms=3.5, label=cond)
        ax.fill_between(d[x], d["loss_now_lo"], d["loss_now_hi"], color=c, alpha=0.2, lw=0)
        if with_seen:
            ax.plot(d[x], d["loss_when_seen"], ":", color=c, alpha=0.55, lw=1.2, label=f"_seen {cond}")
        lows += list(d["loss_now_lo"].fillna(d["loss_now"]))
        highs += list(d["loss_now_hi"].fillna(d["loss_now"]))


def plot_forgetting(probe: pd.DataFrame, probe_runs: pd.DataFrame | None, path_stem, scale: str) -> SavedFigure:
    """Figure 2: the final weights' loss on each earlier epoch's exact batches, against epoch age.

    A panel per LR multiplier, a line per condition with its 95% interval over steps shaded, the
    same weights' test loss dashed, and the batches' loss at the time they were trained on dotted
    (when present). Time reads left to right: the oldest epoch is at the left, the final epoch
    (age 0) at the right. The y range follows the frozen-model losses, so a dotted line may leave it.
    """
    agg = analysis.epoch_aggregates(probe)
    if agg.empty:
        raise UserError("the probe table has no rows to plot")
    mults = sorted(agg["multiplier"].unique())
    conditions = _ordered_conditions(agg["condition"])
    colours = condition_colours(conditions)
    has_seen = agg["loss_when_seen"].notna().any()
    with _style():
        fig = Figure(figsize=(1.5 + 4.2 * len(mults), 4.8), layout="constrained")
        axes = fig.subplots(1, len(mults), sharey=True, squeeze=False)[0]
        lows, highs = [], []
        for ax, mult in zip(axes, mults):
            panel = agg[agg["multiplier"] == mult]
            _condition_lines(ax, panel, "epoch_age", conditions, colours, lows, highs, with_seen=has_seen)
            refs = _reference_lines(ax, probe_runs, mult, colours)
            lows += refs
            highs += refs
            ax.set_xlim(panel["epoch_age"].max() + 0.5, -0.5)  # inverted: final epoch at the right
            ax.set_title(_panel_title(mult, float(panel["lr"].mean())))
            ax.set_xlabel("epochs before the end (0 = final epoch, right)")
        axes[0].set_ylabel(f"loss of the final weights ({LOSS_UNIT})")
        _capped_ylim(axes[0], lows, highs, [min(lows)])
        extra = [("test loss, same weights", dict(ls="--"))]
        if has_seen:
            extra.append(("loss when trained on", dict(ls=":")))
        _condition_legend(
            fig, conditions, colours, [("frozen final weights, 95% interval", dict(marker="o", ms=4))] + extra
        )
        fig.suptitle(f"Forgetting: the final model's loss on the batches of earlier epochs\n{scale}")
    return _save(fig, path_stem)


def plot_recency(
    recency: pd.DataFrame, path_stem, scale: str, probe_runs: pd.DataFrame | None = None, bins=12
) -> SavedFigure:
    """Loss of each training example under the final weights against training steps since its most
    recent presentation (binned, analysis.recency_aggregates), a panel per LR, a line per condition.
    The x axis is symlog so that 0 (seen in the final step) has a place."""
    agg = analysis.recency_aggregates(recency, bins=bins)
    if agg.empty:
        raise UserError("the recency table has no rows to plot")
    mults = sorted(agg["multiplier"].unique())
    conditions = _ordered_conditions(agg["condition"])
    colours = condition_colours(conditions)
    with _style():
        fig = Figure(figsize=(1.5 + 4.2 * len(mults), 4.8), layout="constrained")
        axes = fig.subplots(1, len(mults), sharey=True, squeeze=False)[0]
        lows, highs = [], []
        for ax, mult in zip(axes, mults):
            panel = agg[agg["multiplier"] == mult]
            _condition_lines(ax, panel, "steps", conditions, colours, lows, highs)
            refs = _reference_lines(ax, probe_runs, mult, colours)
            lows += refs
            highs += refs
            ax.set_xscale("symlog", linthresh=1, linscale=0.4)
            ax.set_xlim(0, float(panel["bin_hi"].max()))  # autoscaling would reach into negative steps
            ax.set_title(_panel_title(mult, float(panel["lr"].mean())))
            ax.set_xlabel("training steps since last presented (symlog)")
        axes[0].set_ylabel(f"loss of the final weights ({LOSS_UNIT})")
        _capped_ylim(axes[0], lows, highs, [min(lows)])
        extra = [("test loss, same weights", dict(ls="--"))] if probe_runs is not None and len(probe_runs) else []
        _condition_legend(
            fig, conditions, colours, [("mean over examples in the bin, 95% interval", dict(marker="o", ms=4))] + extra
        )
        fig.suptitle(f"Forgetting by example: loss against time since the example was last trained on\n{scale}")
    return _save(fig, path_stem)


# ---------------------------------------------------------------- LR finder


def plot_lr_find(curves: pd.DataFrame, suggestion: float | None, method: str, path_stem, title: str) -> SavedFigure:
    """Range test: smoothed loss against LR (log), a line per seed, raw loss faint, and a vertical
    line at the suggested LR. The y range runs from the lowest smoothed loss to a little above the
    starting loss, so the blow-up at the end does not flatten the useful part."""
    if curves.empty:
        raise UserError("the LR-finder table has no rows to plot")
    seeds = sorted(curves["seed"].unique())
    palette = sns.color_palette("colorblind", len(seeds))
    with _style():
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
        fig.suptitle(f"LR range test: smoothed loss (raw faint), one line per seed\n{title}")
    return _save(fig, path_stem)


# ---------------------------------------------------------------- forgetting timescale against LR


def plot_tau_lr(law: dict, path_stem, scale: str) -> SavedFigure:
    """tau (SGD steps, log) against LR (log): per-LR fits with their seed-bootstrap intervals, the
    fitted line log tau = c - alpha log LR, and for each LR-sweep subset the revisit interval N/B
    (dotted) with that subset's turn-up LR marked on it, where a matching sweep was found."""
    taus = pd.DataFrame(law.get("taus") or [])
    if taus.empty:
        raise UserError("the tau-LR law has no fitted timescales to plot")
    taus = taus.apply(pd.to_numeric, errors="coerce")
    ok = taus[taus["tau"].notna()]
    with _style():
        fig = Figure(figsize=(7, 4.8), layout="constrained")
        ax = fig.subplots()
        err = np.vstack([ok["tau"] - ok["tau_lo"].fillna(ok["tau"]), ok["tau_hi"].fillna(ok["tau"]) - ok["tau"]])
        ax.errorbar(
            ok["lr"],
            ok["tau"],
            yerr=np.clip(err, 0, None),
            fmt="o",
            color="C0",
            capsize=3,
            label="fitted tau, 95% seed-bootstrap interval",
        )
        if law.get("alpha") is not None:
            lrs = np.geomspace(taus["lr"].min() / 1.5, taus["lr"].max() * 1.5, 50)
            ax.plot(
                lrs,
                np.exp(law["c"]) * lrs ** -law["alpha"],
                "-",
                color="C0",
                alpha=0.6,
                label=f"tau ∝ LR^-α, α = {law['alpha']:.2f} [{law['alpha_lo']:.2f}, {law['alpha_hi']:.2f}]",
            )
        palette = sns.color_palette("colorblind")
        for i, r in enumerate(law.get("versus_sweep") or []):
            colour = palette[(i + 2) % len(palette)]
            ax.axhline(r["revisit_steps"], ls=":", color=colour, lw=1.2)
            turn_lr = r["turn_up"] * r["base_lr"]
            past = " (past the grid)" if r.get("turn_up_past_grid") else ""
            ax.plot(
                [turn_lr],
                [r["revisit_steps"]],
                marker="v",
                ms=9,
                color=colour,
                ls="none",
                label=f"{r['sweep']} N={r['subset']:,}: N/B = {r['revisit_steps']:g} steps, turn-up LR{past}",
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("learning rate (mean-loss convention, log scale)")
        ax.set_ylabel("forgetting timescale tau (SGD steps, log scale)")
        ax.legend(loc="best", fontsize="small", frameon=True)
        fig.suptitle(f"Forgetting timescale against LR (full-aug; fit of a - b exp(-steps ago / tau))\n{scale}")
    return _save(fig, path_stem)
