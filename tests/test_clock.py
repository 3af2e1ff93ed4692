"""Forgetting's clock against batch size and the rival noise account of claim (a) (results/README.md,
"Pre-registered readings: forgetting's clock against batch size"), on synthetic probe tables whose
answer is known, and its figures."""

from __future__ import annotations

import json
import math
import struct

import numpy as np
import pandas as pd
import pytest
from matplotlib.text import Text

from forgetting import clock, forms, plots_clock, predictions, report

BASE_LR = 0.03
N_IMAGES = 1280  # 40 steps per epoch at batch 32, 10 at batch 128: the 128 vs 512 design, 4x smaller
REF_BATCH, NEW_BATCH = 32, 128
REF_MULTS, NEW_MULTS = (1, 2, 4), (1, 2, 4, 8, 16)  # the new study has the reference's LRs and 4x them
N_BOOT = 200


def probe_table(batch, taus, epochs=10, seeds=range(3), noise=0.005, power=None, rng_seed=0) -> pd.DataFrame:
    """full-aug probe rows of the last ``epochs`` epochs: loss_now = a - b exp(-steps ago / tau[m]) (or
    a - b (1 + steps ago)^-power) + a level per seed + noise per replayed step."""
    rng = np.random.default_rng(rng_seed)
    per_epoch = N_IMAGES // batch
    age = np.arange(epochs * per_epoch)
    frames = []
    for m, tau in taus.items():
        shape = (1 + age) ** -power if power else np.exp(-age / tau)
        for seed in seeds:
            step = 2 * per_epoch + len(age) - 1 - age  # two warm-up epochs before the probed window
            frames.append(
                pd.DataFrame(
                    dict(
                        run=f"b{batch}-{m}-{seed}",
                        condition="full-aug",
                        multiplier=m,
                        lr=BASE_LR * m,
                        seed=seed,
                        step=step,
                        epoch=step // per_epoch,
                        epoch_age=age // per_epoch,
                        loss_now=1.2 + rng.normal(0, 0.02) - 0.1 * shape + rng.normal(0, noise, len(age)),
                        n=batch,
                    )
                )
            )
    return pd.concat(frames, ignore_index=True)


def ref_table(**kw) -> pd.DataFrame:
    return probe_table(REF_BATCH, {m: 48 / m for m in REF_MULTS}, **kw)  # tau in steps, proportional to 1 / LR


def new_table(per_step: float, **kw) -> pd.DataFrame:
    """Batch 128, 24 probed epochs (240 steps: five of the longest tau); tau = per_step x the reference's
    tau at the same LR: 1 if forgetting counts updates, 1/4 if it counts images."""
    return probe_table(NEW_BATCH, {m: 48 / m * per_step for m in NEW_MULTS}, epochs=24, rng_seed=1, **kw)


def readings(ref: pd.DataFrame, new: pd.DataFrame) -> tuple[dict, dict]:
    r, n = clock.timescales(ref, REF_BATCH, N_BOOT, 1), clock.timescales(new, NEW_BATCH, N_BOOT, 0)
    return clock.clock_and_noise(r, n, N_BOOT)


def test_decision_rules_read_the_intervals_as_pre_registered():
    assert clock.clock_reading(0.8, 1.3, 0.25) == "steps"
    assert clock.clock_reading(0.2, 0.3, 0.25) == "images"
    assert clock.clock_reading(0.4, 0.7, 0.25) == "neither"  # between the two: partly both
    assert clock.clock_reading(0.2, 1.2, 0.25) == "undecided"
    assert clock.clock_reading(math.nan, 1.2, 0.25) == "undecided"
    assert clock.half_clock_reading((0.9, 1.1), (3.5, 4.5)) == "steps"
    assert clock.half_clock_reading((0.2, 0.3), (0.9, 1.1)) == "images"
    assert clock.noise_margin(128, 512) == 2
    assert clock.noise_reading(0.8, 1.5, 2) == "equal"
    assert clock.noise_reading(0.4, 1.5, 2) == "undecided"  # holds 1 but reaches past 2x
    assert clock.noise_reading(1.2, 3.0, 2) == "unequal"


def test_half_rise_is_exact_on_known_curves():
    age = np.arange(100.0)
    assert clock.half_rise(age)[0] == pytest.approx(49.5)  # a line: half-way between its two tenths
    assert math.isnan(clock.half_rise(np.ones(100))[0])  # no rise, no timescale
    tau, y = 10.0, 1 - np.exp(-age / 10.0)
    level = (y[:10].mean() + y[-10:].mean()) / 2
    assert clock.half_rise(y)[0] == pytest.approx(-tau * math.log(1 - level), abs=0.1)


def test_a_clock_in_steps_is_read_as_steps_and_leaves_the_noise_scale_equal():
    c, n = readings(ref_table(), new_table(per_step=1.0))
    assert c["reading"] == "steps" and c["ratio_lo"] < 1 < c["ratio_hi"] and c["n_pairs"] == 3
    assert c["half_reading"] == "steps" and c["half_window"] == 240 and c["half_images_window"] == 12800
    assert all(p["reading"] == "steps" for p in c["pairs"])
    # tau in steps proportional to 1 / LR at both batch sizes: 4x the LR at 4x the batch, equal in images
    assert n["reading"] == "equal" and n["n_pairs"] == 3 and n["ratio"] == pytest.approx(1, abs=0.1)
    assert [(p["lr_ref"], p["lr"]) for p in n["pairs"]] == [(0.03, 0.12), (0.06, 0.24), (0.12, 0.48)]


def test_a_clock_in_images_is_read_as_images_and_the_noise_scale_unequal():
    c, n = readings(ref_table(), new_table(per_step=0.25))
    assert c["reading"] == "images" and c["ratio"] == pytest.approx(0.25, rel=0.1)
    assert c["half_reading"] == "images" and c["half_images_ratio_lo"] < 1 < c["half_images_ratio_hi"]
    assert n["reading"] == "unequal" and n["ratio_hi"] < 1 and n["half_reading"] == "unequal"


def test_a_clock_half_way_is_neither():
    c, _ = readings(ref_table(), new_table(per_step=0.5))
    assert c["reading"] == "neither" and 0.25 < c["ratio_lo"] and c["ratio_hi"] < 1


def test_a_power_law_rise_is_told_from_an_exponential():
    power = clock.timescales(probe_table(REF_BATCH, {1: 1.0, 4: 1.0}, power=0.4), REF_BATCH, N_BOOT)
    exp = clock.timescales(ref_table(), REF_BATCH, N_BOOT)
    by_form = forms.form_readings([(power, 0), (exp, 1)], N_BOOT)
    assert [r["better"] for r in by_form] == ["power"] * 2 + ["exponential"] * 3
    assert by_form[0]["power"] == pytest.approx(0.4, rel=0.1)
    assert all(r["rss_power"] < r["rss_exponential"] for r in by_form[:2])


SWEEP = dict(
    study=dict(name="sweep", base_lr=BASE_LR, train=dict(net="dawn18", width=0.25, batch_size=REF_BATCH)),
    verdicts=dict(a_final=dict(readings=[])),
)
# tau = 48 / m steps at batch 32 (c = log(48 x 0.03), alpha = 1): tau = N / B at m* = 48 x 32 / N
LAW = dict(alpha=1.0, c=math.log(48 * BASE_LR))
PROBE_STUDY = dict(train=dict(net="dawn18", width=0.25))


def sweep(turn_ups: dict, past: tuple = ()) -> dict:
    rows = [dict(subset=n, turn_up=t, turn_up_past_grid=n in past) for n, t in turn_ups.items()]
    return dict(SWEEP, verdicts=dict(a_final=dict(readings=rows)))


def test_the_two_predictions_for_a_are_told_apart_on_a_synthetic_sweep():
    # forgetting: m* = 48 x 32 / N = 1.2, 0.6, 0.3, 0.15; noise: 8 x 10,240 / N = 64, 32, 16, 8
    forget = predictions.a_predictions(
        {REF_BATCH: LAW}, [sweep({1280: 1.2, 2560: 0.6, 5120: 0.3, 10240: 8})], PROBE_STUDY
    )
    by = {r["subset"]: r for r in forget}
    assert by[1280]["m_forgetting"] == pytest.approx(1.2) and by[1280]["m_noise"] == pytest.approx(64)
    assert [by[n]["nearer"] for n in (1280, 2560, 5120)] == ["forgetting"] * 3
    assert by[10240]["nearer"] == "cannot tell" and "anchors" in by[10240]["why"]
    noise = predictions.a_predictions({REF_BATCH: LAW}, [sweep({1280: 64, 2560: 32, 5120: 16, 10240: 8})], PROBE_STUDY)
    assert [r["nearer"] for r in noise[:3]] == ["noise"] * 3
    close = predictions.a_predictions(
        {REF_BATCH: LAW}, [sweep({1280: 8, 2560: 2, 10240: 32}, past=(10240,))], PROBE_STUDY
    )
    assert {r["nearer"] for r in close} == {"cannot tell"} and "lower bound" in close[0]["why"]
    no_law = predictions.a_predictions({}, [sweep({1280: 64, 10240: 8})], PROBE_STUDY)
    assert no_law[0]["nearer"] == "cannot tell" and no_law[0]["m_forgetting"] is None
    other_width = dict(train=dict(net="dawn18", width=0.125))
    assert predictions.a_predictions({REF_BATCH: LAW}, [sweep({1280: 64, 10240: 8})], other_width) == []


def write_study(folder, name, batch, table) -> None:
    folder.mkdir(parents=True)
    study = dict(
        name=name,
        kind="probe",
        scale=f"test scale, batch {batch}",
        base_lr=BASE_LR,
        conditions=[dict(name="full-aug", fraction=1.0, augment=True)],
        grid=dict(subset=N_IMAGES, multipliers=sorted(table["multiplier"].unique().tolist())),
        train=dict(net="dawn18", width=0.25, augment=True, batch_size=batch, epochs=12),
    )
    (folder / "study.json").write_text(json.dumps(study))
    table.to_csv(folder / "probe.csv", index=False)


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory):
    store = tmp_path_factory.mktemp("store")
    write_study(store / "b32", "b32", REF_BATCH, ref_table())
    write_study(store / "b128", "b128", NEW_BATCH, new_table(per_step=0.25))
    return {r.name: r for r in report.regenerate(store, tmp_path_factory.mktemp("out"))}


def test_figures_combine_the_two_batch_sizes_into_the_larger_ones_summary(regenerated):
    small, large = regenerated["b32"], regenerated["b128"]
    assert not {"clock", "noise", "form", "a_predictions"} & set(small.summary["verdicts"])
    v = json.loads((large.folder / "summary.json").read_text())["verdicts"]
    assert v["clock"]["reference"] == "b32" and v["clock"]["reading"] == "images"
    assert v["noise"]["reading"] == "unequal" and len(v["form"]["readings"]) == 8
    assert [law["batch"] for law in v["clock"]["laws"]] == [REF_BATCH, NEW_BATCH]
    text = large.text()
    assert "clock (b32 at batch 32 vs batch 128, equal LR): IMAGES" in text and "noise (" in text
    assert {p.name for p in large.figures} >= {"clock_tau.png", "clock_curves.png"}


def test_clock_figures_are_log_log_in_steps_and_images(regenerated, tmp_path):
    v = regenerated["b128"].summary["verdicts"]["clock"]
    saved = plots_clock.plot_clock_taus(v, tmp_path / "tau", "test scale")
    assert all(p.exists() and p.stat().st_size > 0 for p in saved)
    left, right = saved.figure.axes[:2]
    assert left.get_xscale() == right.get_xscale() == left.get_yscale() == right.get_yscale() == "log"
    assert "SGD steps" in left.get_ylabel() and "images" in right.get_ylabel()
    curves = pd.concat([clock.age_curves(ref_table(), REF_BATCH), clock.age_curves(new_table(0.25), NEW_BATCH)])
    saved = plots_clock.plot_clock_curves(curves, v, tmp_path / "curves", "test scale")
    axes = saved.figure.axes
    assert saved[0].exists() and len(axes) == 2 * len(REF_MULTS)  # a row per shared LR: (steps, images)
    assert "steps" in axes[-2].get_xlabel() and "images" in axes[-1].get_xlabel()
    assert len(axes[0].get_lines()) == 4  # two batch sizes, each its curve and its fit


def test_the_clock_curves_are_readable_at_page_width(regenerated, tmp_path):
    """Ten panels in a row came out 2,942 px wide with 8-pt text: two columns, no text under 9 pt."""
    v = regenerated["b128"].summary["verdicts"]["clock"]
    curves = pd.concat([clock.age_curves(ref_table(), REF_BATCH), clock.age_curves(new_table(0.25), NEW_BATCH)])
    saved = plots_clock.plot_clock_curves(curves, v, tmp_path / "curves", "test scale")
    width = struct.unpack(">I", saved[0].read_bytes()[16:20])[0]  # the PNG header's width
    assert width <= 1800
    texts = [t for t in saved.figure.findobj(Text) if t.get_visible() and t.get_text().strip()]
    assert texts and min(t.get_fontsize() for t in texts) >= 9
    assert saved.figure.get_supylabel().startswith("loss of the final weights")  # one y label for all rows


def test_readings_pick_the_reference_and_are_json_or_absent_without_one():
    study = dict(name="x", kind="probe", grid=dict(subset=N_IMAGES), conditions=[dict(name="full-aug")])
    study["train"] = dict(net="dawn18", width=0.25, augment=True, batch_size=NEW_BATCH)
    reference = dict(study, name="ref", train=dict(study["train"], batch_size=REF_BATCH))
    assert (
        clock.readings(
            study, new_table(1.0), None, [(dict(reference, name="y", train=study["train"]), ref_table())], []
        )
        == {}
    )
    assert not clock.comparable(study, dict(reference, train=dict(reference["train"], width=0.5)))
    # exactly the reference's LRs (their attrs hold equal keys), an images clock, a batch-32 sweep
    same_lrs = probe_table(NEW_BATCH, {m: 12 / m for m in REF_MULTS}, epochs=24, rng_seed=1)
    v = clock.readings(study, same_lrs, None, [(reference, ref_table())], [sweep({1280: 1.2, 10240: 8})], N_BOOT)
    assert v["clock"]["reference"] == "ref" and v["clock"]["reading"] == "images" and v["noise"]["n_pairs"] == 1
    first = v["a_predictions"]["rows"][0]  # the reference's own law (tau = 48 / m steps) gives m* = 1.2
    assert (
        first["subset"] == 1280
        and first["m_forgetting"] == pytest.approx(1.2, rel=0.1)
        and first["nearer"] == "forgetting"
    )
    json.dumps(v, allow_nan=False)
