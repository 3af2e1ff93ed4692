"""A user's own data end to end: sweeps and probes on data sets of other shapes, in every accepted format,
and a store that is never probed, skipped or resumed with data other than its runs trained on."""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
import pytest

from forgetting import cli, config, datasets, probe, train
from forgetting.store import RunFolder
from helpers import image_arrays, write_cifar100_folder, write_idx_folder

SWEEP_TOML = """
[study]
name = "own-sweep"
kind = "lr-sweep"
scale = "test scale"
[data]
{data}
[train]
width = 0.125
batch_size = 50
epochs = 1
warmup = 0
[grid]
multipliers = [1]
sizes = [100, 200]
base_lr = 0.05
"""
PROBE_TOML = """
[study]
name = "own-probe"
kind = "probe"
scale = "test scale"
[data]
{data}
[train]
width = 0.125
batch_size = 50
epochs = 2
warmup = 0
[grid]
multipliers = [1]
subset = 200
base_lr = 0.05
[[conditions]]
name = "half-noaug"
fraction = 0.5
augment = false
[[conditions]]
name = "full-aug"
fraction = 1.0
augment = true
"""


def run_main(args: list[str], capsys, monkeypatch) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["forgetting", *map(str, args)])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    out, err = capsys.readouterr()
    return exit_.value.code, out, err


def digits_npz(tmp):
    """28x28 gray images as (N, H, W), 10 classes, a name of the user's own."""
    np.savez(tmp / "digits.npz", **image_arrays(240, 60, shape=(28, 28)))
    return 'name = "my-digits"\npath = "digits.npz"', (28, 28, 1), 10


def cifar100_folder(tmp):
    """A fabricated torchvision CIFAR-100 folder: 32x32x3, 100 classes."""
    write_cifar100_folder(tmp / "tv", image_arrays(300, 100, classes=100))
    return f'name = "cifar100"\npath = "{tmp / "tv"}"', (32, 32, 3), 100


def unbalanced_npz(tmp):
    """32x32x3, 10 classes of 4 to 60 training images each (NHWC)."""
    counts = [60, 4, 40, 10, 30, 25, 5, 20, 30, 16]
    np.savez(tmp / "skewed.npz", **image_arrays(240, 50, counts=counts))
    return 'name = "skewed"\npath = "skewed.npz"', (32, 32, 3), 10


def mnist_folder(tmp):
    """A fabricated torchvision MNIST folder of idx files."""
    write_idx_folder(tmp / "tv", "MNIST", image_arrays(240, 60, shape=(28, 28), seed=7))
    return f'name = "mnist"\npath = "{tmp / "tv"}"', (28, 28, 1), 10


@pytest.mark.parametrize("make", [digits_npz, cifar100_folder, unbalanced_npz, mnist_folder])
def test_a_sweep_and_a_probe_on_a_data_set_of_another_shape(make, tmp_path, capsys, monkeypatch, one_thread):
    monkeypatch.setenv(datasets.SIZES_ENV_VAR, "any")  # the built-in names' files are small fakes
    data_lines, image, classes = make(tmp_path)
    for toml, command in ((SWEEP_TOML, "sweep-lr"), (PROBE_TOML, "probe-epochs")):
        study = tmp_path / f"{command}.toml"
        study.write_text(toml.format(data=data_lines))
        code, out, err = run_main(
            [command, study, "--store", tmp_path / "store", "--device", "cpu"], capsys, monkeypatch
        )
        assert code == 0, err
    name = data_lines.split('"')[1]
    expected = datasets.load_dataset(name, tmp_path / data_lines.split('"')[3])
    assert expected.image_size + (expected.channels,) == image and expected.num_classes == classes
    for folder in ("own-sweep", "own-probe"):
        table = pd.read_csv(tmp_path / "store" / folder / "results.csv", dtype={"data_fingerprint": str})
        assert (table["status"] == "finished").all() and len(table) == 2
        assert set(table["dataset"]) == {name} and set(table["data_fingerprint"]) == {expected.fingerprint}
        record = json.loads((tmp_path / "store" / folder / "study.json").read_text())
        assert record["data"]["fingerprint"] == expected.fingerprint and record["data"]["classes"] == classes
    probed = pd.read_csv(tmp_path / "store" / "own-probe" / "probe_runs.csv")
    assert len(probed) == 2 and np.isfinite(probed["test_loss"]).all()
    examples = pd.read_csv(tmp_path / "store" / "own-probe" / "probe_examples.csv")
    assert examples["label"].between(0, classes - 1).all()


def changed_copy(arrays: dict, images: list[int]) -> dict:
    """The same data set with a few training images changed (same shape, same labels)."""
    out = {k: v.copy() for k, v in arrays.items()}
    out["train_x"][images] = 255 - out["train_x"][images]
    return out


def snapshot(folder) -> dict:
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_store_is_never_probed_or_skipped_with_other_data(tmp_path, capsys, monkeypatch, one_thread):
    a = image_arrays(240, 60, seed=11)
    np.savez(tmp_path / "a.npz", **a)
    np.savez(tmp_path / "b.npz", **changed_copy(a, [3, 50, 100]))
    study = tmp_path / "probe.toml"
    study.write_text(PROBE_TOML.format(data='name = "tiny"'))
    args = ["probe-epochs", study, "--store", tmp_path / "store", "--device", "cpu", "--data"]
    code, _, err = run_main([*args, tmp_path / "a.npz"], capsys, monkeypatch)
    assert code == 0, err
    runs = tmp_path / "store" / "own-probe" / "runs"
    old_ids = {p.name for p in runs.iterdir()}
    before = snapshot(runs)

    code, _, err = run_main([*args, tmp_path / "b.npz"], capsys, monkeypatch)
    assert code == 0, err
    fa, fb = (datasets.load_dataset("tiny", tmp_path / f"{n}.npz").fingerprint for n in "ab")
    said = [line for line in err.splitlines() if fa in line]
    assert len(said) == 1 and fb in said[0], err  # one line names both data sets
    new_ids = {p.name for p in runs.iterdir()} - old_ids
    assert len(new_ids) == len(old_ids) == 2, "the runs on the other data must be new runs, not skipped as finished"
    assert {p: v for p, v in snapshot(runs).items() if p.parent.name in old_ids} == before, "old runs' files changed"
    probed = set(pd.read_csv(tmp_path / "store" / "own-probe" / "probe_runs.csv", dtype={"run": str})["run"])
    assert probed == new_ids, "only the runs trained on the new images are probed"
    # the old weights, asked for directly, are refused on the new images, in one line naming both
    with pytest.raises(config.DataMismatch, match=f"{fa}.*{fb}") as err_:
        probe.probe_run(runs / sorted(old_ids)[0], datasets.load_dataset("tiny", tmp_path / "b.npz"), "cpu")
    assert "\n" not in str(err_.value)


class StopAfterFirstEpoch(train.Callbacks):
    def end_epoch(self, row):
        raise KeyboardInterrupt


def test_a_checkpoint_is_never_resumed_on_other_data(tmp_path, one_thread):
    a = image_arrays(200, 50, seed=12)
    data_a = datasets.make_dataset("tiny", a, "a")
    data_b = datasets.make_dataset("tiny", changed_copy(a, [0]), "b")
    cfg = config.TrainConfig(width=0.125, subset=200, batch_size=50, epochs=2, lr_knots=((0, 0.05), (2, 0.05)))
    with pytest.raises(KeyboardInterrupt):
        train.train_to_dir(cfg, data_a, tmp_path, "cpu", callbacks=StopAfterFirstEpoch())
    checkpoint = RunFolder(tmp_path).checkpoint
    kept = checkpoint.read_bytes()
    with pytest.raises(config.DataMismatch, match=f"checkpoint.*{data_a.fingerprint}.*{data_b.fingerprint}"):
        train.train_to_dir(cfg, data_b, tmp_path, "cpu")
    assert checkpoint.read_bytes() == kept and not RunFolder(tmp_path).result.exists()
