"""Summaries as terminal text: the tables and one line per pre-registered verdict, with its numbers.

What ``forgetting figures`` prints and report.StudyReport.text returns. It reads summary.json's dicts
only (never a table), so it can word a summary written earlier; the numbers themselves come from
forgetting/analysis/ and forgetting/clock.py.
"""

from __future__ import annotations

import pandas as pd

from forgetting import forms
from forgetting.analysis.probe_fits import TIMESCALE_COLUMNS
from forgetting.analysis.verdicts import FULL_AUG, LOSS_READINGS


def fmt(v) -> str:
    """A number as the tables print it: 4 significant digits, None as "-", booleans as yes/no."""
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def text_table(records: list[dict], columns: list[str]) -> str:
    cells = [columns] + [[fmt(r.get(c)) for c in columns] for r in records]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    return "\n".join("  ".join(s.rjust(w) for s, w in zip(row, widths)) for row in cells)


def format_table(summary: dict) -> str:
    """The summary as plain text: one table per section present, then the checks."""
    sections = [
        (
            "LR sweep: fitted optimum (multiplier of base LR)",
            "optimum",
            ["subset", "m_opt", "m_opt_lo", "m_opt_hi", "m_argmin", "test_loss_min", "n_seeds"],
        ),
        (
            "LR sweep: curvature limit and test-loss turn-up",
            "curvature",
            ["subset", "curvature_limit", "turn_up", "first_diverged"],
        ),
        (
            "Forgetting probe: loss_now(age) = a - b exp(-age/tau), age in epochs",
            "forgetting",
            TIMESCALE_COLUMNS,
        ),
        (
            "Forgetting probe: probed runs on the test set",
            "reference",
            ["condition", "multiplier", "lr", "test_loss", "test_loss_lo", "test_loss_hi", "train_loss", "n_runs"],
        ),
        (
            "Prune: final test accuracy and loss against the share of the pool removed",
            "prune",
            ["selection", "fraction", "test_acc", "test_acc_lo", "test_acc_hi", "test_loss", "test_loss_lo", "n"],
        ),
    ]
    parts = []
    for title, key, cols in sections:
        if summary.get(key):
            parts.append(f"{title}\n{text_table(summary[key], cols)}")
    lines = verdict_lines(summary.get("verdicts", {}))
    if lines:
        parts.append("Pre-registered verdicts (results/README.md)\n" + "\n".join(lines))
    return "\n\n".join(parts)


def holds_word(v) -> str:
    return "undecided" if v is None else ("HOLDS" if v else "does not hold")


def _ci(d: dict, key: str) -> str:
    """``key`` of ``d`` with its interval (``key``_lo, ``key``_hi): "0.81 [0.52, 1.06]"."""
    return f"{fmt(d.get(key))} [{fmt(d.get(key + '_lo'))}, {fmt(d.get(key + '_hi'))}]"


def verdict_lines(verdicts: dict) -> list[str]:
    """One line per verdict in ``verdicts`` (a summary's), with the numbers it was decided on."""
    lines = []
    for name in LOSS_READINGS:
        if verdicts.get(f"a_{name}") is not None:
            lines += _a_lines(verdicts[f"a_{name}"], name)
    if verdicts.get("b") is not None:
        lines.append(_b_line(verdicts["b"]))
    if verdicts.get("b_steps") is not None:
        lines.append(_b_line(verdicts["b_steps"]).replace("(b) ", "(b) on step ages, ", 1))
    if verdicts.get("tau_law") is not None:
        lines += _law_lines(verdicts["tau_law"])
    lines += _regime_lines(verdicts)
    lines += prune_lines(verdicts.get("prune"))
    return lines + clock_lines(verdicts) + prediction_lines(verdicts.get("a_predictions") or {}) + _amended_lines(verdicts)


def _regime_lines(verdicts: dict) -> list[str]:
    """The fit check and the turn-up ratio against the two accounts (analysis/regime.py), if read."""
    lines = []
    fit = verdicts.get("fit_check")
    if fit:
        lines.append(f"fit check: {'the study decides (a)' if fit['decides'] else fit['reason'] or 'undecided'}")
        for r in fit["readings"]:
            if r.get("multiplier") is None:
                continue
            lines.append(
                f"    {r['subset']:,} images at x{fmt(r['multiplier'])} (its last-5 minimum): clean training loss "
                f"{fmt(r['clean_train_loss_final'])} vs test {fmt(r['test_loss_last5'])} (last 5), "
                f"{fmt(r['test_loss_final'])} (final): {'fits' if r['fits'] else 'does not fit'}, "
                f"{'settled' if r['settled'] else 'not settled'}"
            )
    accounts = verdicts.get("a_accounts") or {}
    if accounts.get("law_from"):
        lines.append(f"forgetting's prediction from {accounts['law_from']}'s tau law")
    if accounts.get("law_missing"):
        lines.append(f"no forgetting prediction: {accounts['law_missing']} (its tau law) is not in this store")
    for reading in LOSS_READINGS:
        r = accounts.get(reading) or {}
        if r.get("reading"):
            lines.append(
                f"(a) turn-up ratio ({reading}) {_ci(r, 'turn_up_ratio')} against noise x{fmt(r['noise'])} and "
                f"forgetting x{fmt(r['forgetting'])} (alpha {fmt(r['alpha'])}): its interval holds {r['reading']}"
            )
    return lines + prediction_lines(dict(rows=accounts.get("rows") or []))


def _amended_lines(verdicts: dict) -> list[str]:
    """The readings the amendments of 2026-12-05 change (forgetting/amendments.py), or that none do."""
    amended = verdicts.get("amended")
    if not amended:
        return []
    head = f"amended readings ({amended['date']}: tau >= 1 step, degenerate power law, 'neither'): "
    both = amended.get("b_both")
    tail = [f"(b) on epoch and step ages, amended: {both['reading']} (epoch ages {both['epoch']}, step ages {both['step']})"] if both else []
    if not amended["changed"]:
        return [head + "no reading changes", *tail]
    return [head + f"{len(amended['changed'])} change"] + [f"    {c}" for c in amended["changed"]] + tail


def _a_lines(v: dict, name: str) -> list[str]:
    reading = "final snapshot" if name == "final" else "mean of the last 5 epochs"
    if v.get("holds") is None:
        seen = ""
        if "turn_up_smallest" in v:  # read, but not decidable (one seed): what the curves show, no verdict
            seen = (f"; turn-up x{fmt(v['turn_up_smallest'])} at {v['subset_smallest']:,} images vs "
                    f"x{fmt(v['turn_up_largest'])} at {v['subset_largest']:,}")
        return [f"(a) on the {reading}: undecided ({v.get('reason', '')}{seen})"]
    lines = [
        f"(a) on the {reading}: {holds_word(v['holds'])}  (turn-up x{fmt(v['turn_up_smallest'])} at "
        f"{v['subset_smallest']:,} images vs x{fmt(v['turn_up_largest'])} at {v['subset_largest']:,}: ratio "
        f"{fmt(v['turn_up_ratio'])}, >= 2 in {v['boot_share_ratio_ge_2']:.0%} of resamples; divergence "
        f"{_divergence(v, 'smallest')} vs {_divergence(v, 'largest')})"
    ]
    if v.get("truncated_subsets"):
        edge = ", ".join(f"{n:,}" for n in v["truncated_subsets"])
        lines.append(f"    truncated: the curve of {edge} images is lowest at the grid's smallest multiplier")
    return lines


def _divergence(v: dict, which: str) -> str:
    """The divergence multiplier, or "none up to xM" for a curve that never diverged on its grid (the
    rule counts it one step past the grid's last multiplier M, which no run tried)."""
    r = next((r for r in v.get("readings", []) if r["subset"] == v[f"subset_{which}"]), {})
    if r.get("divergence_past_grid") and "grid_max" in r:
        return f"none up to x{fmt(r['grid_max'])}"
    return f"x{fmt(v[f'divergence_{which}'])}"


def _b_line(b: dict) -> str:
    gaps = ", ".join(
        f"x{fmt(m)}: {fmt(g)} [{fmt(lo)}, {fmt(hi)}]"
        for m, g, lo, hi in zip(b.get("multipliers", []), b.get("gaps", []), b.get("gap_lo", []), b.get("gap_hi", []))
    )
    why = f"; {b['reason']}" if b.get("holds") is None and b.get("reason") else ""
    return (
        f"(b) {b.get('condition', FULL_AUG)}: {holds_word(b.get('holds'))}  (gap oldest - final: {gaps}; "
        f"tau(high)/tau(low) {_ci(b, 'tau_ratio')}{why})"
    )


def _law_lines(law: dict) -> list[str]:
    if law.get("alpha") is None:
        lines = [f"tau law: not fitted ({law.get('reason', '')})"]
    else:
        lines = [
            f"tau law (tau in SGD steps, natural logs): log tau = {fmt(law['c'])} - alpha log LR, "
            f"alpha {_ci(law, 'alpha')} over {len(law['lrs'])} LRs"
        ]
    for r in law.get("versus_sweep", []):
        lines.append(
            f"  vs {r['sweep']} ({r['reading']}) N={r['subset']:,}: tau = N/B = {fmt(r['revisit_steps'])} steps at "
            f"x{fmt(r['m_star'])}; turn-up x{fmt(r['turn_up'])}: "
            + ("consistent (within 2x)" if r["consistent"] else "not consistent (more than 2x apart)")
        )
    return lines


def _pair_lines(v: dict, clock: bool) -> list[str]:
    lines = []
    for p in v["pairs"]:
        half = f"half-rise {_ci(p, 'half_ratio')}" + (f" (images {_ci(p, 'half_images_ratio')})" if clock else "")
        lines.append(
            f"    LR {fmt(p['lr_ref'])} -> {fmt(p['lr'])}: tau {fmt(p['tau_ref'])} -> {fmt(p['tau'])} {v['unit']}, "
            f"ratio {_ci(p, 'ratio')} {p['reading']}; {half} {p['half_reading']}"
        )
    return lines


def clock_lines(verdicts: dict) -> list[str]:
    """One line per reading of forgetting/clock.py (results/README.md, 2026-12-01), with its numbers."""
    lines = []
    c, n = verdicts.get("clock"), verdicts.get("noise")
    if c:
        lines.append(
            f"clock ({c['reference']} at batch {c['reference_batch']} vs batch {c['batch']}, equal LR): "
            f"{c['reading'].upper()}  tau_steps ratio {_ci(c, 'ratio')} over {c['n_pairs']} LRs (1 if it counts "
            f"updates, {fmt(c['images_ratio'])} if images); half-rise: {c['half_reading'].upper()}  ratio in steps "
            f"over {c['half_window']:,} steps {_ci(c, 'half_ratio')}, in images over {c['half_images_window']:,} "
            f"images {_ci(c, 'half_images_ratio')} (1 in the unit the clock counts)"
        )
        lines += _pair_lines(c, clock=True)
    if n:
        lines.append(
            f"noise (equal LR x N / B: {fmt(n['batch'] / n['reference_batch'])}x the LR at batch {n['batch']}): "
            f"{n['reading'].upper()}  tau_images ratio {_ci(n, 'ratio')} over {n['n_pairs']} pairs (equal: holds 1, "
            f"within {fmt(n['margin'])}x); half-rise over {n['half_window']:,} images: {n['half_reading'].upper()}  "
            f"{_ci(n, 'half_ratio')}"
        )
        lines += _pair_lines(n, clock=False)
    form = (verdicts.get("form") or {}).get("readings") or []
    if form:
        counts = pd.Series([r["better"] for r in form]).value_counts()
        lines.append(
            f"form (3 parameters each, smaller RSS in >= {forms.FORM_SHARE:.0%} of resamples): "
            + ", ".join(f"{k} on {counts.get(k, 0)}" for k in ("exponential", "power", "either", "power degenerate")
                        if k in counts or k != "power degenerate")
            + f" of {len(form)} seed-mean curves"
        )
    return lines


def prediction_lines(v: dict) -> list[str]:
    """One line per (sweep, reading, subset) of predictions.a_predictions."""
    lines = []
    for r in v.get("rows", []):
        lines.append(
            f"(a) predictions vs {r['sweep']} ({r['reading']}) N={r['subset']:,}: turn-up x{fmt(r['turn_up'])}; "
            f"forgetting (tau = N/B) x{fmt(r['m_forgetting'])}, noise (1/N) x{fmt(r['m_noise'])}: nearer "
            f"{r['nearer']}{' (' + r['why'] + ')' if r['why'] else ''}"
        )
    return lines


def prune_lines(v: dict | None) -> list[str]:
    """A prune study's reading (forgetting/analysis/prune.py: RULE, then COST_RULE per selection)."""
    if not v:
        return []
    word = (v["verdict"] or "").upper() or f"not read ({v.get('reason')})"
    lines = [f"prune: removal by forgetting score against random removal: {word}"]
    for r in v.get("fractions") or []:
        lines.append(
            f"    {r['fraction']:.0%} removed: test accuracy forgetting - random {_ci(r, 'diff')} over "
            f"{r['n']} seeds: {r['reading']}"
        )
    for selection, c in (v.get("cost") or {}).items():
        cost = f"a cost below {fmt(v['margin'])} in accuracy"
        lines.append(f"    {selection}: up to {c['removable']:.0%} removed at {cost}")
    return lines
