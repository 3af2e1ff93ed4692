"""The amendments of 2026-12-05 to the pre-registered readings, reported beside them. No plotting.

Three rules were found too weak after the runs they read (results/README.md, "Amendments
of 2026-12-05"): a forgetting timescale below one SGD step passed the fit check; a power law at the
bound of its exponent counted as a rival in the form comparison; the two predictions of claim (a) had
no "neither". The registered readings stay in summary.json as they were; the amended ones go under
``verdicts.amended`` with the list of readings whose outcome the amendments change.
"""

from __future__ import annotations

import pandas as pd

from forgetting import clock
from forgetting.analysis import tables, verdicts
from forgetting.analysis.probe_fits import AMENDED

# The outcome fields of each reading that the amendments can change: what "changed" compares.
_OUTCOMES = {"b": ("holds",), "tau_law": ("multipliers", "alpha"), "clock": ("reading",), "noise": ("reading",)}


def _word(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _rows_changed(name: str, key: str, registered: list, amended: list) -> list[str]:
    """Row by row (same order: the same LRs, subsets and readings), where ``key`` differs."""
    out = []
    for r, a in zip(registered, amended):
        if r.get(key) != a.get(key):
            where = ", ".join(f"{k} {r[k]:.6g}" if isinstance(r[k], float) else f"{k} {r[k]}"
                              for k in ("sweep", "reading", "subset", "batch", "lr") if k in r)
            out.append(f"{name} ({where}): {_word(r.get(key))} -> {_word(a.get(key))}")
    return out


def changed(registered: dict, amended: dict) -> list[str]:
    """One line per reading whose outcome differs between the registered and the amended rules."""
    out = []
    for name, keys in _OUTCOMES.items():
        if name in amended and name in registered:
            for key in keys:
                if registered[name].get(key) != amended[name].get(key):
                    out.append(f"{name} {key}: {_word(registered[name].get(key))} -> {_word(amended[name].get(key))}")
    if "form" in amended and "form" in registered:
        out += _rows_changed("form", "better", registered["form"]["readings"], amended["form"]["readings"])
    if "a_predictions" in amended and "a_predictions" in registered:
        reg, am = registered["a_predictions"]["rows"], amended["a_predictions"]["rows"]
        out += _rows_changed("a_predictions", "nearer", reg, am)
    return out


def amended_verdicts(
    registered: dict, study: dict, probe: pd.DataFrame | None, partners: list, sweeps: list[dict]
) -> dict | None:
    """The probe study's readings under the amended rules, with ``changed`` against ``registered``
    (the summary's verdicts); None for a study the amendments do not touch (no full-aug probe)."""
    if probe is None or not len(probe) or not (probe["condition"] == verdicts.FULL_AUG).any():
        return None
    law = verdicts.tau_lr_law(probe, rules=AMENDED)
    amended = dict(b=verdicts.probe_verdict(probe, rules=AMENDED), tau_law=law)
    amended.update(clock.readings(study, probe, law, partners, sweeps, rules=AMENDED))
    amended = tables.clean(amended)
    return dict(date=AMENDED, changed=changed(registered, amended), **amended)
