"""A catalogue of bad input, one case per line: every command, every kind of input.

Each case runs the command line's own entry point (`forgetting.cli.main`, which the console script
calls) and asserts what a user must see: exit code 2, exactly one line on stderr that names the
offending input, no traceback, and nothing written: the whole temporary tree, including an existing
store, is byte-for-byte what it was. The two defects that motivated it (`--store` naming a file,
an .npz of 10 images passing as CIFAR-10) also run as real processes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from forgetting import cli, data as data_mod, grid, studies
from forgetting.datasets import loading
from helpers import REPO_ROOT

RESULTS = REPO_ROOT / "results" / "cpu-lr-sweep"
TINY_SWEEP = (
    "--multipliers 1 --sizes 100 --batch-size 50 --epochs 1 --width 0.125 --base-lr 0.4 --seeds 0 --device cpu".split()
)
TINY_PROBE = (
    "--epochs 1 --warmup 0 --width 0.125 --subset 200 --batch-size 50 --multipliers 1 --base-lr 0.4 --seeds 0"
    " --device cpu"
).split()


def tree_digest(root: Path) -> dict[str, str]:
    """Every file under ``root`` (path -> sha256): what 'unchanged byte for byte' is checked against."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def fake_npz(path: Path, n_train: int = 10, n_test: int = 10, drop: str | None = None) -> Path:
    rng = np.random.default_rng(0)
    arrays = dict(
        train_x=rng.integers(0, 256, (n_train, 32, 32, 3), dtype=np.uint8),
        train_y=np.arange(n_train) % 10,
        test_x=rng.integers(0, 256, (n_test, 32, 32, 3), dtype=np.uint8),
        test_y=np.arange(n_test) % 10,
    )
    arrays.pop(drop, None)
    np.savez(path, **arrays)
    return path


def probe_runs_without_weights(tmp: Path) -> None:
    """The tiny probe study's runs as a store holds them after a copy of their records alone (what
    `merge --light` copies): finished runs, without the weights the probe needs."""
    s = studies.load_study("cpu-probe").with_overrides(
        epochs=1, warmup=0, width=0.125, subset=200, batch_size=50, multipliers=[1.0], base_lr=0.4, seeds=[0]
    )
    for spec in grid.expand(s, 0.4):
        run = tmp / "store" / "cpu-probe" / "runs" / spec.id
        run.mkdir(parents=True)
        (run / "result.json").write_text(json.dumps(dict(diverged=False, seconds=1.0, test_loss=2.0)))
        (run / "config.json").write_text(json.dumps(spec.config.to_dict()))
        (run / "meta.json").write_text(json.dumps(spec.meta))
        (run / "history.csv").write_text("epoch\n1\n")
    # A first attempt, after which the store is stable: a second attempt must leave it as it is.
    argv = sys.argv
    sys.argv = ["forgetting", "probe-epochs", *TINY_PROBE, "--store", str(tmp / "store")]
    try:
        cli.main()
    except SystemExit:
        pass
    finally:
        sys.argv = argv


def write(rel: str, text: str):
    def make(tmp: Path) -> None:
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / rel).write_text(text)

    return make


def study_folder(results_csv: str | None = None, study_json: str | None = None):
    def make(tmp: Path) -> None:
        folder = tmp / "tables" / "cpu-lr-sweep"
        folder.mkdir(parents=True)
        (folder / "study.json").write_text(study_json or (RESULTS / "study.json").read_text())
        if results_csv is not None:
            (folder / "results.csv").write_text(results_csv)

    return make


# id: (arguments with {tmp} for the temporary folder, fragment the error line must hold, setup, needs real data)
CASES = {
    "data-missing-file": (["data", "--data", "{tmp}/nope.npz"], "{tmp}/nope.npz", None, False),
    "data-corrupt-npz": (["data", "--data", "{tmp}/bad.npz"], "{tmp}/bad.npz", write("bad.npz", "PK not a zip"), False),
    "data-ten-images": (["data", "--data", "{tmp}/ten.npz"], "{tmp}/ten.npz", lambda t: fake_npz(t / "ten.npz"), False),
    "data-array-missing": (
        ["data", "--data", "{tmp}/no_y.npz"],
        "test_y",
        lambda t: fake_npz(t / "no_y.npz", drop="test_y"),
        False,
    ),
    "data-empty-folder": (["data", "--data", "{tmp}/empty"], "{tmp}/empty", lambda t: (t / "empty").mkdir(), False),
    "train-bad-net": (["train", "--net", "vgg", "--out", "{tmp}/run"], "vgg", None, False),
    "train-zero-width": (["train", "--width", "0", "--out", "{tmp}/run"], "width", None, False),
    "train-bad-preset": (["train", "--preset", "part9", "--out", "{tmp}/run"], "part9", None, False),
    "train-out-is-a-file": (
        "train --width 0.125 --subset 100 --epochs 1 --batch-size 50 --device cpu --out {tmp}/taken".split(),
        "{tmp}/taken",
        write("taken", "x"),
        True,
    ),
    "lr-find-bad-seeds": (["lr-find", "--seeds", "a,b", "--out", "{tmp}/lr"], "a,b", None, False),
    "lr-find-bad-method": (
        "lr-find --method guess --subset 100 --batch-size 50 --width 0.125 --device cpu --out {tmp}/lr".split(),
        "guess",
        None,
        True,
    ),
    "lr-find-out-is-a-file": (
        "lr-find --subset 100 --batch-size 50 --width 0.125 --device cpu --out {tmp}/taken".split(),
        "{tmp}/taken",
        write("taken", "x"),
        True,
    ),
    "sweep-unknown-study": (["sweep-lr", "no-such-study", "--store", "{tmp}/store"], "no-such-study", None, False),
    "sweep-study-not-toml": (
        ["sweep-lr", "{tmp}/broken.toml", "--store", "{tmp}/store"],
        "{tmp}/broken.toml",
        write("broken.toml", "[study\nname = "),
        False,
    ),
    "sweep-study-unknown-key": (
        ["sweep-lr", "{tmp}/typo.toml", "--store", "{tmp}/store"],
        "epoch",
        write("typo.toml", (REPO_ROOT / "studies" / "cpu-lr-sweep.toml").read_text().replace("epochs =", "epoch =")),
        False,
    ),
    "sweep-wrong-kind": (["sweep-lr", "cpu-probe", "--store", "{tmp}/store"], "cpu-probe", None, False),
    "sweep-negative-multiplier": (
        ["sweep-lr", "--multipliers", "-1", "--store", "{tmp}/store"],
        "multipli",
        None,
        False,
    ),
    "sweep-infinite-multiplier": (
        ["sweep-lr", "--multipliers", "1,inf", "--store", "{tmp}/store"],
        "finite and positive",
        None,
        False,
    ),
    "sweep-study-infinite-multiplier": (
        ["sweep-lr", "{tmp}/inf.toml", "--store", "{tmp}/store"],
        "'grid.multipliers' = [0.25, inf] has an element inf that must be finite and positive",
        write(
            "inf.toml",
            (REPO_ROOT / "studies" / "cpu-lr-sweep.toml")
            .read_text()
            .replace("[0.25, 0.5, 1, 2, 4, 8, 16]", "[0.25, inf]"),
        ),
        False,
    ),
    "sweep-bad-time-limit": (["sweep-lr", "--time-limit", "soon", "--store", "{tmp}/store"], "'soon'", None, False),
    "sweep-time-limit-on-ray": (
        ["sweep-lr", *TINY_SWEEP, "--executor", "ray", "--time-limit", "1h", "--store", "{tmp}/store"],
        "--time-limit needs the local executor",
        None,
        True,
    ),
    "sweep-fractional-size": (["sweep-lr", "--sizes", "1.5", "--store", "{tmp}/store"], "1.5", None, False),
    "sweep-bad-base-lr": (["sweep-lr", "--base-lr", "fast", "--store", "{tmp}/store"], "fast", None, False),
    "sweep-bad-device": (["sweep-lr", *TINY_SWEEP[:-1], "tpu", "--store", "{tmp}/store"], "tpu", None, True),
    "sweep-bad-executor": (
        ["sweep-lr", *TINY_SWEEP, "--executor", "dask", "--store", "{tmp}/store"],
        "dask",
        None,
        True,
    ),
    "sweep-zero-workers": (
        ["sweep-lr", *TINY_SWEEP, "--workers", "0", "--store", "{tmp}/store"],
        "--workers",
        None,
        True,
    ),
    "sweep-store-is-a-file": (
        ["sweep-lr", *TINY_SWEEP, "--store", "{tmp}/taken"],
        "{tmp}/taken",
        write("taken", "x"),
        True,
    ),
    "probe-bad-bn": (["probe-epochs", "--bn", "median", "--store", "{tmp}/store"], "median", None, False),
    "probe-bad-time-limit": (
        ["probe-epochs", "--time-limit", "0", "--store", "{tmp}/store"],
        "--time-limit",
        None,
        False,
    ),
    "probe-infinite-width": (["probe-epochs", "--width", "inf", "--store", "{tmp}/store"], "finite", None, False),
    "train-infinite-width": (["train", "--width", "inf", "--out", "{tmp}/run"], "finite and positive", None, False),
    "probe-wrong-kind": (["probe-epochs", "cpu-lr-sweep", "--store", "{tmp}/store"], "cpu-lr-sweep", None, False),
    "probe-run-without-weights": (
        ["probe-epochs", *TINY_PROBE, "--store", "{tmp}/store"],
        "steps.csv missing",
        probe_runs_without_weights,
        True,
    ),
    "figures-no-such-store": (["figures", "--store", "{tmp}/nothing"], "{tmp}/nothing", None, False),
    "figures-no-study-folders": (
        ["figures", "--store", "{tmp}/empty"],
        "{tmp}/empty",
        lambda t: (t / "empty").mkdir(),
        False,
    ),
    "figures-study-json-corrupt": (
        ["figures", "--store", "{tmp}/tables"],
        "study.json",
        study_folder(study_json="{not json"),
        False,
    ),
    "figures-results-lack-columns": (
        ["figures", "--store", "{tmp}/tables"],
        "status",
        study_folder(results_csv="run,subset\nabc,100\n"),
        False,
    ),
    "figures-results-empty": (
        ["figures", "--store", "{tmp}/tables"],
        "results.csv",
        study_folder(results_csv=""),
        False,
    ),
}


def existing_store(tmp: Path) -> None:
    """A store that already holds a study's tables; no case may touch it."""
    folder = tmp / "store" / "cpu-lr-sweep"
    folder.mkdir(parents=True)
    for name in ("results.csv", "study.json", "lr_find.json", "summary.json"):
        shutil.copyfile(RESULTS / name, folder / name)


def run_main(args: list[str], capsys, monkeypatch) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["forgetting", *args])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    out, err = capsys.readouterr()
    return exit_.value.code, out, err


def assert_one_line(code: int, out: str, err: str, fragment: str) -> None:
    assert code == 2, (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    assert lines[0].startswith("error:") and fragment in lines[0], (fragment, lines[0])
    assert "Traceback" not in err + out


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_and_exit_2_and_writes_nothing(case, tmp_path, capsys, monkeypatch, request, one_thread):
    args, fragment, setup, needs_data = CASES[case]
    monkeypatch.setattr(loading, "CACHE_DIR", tmp_path / "empty-cache")
    monkeypatch.delenv(data_mod.SIZES_ENV_VAR, raising=False)
    if needs_data:  # the check under test comes after loading the data set
        monkeypatch.setenv(data_mod.ENV_VAR, str(request.getfixturevalue("cifar_path").resolve()))
    else:
        monkeypatch.delenv(data_mod.ENV_VAR, raising=False)
    monkeypatch.chdir(tmp_path)  # a default --store would land here, inside the checked tree
    existing_store(tmp_path)
    if setup is not None:
        setup(tmp_path)
    capsys.readouterr()
    before = tree_digest(tmp_path)
    fill = lambda s: s.replace("{tmp}", str(tmp_path))  # noqa: E731
    code, out, err = run_main([fill(a) for a in args], capsys, monkeypatch)
    assert_one_line(code, out, err, fill(fragment))
    assert tree_digest(tmp_path) == before, "bad input must leave every file as it was"


def run_process(args: list[str], tmp_path: Path, env: dict) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k not in (data_mod.ENV_VAR, data_mod.SIZES_ENV_VAR)}
    full_env.update(XDG_CACHE_HOME=str(tmp_path / "empty-cache"), OMP_NUM_THREADS="1", **env)
    return subprocess.run(
        [sys.executable, "-m", "forgetting.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=tmp_path,
        timeout=600,
    )


def test_ten_image_npz_is_refused_by_a_real_process(tmp_path):
    ten = fake_npz(tmp_path / "ten.npz")
    proc = run_process(["data", "--data", str(ten)], tmp_path, {})
    assert_one_line(proc.returncode, proc.stdout, proc.stderr, str(ten))
    assert data_mod.SIZES_ENV_VAR in proc.stderr
    # ... and accepted once the user says it is a different data set
    ok = run_process(["data", "--data", str(ten)], tmp_path, {data_mod.SIZES_ENV_VAR: "any"})
    assert ok.returncode == 0 and "train: 10 images" in ok.stdout, ok.stderr


@pytest.mark.integration
def test_store_naming_a_file_is_refused_by_a_real_process(tmp_path, cifar_path):
    taken = tmp_path / "taken"
    taken.write_text("not a store")
    proc = run_process(
        ["sweep-lr", *TINY_SWEEP, "--store", str(taken)], tmp_path, {data_mod.ENV_VAR: str(cifar_path.resolve())}
    )
    assert_one_line(proc.returncode, proc.stdout, proc.stderr, str(taken))
    assert taken.read_text() == "not a store"
