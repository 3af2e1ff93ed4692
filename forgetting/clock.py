"""Forgetting's clock against batch size, and the gradient-noise account of claim (a). No plotting.

Does forgetting count SGD updates or images seen? Two probe studies trained alike (same images, net,
width, condition) at two batch sizes answer it: the smaller batch is the reference. The rival account
of claim (a) is the gradient-noise scale (Smith & Le 2018: the noise scale LR x N / B sets the
dynamics), which predicts equal timescales in images at equal noise scale, and a turn-up multiplier
proportional to 1 / N at a fixed batch. Every rule here was fixed in results/README.md ("Pre-registered
readings: forgetting's clock against batch size", 2026-12-01) before cpu-tau-batch ran.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.optimize import isotonic_regression

from forgetting import forms, predictions
from forgetting.analysis import intervals, probe_fits, tables, verdicts
from forgetting.analysis.probe_fits import AS_REGISTERED
from forgetting.analysis.verdicts import FULL_AUG, N_BOOT, RNG_SEED

# ---------------------------------------------------------------- pre-registered constants (2026-12-01)
# Change them only with a new, dated pre-registration; never to make a result agree.
STEPS_CLOCK = 1.0  # tau_steps(B) / tau_steps(B_ref) if forgetting counts updates; images: B_ref / B
HALF = 0.5  # model-free timescale: the age at which the loss has risen this share of the way
EDGE_FRACTION = 0.1  # ... from the youngest to the oldest tenth of the window (one epoch of ten)
REFERENCE_RNG_SEED = RNG_SEED + 1  # the reference study's resamples, independent of the other study's
LR_MATCH = 1e-5  # relative: two LRs are the same to this (lr_key rounds each to 6 significant digits)
SAME_TRAINING = ("net", "width", "augment")  # train keys two studies must share to be compared


def comparable(study: dict, other: dict) -> bool:
    """``other`` can be the reference of ``study``: both probe studies of full-aug on the same images,
    net and width, and ``other`` at a smaller batch size."""

    def names(s):
        return {c.get("name") for c in s.get("conditions", [])}

    return (
        other.get("name") != study.get("name")
        and other.get("kind") == study.get("kind") == "probe"
        and all(other["train"].get(k) == study["train"].get(k) for k in SAME_TRAINING)
        and other["grid"].get("subset") == study["grid"].get("subset")
        and FULL_AUG in names(study) & names(other)
        and other["train"]["batch_size"] < study["train"]["batch_size"]
    )


def lr_key(lr: float) -> float:
    """6 significant digits: two studies' LRs from the same base LR and multiplier compare equal."""
    return float(f"{lr:.6g}")


# ---------------------------------------------------------------- the model-free timescale


def half_rise(ys: np.ndarray) -> np.ndarray:
    """Per row of ``ys`` (loss at step ages 0, 1, ..., W-1): the age at which it has risen half-way from
    the mean of its youngest tenth to the mean of its oldest tenth; NaN where it does not rise.

    The crossing is read on the isotonic (non-decreasing) regression of the row, so that no single
    noisy batch crosses early, interpolated linearly between the middles of its two blocks around it
    (the fit is a staircase; reading it at block edges would make the age jump between a few values)."""
    ys = np.atleast_2d(ys)
    k = max(1, round(EDGE_FRACTION * ys.shape[1]))
    out = np.full(len(ys), math.nan)
    for i, y in enumerate(ys):
        lo, hi = y[:k].mean(), y[-k:].mean()
        if not (hi > lo and np.isfinite(y).all()):
            continue
        level = lo + HALF * (hi - lo)
        fit = isotonic_regression(y, increasing=True)
        starts = fit.blocks[:-1]
        values, middles = fit.x[starts], (starts + fit.blocks[1:] - 1) / 2
        j = int(np.argmax(values >= level))  # >= 1: the first block lies <= lo, the last >= hi
        out[i] = np.interp(level, values[j - 1 : j + 1], middles[j - 1 : j + 1])
    return out


def _seed_curves(probe: pd.DataFrame) -> dict:
    """lr_key -> (seeds x step ages) loss_now in full-aug, ages 0..W-1 (W: the probed window in steps,
    cut at the first age missing from every seed)."""
    df = tables.probe_rows(probe)
    df = df[(df["condition"] == FULL_AUG) & np.isfinite(df["loss_now"])]
    df = df.assign(step_age=df.groupby("run")["step"].transform("max") - df["step"])
    out = {}
    for lr, g in df.groupby(df["lr"].map(lr_key), sort=True):
        ages, per_seed = probe_fits.per_seed_age_means(g, "step_age")
        ok = np.isfinite(per_seed).any(axis=0) & (ages == np.arange(len(ages)))
        out[lr] = per_seed[:, : len(ages) if ok.all() else int(np.argmin(ok))]
    return out


def _half_draws(per_seed: np.ndarray, window: int, n_boot: int, rng) -> tuple[float, np.ndarray]:
    """Half-rise age (steps) of the seed-mean curve over the first ``window`` step ages, and its
    refits on seeds drawn with replacement."""
    curves = per_seed[:, :window]
    point = float(half_rise(np.nanmean(curves, axis=0))[0])
    if n_boot <= 0 or len(curves) < 2:
        return point, np.full(max(n_boot, 0), math.nan)
    draws = curves[rng.integers(0, len(curves), (n_boot, len(curves)))]
    return point, half_rise(np.nanmean(draws, axis=1))


# ---------------------------------------------------------------- one study's timescales


def timescales(
    probe: pd.DataFrame, batch: int, n_boot: int = N_BOOT, rng_seed: int = RNG_SEED, rules: str = AS_REGISTERED
) -> pd.DataFrame:
    """Per LR in full-aug: tau of a - b exp(-steps ago / tau) (verdicts.seed_timescale, age in steps) and
    the half-rise age over the whole probed window, in SGD steps and in images (steps x batch), with
    seed-bootstrap intervals. ``attrs``: "tau" (lr_key -> tau draws), "curves" (lr_key -> seeds x ages)."""
    t = verdicts.seed_timescale(probe, FULL_AUG, "step", n_boot, rng_seed, keep_draws=True, rules=rules)
    curves = _seed_curves(probe)
    rng = np.random.default_rng(rng_seed)
    rows, tau_draws = [], {}
    for r in t.to_dict("records"):
        key = lr_key(r["lr"])
        tau_draws[key] = t.attrs["draws"][r["multiplier"]]
        per_seed = curves[key]
        half, draws = _half_draws(per_seed, per_seed.shape[1], n_boot, rng)
        h_lo, h_hi = (
            intervals.percentile_interval(draws, n_units=len(per_seed)) if np.isfinite(half) else (math.nan,) * 2
        )
        row = dict(batch=int(batch), lr=key, multiplier=r["multiplier"], fit_ok=r["fit_ok"], a=r["a"], b=r["b"])
        for unit, f in (("steps", 1), ("images", batch)):
            for kind, (v, lo, hi) in (("tau", (r["tau"], r["tau_lo"], r["tau_hi"])), ("half", (half, h_lo, h_hi))):
                row.update({f"{kind}_{unit}": v * f, f"{kind}_{unit}_lo": lo * f, f"{kind}_{unit}_hi": hi * f})
        rows.append(dict(row, window_steps=int(per_seed.shape[1]), n_seeds=int(r["n_seeds"])))
    out = pd.DataFrame(rows)
    out.attrs.update(tau=tau_draws, curves=curves)
    return out


def age_curves(probe: pd.DataFrame, batch: int) -> pd.DataFrame:
    """Seed-mean loss_now against age in steps and in images, per LR (full-aug): what the figures draw."""
    rows = [
        pd.DataFrame(dict(batch=int(batch), lr=lr, step_age=np.arange(c.shape[1]), loss_now=np.nanmean(c, axis=0)))
        for lr, c in _seed_curves(probe).items()
    ]
    out = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=["batch", "lr", "step_age", "loss_now"])
    return out.assign(image_age=out["step_age"] * batch)


# ---------------------------------------------------------------- decision rules


def _holds(lo: float, hi: float, value: float) -> bool:
    return bool(lo <= value <= hi)


def _either(steps: bool, images: bool) -> str:
    """Each clock's prediction held or not by its interval -> the reading."""
    if steps == images:
        return "undecided" if steps else "neither"
    return "steps" if steps else "images"


def clock_reading(lo: float, hi: float, images_ratio: float) -> str:
    """The clock from the 95% interval of tau_steps(B) / tau_steps(B_ref): "steps" when it holds 1 and
    not B_ref / B, "images" when the reverse, "undecided" when it holds both, "neither" when neither."""
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "undecided"
    return _either(_holds(lo, hi, STEPS_CLOCK), _holds(lo, hi, images_ratio))


def half_clock_reading(steps: tuple, images: tuple) -> str:
    """The clock from the half-rise ages: ``steps`` is the 95% interval of their ratio in steps on the
    step window both studies probed, ``images`` of their ratio in images on the common image window.
    Identical curves give exactly 1 in the unit the clock counts, whatever the window (it would not if
    the windows differed: the half-rise age grows with the window), so each clock must hold 1 in its
    own unit and the other must not; the outcomes are named as in clock_reading."""
    if not np.isfinite([*steps, *images]).all():
        return "undecided"
    return _either(_holds(*steps, 1.0), _holds(*images, 1.0))


def noise_margin(ref_batch: int, batch: int) -> float:
    """Equal within this factor: the geometric midpoint between equal (1) and off by the batch ratio,
    which is what a clock in steps alone would put between them (2 for 128 vs 512)."""
    return math.sqrt(batch / ref_batch)


def noise_reading(lo: float, hi: float, margin: float) -> str:
    """Equal noise scale, tau_images(B) / tau_images(B_ref): "unequal" when the 95% interval excludes 1,
    "equal" when it holds 1 and lies within a factor ``margin`` of it, else "undecided"."""
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "undecided"
    if not _holds(lo, hi, 1.0):
        return "unequal"
    return "equal" if 1 / margin <= lo and hi <= margin else "undecided"


def _ratio(nums: list, dens: list, n_units: int) -> tuple[float, float, float]:
    """Geometric mean over pairs of num / den (each a (point, draws) pair), and its expanded percentile
    interval from the draws (independent per pair and per study)."""
    if not nums:
        return (math.nan,) * 3
    point = math.exp(np.mean([math.log(n[0] / d[0]) for n, d in zip(nums, dens)]))
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.column_stack([np.log(n[1] / d[1]) for n, d in zip(nums, dens)])
    lo, hi = intervals.percentile_interval(np.exp(logs.mean(axis=1)), n_units=n_units)
    return point, lo, hi


# ---------------------------------------------------------------- the two comparisons


def _scaled(pair: tuple, f: int) -> tuple:
    return pair[0] * f, pair[1] * f


def _compare(ref: pd.DataFrame, new: pd.DataFrame, pairs: list, unit: str, n_boot: int) -> dict:
    """new / ref over the LR ``pairs`` (ref LR, new LR) in ``unit`` (steps or images), per pair and pooled
    (geometric mean over pairs): of the exponential tau (each study's whole window; pairs whose two fits
    succeeded) and of the half-rise age (on the window both studies probed in ``unit``)."""
    r_idx, n_idx = ref.set_index("lr"), new.set_index("lr")
    f_ref, f_new = (1, 1) if unit == "steps" else (int(ref["batch"].iloc[0]), int(new["batch"].iloc[0]))
    window = min(int(r_idx["window_steps"].min()) * f_ref, int(n_idx["window_steps"].min()) * f_new)
    rng_ref, rng_new = np.random.default_rng(REFERENCE_RNG_SEED), np.random.default_rng(RNG_SEED)
    n_units = int(min(ref["n_seeds"].min(), new["n_seeds"].min()))
    rows, taus, halves = [], ([], []), ([], [])
    for a, b in pairs:
        ra, nb = r_idx.loc[a], n_idx.loc[b]
        den, num = (
            _scaled((ra["tau_steps"], ref.attrs["tau"][a]), f_ref),
            _scaled((nb["tau_steps"], new.attrs["tau"][b]), f_new),
        )
        h_den = _scaled(_half_draws(ref.attrs["curves"][a], window // f_ref, n_boot, rng_ref), f_ref)
        h_num = _scaled(_half_draws(new.attrs["curves"][b], window // f_new, n_boot, rng_new), f_new)
        row = dict(lr_ref=a, lr=b, tau_ref=den[0], tau=num[0], half_ref=h_den[0], half=h_num[0])
        if ra["fit_ok"] and nb["fit_ok"]:
            taus[0].append(num)
            taus[1].append(den)
            row.update(zip(("ratio", "ratio_lo", "ratio_hi"), _ratio([num], [den], n_units)))
        if np.isfinite(h_den[0]) and np.isfinite(h_num[0]):
            halves[0].append(h_num)
            halves[1].append(h_den)
            row.update(zip(("half_ratio", "half_ratio_lo", "half_ratio_hi"), _ratio([h_num], [h_den], n_units)))
        rows.append(row)
    pooled = dict(zip(("ratio", "ratio_lo", "ratio_hi"), _ratio(*taus, n_units)))
    pooled.update(zip(("half_ratio", "half_ratio_lo", "half_ratio_hi"), _ratio(*halves, n_units)))
    return dict(
        pooled,
        unit=unit,
        n_pairs=len(taus[0]),
        half_window=window,
        n_pairs_half=len(halves[0]),
        n_seeds=n_units,
        pairs=rows,
    )


def _interval(d: dict, key: str) -> tuple:
    return tuple(d.get(f"{key}{s}", math.nan) for s in ("_lo", "_hi"))


def _pairs(ref_lrs, new_lrs, factor: float) -> list[tuple[float, float]]:
    """(ref LR, new LR) where new = factor x ref, to LR_MATCH (both are lr_keys, rounded)."""
    return [(a, b) for a in ref_lrs for b in new_lrs if math.isclose(a * factor, b, rel_tol=LR_MATCH)]


def clock_and_noise(ref_t: pd.DataFrame, new_t: pd.DataFrame, n_boot: int = N_BOOT) -> tuple[dict, dict]:
    """The two pre-registered readings from two studies' ``timescales``: the clock at equal LR (tau in
    steps: ratio 1 if forgetting counts updates, B_ref / B if images) and equal noise scale (the new
    study at B / B_ref times the reference's LR, same N: tau in images, ratio 1 if the noise scale sets
    it); each from the exponential tau and from the half-rise age."""
    ref_b, new_b = int(ref_t["batch"].iloc[0]), int(new_t["batch"].iloc[0])
    images_ratio, margin = ref_b / new_b, noise_margin(ref_b, new_b)
    same, scaled = _pairs(ref_t["lr"], new_t["lr"], 1.0), _pairs(ref_t["lr"], new_t["lr"], new_b / ref_b)
    steps, images = _compare(ref_t, new_t, same, "steps", n_boot), _compare(ref_t, new_t, same, "images", n_boot)
    for p, q in zip(steps["pairs"], images["pairs"]):
        p["reading"] = clock_reading(*_interval(p, "ratio"), images_ratio)
        p.update({f"half_images_{k}": q.get(k) for k in ("ratio", "ratio_lo", "ratio_hi")})
        p["half_reading"] = half_clock_reading(_interval(p, "half_ratio"), _interval(q, "half_ratio"))
    clock = dict(
        steps,
        images_ratio=images_ratio,
        reading=clock_reading(steps["ratio_lo"], steps["ratio_hi"], images_ratio),
        half_images_window=images["half_window"],
        **{f"half_images_{k}": images[k] for k in ("ratio", "ratio_lo", "ratio_hi")},
        half_reading=half_clock_reading(_interval(steps, "half_ratio"), _interval(images, "half_ratio")),
    )
    noise = _compare(ref_t, new_t, scaled, "images", n_boot)
    for p in noise["pairs"]:
        p.update(
            reading=noise_reading(*_interval(p, "ratio"), margin),
            half_reading=noise_reading(*_interval(p, "half_ratio"), margin),
        )
    noise.update(margin=margin, reading=noise_reading(*_interval(noise, "ratio"), margin))
    noise["half_reading"] = noise_reading(*_interval(noise, "half_ratio"), margin)
    return clock, noise


# ---------------------------------------------------------------- into summary.json and onto the terminal


def _full_aug_lrs(probe: pd.DataFrame) -> set:
    return set(probe.loc[probe["condition"] == FULL_AUG, "lr"].map(lr_key))


def _law_record(law: dict, batch: int) -> dict:
    return dict(batch=int(batch), **{k: law.get(k) for k in ("alpha", "alpha_lo", "alpha_hi", "c")})


def readings(
    study: dict,
    probe,
    law: dict | None,
    partners: list,
    sweeps: list[dict],
    n_boot: int = N_BOOT,
    rules: str = AS_REGISTERED,
) -> dict:
    """The verdicts this module adds to ``study``'s summary: clock, noise, form and a_predictions, or
    {} unless a probe study in ``partners`` ((study.json, probe table) pairs) is ``comparable`` and
    shares an LR with it; of several, the one sharing the most. ``law``: this study's tau_law, under
    the same ``rules`` (as registered, or amended: probe_fits.FIT_CHECKS)."""
    lrs = _full_aug_lrs(probe) if probe is not None and len(probe) else set()
    best = None
    for other, other_probe in partners:
        if other_probe is None or not comparable(study, other):
            continue
        shared = len(lrs & _full_aug_lrs(other_probe))
        if shared and (best is None or shared > best[0]):
            best = (shared, other, other_probe)
    if best is None:
        return {}
    _, ref, ref_probe = best
    ref_b, new_b = int(ref["train"]["batch_size"]), int(study["train"]["batch_size"])
    ref_t = timescales(ref_probe, ref_b, n_boot, REFERENCE_RNG_SEED, rules)
    new_t = timescales(probe, new_b, n_boot, RNG_SEED, rules)
    clock, noise = clock_and_noise(ref_t, new_t, n_boot)
    ref_law = verdicts.tau_lr_law(ref_probe, n_boot=n_boot, rng_seed=REFERENCE_RNG_SEED, rules=rules)
    laws = {ref_b: ref_law, new_b: law or {}}
    head = dict(reference=ref["name"], reference_batch=ref_b, batch=new_b)
    taus = tables.records(ref_t) + tables.records(new_t)  # not pd.concat: it compares the attrs' arrays
    return tables.clean(
        dict(
            clock=dict(head, **clock, taus=taus, laws=[_law_record(v, b) for b, v in laws.items()]),
            noise=dict(head, **noise),
            form=dict(
                head, readings=forms.form_readings([(ref_t, REFERENCE_RNG_SEED), (new_t, RNG_SEED)], n_boot, rules)
            ),
            a_predictions=dict(head, rows=predictions.a_predictions(laws, sweeps, study, rules)),
        )
    )
