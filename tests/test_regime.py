"""Claim (a) in Page's regime (results/README.md, 2026-12-05; forgetting/analysis/regime.py): the fit
check of the small subset and the turn-up ratio against the two accounts, on synthetic sweeps whose
answer is known, and their place in a study's summary and figures."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest

from forgetting import report
from forgetting.analysis import regime, verdicts

from helpers import REPO_ROOT

MULTS = (0.25, 0.5, 1.0, 2.0, 4.0)


def sweep(clean: dict, tail: dict, final_offset: float = 0.0, seeds=range(3)):
    """results rows and history rows: per subset, clean training loss falling to clean[subset] at epoch
    30 and a test curve over MULTS lowest at x0.5 (tail[subset] there), the final snapshot offset."""
    results, epochs = [], []
    for subset in clean:
        for m in MULTS:
            for seed in seeds:
                run = f"{subset}-{m}-{seed}"
                last5 = tail[subset] * (1 + 0.2 * abs(math.log2(m / 0.5)))
                results.append(
                    dict(run=run, subset=subset, multiplier=m, seed=seed, status="finished", diverged=False,
                         test_loss=last5 + final_offset, test_loss_tail=last5, train_loss=0.5,
                         clean_train_loss=clean[subset], lr=0.03 * m, base_lr=0.03, epochs=30, batch_size=128)
                )
                for epoch in (10, 20, 30):
                    epochs.append(dict(run=run, epoch=epoch, clean_train_loss=clean[subset] * 30 / epoch))
    return pd.DataFrame(results), pd.DataFrame(epochs)


def test_a_small_subset_that_fits_its_data_lets_the_study_decide():
    fit = regime.fit_check(*sweep({2560: 0.3, 20480: 0.6}, {2560: 1.4, 20480: 0.9}))
    small, large = fit["readings"]
    assert fit["decides"] is True and small["multiplier"] == 0.5
    assert small["fits"] and small["clean_train_loss_final"] == pytest.approx(0.3)
    assert large["fits"] is False  # 0.6 > 0.45
    assert {(c["subset"], c["epoch"]) for c in fit["curves"]} >= {(2560, 10), (20480, 30)}


def test_an_underfit_small_subset_still_learning_does_not_decide():
    fit = regime.fit_check(*sweep({2560: 1.0, 20480: 0.3}, {2560: 1.4, 20480: 0.9}, final_offset=-0.15))
    assert fit["decides"] is False and "did not fit" in fit["reason"]
    assert fit["readings"][0]["fits"] is False and fit["readings"][0]["settled"] is False
    settled = regime.fit_check(*sweep({2560: 1.0, 20480: 0.3}, {2560: 1.4, 20480: 0.9}, final_offset=0.05))
    assert settled["decides"] is True and settled["readings"][0]["settled"]  # 0.05 <= 5% of 1.4


def verdict(ratio: float, lo: float, hi: float) -> dict:
    return dict(holds=False, subset_smallest=2560, subset_largest=20480, turn_up_ratio=ratio,
                turn_up_ratio_lo=lo, turn_up_ratio_hi=hi)


def test_the_ratio_is_read_against_eight_and_eight_to_one_over_alpha():
    # alpha 0.5: forgetting predicts 8^2 = 64; the noise scale predicts 8
    assert regime.ratio_reading(verdict(8, 4, 16), 0.5)["reading"] == "noise"
    assert regime.ratio_reading(verdict(64, 32, 128), 0.5)["reading"] == "forgetting"
    assert regime.ratio_reading(verdict(16, 4, 128), 0.5)["reading"] == "both"
    assert regime.ratio_reading(verdict(1, 0.5, 2), 0.5)["reading"] == "neither"
    r = regime.ratio_reading(verdict(8, 4, 16), 0.42, 0.72)
    assert r["forgetting"] == pytest.approx(8 ** (1 / 0.42)) and r["forgetting_at_least"] == pytest.approx(17.97, rel=1e-3)
    assert regime.ratio_reading(verdict(8, 4, 16), None)["reading"] == "noise"  # no law: forgetting holds nothing
    assert regime.ratio_reading(dict(holds=None, reason="study incomplete"), 0.5)["reading"] is None


def test_the_verdict_carries_the_resampled_ratio_interval():
    results, _ = sweep({1280: 0.3, 10240: 0.6}, {1280: 1.4, 10240: 0.9})
    v = verdicts.sweep_verdict(results, "test_loss_tail", n_boot=50)
    assert v["turn_up_ratio_lo"] <= v["turn_up_ratio"] <= v["turn_up_ratio_hi"]


def sweep_store(folder, results, epochs=None, **study_keys):
    """A study folder as sweep-lr writes it: study.json (an lr-sweep of width 0.25, batch 128, with
    ``study_keys``; "train" keys merge into its [train]), results.csv and each run's history.csv."""
    train = dict(net="dawn18", width=0.25, batch_size=128) | study_keys.pop("train", {})
    study = dict(name=folder.name, kind="lr-sweep", scale="test scale", base_lr=0.03, train=train, **study_keys)
    folder.mkdir()
    (folder / "study.json").write_text(json.dumps(study))
    results.to_csv(folder / "results.csv", index=False)
    for run, g in ([] if epochs is None else epochs.groupby("run")):
        (folder / "runs" / run).mkdir(parents=True)
        g.drop(columns="run").to_csv(folder / "runs" / run / "history.csv", index=False)
    return folder


def test_a_complete_eval_train_sweep_gets_its_fit_check_and_figure(tmp_path):
    results, epochs = sweep({2560: 0.3, 20480: 0.6}, {2560: 1.4, 20480: 0.9})
    folder = sweep_store(tmp_path / "page", results, epochs, train=dict(eval_train=True))
    out = report.study_report(folder, tmp_path / "out")
    v = out.summary["verdicts"]
    assert v["fit_check"]["decides"] is True
    assert v["a_accounts"]["last5"]["noise"] == 8
    assert any(p.name == "fit_check.png" for p in out.figures)
    assert not any(p.name.startswith("lr_sweep_last") for p in out.figures)  # no eval_last: no last-epochs reading
    assert "fit check: the study decides (a)" in out.text()
    assert np.isfinite(v["a_accounts"]["last5"]["turn_up_ratio"])


def probe_tables(name: str, multipliers, width=0.25):
    """What a probe study's report shares with the sweeps (`StudyTables`: its study.json and probe)."""
    from types import SimpleNamespace

    study = dict(name=name, kind="probe", train=dict(net="dawn18", width=width, batch_size=128),
                 grid=dict(multipliers=list(multipliers)))
    return SimpleNamespace(study=study, probe=None)


def test_the_tau_law_comes_from_the_named_probe_study_else_the_one_over_most_learning_rates():
    from forgetting.experiments.lr_sweep import law_source

    probes = [probe_tables("a-probe", [4, 1]), probe_tables("b-tau-lr", [0.5, 1, 2, 4, 8]),
              probe_tables("c-wide", [0.5, 1, 2, 4, 8, 16], width=1.0), probe_tables("d-tau", [1, 2, 4, 8, 16])]
    sweep_study = dict(name="page", train=dict(net="dawn18", width=0.25, batch_size=128))
    # the store's order put "a-probe" first; a law is a fit across learning rates; a tie goes by name
    assert law_source(sweep_study, probes).study["name"] == "b-tau-lr"
    assert law_source(dict(sweep_study, tau_law_from="d-tau"), probes).study["name"] == "d-tau"
    assert law_source(dict(sweep_study, tau_law_from="gone"), probes) is None  # named and absent: none, no stand-in
    assert law_source(sweep_study, []) is None


def test_a_named_tau_law_is_recorded_and_reported_missing_when_absent(tmp_path):
    from forgetting import studies
    from forgetting.study_record import study_from_record, study_record

    page = studies.load_study("cpu-lr-sweep-page")
    assert page.tau_law_from == "cpu-tau-lr"  # as pre-registered (results/README.md, 2026-12-05)
    record = study_record(page, 0.0343)
    assert record["tau_law_from"] == "cpu-tau-lr" and study_from_record(record).tau_law_from == "cpu-tau-lr"
    assert "tau_law_from" not in study_record(studies.load_study("cpu-lr-sweep"), 0.0343)  # records as written

    results, epochs = sweep({2560: 0.3, 20480: 0.6}, {2560: 1.4, 20480: 0.9})
    folder = sweep_store(tmp_path / "page", results, epochs, tau_law_from="cpu-tau-lr", train=dict(eval_train=True))
    out = report.study_report(folder, tmp_path / "out")
    assert out.summary["verdicts"]["a_accounts"]["law_missing"] == "cpu-tau-lr"
    assert "no forgetting prediction: cpu-tau-lr (its tau law) is not in this store" in out.text()

    # beside it in the store, the study's own report (as sweep-lr prints at its end) reads it, as figures does
    shutil.copytree(REPO_ROOT / "results" / "cpu-tau-lr", tmp_path / "cpu-tau-lr")
    own = report.study_report(folder, tmp_path / "out2")
    assert own.summary["verdicts"]["a_accounts"]["law_from"] == "cpu-tau-lr"
    assert "forgetting's prediction from cpu-tau-lr's tau law" in own.text()


def test_a_sweep_with_a_last_epochs_reading_draws_it_beside_the_final_one(tmp_path):
    results, _ = sweep({2560: 0.3, 20480: 0.6}, {2560: 1.4, 20480: 0.9}, final_offset=0.3)
    folder = sweep_store(tmp_path / "tail", results, train=dict(eval_last=5))
    out = report.study_report(folder, tmp_path / "out")
    names = {p.name for p in out.figures}
    assert {"lr_sweep.png", "lr_sweep_last_epochs.png"} <= names
    svg = (tmp_path / "out" / "figures" / "lr_sweep_last_epochs.svg").read_text()
    assert "mean test loss of the last 5 epochs" in svg
