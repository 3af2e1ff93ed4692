"""Fits and summaries on synthetic tables whose answers are known by construction."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from forgetting import report_text
from forgetting.analysis import probe_fits, summary, sweep_fits, verdicts

MULTIPLIERS = [2.0**k for k in range(-3, 5)]  # 1/8 .. 16
BASE_LR = 0.025


def make_results(
    m_true: dict[int, float], seeds=range(5), noise=0.005, k=0.05, diverge_at=16.0, rng_seed=0
) -> pd.DataFrame:
    """Sweep table with test_loss = 1 + k (log2 m - log2 m_true)^2 + noise; runs at ``diverge_at`` blow up."""
    rng = np.random.default_rng(rng_seed)
    rows = []
    for subset, mt in m_true.items():
        for m in MULTIPLIERS:
            for seed in seeds:
                blown = m >= diverge_at
                test = math.nan if blown else 1 + k * (math.log2(m) - math.log2(mt)) ** 2 + rng.normal(0, noise)
                clean = math.nan if blown else 0.3 + rng.normal(0, noise)
                rows.append(
                    dict(
                        run=f"{subset}-{m}-{seed}",
                        study="synthetic",
                        net="dawn18",
                        width=0.25,
                        subset=subset,
                        multiplier=m,
                        base_lr=BASE_LR,
                        lr=m * BASE_LR,
                        batch_size=128,
                        epochs=8,
                        warmup=1,
                        augment=True,
                        seed=seed,
                        train_loss=clean,
                        clean_train_loss=clean,
                        clean_train_acc=0.9,
                        test_loss=test,
                        test_acc=0.6,
                        diverged=blown,
                        seconds=1.0,
                        device="cpu",
                        status="finished",
                    )
                )
    return pd.DataFrame(rows)


def make_probe(
    tau=3.0, a=1.7, b=0.1, ages=12, steps=20, seeds=(0, 1), noise=0.02, conditions=None, rng_seed=1
) -> pd.DataFrame:
    """Probe table from loss_now = a - b exp(-age / tau) + noise; ``conditions`` maps
    (condition, multiplier) -> b to vary the effect (b = 0 is no signal)."""
    rng = np.random.default_rng(rng_seed)
    conditions = conditions or {("full-aug", 1.0): b}
    rows = []
    for (cond, m), bb in conditions.items():
        for seed in seeds:
            for age in range(ages):
                epoch = ages - 1 - age
                for s in range(steps):
                    loss = a - bb * math.exp(-age / tau) + rng.normal(0, noise)
                    rows.append(
                        dict(
                            run=f"{cond}-{m}-{seed}",
                            condition=cond,
                            multiplier=m,
                            lr=0.4 * m,
                            seed=seed,
                            step=epoch * steps + s,
                            epoch=epoch,
                            epoch_age=age,
                            loss_now=loss,
                            acc_now=0.5,
                            loss_when_seen=loss + 0.3 * age / ages,
                            n=128,
                        )
                    )
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- LR sweep


def test_optimum_recovers_known_minimum_with_bootstrap_interval():
    res = make_results({6250: 4.0, 50000: 1.0})
    opt = sweep_fits.optimum_by_subset(res, n_boot=300).set_index("subset")
    for subset, mt in ((6250, 4.0), (50000, 1.0)):
        r = opt.loc[subset]
        assert r["m_opt"] == pytest.approx(mt, rel=0.15)
        assert r["m_opt_lo"] <= mt <= r["m_opt_hi"]
        assert r["m_argmin"] == mt
        assert r["n_seeds"] == 5
        assert r["test_loss_min"] == pytest.approx(1.0, abs=0.01)


def test_optimum_interpolates_between_grid_points_and_ignores_blown_up_runs():
    # 2.8 lies between the sampled 2 and 4; the diverged rows at 16 have NaN losses and must not matter
    res = make_results({12500: 2.8}, noise=0.0)
    r = sweep_fits.optimum_by_subset(res, n_boot=50).iloc[0]
    assert r["m_opt"] == pytest.approx(2.8, rel=0.02)
    assert r["m_argmin"] in (2.0, 4.0)


def test_optimum_with_one_seed_has_no_interval_and_failed_runs_are_dropped():
    res = make_results({6250: 2.0}, seeds=[0])
    failed = res.iloc[[0]].assign(status="failed", test_loss=0.0, multiplier=0.125)  # would be the minimum
    r = sweep_fits.optimum_by_subset(pd.concat([res, failed])).iloc[0]
    assert r["m_opt"] == pytest.approx(2.0, rel=0.15)
    assert math.isnan(r["m_opt_lo"]) and math.isnan(r["m_opt_hi"])


def test_optimum_at_the_edge_is_clipped_to_the_sampled_range():
    res = make_results({6250: 64.0}, diverge_at=1e9, noise=0.0)  # true optimum far right of the grid
    r = sweep_fits.optimum_by_subset(res, n_boot=0).iloc[0]
    assert r["m_opt"] == 16.0


def test_curvature_limit_finds_constructed_rise_and_turn_up():
    res = make_results({6250: 1.0}, noise=0.0, k=0.05)
    # clean train loss flat until x4, +50% at x8; x16 diverged
    res.loc[res["multiplier"] == 8.0, "clean_train_loss"] = 0.45
    t = summary.curvature_table(res).iloc[0]
    assert t["curvature_limit"] == 8.0
    assert t["first_diverged"] == 16.0
    # test loss 1 + 0.05 d^2 rises by > 10% first at d = 2 octaves past the optimum: x4
    assert t["turn_up"] == 4.0


def test_curvature_limit_counts_a_blow_up_as_the_limit():
    res = make_results({6250: 4.0}, diverge_at=8.0, k=0.001, noise=0.0)
    t = summary.curvature_table(res).iloc[0]
    assert t["curvature_limit"] == 8.0 and t["first_diverged"] == 8.0
    assert t["turn_up"] == 8.0  # flat test loss: the blow-up is the first point clearly above the minimum


def test_the_curvature_table_reads_turn_up_with_the_pre_registered_rule():
    exact = make_results({6250: 1.0}, seeds=(0,), noise=0.0, k=0.1)  # 1.1 at x2: exactly +10%, which counts
    flat = make_results({6250: 1.0}, k=0.0, diverge_at=99.0)  # never 10% up: one grid step past 16
    for res, turn in ((exact, 2.0), (flat, 32.0)):
        table = summary.curvature_table(res).set_index("subset")["turn_up"]
        readings = verdicts.sweep_readings(res).set_index("subset")["turn_up"]
        assert table.iloc[0] == readings.iloc[0] == turn
    assert list(summary.curvature_table(exact).columns) == ["subset", "curvature_limit", "turn_up", "first_diverged"]


def test_multiplier_round_off_groups_together():
    res = make_results({6250: 2.0})
    res["multiplier"] = res["lr"] / res["base_lr"] * (1 + 1e-12)
    t = sweep_fits.curvature_limit(res)
    assert t.iloc[0]["first_diverged"] == 16.0
    assert sweep_fits.optimum_by_subset(res, n_boot=0).iloc[0]["m_argmin"] == 2.0


# ---------------------------------------------------------------- forgetting probe


def test_forgetting_timescale_recovers_tau_and_a_positive_gap():
    t = probe_fits.forgetting_timescale(make_probe(tau=3.0), n_boot=200).iloc[0]
    assert t["fit_ok"]
    assert t["tau"] == pytest.approx(3.0, rel=0.2)
    assert t["tau_lo"] < 3.0 < t["tau_hi"]
    assert t["a"] == pytest.approx(1.7, abs=0.01) and t["b"] == pytest.approx(0.1, rel=0.2)
    assert t["oldest_age"] == 11 and t["lr"] == pytest.approx(0.4)
    assert t["gap"] == pytest.approx(0.1 * (1 - math.exp(-11 / 3)), abs=0.01)
    assert 0 < t["gap_lo"] < t["gap"] < t["gap_hi"]


def test_forgetting_timescale_covariance_interval_without_bootstrap():
    t = probe_fits.forgetting_timescale(make_probe(tau=3.0), n_boot=0).iloc[0]
    assert t["fit_ok"] and t["tau_lo"] < t["tau"] < t["tau_hi"]


def test_flat_probe_gives_no_timescale_without_raising():
    noisy = probe_fits.forgetting_timescale(make_probe(b=0.0), n_boot=50).iloc[0]
    assert not noisy["fit_ok"] and math.isnan(noisy["tau"])
    assert noisy["gap_lo"] < 0 < noisy["gap_hi"]
    exact = probe_fits.forgetting_timescale(make_probe(b=0.0, noise=0.0), n_boot=50).iloc[0]
    assert not exact["fit_ok"] and math.isnan(exact["tau"]) and exact["gap"] == 0
    short = probe_fits.forgetting_timescale(make_probe(ages=2), n_boot=50).iloc[0]  # too few ages to fit
    assert not short["fit_ok"] and short["oldest_age"] == 1


def test_epoch_aggregates_means_and_intervals():
    e = probe_fits.epoch_aggregates(make_probe(tau=3.0, seeds=(0,), steps=10))
    assert list(e["epoch_age"]) == list(range(12)) and (e["n_steps"] == 10).all()
    assert (e["loss_now_lo"] < e["loss_now"]).all() and (e["loss_now"] < e["loss_now_hi"]).all()
    assert e["loss_now"].iloc[-1] > e["loss_now"].iloc[0] + 0.05
    assert e["loss_when_seen"].iloc[-1] > e["loss_now"].iloc[-1]
    assert (e["acc_now"] == 0.5).all()


def test_epoch_seed_aggregates_interval_is_over_seeds_without_their_levels():
    probe = make_probe(tau=3.0, seeds=(0, 1, 2, 3), steps=10, noise=0.01)
    shifted = probe.assign(loss_now=probe["loss_now"] + 0.2 * probe["seed"])  # seeds differ only in level
    e = probe_fits.epoch_seed_aggregates(shifted)
    pooled = probe_fits.epoch_aggregates(shifted)
    assert (e["n_seeds"] == 4).all() and list(e["epoch_age"]) == list(range(12))
    assert np.allclose(e["loss_now"], pooled["loss_now"])  # the same line, only the band's unit differs
    width = e["loss_now_hi"] - e["loss_now_lo"]
    assert (width > 0).all() and (width < 0.05).all()  # a 0.6 spread of levels is not in it
    noisy = probe.copy()
    noisy.loc[noisy["seed"] == 3, "loss_now"] += 0.3 * (noisy["epoch_age"] == 5)  # one seed's bump at age 5
    wide = probe_fits.epoch_seed_aggregates(noisy).set_index("epoch_age")
    assert (wide["loss_now_hi"] - wide["loss_now_lo"]).idxmax() == 5
    one = probe_fits.epoch_seed_aggregates(make_probe(seeds=(0,), steps=10))
    assert one["loss_now_lo"].isna().all()


def test_turn_up_levels_read_the_pre_registered_rule():
    results = make_results({1000: 0.5, 8000: 2.0}, seeds=range(3))
    levels = verdicts.turn_up_levels(results).set_index("subset")
    readings = verdicts.sweep_readings(results).set_index("subset")
    assert (levels["turn_up"] == readings["turn_up"]).all()
    assert np.allclose(levels["threshold"], 1.1 * levels["loss_min"])
    assert list(levels["m_min"]) == [0.5, 2.0]
    flat = make_results({1000: 1.0}, k=0.0, diverge_at=99.0)  # never 10% up: one grid step past 16
    (row,) = verdicts.turn_up_levels(flat).to_dict("records")
    assert row["turn_up"] == 32.0 and row["past_grid"]


def test_recency_aggregates_bins_every_example():
    rng = np.random.default_rng(0)
    steps = rng.integers(0, 400, 2000)
    rec = pd.DataFrame(
        dict(
            run="r",
            condition="full-aug",
            multiplier=1.0,
            lr=0.4,
            seed=0,
            index=np.arange(2000),
            steps_since_seen=steps,
            loss_now=1.7 - 0.2 * np.exp(-steps / 50) + rng.normal(0, 0.01, 2000),
        )
    )
    agg = probe_fits.recency_aggregates(rec, bins=8)
    assert agg["n"].sum() == 2000
    assert agg["bin_lo"].iloc[0] == 0 and (agg["bin_lo"].to_numpy()[1:] == agg["bin_hi"].to_numpy()[:-1]).all()
    assert agg["loss_now"].iloc[0] < agg["loss_now"].iloc[-1] - 0.1
    lin = probe_fits.recency_aggregates(rec, bins=np.array([0, 100, 200, 400]))
    assert list(lin["n"]) == [
        int((steps < 100).sum()),
        int(((steps >= 100) & (steps < 200)).sum()),
        int((steps >= 200).sum()),
    ]


# ---------------------------------------------------------------- summary (verdicts: tests/test_verdicts.py)


def _passing_probe(gaps_b=(0.05, 0.1, 0.2)):
    return make_probe(
        conditions={**{("full-aug", m): b for m, b in zip((0.5, 1.0, 2.0), gaps_b)}, ("half-noaug", 1.0): 0.1}
    )


def test_summarise_holds_every_section_and_strict_json():
    results = make_results({6250: 4.0, 12500: 2.0, 50000: 1.0})
    probe_runs = pd.DataFrame(
        dict(
            run=["a", "b"],
            condition=["full-aug", "half-noaug"],
            multiplier=1.0,
            lr=0.4,
            seed=0,
            test_loss=[1.72, 1.9],
            test_acc=0.6,
            train_loss=1.6,
            epochs=12,
            subset=5000,
        )
    )
    s = summary.summarise(results, _passing_probe(), probe_runs, n_boot=100)
    json.dumps(s, allow_nan=False)  # strict JSON: no NaN left
    assert {r["subset"] for r in s["optimum"]} == {6250, 12500, 50000}
    assert len(s["forgetting"]) == 4 and len(s["reference"]) == 2 and "recency" not in s
    assert set(s["verdicts"]) == {"a_final", "a_last5", "b", "b_steps", "tau_law"}
    assert s["verdicts"]["a_final"]["subset_smallest"] == 6250 and s["verdicts"]["a_final"]["subset_largest"] == 50000
    assert s["verdicts"]["a_last5"]["holds"] is None  # no test_loss_tail column in this table
    assert s["verdicts"]["b"]["multipliers"] == [0.5, 1.0, 2.0]
    text = report_text.format_table(s)
    assert "(a) on the final snapshot" in text and "(b) full-aug" in text and "6250" in text


def test_summarise_without_enough_data_reports_undecided():
    s = summary.summarise(make_results({6250: 2.0}), make_probe(), n_boot=0)
    assert s["verdicts"]["a_final"]["holds"] is None and s["verdicts"]["b"]["holds"] is None
    assert summary.summarise() == {"verdicts": {}}
    assert "undecided" in report_text.format_table(s)
