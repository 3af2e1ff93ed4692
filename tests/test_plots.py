"""Each figure is written as non-empty PNG and SVG, with the panels and lines it promises."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from forgetting import plots, plots_lr_find
from forgetting.analysis import probe_fits, sweep_fits, verdicts
from forgetting.errors import UserError
from forgetting.lr_curve import finder_scale

SCALE = "test scale: dawn18 width 0.25, batch 128, 8 epochs"
MULTIPLIERS = [0.125, 0.5, 2.0, 8.0]


@pytest.fixture(scope="module")
def results() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for subset, mt in ((1250, 2.0), (10000, 0.5)):
        for m in MULTIPLIERS:
            for seed in (0, 1):
                blown = m == 8.0 and (subset == 10000 or seed == 1)
                test = math.nan if blown else 1 + 0.05 * (math.log2(m / mt)) ** 2 + rng.normal(0, 0.01)
                rows.append(
                    dict(
                        subset=subset,
                        multiplier=m,
                        base_lr=0.025,
                        lr=0.025 * m,
                        seed=seed,
                        status="finished",
                        diverged=blown,
                        test_loss=test,
                        clean_train_loss=math.nan if blown else 0.4 + 0.01 * m,
                    )
                )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def probe() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    rows = []
    for cond, b in (("half-noaug", 0.05), ("full-aug", 0.1)):
        for m in (0.5, 1.0, 2.0):
            for age in range(6):
                for step in range(5):
                    loss = 1.7 - b * m * math.exp(-age / 2) + rng.normal(0, 0.01)
                    rows.append(
                        dict(
                            run=f"{cond}{m}",
                            condition=cond,
                            multiplier=m,
                            lr=0.4 * m,
                            seed=0,
                            step=step,
                            epoch=5 - age,
                            epoch_age=age,
                            loss_now=loss,
                            acc_now=0.5,
                            loss_when_seen=loss + 0.02 * age,
                            n=64,
                        )
                    )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def probe_runs() -> pd.DataFrame:
    return pd.DataFrame(
        [
            dict(
                run=f"{c}{m}",
                condition=c,
                multiplier=m,
                lr=0.4 * m,
                seed=0,
                test_loss=1.72,
                test_acc=0.4,
                train_loss=1.6,
                epochs=6,
                subset=5000,
            )
            for c in ("half-noaug", "full-aug")
            for m in (0.5, 1.0, 2.0)
        ]
    )


def _assert_written(saved, stem):
    assert [p.name for p in saved] == [stem.name + ".png", stem.name + ".svg"]
    for p in saved:
        assert p.exists() and p.stat().st_size > 1000
    assert saved[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in saved[1].read_bytes()[:2000]


def _data_lines(ax, prefix=""):
    """Lines with a visible legend label (not helpers, whose labels start with '_')."""
    return [ln for ln in ax.get_lines() if not ln.get_label().startswith("_") and ln.get_label().startswith(prefix)]


def test_lr_sweep_figure(tmp_path, results):
    stem = tmp_path / "fig1_w0.25"  # a dot in the stem must survive
    optimum = sweep_fits.optimum_by_subset(results, n_boot=50)
    saved = plots.plot_lr_sweep(results, stem, SCALE, optimum=optimum)
    _assert_written(saved, stem)
    fig = saved.figure
    assert len(fig.axes) == 2
    for ax in fig.axes:
        assert len(_data_lines(ax)) == 2  # one line per subset
        assert [t.get_text() for t in ax.get_xticklabels()] == ["1/8", "1/2", "2", "8"]
    left = fig.axes[0]
    diverged = [ln for ln in left.get_lines() if ln.get_label() == "_diverged"]
    assert sorted(len(ln.get_xdata()) for ln in diverged) == [1, 1]  # x8 blew up in both subsets
    assert len([ln for ln in left.get_lines() if ln.get_label() == "_opt"]) == 2
    assert SCALE in fig._suptitle.get_text()


def test_lr_sweep_figure_says_what_it_plots_and_marks_a_lone_surviving_seed(tmp_path, results):
    fig = plots.plot_lr_sweep(results, tmp_path / "f", SCALE).figure
    left = fig.axes[0]
    assert "final epoch" in left.get_title() and "log2" in left.get_xlabel()
    assert "Final-epoch" in fig._suptitle.get_text()
    # x8 at 1,250 images: seed 0 alone survived (seed 1 blew up); at 10,000 images both blew up
    (lone,) = [ln for ln in left.get_lines() if ln.get_label() == "_one_seed" and len(ln.get_xdata())]
    assert list(lone.get_xdata()) == [8.0] and lone.get_markerfacecolor() == "white"
    survivor = results.query("subset == 1250 and multiplier == 8 and seed == 0")["test_loss"].iloc[0]
    assert lone.get_ydata()[0] == pytest.approx(survivor)  # that run's loss, drawn as it is
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any(t.startswith("one seed survived") for t in labels)
    one_seed = results[results["seed"] == 0]  # a one-seed study: every point one run, none told apart
    fig = plots.plot_lr_sweep(one_seed, tmp_path / "g", SCALE).figure
    assert not any(len(ln.get_xdata()) for ln in fig.axes[0].get_lines() if ln.get_label() == "_one_seed")


def test_lr_sweep_figure_draws_the_turn_up_rule_and_puts_optima_on_their_curves(tmp_path, results):
    optimum = sweep_fits.optimum_by_subset(results, n_boot=50)
    fig = plots.plot_lr_sweep(results, tmp_path / "f", SCALE, optimum=optimum).figure
    left = fig.axes[0]
    levels = verdicts.turn_up_levels(results).set_index("subset")
    thresholds = sorted(ln.get_ydata()[0] for ln in left.get_lines() if ln.get_label() == "_threshold")
    assert thresholds == pytest.approx(sorted(1.1 * levels["loss_min"]))
    rings = [ln.get_xdata()[0] for ln in left.get_lines() if ln.get_label() == "_turn_up"]
    assert sorted(rings) == sorted(levels["turn_up"].clip(upper=max(MULTIPLIERS)))
    opt_heights = sorted(ln.get_ydata()[0] for ln in left.get_lines() if ln.get_label() == "_opt")
    assert opt_heights == pytest.approx(sorted(levels["loss_min"]))  # on each curve's minimum, not in a margin
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "95% t interval over 2 seeds" in labels and any(t.startswith("+10% above the minimum") for t in labels)


def test_forgetting_figure_has_a_panel_per_lr(tmp_path, probe, probe_runs):
    saved = plots.plot_forgetting(probe, probe_runs, tmp_path / "fig2", SCALE)
    _assert_written(saved, tmp_path / "fig2")
    axes = saved.figure.axes
    assert len(axes) == 3
    for ax in axes:
        assert sorted(ln.get_label() for ln in _data_lines(ax)) == ["full-aug", "half-noaug"]
        assert len([ln for ln in ax.get_lines() if ln.get_label().startswith("_test")]) == 2
        assert len([ln for ln in ax.get_lines() if ln.get_label().startswith("_seen")]) == 2
        left, right = ax.get_xlim()
        assert left > right  # time reads left to right: age 0 at the right
    assert axes[0].get_title().startswith("LR ×1/2")


def test_five_panels_wrap_at_three_per_row(tmp_path):
    rows = [
        dict(
            run=f"r{m}",
            condition="full-aug",
            multiplier=m,
            lr=0.1 * m,
            seed=0,
            step=s,
            epoch=3 - a,
            epoch_age=a,
            loss_now=1.0 + 0.01 * a + 0.001 * s,
            n=64,
        )
        for m in (0.5, 1.0, 2.0, 4.0, 8.0)
        for a in range(4)
        for s in range(3)
    ]  # one row per replayed step
    fig = plots.plot_forgetting(pd.DataFrame(rows), None, tmp_path / "f", SCALE).figure
    assert len(fig.axes) == 5
    columns = {round(ax.get_position().x0, 3) for ax in fig.axes}
    assert len(columns) == 3  # two rows: 3 + 2


def test_a_test_loss_far_above_the_axis_is_written_and_the_legend_says_so(tmp_path, probe, probe_runs):
    runs = probe_runs.assign(test_loss=np.where(probe_runs["condition"] == "half-noaug", 9.5, 1.72))
    fig = plots.plot_forgetting(probe, runs, tmp_path / "f", SCALE).figure
    top = fig.axes[0].get_ylim()[1]
    assert top < 2.0  # the range follows the losses (1.5-1.72), not the far test loss
    assert all([t.get_text() for t in ax.texts] == ["test loss 9.50 ↑"] for ax in fig.axes)
    assert all(ax.texts[0].xy[1] < top for ax in fig.axes)  # written inside the panel, in a band of its own
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "test loss, same weights (far above ↑ or below ↓ the data: its value)" in labels
    fig = plots.plot_forgetting(probe, probe_runs, tmp_path / "g", SCALE).figure  # nothing clipped: no note
    assert not any(ax.texts for ax in fig.axes)
    assert "test loss, same weights" in [t.get_text() for t in fig.legends[0].get_texts()]
    assert fig.axes[0].get_ylim()[1] > 1.72  # a test loss near the data is drawn within the range


def test_a_test_loss_far_below_is_written_at_the_bottom_and_a_small_effect_fills_the_axis(tmp_path, probe, probe_runs):
    runs = probe_runs.assign(test_loss=0.2)
    fig = plots.plot_forgetting(probe, runs, tmp_path / "f", SCALE).figure
    lo, hi = fig.axes[0].get_ylim()
    assert lo > 1.0 and [t.get_text() for t in fig.axes[0].texts] == ["test loss 0.20 ↓", "test loss 0.20 ↓"]
    agg = probe_fits.epoch_aggregates(probe)
    effect = agg["loss_now"].max() - agg["loss_now"].min()  # ~0.2 nat across ages and LRs
    assert effect / (hi - lo) > 0.5  # the losses fill most of the panel's height


def test_with_several_seeds_the_band_is_over_seeds(tmp_path, probe):
    # three seeds that differ in level by 0.3 but rise alike with age: a within-seed band is narrow
    seeds = pd.concat([probe.assign(seed=k, loss_now=probe["loss_now"] + 0.3 * k) for k in range(3)])
    fig = plots.plot_forgetting(seeds, None, tmp_path / "f", SCALE).figure
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any("mean of 3 seeds, 95% within-seed interval" in t for t in labels)
    one = plots.plot_forgetting(probe, None, tmp_path / "g", SCALE).figure
    assert any("one seed" in t.get_text() and "the epoch's batches" in t.get_text() for t in one.legends[0].get_texts())
    agg = probe_fits.epoch_seed_aggregates(seeds)
    assert (agg["n_seeds"] == 3).all()
    assert ((agg["loss_now_hi"] - agg["loss_now_lo"]) < 0.05).all()  # the 0.3 offsets are not in the band


def test_forgetting_figure_without_reference_or_loss_when_seen(tmp_path, probe):
    saved = plots.plot_forgetting(
        probe.drop(columns="loss_when_seen").query("multiplier == 1.0"), None, tmp_path / "f", SCALE
    )
    (ax,) = saved.figure.axes
    assert len(ax.get_lines()) == 2


def test_recency_figure(tmp_path, probe_runs):
    rng = np.random.default_rng(2)
    steps = rng.integers(0, 300, 600)
    rec = pd.DataFrame(
        dict(
            run="r",
            condition=np.repeat(["half-noaug", "full-aug"], 300),
            multiplier=np.tile([0.5, 2.0], 300),
            lr=0.2,
            seed=0,
            index=np.arange(600),
            steps_since_seen=steps,
            loss_now=1.6 + 0.001 * steps,
        )
    )
    saved = plots.plot_recency(rec, tmp_path / "recency", SCALE, probe_runs=probe_runs, bins=6)
    _assert_written(saved, tmp_path / "recency")
    assert len(saved.figure.axes) == 2
    assert all(len(_data_lines(ax)) == 2 for ax in saved.figure.axes)


def test_lr_find_figure(tmp_path):
    lrs = np.geomspace(1e-4, 10, 50)
    curves = pd.concat(
        [
            pd.DataFrame(
                dict(seed=s, lr=lrs, loss=2.3 - 0.5 * np.tanh(lrs) + 0.05 * s, smoothed_loss=2.3 - 0.5 * np.tanh(lrs))
            )
            for s in (0, 1)
        ]
    )
    found = dict(
        config=dict(net="dawn18", width=0.25, batch_size=128, subset=5120, augment=True),
        settings=dict(num_steps=100, start_lr=1e-4, end_lr=10.0),
        seeds=[0, 1],
        device="cpu",
        processor="AMD EPYC",
    )
    scale = finder_scale(found)
    assert scale == (
        "finder: dawn18 width 0.25, batch 128, 5,120 images with crop+flip; 100 steps from LR 0.0001 to 10, "
        "seeds 0, 1; on cpu, AMD EPYC"
    )
    saved = plots_lr_find.plot_lr_find(curves, 0.4, "steepest", tmp_path / "lrfind", scale, "cpu-probe")
    _assert_written(saved, tmp_path / "lrfind")
    (ax,) = saved.figure.axes
    assert [ln.get_label() for ln in _data_lines(ax)] == ["seed 0", "seed 1", "steepest: 0.4"]
    assert ax.get_xscale() == "log"
    title = saved.figure._suptitle.get_text()
    assert title.count("LR range test") == 1 and "cpu-probe" in title and title.endswith(scale)
    assert "epochs" not in title  # the finder's own scale, not the study's training


def test_empty_tables_are_a_user_error(tmp_path, results):
    with pytest.raises(UserError):
        plots.plot_lr_sweep(results.assign(status="failed"), tmp_path / "x", SCALE)


def test_multiplier_labels():
    assert [plots.multiplier_label(m) for m in (0.125, 0.25, 1.0, 16.0, 0.3)] == ["1/8", "1/4", "1", "16", "0.3"]


def test_tau_lr_figure_has_points_fit_and_revisit_lines(tmp_path):
    law = dict(
        taus=[dict(multiplier=m, lr=0.03 * m, tau=40.0 / m, tau_lo=30.0 / m, tau_hi=55.0 / m) for m in (0.5, 1, 2, 4)],
        alpha=1.0,
        alpha_lo=0.8,
        alpha_hi=1.2,
        c=math.log(40 * 0.03),
        versus_sweep=[
            dict(
                sweep="s",
                reading="final",
                subset=1280,
                revisit_steps=10.0,
                turn_up=4.0,
                base_lr=0.03,
                turn_up_past_grid=False,
            )
        ],
    )
    saved = plots.plot_tau_lr(law, tmp_path / "tau_lr", SCALE)
    assert [p.suffix for p in saved] == [".png", ".svg"] and all(p.stat().st_size > 1000 for p in saved)
    fig = saved.figure
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert ax.get_legend() is None  # the legend sits below the axes, where it hides no line or marker
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any("α = 1.00" in t for t in labels) and any("over 4 LRs" in t for t in labels)
    notes = [t.get_text() for t in ax.texts]
    assert notes == ["N = 1,280: N/B = 10"]  # each revisit line is named at its right end
    (fit,) = [ln for ln in ax.get_lines() if ln.get_label().startswith("tau ∝")]
    assert min(fit.get_xdata()) == pytest.approx(0.015) and max(fit.get_xdata()) == pytest.approx(0.12)
    (turn,) = [ln for ln in ax.get_lines() if ln.get_marker() == "v"]
    assert (
        turn.get_xdata()[0] == pytest.approx(0.12) and turn.get_markerfacecolor() == "none"
    )  # open: a tau shows through
    with pytest.raises(UserError):
        plots.plot_tau_lr(dict(taus=[]), tmp_path / "empty", SCALE)


def test_the_same_figure_saves_to_the_same_bytes(tmp_path, results):
    """Figures are regenerated from tables and committed: SVG ids must not change from run to run."""
    first = plots.plot_lr_sweep(results, tmp_path / "a", SCALE)
    second = plots.plot_lr_sweep(results, tmp_path / "b", SCALE)
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
