"""Figures from tidy tables (seaborn styling on matplotlib's Agg backend). The numbers come from
forgetting/analysis/.

Every figure is written as PNG and SVG next to each other (``path_stem`` + ".png" / ".svg"), carries
the scale of the experiment in its title, and comes back as a SavedFigure: the list of written paths,
with the Figure attached for inspection. Colours are fixed per subset size (ordered, light = small)
and per probe condition, so that figures of one study can be read side by side.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from forgetting.analysis import probe_fits, sweep_fits, verdicts
from forgetting.errors import UserError
from forgetting.plotkit import (
    CONDITION_LABELS,
    LOSS_UNIT,
    MAX_PANELS_PER_ROW,
    SavedFigure,
    capped_ylim,
    condition_colours,
    leaves_axis,
    log2_axis,
    multiplier_label,
    near_references,
    ordered_conditions,
    panel_grid,
    panel_title,
    save,
    seeds_text,
    style,
    subset_colours,
    write_clipped_references,
)


# ---------------------------------------------------------------- Figure 1: LR sweep


def _sweep_lines(ax, agg, col, colours) -> None:
    """A line per subset (seed means), its 95% band, an 'x' along the top where runs blew up, and a
    hollow diamond where one seed alone survived: that run's loss, not a mean."""
    several = agg["n_runs"].max() > 1  # in a one-seed study every point is one run: nothing to tell apart
    for row, (subset, colour) in enumerate(colours.items()):
        d = agg[agg["subset"] == subset]
        ok = d[d[col].notna()]
        ax.plot(ok["multiplier"], ok[col], "o-", color=colour, ms=4, label=f"{subset:,} images")
        one = ok[(ok["n_runs"] - ok["n_diverged"] == 1) & several]
        ax.plot(one["multiplier"], one[col], "D", ms=7, mfc="white", mew=1.6, color=colour, label="_one_seed")
        if ok[f"{col}_lo"].notna().any():
            ax.fill_between(ok["multiplier"], ok[f"{col}_lo"], ok[f"{col}_hi"], color=colour, alpha=0.14, lw=0)
        blown = d[d["n_diverged"] > 0]
        y = np.full(len(blown), 0.96 - 0.035 * row)  # one row of marks per subset, in axes fraction
        tr = ax.get_xaxis_transform()
        ax.plot(blown["multiplier"], y, "x", color=colour, ms=7, mew=2, transform=tr, clip_on=False, label="_diverged")


def _turn_up_marks(ax, agg, levels, colours) -> None:
    """The rule that decides (a): per subset a dashed line at +10% above the curve's minimum, from the
    minimum to the turn-up, and a ring on the curve at the turn-up ('>' at the edge when past the grid)."""
    for r in levels.itertuples():
        d = agg[agg["subset"] == r.subset]
        end = min(r.turn_up, d["multiplier"].max())
        colour = colours[r.subset]
        ax.plot([r.m_min, end], [r.threshold] * 2, "--", color=colour, lw=1.1, label="_threshold")
        at = d.loc[np.isclose(d["multiplier"], end), "test_loss"]
        y = float(at.iloc[0]) if len(at) and np.isfinite(at.iloc[0]) and not r.past_grid else r.threshold
        marker = ">" if r.past_grid else "o"
        ax.plot([end], [y], marker, ms=11, mfc="none", mew=1.6, color=colour, label="_turn_up")


def _optimum_marks(ax, optimum, levels, colours) -> None:
    """Per subset the fitted optimum ('v') and its seed-bootstrap interval, at the height of the curve's
    minimum, so that each sits on its own curve."""
    heights = dict(zip(levels["subset"], levels["loss_min"]))
    for r in optimum.itertuples():
        if r.subset not in colours or r.subset not in heights or not np.isfinite(r.m_opt):
            continue
        y = heights[r.subset]
        if np.isfinite(r.m_opt_lo) and np.isfinite(r.m_opt_hi):
            ax.plot([r.m_opt_lo, r.m_opt_hi], [y, y], "-", color=colours[r.subset], lw=3, alpha=0.7, label="_opt_ci")
        ax.plot([r.m_opt], [y], "v", color=colours[r.subset], ms=8, mec="white", label="_opt")


def _sweep_legend(fig, axes, agg, levels, marks) -> None:
    handles, labels = axes[0].get_legend_handles_labels()
    n = agg["n_runs"]
    if agg["test_loss_lo"].notna().any():
        clipped = any(leaves_axis(ax, agg[f"{c}_hi"]) for ax, c in zip(axes, ("test_loss", "clean_train_loss")))
        handles.append(Patch(color="0.6", alpha=0.4))
        band = f"95% t interval over {seeds_text(n.min(), n.max())}"
        labels.append(band + (" (clipped at the top)" if clipped else ""))
    if (agg["n_diverged"] > 0).any():
        handles.append(Line2D([], [], ls="", marker="x", color="0.3", mew=2))
        labels.append("runs diverged (top)")
    if any(ln.get_label() == "_one_seed" and len(ln.get_xdata()) for ln in axes[0].get_lines()):
        handles.append(Line2D([], [], ls="", marker="D", ms=7, mfc="white", mew=1.6, color="0.3"))
        labels.append("one seed survived (hollow diamond): its loss, not a mean")
    if len(levels):
        handles.append(Line2D([], [], ls="--", marker="o", mfc="none", color="0.3", ms=9))
        past = "; '>' past the grid" if levels["past_grid"].any() else ""
        rise = f"{verdicts.TURN_UP_RISE:.0%}"
        labels.append(f"+{rise} above the minimum (dashed) and the turn-up it gives (ring{past})")
    if marks:
        handles.append(Line2D([], [], ls="-", lw=3, alpha=0.7, marker="v", color="0.3", mec="white", ms=8))
        labels.append("fitted optimum, 95% seed-bootstrap interval (at the curve's minimum)")
    fig.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, 0.0), ncol=2, frameon=False)


def plot_lr_sweep(
    results: pd.DataFrame, path_stem, scale: str, optimum: pd.DataFrame | None = None, tail_epochs: int = 0
) -> SavedFigure:
    """Figure 1: the final epoch's test loss (left) and clean train loss (right) against LR multiplier
    (log2 axis), a line per subset. With ``tail_epochs``, the left panel is instead the mean test loss
    of the last that many epochs (``test_loss_tail``, a study's primary reading where it has one), its
    turn-up drawn by the same rule; the fitted optimum (of the final epoch's) is then left out.

    Lines are means over seeds of the runs that did not blow up, shaded with a 95% t interval when
    there are several seeds; a hollow diamond where one seed alone survived. An 'x' along the top marks
    multipliers where runs blew up. The test-loss
    panel draws the pre-registered turn-up rule (verdicts.turn_up_levels) and, with ``optimum``
    (sweep_fits.optimum_by_subset), each fitted optimum and its interval on its own curve.
    """
    if tail_epochs:
        results, optimum = results.assign(test_loss=results["test_loss_tail"]), None
    agg = sweep_fits.sweep_aggregates(results)
    if agg.empty:
        raise UserError("no finished runs to plot")
    levels = verdicts.turn_up_levels(results)
    colours = subset_colours(agg["subset"])
    base = agg["base_lr"].dropna().unique()
    times = f"× base LR {base[0]:.4g}" if len(base) == 1 else "× base LR"
    xlabel = f"LR multiplier ({times}), log2 scale"
    marks = optimum is not None and len(optimum)
    with style():
        # Fixed margins: constrained layout collapsed these axes when a panel had marks outside it.
        fig = Figure(figsize=(11, 5.8))
        top = 0.93 - 0.04 * (scale.count("\n") + 2)  # below the title's lines: two, three with the machine
        fig.subplots_adjust(left=0.07, right=0.98, top=top, bottom=0.3, wspace=0.2)
        axes = fig.subplots(1, 2)
        tail = f"mean test loss of the last {tail_epochs} epochs (test set)"
        panels = (
            ("test_loss", "test loss", tail if tail_epochs else "test loss at the final epoch (test set)"),
            ("clean_train_loss", "clean train loss", "clean train loss at the final epoch (training subset, no aug.)"),
        )
        for ax, (col, name, title) in zip(axes, panels):
            _sweep_lines(ax, agg, col, colours)
            minima = agg.groupby("subset")[col].min()
            lows, highs = agg[f"{col}_lo"].fillna(agg[col]), agg[f"{col}_hi"].fillna(agg[col])
            capped_ylim(ax, lows, highs, minima, headroom=0.04 * len(colours) + 0.04)
            log2_axis(ax, agg["multiplier"])
            ax.set_xlabel(xlabel)
            ax.set_ylabel(f"{name} ({LOSS_UNIT})")
            ax.set_title(title)
        _turn_up_marks(axes[0], agg, levels, colours)
        if marks:
            _optimum_marks(axes[0], optimum, levels, colours)
        _sweep_legend(fig, axes, agg, levels, marks)
        what = f"Test loss of the last {tail_epochs} epochs (mean)" if tail_epochs else "Final-epoch loss"
        fig.suptitle(f"{what} against LR multiplier (log2 axis), one line per training-set size\n{scale}")
    return save(fig, path_stem)


# ---------------------------------------------------------------- Figure 2: forgetting probe


def _reference_lines(ax, probe_runs, mult, colours) -> list[float]:
    """Dashed test-loss line per condition (the "never seen" reference); returns their values."""
    if probe_runs is None or not len(probe_runs):
        return []
    ref = probe_fits.probe_reference(probe_runs)
    ref = ref[np.isclose(ref["multiplier"], mult)]
    for r in ref.itertuples():
        ax.axhline(r.test_loss, ls="--", lw=1.2, color=colours.get(r.condition, "0.4"), label=f"_test {r.condition}")
    return list(ref["test_loss"])


def _condition_lines(ax, panel, x: str, conditions, colours, with_seen=False) -> None:
    """One line per condition (mean loss_now, 95% band) against ``x``."""
    for cond in conditions:
        d = panel[panel["condition"] == cond].sort_values(x)
        if d.empty:
            continue
        c = colours[cond]
        ax.plot(d[x], d["loss_now"], "o-", color=c, ms=3.5, label=cond)
        ax.fill_between(d[x], d["loss_now_lo"], d["loss_now_hi"], color=c, alpha=0.2, lw=0)
        if with_seen:
            ax.plot(d[x], d["loss_when_seen"], ":", color=c, alpha=0.55, lw=1.2, label=f"_seen {cond}")


def _probe_figure(agg, x: str, probe_runs, title: str, band: str, xlabel: str, set_x, with_seen=False) -> Figure:
    """The forgetting and recency figures: a panel per LR multiplier, a line per condition against ``x``
    with its band (``band`` says over what), each condition's test loss dashed; ``set_x(ax, panel)``
    sets the x axis. The y range follows the frozen-model losses (capped near chance) and the test
    losses near them, so that an effect of a tenth of a nat is not flattened by a test loss far off: that
    one is written as a number above or below the data instead (plotkit.NEAR_SHARE), and the legend
    says what left the axis."""
    mults = sorted(agg["multiplier"].unique())
    conditions = ordered_conditions(agg["condition"])
    colours = condition_colours(conditions)
    fig, axes = panel_grid(len(mults))
    values = list(agg["loss_now_lo"].fillna(agg["loss_now"])) + list(agg["loss_now_hi"].fillna(agg["loss_now"]))
    refs = []
    for ax, mult in zip(axes, mults):
        panel = agg[agg["multiplier"] == mult]
        _condition_lines(ax, panel, x, conditions, colours, with_seen=with_seen)
        refs += _reference_lines(ax, probe_runs, mult, colours)
        set_x(ax, panel)
        ax.set_title(panel_title(mult, float(panel["lr"].mean())))
        ax.set_xlabel(xlabel)
    for ax in axes[::MAX_PANELS_PER_ROW]:
        ax.set_ylabel(f"loss of the final weights ({LOSS_UNIT})")
    values += near_references(values, refs)
    capped_ylim(axes[0], values, values, [min(values)])
    extra = [(band, dict(marker="o", ms=4))]
    if probe_runs is not None and len(probe_runs):
        note = " (far above ↑ or below ↓ the data: its value)" if write_clipped_references(axes) else ""
        extra.append(("test loss, same weights" + note, dict(ls="--")))
    if with_seen:
        off = leaves_axis(axes[0], agg["loss_when_seen"])
        extra.append(("loss when trained on" + (" (leaves the axis)" if off else ""), dict(ls=":")))
    handles = [Line2D([], [], color=colours[c], marker="o", ms=4) for c in conditions]
    handles += [Line2D([], [], color="0.35", **style) for _, style in extra]
    labels = [CONDITION_LABELS.get(c, c) for c in conditions] + [label for label, _ in extra]
    fig.legend(handles, labels, loc="outside lower center", ncol=2, frameon=False)  # wider legends widen the figure
    fig.suptitle(title)
    return fig


def plot_forgetting(probe: pd.DataFrame, probe_runs: pd.DataFrame | None, path_stem, scale: str) -> SavedFigure:
    """Figure 2: the final weights' loss on each earlier epoch's exact batches, against epoch age.

    A panel per LR multiplier, a line per condition, the same weights' test loss dashed, and the
    batches' loss at the time they were trained on dotted (when present). With several seeds the line
    is the mean of the seeds' means and the band a within-seed interval over seeds, the unit of the
    pre-registered verdicts (probe_fits.epoch_seed_aggregates); with one seed the band is over the
    epoch's batches. Time reads left to right: the final epoch (age 0) is at the right.
    """
    agg = probe_fits.epoch_seed_aggregates(probe)
    if agg.empty:
        raise UserError("the probe table has no rows to plot")
    if agg["n_seeds"].max() >= 2:
        seeds = seeds_text(agg["n_seeds"].min(), agg["n_seeds"].max())
        band = f"frozen final weights: mean of {seeds}, 95% within-seed interval (each seed's level removed)"
    else:
        agg = probe_fits.epoch_aggregates(probe)
        band = "frozen final weights, one seed: mean, 95% t interval over the epoch's batches"

    def set_x(ax, panel):
        ax.set_xlim(panel["epoch_age"].max() + 0.5, -0.5)  # inverted: final epoch at the right

    with style():
        fig = _probe_figure(
            agg,
            "epoch_age",
            probe_runs,
            f"Forgetting: the final model's loss on the batches of earlier epochs\n{scale}",
            band,
            "epochs before the end (0 = final epoch, right)",
            set_x,
            with_seen=agg["loss_when_seen"].notna().any(),
        )
    return save(fig, path_stem)


def plot_recency(
    recency: pd.DataFrame, path_stem, scale: str, probe_runs: pd.DataFrame | None = None, bins=12
) -> SavedFigure:
    """Loss of each training example under the final weights against training steps since its most
    recent presentation (binned, probe_fits.recency_aggregates), a panel per LR, a line per condition.
    The unit is the example, pooled over seeds. The x axis is symlog so that 0 (seen in the final
    step) has a place."""
    agg = probe_fits.recency_aggregates(recency, bins=bins)
    if agg.empty:
        raise UserError("the recency table has no rows to plot")
    n_seeds = int(recency["seed"].nunique()) if "seed" in recency else 1
    pooled = f" ({n_seeds} seeds pooled)" if n_seeds > 1 else ""
    band = f"mean over the examples in each bin{pooled}, 95% t interval over examples"

    def set_x(ax, panel):
        ax.set_xscale("symlog", linthresh=1, linscale=0.4)
        ax.set_xlim(0, float(panel["bin_hi"].max()))  # autoscaling would reach into negative steps

    with style():
        fig = _probe_figure(
            agg,
            "steps",
            probe_runs,
            f"Forgetting by example: loss against time since the example was last trained on\n{scale}",
            band,
            "training steps since last presented (symlog)",
            set_x,
        )
    return save(fig, path_stem)


# ---------------------------------------------------------------- forgetting timescale against LR


TURN_UP_MARKERS = ("v", "^", "D", "s", "o")  # one per (sweep, reading): two sweeps' turn-ups can coincide


def _revisit_marks(ax, rows: list[dict]) -> list[tuple[str, str]]:
    """Per LR-sweep subset size: its revisit interval N/B dotted, labelled right of the axes (a legend
    inside hid the low lines); on it, each sweep's turn-up LR as an open marker, one shape per sweep and
    reading, so that a fitted tau at the same LR shows through. Returns the (marker, label) of each shape."""
    palette = sns.color_palette("colorblind")
    sizes = sorted({r["subset"] for r in rows})
    colours = {n: palette[(i + 2) % len(palette)] for i, n in enumerate(sizes)}
    kinds = list(dict.fromkeys((r["sweep"], r["reading"]) for r in rows))
    markers = {k: TURN_UP_MARKERS[i % len(TURN_UP_MARKERS)] for i, k in enumerate(kinds)}
    for n in sizes:
        on_it = [r for r in rows if r["subset"] == n]
        steps = on_it[0]["revisit_steps"]
        ax.axhline(steps, ls=":", color=colours[n], lw=1.2, label="_revisit")
        past = ", turn-up past the grid" if any(r.get("turn_up_past_grid") for r in on_it) else ""
        ax.annotate(f"N = {n:,}: N/B = {steps:g}{past}", xy=(1.01, steps), xycoords=ax.get_yaxis_transform(),
                    va="center", color=colours[n], fontsize="small", annotation_clip=False)
    for r in rows:
        marker = markers[(r["sweep"], r["reading"])]
        ax.plot([r["turn_up"] * r["base_lr"]], [r["revisit_steps"]], marker, ms=10, mfc="none", mew=1.8,
                color=colours[r["subset"]])
    return [(markers[k], f"turn-up LR of {k[0]} ({k[1]})") for k in kinds]


def plot_tau_lr(law: dict, path_stem, scale: str) -> SavedFigure:
    """tau (SGD steps, log) against LR (log): per-LR fits with their seed-bootstrap intervals, the
    fitted line log tau = c - alpha log LR over the LRs it was fitted to, and for each LR-sweep subset
    the revisit interval N/B (dotted) with that subset's turn-up LR marked on it, where a matching sweep
    was found. The x ticks are the probed LRs, with their multipliers."""
    taus = pd.DataFrame(law.get("taus") or [])
    if taus.empty:
        raise UserError("the tau-LR law has no fitted timescales to plot")
    taus = taus.apply(pd.to_numeric, errors="coerce")
    ok = taus[taus["tau"].notna()]
    seeds = seeds_text(int(ok["n_seeds"].min()), int(ok["n_seeds"].max())) if "n_seeds" in ok else "seeds"
    with style():
        fig = Figure(figsize=(8, 6), layout="constrained")
        ax = fig.subplots()
        err = np.vstack([ok["tau"] - ok["tau_lo"].fillna(ok["tau"]), ok["tau_hi"].fillna(ok["tau"]) - ok["tau"]])
        label = f"fitted tau, 95% bootstrap interval over {seeds}"
        ax.errorbar(ok["lr"], ok["tau"], yerr=np.clip(err, 0, None), fmt="o", color="C0", capsize=3, label=label)
        if law.get("alpha") is not None:
            fitted = law.get("lrs") or list(ok["lr"])
            lrs = np.geomspace(min(fitted), max(fitted), 50)  # only where it was fitted
            ax.plot(
                lrs,
                np.exp(law["c"]) * lrs ** -law["alpha"],
                "-",
                color="C0",
                alpha=0.6,
                label=f"tau ∝ LR^-α fitted over {len(fitted)} LRs: α = {law['alpha']:.2f} "
                f"[{law['alpha_lo']:.2f}, {law['alpha_hi']:.2f}]",
            )
        rows = law.get("versus_sweep") or []
        shapes = _revisit_marks(ax, rows)
        xs = list(ok["lr"]) + [r["turn_up"] * r["base_lr"] for r in rows]
        ys = list(ok["tau_lo"].fillna(ok["tau"])) + list(ok["tau_hi"].fillna(ok["tau"]))
        ys += [r["revisit_steps"] for r in rows]
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(min(xs) / 1.4, max(xs) * 1.4)
        ax.set_ylim(min(ys) / 1.4, max(ys) * 1.4)
        ax.xaxis.set_major_locator(FixedLocator(list(ok["lr"])))
        ax.xaxis.set_minor_locator(NullLocator())
        names = {float(r.lr): f"{r.lr:.3g}\n×{multiplier_label(r.multiplier)}" for r in ok.itertuples()}
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: names.get(float(v), f"{v:.3g}")))
        ax.set_xlabel("learning rate (mean-loss convention, log scale) and its multiplier")
        ax.set_ylabel("forgetting timescale tau (SGD steps, log scale)")
        handles, labels = ax.get_legend_handles_labels()
        if rows:
            handles.append(Line2D([], [], ls=":", color="0.35"))
            labels.append("revisit interval N/B of each LR-sweep subset size (dotted)")
            for marker, label in shapes:
                handles.append(Line2D([], [], ls="", marker=marker, mfc="none", mew=1.8, ms=9, color="0.35"))
                labels.append(label)
        fig.legend(handles, labels, loc="outside lower center", ncol=1, fontsize="small", frameon=False)
        fig.suptitle(f"Forgetting timescale against LR (full-aug; fit of a - b exp(-steps ago / tau))\n{scale}")
    return save(fig, path_stem)
