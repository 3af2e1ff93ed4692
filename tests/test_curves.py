"""TensorBoard's live curves, read back from the event files: one folder per run (run id and label), each
epoch's training loss and accuracy, LR, the test loss where evaluated, and the probe's loss by epoch age."""

from __future__ import annotations

import pytest

from forgetting import curves, studies
from helpers import REPO_ROOT
from forgetting.execution.settings import ExecutorSettings
from forgetting.experiments.run import run_study

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def scalars(folder) -> dict[str, list[tuple[int, float]]]:
    acc = event_accumulator.EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_a_two_run_probe_study_writes_each_run_s_curves_and_probe(tmp_path, synthetic_cifar, one_thread):
    study = studies.load_study("cpu-probe").with_overrides(
        epochs=3, warmup=0, width=0.125, subset=200, batch_size=50, multipliers=[1.0], base_lr=0.4, seeds=[0]
    )
    board = tmp_path / "tb"
    out = run_study(study, tmp_path / "store", synthetic_cifar, ExecutorSettings(device="cpu"), tensorboard=board)
    specs = out.sweep.specs
    assert sorted(p.name for p in board.iterdir()) == sorted(curves.run_label(s) for s in specs)
    assert curves.run_label(specs[0]) == f"{specs[0].id}-half-noaug-n100-x1-seed0"
    for spec in specs:
        found = scalars(board / curves.run_label(spec))
        tags = {"train/loss", "train/accuracy", "lr", "test/loss", "test/accuracy", "probe/loss", "probe/accuracy"}
        assert set(found) == tags
        assert [step for step, _ in found["train/loss"]] == [1, 2, 3]  # one point per epoch
        assert [step for step, _ in found["test/loss"]] == [3]  # evaluated on the last epoch only
        assert [step for step, _ in found["probe/loss"]] == [0, 1, 2]  # by epoch age
        history = out.sweep.store.run(spec.id).history.read_text().splitlines()[1:]
        assert found["train/loss"][-1][1] == pytest.approx(float(history[-1].split(",")[2]), rel=1e-6)
        rows = out.probe[out.probe["run"] == spec.id]
        by_age = (rows["loss_now"] * rows["n"]).groupby(rows["epoch_age"]).sum() / rows.groupby("epoch_age")["n"].sum()
        assert [v for _, v in found["probe/loss"]] == pytest.approx(by_age.sort_index().tolist(), rel=1e-5)


def test_the_study_key_names_the_folder_and_the_option_wins(tmp_path, synthetic_cifar, one_thread):
    text = (REPO_ROOT / "studies" / "cpu-lr-sweep.toml").read_text()
    keyed = tmp_path / "keyed.toml"
    keyed.write_text(text.replace("[study]\n", f"[study]\ntensorboard = '{tmp_path / 'from-key'}'\n", 1))
    study = studies.load_study(str(keyed)).with_overrides(
        sizes=[100], multipliers=[1.0], seeds=[0], epochs=1, warmup=0, width=0.125, batch_size=50, base_lr=0.4
    )
    assert study.tensorboard == str(tmp_path / "from-key")
    run_study(study, tmp_path / "store", synthetic_cifar, ExecutorSettings(device="cpu"))
    assert len(list((tmp_path / "from-key").iterdir())) == 1
    run_study(study, tmp_path / "store2", synthetic_cifar, ExecutorSettings(device="cpu"), tensorboard=tmp_path / "opt")
    assert len(list((tmp_path / "opt").iterdir())) == 1
