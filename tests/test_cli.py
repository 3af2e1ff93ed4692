"""The command line: `forgetting data` and `forgetting train`, in process (CliRunner) and as a real process.

forgetting.cli.main, not the typer app, turns a UserError into one 'error:' line and exit code 2, so exit
codes are checked by running `python -m forgetting.cli` in a subprocess.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from forgetting import data as data_mod
from forgetting.cli import app
from forgetting.data import DataError
from forgetting.errors import UserError
from helpers import REPO_ROOT

runner = CliRunner()


@pytest.fixture
def synthetic_npz(tmp_path, synthetic_cifar, any_size_data) -> Path:
    """The synthetic CIFAR-10 as an .npz: commands that check their input against the data find it without
    the real data set."""
    path = tmp_path / "synthetic.npz"
    np.savez(path, **{k: getattr(synthetic_cifar, k) for k in ("train_x", "train_y", "test_x", "test_y")})
    return path


def run_cli(*args: str, tmp_path, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m forgetting.cli ARGS` with no FORGETTING_DATA and an empty user cache, unless ``env`` says so."""
    full_env = {k: v for k, v in os.environ.items() if k != data_mod.ENV_VAR}
    full_env.update(XDG_CACHE_HOME=str(tmp_path / "empty-cache"), OMP_NUM_THREADS="1", COLUMNS="200")
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "forgetting.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=REPO_ROOT,
        timeout=300,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected exactly one line on stderr, got:\n{proc.stderr}"
    assert lines[0].startswith("error:"), lines[0]
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    return lines[0]


# ---------------------------------------------------------------------------------------------
# data


def check_data_listing(output: str, per_train: int, per_test: int) -> None:
    for name in data_mod.CLASSES:
        assert re.search(rf"^\s*{name}\s+{per_train:,} / {per_test:,}\s*$", output, re.M), f"no counts for {name}"


@pytest.mark.integration
def test_data_prints_per_class_counts(cifar_path):
    result = runner.invoke(app, ["data", "--data", str(cifar_path)])
    assert result.exit_code == 0, result.output
    assert str(cifar_path) in result.output
    assert "train: 50,000 images" in result.output and "test: 10,000 images" in result.output
    check_data_listing(result.output, 5000, 1000)


def test_data_with_env_var_and_small_file(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "small.npz"
    np.savez(
        path,
        train_x=rng.integers(0, 256, (30, 32, 32, 3), dtype=np.uint8),
        train_y=np.arange(30) % 10,
        test_x=rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8),
        test_y=np.arange(20) % 10,
    )
    result = runner.invoke(app, ["data"], env={data_mod.ENV_VAR: str(path), data_mod.SIZES_ENV_VAR: "any"})
    assert result.exit_code == 0, result.output
    assert str(path) in result.output
    check_data_listing(result.output, 3, 2)


def test_data_corrupt_in_process_raises_data_error(tmp_path):
    bad = tmp_path / "corrupt.npz"
    bad.write_bytes(b"\x00garbage" * 100)
    result = runner.invoke(app, ["data", "--data", str(bad)])
    assert result.exit_code != 0
    assert isinstance(result.exception, DataError)


def test_data_corrupt_file_exits_2(tmp_path):
    bad = tmp_path / "corrupt.npz"
    bad.write_bytes(b"PK\x03\x04 not really a zip" * 50)
    assert_one_line_error(run_cli("data", "--data", str(bad), tmp_path=tmp_path), str(bad))


def test_data_missing_path_exits_2(tmp_path):
    missing = tmp_path / "no" / "such.npz"
    assert_one_line_error(run_cli("data", "--data", str(missing), tmp_path=tmp_path), str(missing), "--data")


def test_data_without_any_source_exits_2(tmp_path):
    line = assert_one_line_error(run_cli("data", tmp_path=tmp_path))
    assert "FORGETTING_DATA" in line and "--data" in line


# ---------------------------------------------------------------------------------------------
# train


def test_train_bad_net_exits_2(tmp_path):
    proc = run_cli("train", "--net", "vgg", "--out", str(tmp_path / "run"), tmp_path=tmp_path)
    assert_one_line_error(proc, "vgg")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["--net", "vgg"], "vgg"),
        (["--preset", "part9"], "part9"),
        (["--subset", "100", "--batch-size", "200"], "batch size"),
        (["--width", "0"], "width"),
        (["--cutout", "40", "--batch-size", "100"], "cutout"),
        (["--device", "tpu"], "device"),
        (["--precision", "fp8"], "precision"),
    ],
)
def test_train_bad_values_are_user_errors(tmp_path, synthetic_npz, args, fragment):
    result = runner.invoke(app, ["train", *args, "--data", str(synthetic_npz), "--out", str(tmp_path / "run")])
    assert isinstance(result.exception, UserError), result.output
    assert fragment in str(result.exception)
    assert not (tmp_path / "run").exists(), "nothing may be written before the inputs are checked"


def test_train_needs_out():
    result = runner.invoke(app, ["train", "--width", "0.125"])
    assert result.exit_code == 2  # click's usage error
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_help_lists_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("data", "train", "lr-find", "sweep-lr", "probe-epochs", "merge", "figures"):
        # a row of the commands panel, not a word of the app's description ("training")
        assert re.search(rf"^\W*{command} ", result.output, re.M), command


@pytest.mark.integration
def test_train_tiny_run_writes_run_files(cifar_path, tmp_path, one_thread):
    out = tmp_path / "run"
    args = [
        "train",
        "--width",
        "0.125",
        "--subset",
        "500",
        "--epochs",
        "1",
        "--batch-size",
        "100",
        "--device",
        "cpu",
        "--data",
        str(cifar_path),
        "--out",
        str(out),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    assert "finished" in result.output
    for name in ("config.json", "history.csv", "model.pt", "result.json"):
        assert (out / name).is_file(), name
    assert not (out / "checkpoint.pt").exists()
    config = json.loads((out / "config.json").read_text())
    assert (config["width"], config["subset"], config["epochs"], config["batch_size"]) == (0.125, 500, 1, 100)
    assert config["net"] == "dawn18"
    assert config["lr_knots"][1][1] == pytest.approx(0.4)
    res = json.loads((out / "result.json").read_text())
    assert res["diverged"] is False and res["epochs_completed"] == 1 and res["device"] == "cpu"
    assert 0 < res["test_loss"] < 10 and 0 <= res["test_acc"] <= 1
    assert len((out / "history.csv").read_text().strip().splitlines()) == 2  # header + 1 epoch


@pytest.mark.integration
def test_train_in_bf16_with_the_partial_batch(cifar_slice_path, any_size_data, tmp_path, one_thread):
    """--precision reaches result.json; the partial last batch (250 = 2 x 100 + 50) is a step by default."""
    out = tmp_path / "run"
    args = "train --width 0.125 --subset 250 --epochs 1 --batch-size 100 --precision bf16 --device cpu".split()
    args += ["--data", str(cifar_slice_path), "--out", str(out)]  # bf16 on CPU is slow: 500 test images
    result = runner.invoke(app, args)
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    assert "bfloat16" in result.output
    res = json.loads((out / "result.json").read_text())
    assert res["precision"] == "bfloat16" and res["compiled"] is False and res["compile_seconds"] == 0
    assert np.isfinite(res["test_loss"])
    steps = (out / "steps.csv").read_text().strip().splitlines()[1:]
    assert [int(r.split(",")[-1]) for r in steps] == [100, 100, 50]


def test_train_takes_its_eval_every_default_from_train_config(tmp_path, synthetic_npz, monkeypatch):
    from forgetting import config, train as train_mod

    configs = []

    def fake_train_to_dir(cfg, cifar, out, device, callbacks=None):
        configs.append(cfg)
        return dict(
            diverged=False, test_loss=1.0, test_acc=0.5, seconds=1.0, compiled=False, device="cpu", precision="fp32"
        )

    monkeypatch.setattr(train_mod, "train_to_dir", fake_train_to_dir)
    base = ["train", "--width", "0.125", "--subset", "100", "--batch-size", "50", "--device", "cpu"]
    base += ["--data", str(synthetic_npz)]
    base += ["--out", str(tmp_path / "run")]
    for args in (base, [*base, "--preset", "part2"], [*base, "--eval-every", "3"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    assert [c.eval_every for c in configs] == [config.TrainConfig.eval_every] * 2 + [3]


def test_sweep_lr_and_probe_epochs_offer_every_shared_option():
    from dataclasses import fields

    from forgetting.cli_options import StudyOptions

    for command in ("sweep-lr", "probe-epochs", "run"):
        result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        for f in fields(StudyOptions):
            assert re.search(rf"--{f.name.replace('_', '-')}\b", result.output), (command, f.name)


def test_every_executor_s_own_options_are_in_both_commands_and_the_reference():
    from forgetting.execution.settings import backend_options

    readme = (REPO_ROOT / "docs" / "reference.md").read_text()
    for command in ("sweep-lr", "probe-epochs", "run"):  # the probe runs on the sweep's executor, with its options
        result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        for name in (*backend_options(), "tensorboard"):
            option = f"--{name.replace('_', '-')}"
            assert re.search(rf"{option}\b", result.output), (command, option)
            assert option in readme, option


@pytest.mark.parametrize(
    "args, words",
    [
        (["--executor", "slurm", "--time-limit", "1h"], "--time-limit needs the local executor (a SLURM array task"),
        (["--gpus-per-task", "1"], "--gpus-per-task is an option of the slurm executor, not local"),
        (["--executor", "ray", "--workers", "2"], "--workers is an option of the local executor, not ray"),
        (["--executor", "slurm", "--slurm-time", "soon"], "--slurm-time must be a duration"),
        (["--executor", "slurm", "--slurm-cluster", "pbs"], "--slurm-cluster must be slurm or local, not 'pbs'"),
    ],
)
def test_executor_settings_it_cannot_follow_are_one_line(tmp_path, args, words):
    for command in ("sweep-lr", "probe-epochs"):
        result = runner.invoke(app, [command, *args, "--store", str(tmp_path / "store")])
        assert isinstance(result.exception, UserError), result.output  # main() prints it as one line, exit 2
        assert words in str(result.exception)
        assert not (tmp_path / "store").exists()
