"""One study's tables -> summary.json's dict: each fit's table as records, and the pre-registered
verdicts under ``verdicts``. The top of forgetting/analysis/: report.py writes it, report_text words it.
"""

from __future__ import annotations

import pandas as pd

from forgetting.analysis import probe_fits, sweep_fits, tables, verdicts


def curvature_table(results: pd.DataFrame) -> pd.DataFrame:
    """Per subset: the curvature limit and first blow-up (sweep_fits.curvature_limit) beside where test
    loss turns up, by the one turn-up rule there is (verdicts.turn_ups: the pre-registered one)."""
    turn = verdicts.turn_ups(results)[["subset", "turn_up"]]
    table = sweep_fits.curvature_limit(results).merge(turn, on="subset", how="left")
    return table[["subset", "curvature_limit", "turn_up", "first_diverged"]]


def summarise(results=None, probe=None, probe_runs=None, recency=None, n_boot: int = verdicts.N_BOOT) -> dict:
    """Every fit of a study as one JSON-ready dict (tables as lists of records, NaN as None), with the
    pre-registered verdicts under ``verdicts``: (a) on the final and on the last-5-epoch test loss,
    (b) in full-aug, and the tau-LR law (``holds`` / ``alpha`` None where not computable)."""
    out: dict = {"verdicts": {}}
    if results is not None and len(results):
        optimum = sweep_fits.optimum_by_subset(results, n_boot=n_boot)
        out["optimum"] = tables.records(optimum)
        out["curvature"] = tables.records(curvature_table(results))
        for name, col in verdicts.LOSS_READINGS.items():
            out["verdicts"][f"a_{name}"] = verdicts.sweep_verdict(results, col, n_boot=n_boot)
    if probe is not None and len(probe):
        timescale = probe_fits.forgetting_timescale(probe, n_boot=max(n_boot // 2, 0))
        out["forgetting"] = tables.records(timescale)
        out["epochs"] = tables.records(probe_fits.epoch_aggregates(probe))
        if (probe["condition"] == verdicts.FULL_AUG).any():
            out["verdicts"]["b"] = verdicts.probe_verdict(probe, n_boot=n_boot)
            # The age unit can decide (b) (cpu-probe-5seeds): the same rule on step ages, beside it.
            out["verdicts"]["b_steps"] = verdicts.probe_verdict(probe, n_boot=n_boot, age="step")
            out["verdicts"]["tau_law"] = verdicts.tau_lr_law(probe, n_boot=n_boot)
    if probe_runs is not None and len(probe_runs):
        out["reference"] = tables.records(probe_fits.probe_reference(probe_runs))
    if recency is not None and len(recency):
        out["recency"] = tables.records(probe_fits.recency_aggregates(recency))
    return tables.clean(out)
