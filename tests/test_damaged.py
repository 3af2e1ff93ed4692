"""Files the toolkit wrote that come back damaged, and a probe that resumes run by run.

Each file is truncated and filled with garbage in turn, for every command that reads it: a command that
can redo the work sets the file aside and redoes it with one warning line naming it; one that cannot
refuses in one line, exit 2, with the store byte for byte as it was (`store.REMEDIES`, docs/clusters.md's long-jobs
table). A probe killed between runs resumes without redoing the runs it probed. Real files, real
processes where the fault needs one, on the real images' tiny slice (conftest.cifar_slice_path).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import start_cli
from forgetting import cli, data as data_mod, grid, studies, sweep, train
from forgetting.execution.settings import ExecutorSettings
from forgetting.experiments.run import run_study
from forgetting.store import RunFolder, StudyFolder

pytestmark = pytest.mark.integration

SWEEP_TOML = """
[study]
name = "tiny-sweep"
kind = "lr-sweep"
scale = "test scale: dawn18 width 0.125, 1 epoch"
[train]
net = "dawn18"
width = 0.125
batch_size = 50
epochs = 1
warmup = 0
eval_train = true
[grid]
multipliers = [1, 2]
sizes = [100, 200]
seeds = [0]
base_lr = "find"
[lr_find]
method = "min10"
steps = 10
"""
PROBE_TOML = """
[study]
name = "tiny-probe"
kind = "probe"
scale = "test scale: dawn18 width 0.125, 2 epochs"
[train]
net = "dawn18"
width = 0.125
batch_size = 50
epochs = 2
warmup = 0
eval_every = 0
[grid]
multipliers = [1, 2]
subset = 200
seeds = [0, 1, 2]
base_lr = "find"
[[conditions]]
name = "full-aug"
fraction = 1.0
augment = true
[probe]
last_epochs = 0
bn = "eval"
[lr_find]
method = "min10"
steps = 10
"""
CPU = ExecutorSettings(device="cpu")
PER_RUN = (RunFolder.probe_record.name, *RunFolder.PROBE_TABLES)  # a run's own probe files
DAMAGES = ("truncated", "garbage")


def damage(path: Path, how: str) -> bytes:
    """Cut ``path`` to half its bytes, or overwrite it with as many random ones; its bytes now. The cut
    falls inside a line: a table cut exactly at a line's end reads as a shorter whole one (docs/clusters.md)."""
    data = path.read_bytes()
    if how == "truncated":
        cut = len(data) // 2
        while cut > 1 and data[cut - 1 : cut] == b"\n":
            cut -= 1
        new = data[:cut]
    else:
        new = np.random.default_rng(len(data)).integers(0, 256, max(len(data), 64), dtype=np.uint8).tobytes()
    path.write_bytes(new)
    return new


def tree(root: Path) -> dict[str, tuple[str, int]]:
    """path -> (sha256, mtime_ns) of every file under ``root``: 'unchanged' means neither moved."""
    return {
        str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def process_env() -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1", FORGETTING_DATA_SIZES="any")


def main_exit(args: list, capsys, monkeypatch) -> tuple[int, str, str]:
    """`forgetting ARGS` in this process: exit code, stdout, stderr."""
    monkeypatch.setattr(sys, "argv", ["forgetting", *map(str, args)])
    capsys.readouterr()
    try:
        cli.main()
        code = 0
    except SystemExit as e:
        code = e.code or 0
    out, err = capsys.readouterr()
    return code, out, err


def warnings_of(err: str) -> list[str]:
    assert "Traceback" not in err, err
    return [line for line in err.splitlines() if line.startswith("warning:")]


def runs_of(folder: Path) -> list[Path]:
    return sorted((folder / "runs").iterdir())


@pytest.fixture(scope="module")
def slice_env(cifar_slice_path):
    """FORGETTING_DATA naming the slice, which any-size data lets through, for this module's commands."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(data_mod.ENV_VAR, str(cifar_slice_path.resolve()))
        mp.setenv(data_mod.SIZES_ENV_VAR, "any")
        yield data_mod.load_cifar10(cifar_slice_path)


@pytest.fixture(scope="module")
def tomls(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("studies")
    (root / "tiny-sweep.toml").write_text(SWEEP_TOML)
    (root / "tiny-probe.toml").write_text(PROBE_TOML)
    return dict(sweep=root / "tiny-sweep.toml", probe=root / "tiny-probe.toml")


@pytest.fixture(scope="module")
def swept(tmp_path_factory, tomls, slice_env, one_thread) -> Path:
    """The tiny sweep (LR finder, 4 runs), trained once in this process: its folder."""
    store = tmp_path_factory.mktemp("swept")
    sweep.run_sweep(studies.load_study(str(tomls["sweep"])), store, slice_env, CPU)
    return store / "tiny-sweep"


@pytest.fixture(scope="module")
def probed(tmp_path_factory, tomls, cifar_slice_path, slice_env, one_thread) -> dict:
    """The tiny probe study (6 runs) by a real process killed once some runs were probed, then the same
    command again: the killed process, the runs it probed with their probe files, the second process."""
    store = tmp_path_factory.mktemp("probed")
    folder = store / "tiny-probe"
    args = ("probe-epochs", str(tomls["probe"]), "--store", str(store), "--device", "cpu")
    killed = start_cli(*args, data=cifar_slice_path, env=process_env())
    deadline = time.time() + 600
    while not list(folder.glob(f"runs/*/{RunFolder.probe_record.name}")):
        assert killed.poll() is None and time.time() < deadline, killed.communicate()
        time.sleep(0.02)
    os.killpg(killed.pid, signal.SIGKILL)  # a node lost between two runs' probes
    killed.communicate()
    done = sorted(p.parent for p in folder.glob(f"runs/*/{RunFolder.probe_record.name}"))
    kept = {p: (p.read_bytes(), p.stat().st_mtime_ns) for run in done for p in run.iterdir() if p.name in PER_RUN}
    resumed = start_cli(*args, data=cifar_slice_path, env=process_env())
    out, err = resumed.communicate(timeout=600)
    return dict(folder=folder, killed=killed, done=done, kept=kept, resumed=(resumed.returncode, out, err))


def study_tables(folder: Path) -> dict[str, pd.DataFrame]:
    """The study's probe tables, probe_seconds left out (a clock, not a result)."""
    tables = {name: pd.read_csv(folder / name, dtype={"run": str}) for name in StudyFolder.PROBE_TABLES}
    tables[StudyFolder.probe_runs.name] = tables[StudyFolder.probe_runs.name].drop(columns="probe_seconds")
    return tables


def assert_same_tables(got: Path, want: Path) -> None:
    for name, frame in study_tables(want).items():
        pd.testing.assert_frame_equal(study_tables(got)[name], frame, obj=name)


# ------------------------------------------------------------------------------------------------
# The probe resumes run by run


def test_a_probe_killed_between_runs_resumes_without_probing_them_again(probed, tomls, tmp_path, slice_env, capsys):
    folder, done = probed["folder"], probed["done"]
    assert probed["killed"].returncode == -signal.SIGKILL
    assert 1 <= len(done) < 6, "killed after some runs' probes, before the last"
    code, out, err = probed["resumed"]
    assert code == 0 and "Traceback" not in err, err
    assert f"{len(done)} of 6 runs already probed in the store: skipped" in out
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in probed["kept"]} == probed["kept"], "probed again"
    assert len(list(folder.glob(f"runs/*/{RunFolder.probe_record.name}"))) == 6
    # the study's tables are those of a probe that was never interrupted
    whole = tmp_path / "whole" / "tiny-probe"
    shutil.copytree(folder, whole, ignore=shutil.ignore_patterns(*PER_RUN, *StudyFolder.PROBE_TABLES, "*.tmp"))
    run_study(studies.load_study(str(tomls["probe"])), whole.parent, slice_env, CPU)
    assert "warning" not in capsys.readouterr().err
    assert_same_tables(folder, whole)


@pytest.mark.parametrize("how", DAMAGES)
def test_a_damaged_run_probe_is_set_aside_and_that_run_probed_again(probed, tmp_path, tomls, slice_env, how, capsys):
    folder = tmp_path / "store" / "tiny-probe"
    shutil.copytree(probed["folder"], folder)
    runs = runs_of(folder)
    damaged = {run / name: damage(run / name, how) for run, name in zip(runs, PER_RUN)}  # one file in each of 5 runs
    untouched = tree(runs[5])
    progress = ProbeLines()
    capsys.readouterr()
    run_study(studies.load_study(str(tomls["probe"])), folder.parent, slice_env, CPU, stage_events=progress)
    out, err = capsys.readouterr()
    lines = warnings_of(err)
    assert len(lines) == len(damaged), lines
    for path, data in damaged.items():
        (line,) = [line for line in lines if f"{path} is damaged (" in line]
        assert line.endswith(f"set aside as {path.name}.damaged; the run's probe is redone"), line
        assert path.with_name(path.name + ".damaged").read_bytes() == data
        assert path.read_bytes() != data
    assert progress.started == (6, 1), "1 of 6 runs already probed: skipped"
    assert tree(runs[5]) == untouched
    assert_same_tables(folder, probed["folder"])


# ------------------------------------------------------------------------------------------------
# Redone by the command that made them: a run's record, the LR finder's files, a checkpoint


def test_a_sweep_sets_aside_damaged_records_and_finder_files_and_redoes_them(
    swept, tmp_path, tomls, capsys, monkeypatch
):
    folder = tmp_path / "store" / "tiny-sweep"
    shutil.copytree(swept, folder)
    runs = runs_of(folder)
    record = ("result.json", "config.json", "meta.json", "history.csv")
    damaged = {}
    for i, run in enumerate(runs):  # each run: one file of its record truncated, the next one garbage
        damaged[run / record[i]] = damage(run / record[i], "truncated")
        damaged[run / record[(i + 1) % 4]] = damage(run / record[(i + 1) % 4], "garbage")
    damaged[folder / "lr_find.json"] = damage(folder / "lr_find.json", "truncated")
    damaged[folder / "lr_find.csv"] = damage(folder / "lr_find.csv", "garbage")
    args = ["sweep-lr", tomls["sweep"], "--store", folder.parent, "--device", "cpu"]
    code, out, err = main_exit(args, capsys, monkeypatch)
    assert code == 0, err
    lines = warnings_of(err)
    assert len(lines) == len(damaged), lines
    for path, data in damaged.items():
        (line,) = [line for line in lines if f"{path} is damaged (" in line]
        assert f"set aside as {path.name}.damaged" in line and "redone" in line, line
        assert path.with_name(path.name + ".damaged").read_bytes() == data
    assert "already finished" not in out, "every run had a damaged record: all were trained again"
    found, before = (json.loads((f / "lr_find.json").read_text()) for f in (folder, swept))
    assert (found["key"], found["suggestion"]) == (before["key"], before["suggestion"]), "the finder again"
    table = pd.read_csv(folder / "results.csv", dtype={"run": str})
    assert (table["status"] == "finished").all() and sorted(table["run"]) == [r.name for r in runs]
    for run in runs:
        assert RunFolder(run).finished()
        redone, before = (json.loads((d / "runs" / run.name / "result.json").read_text()) for d in (folder, swept))
        assert redone["test_loss"] == pytest.approx(before["test_loss"], rel=1e-5)  # the same run again


class ProbeLines:
    """The probe's progress hooks (console.ProbeProgress) without a terminal: what `start` was told."""

    started: tuple | None = None

    def start(self, total: int, done: int) -> None:
        self.started = (total, done)

    def start_run(self, spec, epochs: int, done: int = 0, total: int = 0) -> None: ...
    def step(self, epoch: int, n_epochs: int) -> None: ...


class StopAtSecondEpoch(train.Callbacks):
    def step(self, epoch: int, step: int) -> bool:
        return epoch == 1


def test_a_sweep_whose_checkpoint_is_damaged_finishes_on_the_next_run_of_the_same_command(
    tmp_path, cifar_slice_path, slice_env, one_thread
):
    store = tmp_path / "store"
    study = studies.load_study("cpu-lr-sweep").with_overrides(
        multipliers=[1.0], sizes=[100, 200], batch_size=50, epochs=2, warmup=0.0, width=0.125, base_lr=0.4, seeds=[0]
    )
    checkpoints = {}
    for spec, how in zip(grid.expand(study, 0.4, slice_env.identity), DAMAGES):  # each stopped in its second epoch
        path = sweep.StudyStore(store, study.name).checkpoint(spec)
        path.parent.mkdir(parents=True)
        assert train.train(spec.config, slice_env, "cpu", checkpoint=path, callbacks=StopAtSecondEpoch()).stopped
        checkpoints[path] = damage(path, how)  # its first epoch's checkpoint, one truncated, one garbage
    args = "--multipliers 1 --sizes 100,200 --batch-size 50 --epochs 2 --warmup 0 --width 0.125 --base-lr 0.4 --seeds 0"
    args = ["sweep-lr", "cpu-lr-sweep", *args.split(), "--store", str(store), "--device", "cpu"]
    proc = start_cli(*args, data=cifar_slice_path, env=process_env())
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    lines = warnings_of(err)
    assert len(lines) == 2, err
    for path, data in checkpoints.items():
        (line,) = [line for line in lines if f"{path} is damaged (" in line]
        assert line.endswith("set aside as checkpoint.pt.damaged; the run is redone from its first epoch"), line
        assert path.with_name("checkpoint.pt.damaged").read_bytes() == data and not path.exists()
        result = json.loads((path.parent / "result.json").read_text())
        assert result["resumed_from_epoch"] == 0 and result["epochs_completed"] == 2
    assert (pd.read_csv(store / study.name / "results.csv")["status"] == "finished").all()


# ------------------------------------------------------------------------------------------------
# Refused by a command that cannot redo them: one line, exit 2, the store as it was

REFUSALS = {  # command -> (study folder, files in it that the command reads and cannot make again)
    "figures": {
        "tiny-sweep": ("study.json", "results.csv", "lr_find.json", "lr_find.csv", "runs/*/history.csv"),
        "tiny-probe": ("probe.csv", "probe_runs.csv", "probe_recency.csv"),
    },
    "merge": {
        "tiny-probe": (
            *("study.json", "lr_find.json", "lr_find.csv", *StudyFolder.PROBE_PER_RUN),
            *(f"runs/*/{name}" for name in (*RunFolder.LIGHT, *RunFolder.HEAVY)),
        )
    },
    "probe-epochs": {"tiny-probe": tuple(f"runs/*/{name}" for name in RunFolder.HEAVY)},  # a run not yet probed
    "sweep-lr --shard 2/2": {"tiny-sweep": ("lr_find.json", "lr_find.csv")},  # shards 2..N use the finder's result
}
CASES = [(c, s, f, how) for c, by in REFUSALS.items() for s, files in by.items() for f in files for how in DAMAGES]


@pytest.mark.parametrize("command, study, name, how", CASES, ids=["-".join(c).replace(" ", "") for c in CASES])
def test_a_damaged_file_that_cannot_be_redone_is_refused_in_one_line(
    command, study, name, how, swept, probed, tomls, tmp_path, capsys, monkeypatch
):
    store = tmp_path / "store"
    for folder in (swept, probed["folder"]):
        shutil.copytree(folder, store / folder.name)
    folder = store / study
    path = sorted(folder.glob(name))[0]
    if command == "probe-epochs":  # the run's probe was cut off before its end: the probe needs its weights
        for per_run in PER_RUN:
            (path.parent / per_run).unlink()
    damage(path, how)
    before = tree(tmp_path)
    args = {
        "figures": ["figures", "--store", store],
        "merge": ["merge", store, "--into", tmp_path / "merged"],
        "probe-epochs": ["probe-epochs", tomls["probe"], "--store", store, "--device", "cpu"],
        "sweep-lr --shard 2/2": ["sweep-lr", tomls["sweep"], "--shard", "2/2", "--store", store, "--device", "cpu"],
    }[command]
    code, out, err = main_exit(args, capsys, monkeypatch)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"error: {path} is damaged ("), lines[0]
    assert tree(tmp_path) == before, "a refusal changes nothing"
