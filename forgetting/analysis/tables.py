"""The tables in and out: finished sweep runs with a ``blew_up`` flag, probe rows with a normalised
multiplier, and tables back as JSON-ready records (NaN as None).

Imports nothing of this package. Multipliers are rounded to 6 significant digits on the way in, so that
lr / base_lr round-off groups with the multiplier it stands for.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd


def norm_multiplier(s: pd.Series) -> pd.Series:
    """6 significant digits, so that lr / base_lr round-off (0.12500000001) groups with 0.125."""
    return pd.to_numeric(s.astype(float).map(lambda m: f"{m:.6g}"))


def flag(s: pd.Series) -> pd.Series:
    """A bool column that may have come back from CSV as text."""
    if s.dtype == bool:
        return s
    return s.astype(str).str.strip().str.lower().isin(("true", "1", "yes"))


def sweep_runs(results: pd.DataFrame) -> pd.DataFrame:
    """Finished runs with a normalised multiplier and a ``blew_up`` flag.

    Failed runs (a crash, not a divergence) say nothing about the LR and are dropped. A run counts as
    blown up when it is flagged diverged or its test loss is not finite.
    """
    df = results.copy()
    if "status" in df:
        df = df[df["status"].astype(str) == "finished"]
    df["multiplier"] = norm_multiplier(df["multiplier"])
    test = pd.to_numeric(df["test_loss"], errors="coerce")
    diverged = flag(df["diverged"]) if "diverged" in df else pd.Series(False, index=df.index)
    df["blew_up"] = diverged | ~np.isfinite(test)
    return df


def probe_rows(probe: pd.DataFrame) -> pd.DataFrame:
    """A probe table (probe.csv, probe_runs.csv or probe_recency.csv) with a normalised multiplier."""
    df = probe.copy()
    df["multiplier"] = norm_multiplier(df["multiplier"])
    return df


def clean(obj):
    """JSON-ready: numpy scalars to Python, NaN and infinities to None."""
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def records(df: pd.DataFrame) -> list[dict]:
    """A table as summary.json holds it: a list of JSON-ready rows."""
    return clean(df.to_dict("records"))
