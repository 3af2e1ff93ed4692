"""forgetting.train: configs and presets, CPU repeatability, divergence, resume, run files."""

from __future__ import annotations

import csv
import dataclasses
import itertools
import json
import os
import re
import types

import numpy as np
import pytest
import torch

from forgetting import augment, config, device, train
from forgetting import data as data_mod
from forgetting.errors import UserError
from forgetting.schedules import triangle
from forgetting.store import RunFolder

# Tiny runs on the synthetic 500-image set: width 0.125, 5 steps an epoch, about a second each on CPU.
CFG = config.TrainConfig(
    width=0.125, subset=500, batch_size=100, epochs=2, lr_knots=((0, 0), (1, 0.4), (2, 0)), eval_every=1
)
# For the run-folder tests: 3 epochs, and a batch size that leaves a partial batch (500 = 4 x 120 + 20),
# kept as Page's loader keeps it (drop_last=False, the default).
CFG_DIR = dataclasses.replace(CFG, batch_size=120, epochs=3, lr_knots=((0, 0), (1, 0.4), (3, 0)))
pytestmark = pytest.mark.usefixtures("one_thread")

RUN_FILES = ("config.json", "history.csv", "steps.csv", "examples.npz", "model.pt", "result.json")


def bound(cfg: config.TrainConfig, data) -> config.TrainConfig:
    """``cfg`` as a run on ``data`` records it (config.json names its data set)."""
    return config.bind_data(cfg, data.identity)


def read_csv(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def strict_json(path):
    def no_constants(name):
        raise ValueError(f"{path} holds {name}, which is not JSON")

    return json.loads(path.read_text(), parse_constant=no_constants)


def knots_close(got, want) -> bool:
    return len(got) == len(want) and all(g == pytest.approx(w) for g, w in zip(got, want))


def load_state(path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def assert_state_dicts_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs"


class Recorder(train.Callbacks):
    """Records the calls; ``at`` is where a subclass steps in."""

    def __init__(self, at=None):
        self.started, self.ended, self.steps, self.at = [], [], 0, at

    def start_epoch(self, epoch, steps):
        self.started.append(epoch)

    def step(self, epoch, step):
        self.steps += 1

    def end_epoch(self, row):
        self.ended.append(row["epoch"])


class InterruptAtStart(Recorder):
    """Ctrl-C as epoch ``at`` (0-based) begins: the previous epoch's checkpoint is on disk."""

    def start_epoch(self, epoch, steps):
        super().start_epoch(epoch, steps)
        if epoch == self.at:
            raise KeyboardInterrupt


class InterruptAtEnd(Recorder):
    """Ctrl-C while epoch ``at`` (1-based, as in the history rows) is being reported."""

    def end_epoch(self, row):
        super().end_epoch(row)
        if row["epoch"] == self.at:
            raise KeyboardInterrupt


class StopAfter(Recorder):
    """Asks the run to stop, from its step callback, once ``at`` steps are done in all."""

    def step(self, epoch, step):
        super().step(epoch, step)
        return self.steps >= self.at


# ---------------------------------------------------------------------------------------------
# configs


@pytest.mark.parametrize("preset", list(config.PRESETS))
def test_make_config_presets(preset):
    cfg = config.make_config(preset)
    for key, value in config.PRESETS[preset].items():
        assert getattr(cfg, key) == value, key
    assert cfg.label == preset
    # None overrides (what the command line passes for options left out) change nothing
    assert config.make_config(preset, lr=None, net=None, epochs=None, batch_size=None, augment=None, cutout=None) == cfg


def test_presets_as_in_the_protocol_table():
    p = {name: config.make_config(name) for name in config.PRESETS}
    assert (p["part1"].net, p["part1"].batch_size, p["part1"].epochs, p["part1"].cutout) == ("dawn18", 128, 35, 0)
    assert p["part2"].batch_size == 512 and max(v for _, v in p["part2"].lr_knots) == 0.44
    assert (p["part3"].batch_size, p["part3"].cutout, p["part3"].epochs) == (768, 8, 30)
    assert (p["part4"].net, p["part4"].epochs) == ("resnet9", 24)


def test_make_config_preset_epochs_stretch_and_peak():
    cfg = config.make_config("part3", epochs=15)
    assert cfg.epochs == 15
    assert knots_close(cfg.lr_knots, ((0, 0), (4, 0.6), (15, 0)))
    cfg = config.make_config("part2", lr=0.22)
    assert knots_close(cfg.lr_knots, ((0, 0), (15, 0.22), (30, 0.0025), (35, 0)))
    cfg = config.make_config("part1", epochs=70, lr=0.2, batch_size=256)
    assert knots_close(cfg.lr_knots, ((0, 0), (30, 0.2), (60, 0.01), (70, 0)))
    assert cfg.batch_size == 256 and cfg.epochs == 70


def test_make_config_default_is_stretched_triangle():
    cfg = config.make_config()
    assert (cfg.net, cfg.epochs, cfg.batch_size, cfg.label) == ("dawn18", 30, 512, "")
    assert knots_close(cfg.lr_knots, ((0, 0), (8, 0.4), (30, 0)))
    cfg = config.make_config(epochs=15)
    assert cfg.epochs == 15 and cfg.batch_size == 512
    assert knots_close(cfg.lr_knots, ((0, 0), (4, 0.4), (15, 0)))
    assert cfg.schedule(4) == pytest.approx(0.4) and cfg.schedule(2) == pytest.approx(0.2)
    cfg = config.make_config(epochs=45, lr=0.8, batch_size=256, net="resnet9")
    assert knots_close(cfg.lr_knots, ((0, 0), (12, 0.8), (45, 0)))
    assert (cfg.batch_size, cfg.net) == (256, "resnet9")
    assert knots_close(cfg.lr_knots, triangle(0.8, 45).knots)


def test_make_config_unknown_preset():
    with pytest.raises(UserError, match="part9"):
        config.make_config("part9")


@pytest.mark.parametrize(
    "bad",
    [
        dict(net="vgg"),
        dict(width=0),
        dict(subset=0),
        dict(epochs=0),
        dict(batch_size=0),
        dict(subset=100, batch_size=101),
        dict(bn_init="zeros"),
        dict(eval_every=-1),
        dict(cutout=-1),
        dict(lr_knots=((0, 0.1),)),
        dict(lr_knots=((0, 0), (1, -1))),
    ],
)
def test_train_config_rejects(bad):
    with pytest.raises(UserError):
        config.TrainConfig(**bad)


@pytest.mark.parametrize("bad", [dict(subset=501), dict(cutout=33)])
def test_what_the_data_set_cannot_give_is_refused_before_training(synthetic_cifar, bad):
    cfg = dataclasses.replace(CFG, **bad)  # 500 training images of 32x32
    with pytest.raises(UserError, match="subset size 501|cutout 33"):
        train.train(cfg, synthetic_cifar, "cpu")


def test_config_dict_round_trip():
    cfg = config.make_config("part3", epochs=10, width=0.5, seed=3)
    d = json.loads(json.dumps(cfg.to_dict()))
    assert config.TrainConfig.from_dict(d) == cfg
    assert d["lr_knots"][1] == pytest.approx([8 / 3, 0.6])


def test_resolve_device():
    assert device.resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(UserError):
        device.resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="CUDA"):
            device.resolve_device("cuda")
        assert device.resolve_device("auto") == torch.device("cpu")


# ---------------------------------------------------------------------------------------------
# CPU runs


@pytest.fixture(scope="module")
def ref_run(one_thread, synthetic_cifar) -> train.RunOutput:
    return train.train(CFG, synthetic_cifar, "cpu")


def test_cpu_runs_bit_identical(ref_run, synthetic_cifar):
    again = train.train(CFG, synthetic_cifar, torch.device("cpu"))
    assert len(ref_run.history) == CFG.epochs
    for key in ("train_loss", "test_loss", "train_acc", "test_acc", "lr"):
        a, b = [h[key] for h in ref_run.history], [h[key] for h in again.history]
        assert all(np.isfinite(a)), key
        assert a == b, key
    assert_state_dicts_equal(ref_run.state_dict, again.state_dict)
    assert [s["loss"] for s in ref_run.steps] == [s["loss"] for s in again.steps]
    for k in ("order", "loss", "correct"):
        assert np.array_equal(ref_run.examples[k], again.examples[k]), k
    assert ref_run.result["clean_train_loss"] == again.result["clean_train_loss"]


def test_cpu_runs_bit_identical_with_two_threads(synthetic_cifar):
    """The repeatability claim holds with intra-op parallelism too (same thread count, same result).

    Kept to 2 steps: two threads on a busy shared 2-core machine can run many times slower than one.
    """
    cfg = dataclasses.replace(CFG, subset=200, epochs=1, lr_knots=((0, 0.2), (1, 0.2)))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        a, b = (train.train(cfg, synthetic_cifar, "cpu") for _ in range(2))
    finally:
        torch.set_num_threads(before)
    assert a.result["threads"] == 2
    assert [s["loss"] for s in a.steps] == [s["loss"] for s in b.steps]
    assert a.history[0]["test_loss"] == b.history[0]["test_loss"]
    assert_state_dicts_equal(a.state_dict, b.state_dict)


def test_seed_changes_the_run(ref_run, synthetic_cifar):
    other = train.train(dataclasses.replace(CFG, seed=1), synthetic_cifar, "cpu")
    assert [h["train_loss"] for h in other.history] != [h["train_loss"] for h in ref_run.history]
    assert not torch.equal(other.state_dict["0.weight"], ref_run.state_dict["0.weight"])


def test_run_output_contents(ref_run):
    r = ref_run.result
    assert r["diverged"] is False and r["epochs_completed"] == 2
    assert r["device"] == "cpu" and r["precision"] == "float32" and r["gpu"] is None
    assert r["processor"] == device.processor_name(torch.device("cpu")) and r["processor"] not in ("", "unknown")
    assert r["test_loss"] == ref_run.history[-1]["test_loss"]
    assert np.isfinite(r["clean_train_loss"]) and 0 <= r["clean_train_acc"] <= 1
    assert [h["epoch"] for h in ref_run.history] == [1, 2]
    assert ref_run.history[0]["lr"] == pytest.approx(0.4) and ref_run.history[1]["lr"] == pytest.approx(0.0)
    assert all(not v.is_cuda for v in ref_run.state_dict.values())


def test_the_machine_load_is_recorded_with_the_run_but_does_not_name_it(ref_run, monkeypatch):
    r = ref_run.result
    assert r["resumed_from_epoch"] == 0
    assert isinstance(r["load_start"], float) and isinstance(r["load_end"], float) and r["load_start"] >= 0
    assert not {"load_start", "load_end"} & set(CFG.identity()), "the machine's load must not change a run id"
    monkeypatch.delattr(os, "getloadavg")  # platforms without it record None
    assert device.machine_load() is None


def test_huge_learning_rate_diverges_and_still_writes_result(synthetic_cifar, tmp_path):
    cfg = dataclasses.replace(CFG, lr_knots=((0, 1e6), (2, 1e6)))
    result = train.train_to_dir(cfg, synthetic_cifar, tmp_path, "cpu")
    assert result["diverged"] is True
    for name in RUN_FILES:
        assert (tmp_path / name).is_file(), name
    assert not RunFolder(tmp_path).checkpoint.exists()
    saved = strict_json(tmp_path / "result.json")  # NaN must not leak into the JSON
    assert saved["diverged"] is True
    assert saved["epochs_completed"] == 1 < cfg.epochs  # stopped at the first non-finite epoch
    assert saved["test_loss"] is None and saved["clean_train_loss"] is None
    assert len(read_csv(tmp_path / "history.csv")) == 1
    assert config.TrainConfig.from_dict(strict_json(tmp_path / "config.json")) == bound(cfg, synthetic_cifar)


# ---------------------------------------------------------------------------------------------
# run folders and resume


@pytest.fixture(scope="module")
def ref_dir(one_thread, synthetic_cifar, tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    cb = Recorder()
    result = train.train_to_dir(CFG_DIR, synthetic_cifar, out, "cpu", callbacks=cb)
    assert cb.started == [0, 1, 2] and cb.ended == [1, 2, 3] and cb.steps == 3 * 5  # 5: the partial batch too
    assert result["diverged"] is False
    return out


def assert_same_run(dir_a, dir_b) -> None:
    ha, hb = read_csv(dir_a / "history.csv"), read_csv(dir_b / "history.csv")
    assert len(ha) == len(hb) == CFG_DIR.epochs
    for key in ("epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc"):
        assert [r[key] for r in ha] == [r[key] for r in hb], key
    assert_state_dicts_equal(load_state(dir_a / "model.pt"), load_state(dir_b / "model.pt"))
    sa, sb = read_csv(dir_a / "steps.csv"), read_csv(dir_b / "steps.csv")
    assert sa == sb
    with np.load(dir_a / "examples.npz") as ea, np.load(dir_b / "examples.npz") as eb:
        for k in ("order", "loss", "correct"):
            assert np.array_equal(ea[k], eb[k]), k
    ra, rb = strict_json(dir_a / "result.json"), strict_json(dir_b / "result.json")
    for key in ("train_loss", "test_loss", "clean_train_loss", "diverged", "epochs_completed"):
        assert ra[key] == rb[key], key


def test_run_dir_files(ref_dir, synthetic_cifar):
    for name in RUN_FILES:
        assert (ref_dir / name).is_file(), name
    assert not RunFolder(ref_dir).checkpoint.exists(), "the checkpoint must be removed once the run is complete"
    assert config.TrainConfig.from_dict(strict_json(ref_dir / "config.json")) == bound(CFG_DIR, synthetic_cifar)
    hist = read_csv(ref_dir / "history.csv")
    assert list(hist[0]) == train.HISTORY_COLUMNS and len(hist) == 3
    result = strict_json(ref_dir / "result.json")
    assert result["epochs_completed"] == 3 and result["diverged"] is False
    assert float(hist[-1]["test_loss"]) == pytest.approx(result["test_loss"])
    sd = load_state(ref_dir / "model.pt")
    assert sd["0.weight"].shape == (8, 3, 3, 3)


def test_steps_csv_one_row_per_step(ref_dir, synthetic_cifar):
    rows = read_csv(ref_dir / "steps.csv")
    steps_per_epoch = 5  # 4 full batches of 120 and the partial batch of 20
    assert list(rows[0]) == train.STEP_COLUMNS
    assert len(rows) == CFG_DIR.epochs * steps_per_epoch
    assert [int(r["step"]) for r in rows] == list(range(len(rows)))
    assert [int(r["epoch"]) for r in rows] == [e for e in range(CFG_DIR.epochs) for _ in range(steps_per_epoch)]
    assert all(re.fullmatch(r"[0-9a-f]{16}", r["digest"]) for r in rows)
    assert [int(r["n"]) for r in rows] == [120, 120, 120, 120, 20] * CFG_DIR.epochs
    assert all(np.isfinite(float(r["loss"])) and 0 <= float(r["acc"]) <= 1 for r in rows)
    # the digests are those of the epoch plans replayed from the config alone: what the probe relies on
    subset = data_mod.balanced_subset(synthetic_cifar.train_y, CFG_DIR.subset, CFG_DIR.seed)
    for e in range(CFG_DIR.epochs):
        plan = augment.plan_epoch(
            subset, CFG_DIR.seed, e, CFG_DIR.augment_for((32, 32)), CFG_DIR.batch_size, drop_last=False
        )
        assert [r["digest"] for r in rows if int(r["epoch"]) == e] == plan.digests()
    # the LR of a step is the schedule at the step's end, in fractional epochs
    for r in rows:
        e, s = int(r["epoch"]), int(r["step"]) % steps_per_epoch
        assert float(r["lr"]) == CFG_DIR.schedule(e + (s + 1) / steps_per_epoch)


def test_examples_npz(ref_dir, synthetic_cifar):
    n = CFG_DIR.subset  # every image, the partial batch's too
    sizes = np.array([120, 120, 120, 120, 20])
    rows = read_csv(ref_dir / "steps.csv")
    hist = read_csv(ref_dir / "history.csv")
    subset = data_mod.balanced_subset(synthetic_cifar.train_y, CFG_DIR.subset, CFG_DIR.seed)
    with np.load(ref_dir / "examples.npz") as ex:
        assert set(ex.files) == {"order", "loss", "correct"}
        for k in ex.files:
            assert ex[k].shape == (CFG_DIR.epochs, n), k
        assert ex["correct"].dtype == bool and np.isfinite(ex["loss"]).all()
        for e in range(CFG_DIR.epochs):
            plan = augment.plan_epoch(subset, CFG_DIR.seed, e, CFG_DIR.augment_for((32, 32)), CFG_DIR.batch_size, False)
            assert np.array_equal(ex["order"][e], plan.indices)
            # per-example records agree with the per-step and per-epoch records
            starts = np.r_[0, np.cumsum(sizes)[:-1]]
            per_step = np.add.reduceat(ex["loss"][e].astype(np.float64), starts) / sizes
            logged = [float(r["loss"]) for r in rows if int(r["epoch"]) == e]
            np.testing.assert_allclose(per_step, logged, rtol=1e-5)
            # the epoch's loss is over images: the partial batch weighs 20, not 120
            assert float(hist[e]["train_loss"]) == pytest.approx(ex["loss"][e].mean(), rel=1e-5)
            acc = np.add.reduceat(ex["correct"][e].astype(np.float64), starts) / sizes
            np.testing.assert_allclose(acc, [float(r["acc"]) for r in rows if int(r["epoch"]) == e])


def test_resume_after_interrupt_matches_uninterrupted(ref_dir, synthetic_cifar, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        train.train_to_dir(CFG_DIR, synthetic_cifar, tmp_path, "cpu", callbacks=InterruptAtStart(1))
    ckpt = RunFolder(tmp_path).checkpoint
    assert ckpt.is_file(), "an epoch checkpoint must be on disk after the first epoch"
    assert not (tmp_path / "result.json").exists(), "an interrupted run must not look complete"
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    assert state["epoch"] == 1 and len(state["history"]) == 1
    cb = Recorder()
    train.train_to_dir(CFG_DIR, synthetic_cifar, tmp_path, "cpu", callbacks=cb)
    assert cb.started == [1, 2], "the second call must resume at epoch 2, not start over"
    assert not ckpt.exists()
    assert_same_run(ref_dir, tmp_path)


def test_interrupt_while_reporting_first_epoch(ref_dir, synthetic_cifar, tmp_path):
    """Ctrl-C inside end_epoch of epoch 1, then train_to_dir again: the same final run."""
    with pytest.raises(KeyboardInterrupt):
        train.train_to_dir(CFG_DIR, synthetic_cifar, tmp_path, "cpu", callbacks=InterruptAtEnd(1))
    assert not (tmp_path / "result.json").exists()
    train.train_to_dir(CFG_DIR, synthetic_cifar, tmp_path, "cpu")
    assert_same_run(ref_dir, tmp_path)


def test_a_step_callback_that_returns_true_stops_the_run_there(synthetic_cifar, monkeypatch):
    """Stopped at the very last step: the epoch in progress is dropped and nothing more is evaluated."""
    calls = []
    real = train.evaluate
    monkeypatch.setattr(train, "evaluate", lambda *a, **k: calls.append(1) or real(*a, **k))
    cb = StopAfter(2 * 5)  # CFG: 2 epochs of 5 steps
    out = train.train(CFG, synthetic_cifar, "cpu", callbacks=cb)
    assert out.stopped and out.result == {} and cb.steps == 10
    assert cb.started == [0, 1] and cb.ended == [1], "the stopped epoch is not reported as ended"
    assert [h["epoch"] for h in out.history] == [1] and len(out.steps) == 5
    assert out.examples["order"].shape == (1, CFG.subset)
    assert calls == [1], "only epoch 1's test-set evaluation: no evaluation after the stop"
    assert not train.train(CFG, synthetic_cifar, "cpu").stopped  # callbacks that return None stop nothing


def test_a_run_stopped_part_way_writes_no_result_and_resumes_to_the_same_run(ref_dir, synthetic_cifar, tmp_path):
    assert train.train_to_dir(CFG_DIR, synthetic_cifar, tmp_path, "cpu", callbacks=StopAfter(7)) == {}
    assert not (tmp_path / "result.json").exists(), "a stopped run must not look complete"
    assert torch.load(RunFolder(tmp_path).checkpoint, map_location="cpu", weights_only=False)["epoch"] == 1
    cb = Recorder()
    train.train_to_dir(CFG_DIR, synthetic_cifar, tmp_path, "cpu", callbacks=cb)
    assert cb.started == [1, 2]
    assert_same_run(ref_dir, tmp_path)


def test_checkpoint_of_another_config_is_not_resumed(synthetic_cifar, tmp_path):
    short = dataclasses.replace(CFG, epochs=2)
    with pytest.raises(KeyboardInterrupt):
        train.train_to_dir(short, synthetic_cifar, tmp_path, "cpu", callbacks=InterruptAtStart(1))
    assert RunFolder(tmp_path).checkpoint.is_file()
    other = dataclasses.replace(short, seed=1)
    cb = Recorder()
    train.train_to_dir(other, synthetic_cifar, tmp_path, "cpu", callbacks=cb)
    assert cb.started == [0, 1], "a checkpoint from a different config must be ignored"
    assert config.TrainConfig.from_dict(strict_json(tmp_path / "config.json")) == bound(other, synthetic_cifar)


# ---------------------------------------------------------------------------------------------
# precision, run identity, the partial last batch

# The smallest run that still trains: 2 steps of 100 images. fp16 convolutions are slow on CPU.
TINY = dataclasses.replace(CFG, subset=200, epochs=1, lr_knots=((0, 0.4), (1, 0.4)))


@pytest.fixture(scope="module")
def tiny_fp32(one_thread, synthetic_cifar) -> train.RunOutput:
    return train.train(dataclasses.replace(TINY, precision="fp32"), synthetic_cifar, "cpu")


@pytest.mark.parametrize("precision, name", [("bf16", "bfloat16"), ("fp16", "float16")])
def test_amp_precisions_run_on_cpu_near_fp32(tiny_fp32, synthetic_cifar, precision, name):
    """bf16 and fp16 take the CUDA path (autocast, GradScaler for fp16, half-precision data) on CPU."""
    cfg = dataclasses.replace(TINY, precision=precision)
    assert device.amp_dtype(torch.device("cpu"), precision) == getattr(torch, name)
    assert device.data_dtype(torch.device("cpu"), precision) == torch.float16
    out = train.train(cfg, synthetic_cifar, "cpu")
    r, ref = out.result, tiny_fp32.result
    assert r["precision"] == name and ref["precision"] == "float32"
    assert r["diverged"] is False
    for key in ("train_loss", "test_loss", "clean_train_loss"):
        assert np.isfinite(r[key]), key
        assert r[key] == pytest.approx(ref[key], rel=0.02), key
    assert r["test_loss"] != ref["test_loss"], "half precision must actually round differently from fp32"
    assert all(v.dtype == torch.float32 for v in out.state_dict.values() if v.is_floating_point())


def test_auto_precision_is_fp32_on_cpu(tiny_fp32, synthetic_cifar):
    assert device.amp_dtype(torch.device("cpu")) is None
    auto = train.train(TINY, synthetic_cifar, "cpu")
    assert auto.result["precision"] == "float32"
    assert auto.result["test_loss"] == tiny_fp32.result["test_loss"]


def test_huge_learning_rate_diverges_under_fp16_loss_scaling(synthetic_cifar):
    """GradScaler skips steps with non-finite gradients; the run must still end as diverged."""
    cfg = dataclasses.replace(TINY, precision="fp16", epochs=2, lr_knots=((0, 1e6), (2, 1e6)))
    r = train.train(cfg, synthetic_cifar, "cpu").result
    assert r["diverged"] is True and r["precision"] == "float16"
    assert r["epochs_completed"] < cfg.epochs


def test_bad_precision_is_a_user_error():
    with pytest.raises(UserError, match="precision"):
        config.TrainConfig(precision="fp8")


def test_identity_keeps_old_run_ids():
    """Settings added later are left out of the identity at the value that reproduces old runs."""
    base = config.TrainConfig(subset=1280, batch_size=128)  # no partial batch
    assert not {"precision", "drop_last", "compile"} & set(base.identity())
    assert dataclasses.replace(base, drop_last=True).identity() == base.identity()
    assert dataclasses.replace(base, compile=True).identity() == base.identity()
    assert dataclasses.replace(base, precision="bf16").identity()["precision"] == "bf16"
    partial = config.TrainConfig(subset=1000, batch_size=128)
    assert partial.identity()["drop_last"] is False  # a new kind of run: a new id
    assert "drop_last" not in dataclasses.replace(partial, drop_last=True).identity()  # what old runs did


def test_partial_batch_is_an_extra_step_after_the_same_full_batches(synthetic_cifar):
    keep = dataclasses.replace(TINY, subset=250)  # 2 x 100 + 50
    drop = dataclasses.replace(keep, drop_last=True)
    a, b = train.train(keep, synthetic_cifar, "cpu"), train.train(drop, synthetic_cifar, "cpu")
    assert [s["n"] for s in a.steps] == [100, 100, 50] and [s["n"] for s in b.steps] == [100, 100]
    assert [s["digest"] for s in a.steps[:2]] == [s["digest"] for s in b.steps]
    assert a.examples["order"].shape == (1, 250) and b.examples["order"].shape == (1, 200)
    assert not torch.equal(a.state_dict["0.weight"], b.state_dict["0.weight"])
    assert a.history[0]["train_loss"] == pytest.approx(a.examples["loss"][0].mean(), rel=1e-5)


def test_compile_bookkeeping_without_compiling(synthetic_cifar, monkeypatch):
    """The compile path's bookkeeping, with torch.compile stubbed out (a real compile takes minutes on a
    shared 2-core CPU; `benchmarks/compile_cpu.py` measures that): the first step of each batch shape is
    timed as compiling, the rest as training; a compiled run is the same run (same id) as an eager one."""
    compiled_modules = []

    def fake_compile(model, **kw):
        compiled_modules.append(kw)
        return model

    monkeypatch.setattr(torch, "compile", fake_compile)
    ticks = itertools.count()  # a clock that moves one second per reading: each timed span is countable
    monkeypatch.setattr(train, "time", types.SimpleNamespace(perf_counter=lambda: float(next(ticks))))
    cfg = dataclasses.replace(TINY, subset=250, compile=True)  # 2 x 100 + 50: two batch shapes
    out = train.train(cfg, synthetic_cifar, "cpu")
    assert compiled_modules == [dict(dynamic=False)]
    # one second for the first step of each of the two batch shapes, none for any other step
    assert out.result["compiled"] is True and out.result["compile_seconds"] == 2.0
    eager = train.train(dataclasses.replace(cfg, compile=None), synthetic_cifar, "cpu")  # None = off on CPU
    assert eager.result["compiled"] is False and eager.result["compile_seconds"] == 0
    assert len(compiled_modules) == 1
    assert [s["loss"] for s in out.steps] == [s["loss"] for s in eager.steps]  # the stub changes nothing
    assert cfg.identity() == dataclasses.replace(cfg, compile=False).identity()


def test_eval_train_records_the_clean_training_loss_on_evaluated_epochs_only(ref_run, synthetic_cifar):
    cfg = dataclasses.replace(CFG, epochs=3, eval_every=0, eval_last=2, eval_train=True)
    out = train.train(cfg, synthetic_cifar, "cpu")
    clean = [h["clean_train_loss"] for h in out.history]
    assert np.isnan(clean[0]) and all(np.isfinite(clean[1:]))  # epoch 1 is not evaluated
    assert clean[-1] == pytest.approx(out.result["clean_train_loss"])  # the same weights, the same images
    assert all(np.isnan(h["clean_train_loss"]) for h in ref_run.history)  # off by default
    assert "eval_train" not in CFG.identity() and cfg.identity()["eval_train"] is True
