"""The two predictions for claim (a) set against LR sweeps' turn-ups. No plotting.

Forgetting (Page): the turn-up sits where forgetting's timescale equals the revisit interval, tau(m*) =
N / B steps (verdicts.tau_vs_turn_up, from a tau law measured at the sweep's batch size). Gradient noise
(Smith & Le 2018): the noise scale LR x N / B sets the dynamics, so at a fixed batch the best (and the
turn-up) multiplier scales as 1 / N; anchored at the largest subset. Pre-registered in results/README.md
("Pre-registered readings: forgetting's clock against batch size", 2026-12-01).
"""

from __future__ import annotations

import math

from forgetting.analysis import probe_fits, verdicts

TELL_FACTOR = 2.0  # nearer only by more than one grid step: the sweeps' turn-ups sit on a 2x grid
SAME_NET = ("net", "width")  # train keys a sweep must share with the probe study whose taus it meets


def _nearer(turn_up: float, m_forget: float | None, m_noise: float, censored: str | None) -> tuple[str, str]:
    """Which prediction is nearer the turn-up in |log ratio|, or "cannot tell" and why."""
    if censored:
        return "cannot tell", censored
    if m_forget is None or not m_forget > 0:
        return "cannot tell", "no tau law at this batch size"
    d = abs(math.log(turn_up / m_forget)) - abs(math.log(turn_up / m_noise))
    if abs(d) < math.log(TELL_FACTOR):
        return "cannot tell", f"the two are nearer alike than a factor {TELL_FACTOR:g} (one grid step)"
    return ("forgetting", "") if d < 0 else ("noise", "")


def _agrees(turn_up: float, m_forget: float | None, m_noise: float, censored: str | None) -> tuple[str, str]:
    """The amended rule (2026-12-05): a prediction agrees when within TELL_FACTOR of the turn-up;
    "forgetting" or "noise" when only that one agrees, "neither" when none does, "cannot tell" when both
    do, or the turn-up tests neither (censored), or there is no tau law."""
    if censored:
        return "cannot tell", censored
    if m_forget is None or not m_forget > 0:
        return "cannot tell", "no tau law at this batch size"
    near = [abs(math.log(turn_up / m)) <= math.log(TELL_FACTOR) for m in (m_forget, m_noise)]
    if all(near):
        return "cannot tell", f"both within a factor {TELL_FACTOR:g} of the turn-up"
    return ("forgetting" if near[0] else "noise" if near[1] else "neither"), ""


def _censored(r: dict, anchor: dict) -> str | None:
    """Why a subset's turn-up tests neither prediction, if it does not."""
    if r is anchor:
        return "the largest subset anchors the noise prediction"
    if r.get("turn_up_past_grid") or anchor.get("turn_up_past_grid"):
        return "a turn-up past the grid is only a lower bound"
    return None


def a_predictions(laws: dict, sweeps: list[dict], study: dict, rules: str = probe_fits.AS_REGISTERED) -> list[dict]:
    """Per LR sweep trained like ``study`` (same net and width), reading and subset: the turn-up
    multiplier against forgetting's m* (tau = N / B, from the tau law at the sweep's batch size in
    ``laws``, via verdicts.tau_vs_turn_up) and against the noise-scale prediction (turn-up x 1 / N at a
    fixed batch, anchored at the largest subset, which is therefore no test). Read by the rule as
    registered (the nearer of the two) or, with ``rules`` = probe_fits.AMENDED, by _agrees."""
    read = _agrees if rules == probe_fits.AMENDED else _nearer
    rows = []
    for sweep in sweeps:
        st = sweep["study"]
        if any(st["train"].get(k) != study["train"].get(k) for k in SAME_NET):
            continue
        batch, base_lr = st["train"]["batch_size"], st["base_lr"]
        for reading in verdicts.LOSS_READINGS:
            readings = (sweep.get("verdicts", {}).get(f"a_{reading}") or {}).get("readings") or []
            if not readings:
                continue
            law = laws.get(batch) or {}
            forget = {r["subset"]: r["m_star"] for r in verdicts.tau_vs_turn_up(law, readings, batch, base_lr)}
            anchor = max(readings, key=lambda r: r["subset"])
            for r in readings:
                m_noise = anchor["turn_up"] * anchor["subset"] / r["subset"]
                censored = _censored(r, anchor)
                m_forget = forget.get(r["subset"])
                nearer, why = read(r["turn_up"], m_forget, m_noise, censored)
                rows.append(
                    dict(
                        sweep=st["name"],
                        reading=reading,
                        batch_size=batch,
                        subset=int(r["subset"]),
                        turn_up=r["turn_up"],
                        m_forgetting=m_forget,
                        m_noise=m_noise,
                        log_ratio_forgetting=math.log(r["turn_up"] / m_forget) if m_forget else None,
                        log_ratio_noise=math.log(r["turn_up"] / m_noise),
                        nearer=nearer,
                        why=why,
                    )
                )
    return rows
