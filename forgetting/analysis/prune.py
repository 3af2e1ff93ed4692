"""A prune study's reading: final test accuracy (and loss) against the fraction of the pool removed, one line
per selection, with 95% t intervals over seeds, and the rule, written before the runs, that reads it.

The input is one row per finished run: ``selection`` ("forgetting", "random"), ``fraction`` removed, ``seed``,
``test_acc`` and ``test_loss`` (a diverged run's are NaN: it is left out of the means and of every pair). The
runs of fraction 0 (the whole pool) belong to every selection's line. numpy, pandas and intervals only.

RULE reads each fraction at 95%, uncorrected: with k fractions a study with no effect reads "better" or
"worse" somewhere with a chance up to about k x 5% (less, as nested fractions' differences go together);
"mixed" and the per-fraction readings in the summary show where.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from forgetting.analysis import intervals, tables

# The pre-registered rule (primary reading), as results/README.md quotes it.
RULE = (
    "At each fraction f > 0 of the pool removed: the paired difference in final test accuracy, forgetting "
    "selection minus random selection, over the seeds that trained both (a seed trains both from the same "
    "initial weights), with its 95% t interval. Forgetting-based pruning is better at f when the interval "
    "lies above 0, worse when it lies below 0, not resolved otherwise. The study reads 'better' when it is "
    "better at one fraction or more and worse at none, 'worse' in the mirror case, 'mixed' when it is both, "
    "'not resolved' when neither; it is not read while runs are missing."
)
# Toneva's "little loss of test accuracy", read the same way against the whole pool (secondary reading).
MARGIN = 0.01
COST_RULE = (
    f"At each fraction f > 0 and selection: the paired difference in final test accuracy, whole pool minus "
    f"pruned (same seed), with its 95% t interval; removing f costs less than {MARGIN:g} (one point) when the "
    f"interval's upper end is below {MARGIN:g}. A selection's removable share is the largest f of the grid up "
    f"to which every fraction does (0 where the first does not)."
)
PRIMARY, OTHER = "forgetting", "random"
METRICS = ("test_acc", "test_loss")


def curves(runs: pd.DataFrame) -> pd.DataFrame:
    """Per selection and fraction: mean test accuracy and loss over the seeds with their 95% t intervals
    (``_lo``, ``_hi``) and n (the seeds)."""
    out = None
    for metric in METRICS:
        part = intervals.mean_ci(runs.dropna(subset=[metric]), ["selection", "fraction"], metric)
        out = part if out is None else out.drop(columns="n").merge(part, on=["selection", "fraction"], how="outer")
    return out.sort_values(["selection", "fraction"]).reset_index(drop=True)


def paired(runs: pd.DataFrame, first: str, second: str, metric: str = "test_acc") -> pd.DataFrame:
    """Per fraction f > 0: ``first`` minus ``second`` paired by seed (a selection, or "pool": that seed's
    whole-pool run), mean ``diff`` with its 95% t interval and n (the pairs)."""
    wide = runs.pivot_table(index=["seed"], columns=["selection", "fraction"], values=metric, aggfunc="first")
    fractions = sorted(f for f in runs["fraction"].unique() if f > 0)
    rows = []
    for f in fractions:
        a, b = (_column(wide, who, f, runs) for who in (first, second))
        d = (a - b).dropna().to_numpy(dtype=float)
        h = float(intervals.t_halfwidth(d.std(ddof=1), len(d))) if len(d) >= 2 else np.nan
        mean = float(d.mean()) if len(d) else np.nan
        rows.append(dict(fraction=float(f), diff=mean, diff_lo=mean - h, diff_hi=mean + h, n=len(d)))
    return pd.DataFrame(rows, columns=["fraction", "diff", "diff_lo", "diff_hi", "n"])


def _column(wide: pd.DataFrame, who: str, fraction: float, runs: pd.DataFrame) -> pd.Series:
    """One seed-indexed column of ``wide``: a selection at ``fraction``, or "pool": the whole pool (fraction 0,
    any selection's: they are one run)."""
    if who == "pool":
        zero = [c for c in wide.columns if c[1] == 0]
        return wide[zero[0]] if zero else pd.Series(np.nan, index=wide.index)
    return wide[(who, fraction)] if (who, fraction) in wide.columns else pd.Series(np.nan, index=wide.index)


def reading(lo: float, hi: float) -> str:
    """'better' (interval above 0), 'worse' (below 0) or 'not resolved'."""
    if np.isfinite(lo) and lo > 0:
        return "better"
    if np.isfinite(hi) and hi < 0:
        return "worse"
    return "not resolved"


def overall(readings: list[str]) -> str:
    """The study's word from its fractions' readings (RULE)."""
    better, worse = "better" in readings, "worse" in readings
    return "mixed" if better and worse else "better" if better else "worse" if worse else "not resolved"


def removable(cost: pd.DataFrame) -> float:
    """The largest fraction up to which every fraction's removal costs less than MARGIN (COST_RULE)."""
    share = 0.0
    for _, r in cost.sort_values("fraction").iterrows():
        if not (np.isfinite(r["diff_hi"]) and r["diff_hi"] < MARGIN):
            break
        share = float(r["fraction"])
    return share


def prune_verdict(runs: pd.DataFrame, missing: int = 0) -> dict:
    """RULE on ``runs`` (one row per finished run), and COST_RULE per selection. With ``missing`` runs not
    yet in the table, the study is not read (``verdict`` None, ``reason`` says why)."""
    out = dict(rule=RULE, cost_rule=COST_RULE, margin=MARGIN)
    selections = set(runs["selection"])
    if {PRIMARY, OTHER} <= selections:
        diff = paired(runs, PRIMARY, OTHER)
        diff["reading"] = [reading(lo, hi) for lo, hi in zip(diff["diff_lo"], diff["diff_hi"])]
        out.update(fractions=tables.records(diff), verdict=overall(list(diff["reading"])))
    else:
        out.update(fractions=[], verdict=None, reason=f"needs both selections, {PRIMARY} and {OTHER}")
    cost = {}
    if (runs["fraction"] == 0).any():
        for selection in sorted(selections):
            table = paired(runs, "pool", selection)
            cost[selection] = dict(removable=removable(table), fractions=tables.records(table))
    out["cost"] = cost
    if missing:
        out.update(verdict=None, reason=f"study incomplete: {missing} runs missing; read when all are in")
    return tables.clean(out)
