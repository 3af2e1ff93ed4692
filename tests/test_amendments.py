"""The amendments of 2026-12-05 (results/README.md): a timescale below one SGD step fails the fit check,
a power law at its exponent's bound is reported as a degenerate rival, the predictions of claim (a)
have a "neither"; the registered readings stay as they were, the amended ones sit beside them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forgetting import amendments, forms, predictions, report_text
from forgetting.analysis import probe_fits, verdicts
from forgetting.analysis.probe_fits import AMENDED, AS_REGISTERED

from test_clock import LAW, PROBE_STUDY, REF_BATCH, clock, probe_table, sweep

N_BOOT = 100


def test_a_fitted_tau_below_one_step_passes_only_the_registered_check():
    ages = np.arange(40, dtype=float)
    y = 1.2 - 0.1 * np.exp(-ages / 0.6) + np.random.default_rng(0).normal(0, 1e-4, len(ages))
    registered = probe_fits.fit_timescale(ages, y, probe_fits.FIT_CHECKS[AS_REGISTERED])
    assert registered["fit_ok"] and registered["tau"] == pytest.approx(0.6, rel=0.05)
    assert not probe_fits.fit_timescale(ages, y, probe_fits.FIT_CHECKS[AMENDED])["fit_ok"]
    slow = 1.2 - 0.1 * np.exp(-ages / 8.0)
    assert probe_fits.fit_timescale(ages, slow, probe_fits.FIT_CHECKS[AMENDED])["fit_ok"]


def test_in_epochs_one_step_is_one_epoch_over_its_steps():
    table = probe_table(REF_BATCH, {1: 5.0})  # 40 steps per epoch at batch 32
    assert probe_fits.one_step(table, "epoch") == pytest.approx(1 / 40)
    assert probe_fits.one_step(table, "step") == 1.0


def test_the_tau_law_drops_a_sub_step_fit_only_when_amended():
    table = probe_table(REF_BATCH, {1: 48.0, 2: 24.0, 4: 0.5}, noise=1e-4)
    registered = verdicts.tau_lr_law(table, n_boot=N_BOOT)
    amended = verdicts.tau_lr_law(table, n_boot=N_BOOT, rules=AMENDED)
    assert registered["multipliers"] == [1.0, 2.0, 4.0]
    assert amended["multipliers"] == [1.0, 2.0]
    assert amended["alpha"] == pytest.approx(1.0, abs=0.1)
    changed = amendments.changed({"tau_law": registered}, {"tau_law": amended})
    assert changed and changed[0].startswith("tau_law multipliers")


def log_rise_table() -> pd.DataFrame:
    """A rise as log(1 + steps ago): the power law's best exponent is its lower bound (p -> 0)."""
    table = probe_table(REF_BATCH, {1: 48.0})
    age = table.groupby("run")["step"].transform("max") - table["step"]
    noise = np.random.default_rng(0).normal(0, 1e-4, len(table))
    return table.assign(loss_now=1.2 + 0.02 * np.log1p(age) + noise)


def test_a_power_law_at_its_bound_is_reported_as_degenerate_only_when_amended():
    log_rise = clock.timescales(log_rise_table(), REF_BATCH, N_BOOT)
    registered = forms.form_readings([(log_rise, 0)], N_BOOT)
    amended = forms.form_readings([(log_rise, 0)], N_BOOT, AMENDED)
    assert forms.power_degenerate(registered[0]["power"])
    assert registered[0]["better"] != "power degenerate" and "power_at_bound" not in registered[0]
    assert amended[0]["better"] == "power degenerate" and amended[0]["power_at_bound"]
    power = clock.timescales(probe_table(REF_BATCH, {1: 1.0}, power=0.4), REF_BATCH, N_BOOT)
    fitted = forms.form_readings([(power, 0)], N_BOOT, AMENDED)[0]
    assert fitted["better"] == "power" and not fitted["power_at_bound"]


def test_the_amended_predictions_say_neither_when_both_miss():
    # forgetting: m* = 48 x 32 / N = 1.2 at 1,280; noise: 8 x 10,240 / 1,280 = 64
    turn_ups = {1280: 8.0, 10240: 8.0}
    registered = predictions.a_predictions({REF_BATCH: LAW}, [sweep(turn_ups)], PROBE_STUDY)
    amended = predictions.a_predictions({REF_BATCH: LAW}, [sweep(turn_ups)], PROBE_STUDY, AMENDED)
    assert registered[0]["nearer"] == "cannot tell"  # 6.7x and 8x away: "nearer alike"
    assert amended[0]["nearer"] == "neither"
    both = predictions.a_predictions({REF_BATCH: LAW}, [sweep({1280: 2.0, 10240: 0.5})], PROBE_STUDY, AMENDED)
    assert both[0]["nearer"] == "cannot tell" and "both" in both[0]["why"]  # m* 1.2 and 4: both within 2x
    one = predictions.a_predictions({REF_BATCH: LAW}, [sweep({1280: 48.0, 10240: 8.0})], PROBE_STUDY, AMENDED)
    assert one[0]["nearer"] == "noise"


def test_the_report_names_what_changed_and_a_curve_that_never_diverged():
    v = dict(
        amended=dict(date=AMENDED, changed=["noise reading: undecided -> unequal"]),
        a_final=dict(
            holds=False,
            subset_smallest=1280,
            subset_largest=10240,
            turn_up_smallest=2.0,
            turn_up_largest=8.0,
            turn_up_ratio=0.25,
            boot_share_ratio_ge_2=0.09,
            divergence_smallest=16.0,
            divergence_largest=32.0,
            readings=[
                dict(subset=1280, divergence_past_grid=False, grid_max=16.0),
                dict(subset=10240, divergence_past_grid=True, grid_max=16.0),
            ],
        ),
    )
    text = "\n".join(report_text.verdict_lines(v))
    assert "divergence x16 vs none up to x16" in text and "x32" not in text
    assert "1 change" in text and "undecided -> unequal" in text


def test_amended_verdicts_skip_a_study_without_a_full_aug_probe():
    probe = pd.DataFrame(dict(condition=["half-noaug"]))
    assert amendments.amended_verdicts({}, {}, probe, [], []) is None
    assert amendments.amended_verdicts({}, {}, None, [], []) is None


@pytest.mark.parametrize(
    "epoch, step, reading",
    [
        (dict(holds=True), dict(holds=True), "holds"),
        (dict(holds=False, tau_ratio_lo=0.5, tau_ratio_hi=1.1), dict(holds=True), "decided by the age unit"),
        (dict(holds=None), dict(holds=True), "undecided"),
        (dict(holds=False, tau_ratio_lo=0.2, tau_ratio_hi=0.9), dict(holds=False, tau_ratio_lo=1.2, tau_ratio_hi=2.0), "does not hold"),
    ],
)
def test_b_on_both_age_units_holds_only_where_both_readings_hold(epoch, step, reading):
    both = amendments.both_age_units(epoch, step)
    assert both["reading"] == reading
    words = {amendments.age_unit_word(v) for v in (epoch, step)}
    assert words <= {"holds", "not resolved", "reversed", "undecided", "does not hold"}


def test_an_age_unit_reading_names_a_reversal_and_a_gap_at_zero():
    assert amendments.age_unit_word(dict(holds=False, tau_ratio_lo=1.2, tau_ratio_hi=2.0)) == "reversed"
    assert amendments.age_unit_word(dict(holds=False, tau_ratio_lo=0.2, tau_ratio_hi=0.8)) == "does not hold"
