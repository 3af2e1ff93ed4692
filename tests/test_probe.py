"""The forgetting probe: exact replay (digests), an LR-0 control, Toneva counting, the command end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from forgetting import config, probe, replay, train
from forgetting.probe import ProbeError, count_forgetting

from helpers import make_synthetic


def _train_run(tmp_path, cifar, name="run", **kw):
    cfg = config.TrainConfig(
        **{
            **dict(
                net="dawn18",
                width=0.125,
                subset=200,
                epochs=3,
                batch_size=50,
                lr_knots=((0, 0), (1, 0.4), (3, 0.4)),
                augment=True,
                seed=3,
            ),
            **kw,
        }
    )
    out = tmp_path / name
    train.train_to_dir(cfg, cifar, out, "cpu")
    return out, cfg


@pytest.fixture(scope="module")
def synth():
    return make_synthetic(400, 100, seed=1)


def test_probe_rows_and_reference(tmp_path, synth):
    run_dir, cfg = _train_run(tmp_path, synth)
    rp = probe.probe_run(run_dir, synth, torch.device("cpu"))
    assert len(rp.steps) == 3 * (200 // 50)
    assert sorted(rp.steps["epoch_age"].unique()) == [0, 1, 2]
    steps = pd.read_csv(run_dir / "steps.csv")
    # loss_when_seen is the training loss recorded at that step
    np.testing.assert_allclose(rp.steps["loss_when_seen"], steps["loss"])
    assert np.isfinite(rp.run["test_loss"])
    # last K epochs only
    assert sorted(probe.probe_run(run_dir, synth, torch.device("cpu"), last_epochs=1).steps["epoch_age"].unique()) == [
        0
    ]


@pytest.mark.parametrize("change", [{"seed": 4}, {"augment": False}, {"cutout": 8}])
def test_changed_seed_or_augmentation_is_caught_by_the_digest_check(tmp_path, synth, change):
    run_dir, cfg = _train_run(tmp_path, synth)
    tampered = dict(cfg.to_dict(), **change)
    (run_dir / "config.json").write_text(json.dumps(tampered))
    with pytest.raises(ProbeError, match=rf"run {run_dir.name}: batch at epoch \d+ step \d+ does not match"):
        probe.probe_run(run_dir, synth, torch.device("cpu"))


def test_probe_replays_a_bf16_run_with_a_partial_batch_exactly(tmp_path, synth):
    """bf16 data and autocast, and a partial last batch (230 = 4 x 50 + 30): the digests still match."""
    run_dir, cfg = _train_run(tmp_path, synth, subset=230, epochs=2, precision="bf16")
    assert json.loads((run_dir / "result.json").read_text())["precision"] == "bfloat16"
    rp = probe.probe_run(run_dir, synth, torch.device("cpu"))  # raises ProbeError on any digest mismatch
    steps = pd.read_csv(run_dir / "steps.csv")
    assert rp.steps["n"].tolist() == steps["n"].tolist() == [50, 50, 50, 50, 30] * 2
    np.testing.assert_allclose(rp.steps["loss_when_seen"], steps["loss"])
    assert np.isfinite(rp.steps["loss_now"]).all()
    # a replay that dropped the partial batch would be a different plan: caught
    (run_dir / "config.json").write_text(json.dumps(dict(cfg.to_dict(), drop_last=True)))
    with pytest.raises(ProbeError, match="does not match"):
        probe.probe_run(run_dir, synth, torch.device("cpu"))


def test_bn_batch_mode_leaves_weights_and_statistics_untouched(tmp_path, synth):
    run_dir, _ = _train_run(tmp_path, synth)
    before = torch.load(run_dir / "model.pt")
    model = train.build_model(
        config.TrainConfig.from_dict(json.loads((run_dir / "config.json").read_text())), torch.device("cpu")
    )
    model.load_state_dict(before)
    saved = replay._batch_stat_mode(model)
    x = torch.randn(50, 3, 32, 32) * 3 + 1
    model(x)
    replay._restore_bn(model, saved)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    eval_rows = probe.probe_run(run_dir, synth, torch.device("cpu"), bn="eval").steps
    batch_rows = probe.probe_run(run_dir, synth, torch.device("cpu"), bn="batch").steps
    assert not np.allclose(eval_rows["loss_now"], batch_rows["loss_now"])  # the mode matters


def test_zero_lr_shows_the_same_loss_at_every_epoch_age(tmp_path, synth):
    """The probe measures training, not an artefact of replay: with LR 0 nothing is forgotten."""
    zero = ((0, 0.0), (4, 0.0))
    run_dir, _ = _train_run(tmp_path, synth, name="noaug", augment=False, epochs=4, lr_knots=zero)
    by_age = probe.probe_run(run_dir, synth, torch.device("cpu")).steps.groupby("epoch_age")["loss_now"].mean()
    assert len(by_age) == 4
    np.testing.assert_allclose(by_age.to_numpy(), by_age.iloc[0], rtol=1e-5)
    # with augmentation the views differ by epoch, so only sampling noise separates the ages
    run_dir, _ = _train_run(tmp_path, synth, name="aug", augment=True, epochs=4, lr_knots=zero)
    steps = probe.probe_run(run_dir, synth, torch.device("cpu")).steps
    g = steps.groupby("epoch_age")["loss_now"]
    se = float(np.sqrt((g.var() / g.count()).mean()))
    assert float(g.mean().max() - g.mean().min()) < 4 * se
    # and the weights really did not move
    init = train.build_model(
        config.TrainConfig.from_dict(json.loads((run_dir / "config.json").read_text())), torch.device("cpu")
    )
    final = torch.load(run_dir / "model.pt")
    for k, v in init.state_dict().items():
        if "running" not in k and "num_batches" not in k:
            assert torch.equal(v, final[k]), k


def test_count_forgetting_on_hand_built_sequences():
    # 3 epochs, examples 0..3 (each epoch presents all, in different orders), example 4 never presented
    order = np.array([[0, 1, 2, 3], [3, 2, 1, 0], [1, 0, 3, 2]])
    seq = {0: [1, 0, 1], 1: [0, 0, 0], 2: [1, 1, 0], 3: [0, 1, 1]}  # correctness by epoch
    correct = np.array([[seq[i][e] for i in order[e]] for e in range(3)], dtype=bool)
    df = count_forgetting(order, correct, n_index=6).set_index("index")
    assert list(df.index) == [0, 1, 2, 3]
    assert df.loc[0, "forgetting_events"] == 1 and df.loc[2, "forgetting_events"] == 1
    assert df.loc[1, "forgetting_events"] == 0 and df.loc[3, "forgetting_events"] == 0
    assert bool(df.loc[1, "never_learned"]) and df.loc[1, "first_learned_epoch"] == -1
    assert df.loc[3, "first_learned_epoch"] == 1 and df.loc[0, "first_learned_epoch"] == 0
    assert (df["presentations"] == 3).all()


def test_count_forgetting_across_a_skipped_presentation():
    # example 0 is right in epoch 0, not presented in epoch 1 (dropped batch), wrong in epoch 2: one event
    order = np.array([[0, 1], [1, 2], [2, 0]])
    correct = np.array([[1, 1], [1, 1], [1, 0]], dtype=bool)
    df = count_forgetting(order, correct, n_index=3).set_index("index")
    assert df.loc[0, "forgetting_events"] == 1 and df.loc[0, "presentations"] == 2
    assert df.loc[1, "forgetting_events"] == 0


@pytest.mark.integration
def test_probe_epochs_command_end_to_end_and_reuses_runs(tmp_path, cifar_path):
    env = dict(os.environ, FORGETTING_DATA=str(cifar_path))
    args = [
        sys.executable,
        "-m",
        "forgetting.cli",
        "probe-epochs",
        "--epochs",
        "4",
        "--warmup",
        "1",
        "--width",
        "0.125",
        "--subset",
        "1000",
        "--batch-size",
        "100",
        "--multipliers",
        "1",
        "--base-lr",
        "0.4",
        "--store",
        str(tmp_path),
        "--device",
        "cpu",
    ]
    r = subprocess.run(args, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    folder = tmp_path / "cpu-probe"
    p = pd.read_csv(folder / "probe.csv")
    per_epoch = p.groupby(["condition", "epoch_age"]).size().unstack()
    assert per_epoch.loc["full-aug"].tolist() == [10, 10, 10, 10]
    assert per_epoch.loc["half-noaug"].tolist() == [5, 5, 5, 5]
    assert sorted(p["epoch_age"].unique()) == [0, 1, 2, 3]
    for name in (
        "probe_runs.csv",
        "probe_epochs.csv",
        "probe_recency.csv",
        "probe_examples.csv",
        "figures/forgetting.png",
        "figures/forgetting.svg",
    ):
        assert (folder / name).stat().st_size > 0, name
    ex = pd.read_csv(folder / "probe_examples.csv")
    assert len(ex[ex["condition"] == "full-aug"]) == 1000 and len(ex[ex["condition"] == "half-noaug"]) == 500
    stamps = {q: q.stat().st_mtime_ns for q in folder.glob("runs/*/result.json")}
    assert len(stamps) == 2
    r2 = subprocess.run(args, capture_output=True, text=True, env=env)
    assert r2.returncode == 0, r2.stderr
    assert "2 of 2 runs already finished" in r2.stdout
    assert stamps == {q: q.stat().st_mtime_ns for q in folder.glob("runs/*/result.json")}
    # every figure and summary regenerates from the tables alone: no runs, no weights
    import shutil

    tables = tmp_path / "tables" / "cpu-probe"
    shutil.copytree(folder, tables, ignore=shutil.ignore_patterns("runs", "figures", "summary.json", "*.lock"))
    r3 = subprocess.run(
        [
            sys.executable,
            "-m",
            "forgetting.cli",
            "figures",
            "--store",
            str(tmp_path / "tables"),
            "--out",
            str(tmp_path / "regen"),
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert r3.returncode == 0, r3.stderr
    regen = tmp_path / "regen" / "cpu-probe"
    for name in (
        "summary.json",
        "figures/forgetting.png",
        "figures/forgetting.svg",
        "figures/recency.png",
        "probe.csv",
        "study.json",
    ):
        assert (regen / name).stat().st_size > 0, name
    summary = json.loads((regen / "summary.json").read_text())
    assert {r["condition"] for r in summary["forgetting"]} == {"half-noaug", "full-aug"}


def test_a_study_with_no_run_to_probe_is_a_probe_error_not_a_name_error(tmp_path, synthetic_cifar):
    from types import SimpleNamespace

    from forgetting import grid, studies, sweep
    from forgetting.execution.settings import ExecutorSettings
    from forgetting.probe import probe_finished_runs

    study = studies.load_study("cpu-probe").with_overrides(subset=200, batch_size=50, base_lr=0.4, seeds=[0])
    specs = grid.expand(study, 0.4)  # none of them trained
    outcome = SimpleNamespace(study=study, specs=specs, mine=specs, store=sweep.StudyStore(tmp_path, study.name))
    with pytest.raises(ProbeError, match="cpu-probe: no finished, non-diverged run to probe"):
        probe_finished_runs(outcome, synthetic_cifar, ExecutorSettings(device="cpu"), 0, "eval")
