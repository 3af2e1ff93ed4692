"""What the figures of plots.py share: style, saving (PNG + SVG), axes, colours, panel grids and the
marks that say when a line leaves the y range. No figure is drawn here."""

from __future__ import annotations

import io
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never open a window, also on machines without a display

import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator  # noqa: E402

from forgetting.store import atomic_write_bytes  # noqa: E402

DPI = 150
CONDITION_ORDER = ("half-noaug", "full-aug")
CONDITION_LABELS = {"half-noaug": "50% of data, no augmentation", "full-aug": "100% of data, crop + flip"}
LOSS_UNIT = "cross-entropy, nats"
# Above this a loss is worse than guessing among 10 classes (ln 10 = 2.30); the y range stops a
# little past it so that one broken run does not flatten every other curve.
CHANCE_LOSS = math.log(10)
MAX_PANELS_PER_ROW = 3  # five panels in a row (3,400 px) are unreadable at page width
STYLE = {"svg.hashsalt": "forgetting", "svg.fonttype": "none", "axes.titlesize": "medium"}


class SavedFigure(list):
    """The written paths (PNG, SVG), with the Figure kept as ``.figure`` for tests and notebooks."""

    def __init__(self, paths: list[Path], figure: Figure):
        super().__init__(paths)
        self.figure = figure


def style():
    return sns.axes_style("whitegrid", rc=STYLE)


def save(fig: Figure, path_stem) -> SavedFigure:
    stem = Path(path_stem)
    paths = []
    for ext, kwargs in ((".png", dict(dpi=DPI)), (".svg", dict(metadata={"Date": None}))):
        buf = io.BytesIO()
        # The salt is read when saving, after the style's context has closed: without it here every
        # SVG id is random and no SVG regenerates byte for byte.
        with matplotlib.rc_context({"svg.hashsalt": STYLE["svg.hashsalt"]}):
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


def log2_axis(ax, multipliers) -> None:
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


def ordered_conditions(conditions) -> list[str]:
    present = set(conditions)
    return [c for c in CONDITION_ORDER if c in present] + sorted(present - set(CONDITION_ORDER))


def capped_ylim(ax, lows, highs, minima, headroom=0.0) -> None:
    """y range over the data, its top capped near chance level (or 1.5x the worst curve's minimum)."""
    lows, highs = np.asarray(lows, float), np.asarray(highs, float)
    lows, highs = lows[np.isfinite(lows)], highs[np.isfinite(highs)]
    if not len(lows):
        return
    cap = max(CHANCE_LOSS * 1.15, 1.5 * np.nanmax(minima))
    lo, hi = float(lows.min()), float(min(highs.max(), cap))
    pad = 0.05 * (hi - lo or abs(hi) or 1.0)
    ax.set_ylim(lo - pad, hi + pad + headroom * (hi - lo + 2 * pad))


def leaves_axis(ax, values) -> bool:
    """Whether any finite value lies outside the panel's y range (the legend then says so)."""
    values = np.asarray(values, float)
    values = values[np.isfinite(values)]
    lo, hi = ax.get_ylim()
    return bool(((values > hi) | (values < lo)).any())


# A reference line this close to the data (a share of the data's span) is drawn within the y range;
# one farther off would squeeze the data (a test loss of 2.4 above losses of 0.3-1.2 flattened a
# 0.1-nat rise), so it is written as a number instead.
NEAR_SHARE = 0.25
NOTE_BAND = 0.09  # the band each written value adds above or below the data, as a share of the y range


def near_references(values, references) -> list[float]:
    """The ``references`` within NEAR_SHARE of the span of ``values`` from them: those the y range takes in."""
    values = np.asarray(values, float)
    values = values[np.isfinite(values)]
    if not len(values):
        return []
    lo, hi = float(values.min()), float(values.max())
    reach = NEAR_SHARE * (hi - lo or abs(hi) or 1.0)
    return [float(r) for r in references if lo - reach <= r <= hi + reach]


def write_clipped_references(axes) -> bool:
    """Each dashed test-loss line outside the panels' shared y range is not drawn but written as its
    value, in a band added above ("↑") or below ("↓") the data so that no line runs under the text.
    True when there was one (the legend then says so)."""
    lo, hi = axes[0].get_ylim()
    marks = []
    for ax in axes:
        refs = [ln for ln in ax.get_lines() if ln.get_label().startswith("_test")]
        marks.append(([ln for ln in refs if ln.get_ydata()[0] > hi], [ln for ln in refs if ln.get_ydata()[0] < lo]))
    n_up, n_down = max(len(a) for a, _ in marks), max(len(b) for _, b in marks)
    step = NOTE_BAND * (hi - lo)
    axes[0].set_ylim(lo - n_down * step, hi + n_up * step)
    for ax, (above, below) in zip(axes, marks):
        for lines, arrow, edge, sign in ((above, "↑", hi, 1), (below, "↓", lo, -1)):
            for k, ln in enumerate(lines):
                ln.set_visible(False)
                ax.annotate(
                    f"test loss {ln.get_ydata()[0]:.2f} {arrow}",
                    xy=(0.98, edge + sign * (k + 0.5) * step),
                    xycoords=ax.get_yaxis_transform(),
                    ha="right",
                    va="center",
                    color=ln.get_color(),
                    fontsize="small",
                )
    return bool(n_up or n_down)


def panel_title(mult: float, lr: float) -> str:
    return f"LR ×{multiplier_label(mult)}" + (f" (lr {lr:.3g})" if np.isfinite(lr) else "")


def panel_grid(n: int) -> tuple[Figure, list]:
    """A figure of n panels sharing y, at most MAX_PANELS_PER_ROW to a row (wider is unreadable at page
    width); the unused slots of the last row are removed."""
    ncols = min(n, MAX_PANELS_PER_ROW)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(1.5 + 4.2 * ncols, 0.9 + 3.9 * nrows), layout="constrained")
    grid = fig.subplots(nrows, ncols, sharey=True, squeeze=False)
    for ax in grid.ravel()[n:]:
        fig.delaxes(ax)
    return fig, list(grid.ravel()[:n])


def seeds_text(n_min: int, n_max: int) -> str:
    return f"{n_min} seeds" if n_min == n_max else f"{n_min}-{n_max} seeds"
