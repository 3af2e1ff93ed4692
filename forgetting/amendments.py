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
_OUTCOMES = {"b": ("holds",), "b_steps": ("holds",), "tau_law": ("multipliers", "alpha"), "clock": ("reading",), "noise": ("reading",)}


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


def age_unit_word(v: dict) -> str:
    """One (b) reading in words: holds, undecided (a fit failed its check), not resolved (the ratio's
    interval holds 1), reversed (it lies above 1), or does not hold (a gap interval reaches 0)."""
    if v.get("holds") is None:
        return "undecided"
    if v["holds"]:
        return "holds"
    if v["tau_ratio_lo"] > 1:
        return "reversed"
    return "not resolved" if v["tau_ratio_hi"] >= 1 else "does not hold"


def both_age_units(b: dict, b_steps: dict) -> dict:
    """(b) read on epoch and on step ages together (the rule registered for cpu-probe-10seeds on
    2026-12-06): holds when both hold, undecided when either is (and not both hold), does not hold when
    neither holds, decided by the age unit (not a finding) when one holds and the other does not."""
    words = dict(epoch=age_unit_word(b), step=age_unit_word(b_steps))
    holds = [w == "holds" for w in words.values()]
    if all(holds):
        reading = "holds"
    elif "undecided" in words.values():
        reading = "undecided"
    else:
        reading = "decided by the age unit" if any(holds) else "does not hold"
    return dict(reading=reading, **words)


def amended_verdicts(
    registered: dict, study: dict, probe: pd.DataFrame | None, partners: list, sweeps: list[dict]
) -> dict | None:
    """The probe study's readings under the amended rules, with ``changed`` against ``registered``
    (the summary's verdicts); None for a study the amendments do not touch (no full-aug probe)."""
    if probe is None or not len(probe) or not (probe["condition"] == verdicts.FULL_AUG).any():
        return None
    law = verdicts.tau_lr_law(probe, rules=AMENDED)
    b, b_steps = (verdicts.probe_verdict(probe, rules=AMENDED, age=age) for age in ("epoch", "step"))
    amended = dict(b=b, b_steps=b_steps, b_both=both_age_units(b, b_steps), tau_law=law)
    amended.update(clock.readings(study, probe, law, partners, sweeps, rules=AMENDED))
    amended = tables.clean(amended)
    return dict(date=AMENDED, changed=changed(registered, amended), **amended)
