"""Faults a long job meets on a shared cluster: a full disk, SIGTERM, a damaged result.json.

Real processes where the fault needs one: a real tmpfs filled to the brim (where this machine lets the
tests mount one; the store's writes are also tested everywhere under a fault-injecting disk), a real
SIGTERM to a real sweep, a really truncated file.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from helpers import start_cli
from forgetting import cli, data as data_mod, report, store as store_mod, studies, sweep
from forgetting.errors import UserError
from forgetting.execution.settings import ExecutorSettings

TINY = "--multipliers 1 --batch-size 50 --warmup 0 --width 0.125 --base-lr 0.4 --seeds 0 --device cpu".split()
MACHINE_COLUMNS = list(sweep.MACHINE_FIELDS)  # what differs between two trainings of one run id
CPU = ExecutorSettings(device="cpu")


def one_thread_env() -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1")


def sweep_cli(store: Path, cifar_path: Path, sizes: str, epochs: int) -> subprocess.Popen:
    args = ("sweep-lr", "cpu-lr-sweep", *TINY, "--sizes", sizes, "--epochs", str(epochs), "--store", str(store))
    return start_cli(*args, data=cifar_path, env=one_thread_env())


def finish(proc: subprocess.Popen) -> tuple[str, str]:
    out, err = proc.communicate(timeout=600)
    return out, err


def sweep_here(store: Path, cifar_path: Path, sizes: str, epochs: int, monkeypatch, capsys) -> tuple[int, str, str]:
    """The same command again, in this process (a rerun meets no fault that needs a process of its own,
    and skips a start-up): exit code, stdout, stderr. Needs the one_thread fixture, as the processes run."""
    args = ["forgetting", "sweep-lr", "cpu-lr-sweep", *TINY, "--sizes", sizes, "--epochs", str(epochs), "--store", str(store)]
    monkeypatch.setenv(data_mod.ENV_VAR, str(cifar_path.resolve()))
    monkeypatch.setattr(sys, "argv", args)
    capsys.readouterr()
    try:
        cli.main()
        code = 0
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def tiny_study(sizes: list[int], epochs: int):
    """The study the command lines above train, for a store written in this process."""
    return studies.load_study("cpu-lr-sweep").with_overrides(
        multipliers=[1.0], sizes=sizes, batch_size=50, epochs=epochs, warmup=0.0, width=0.125, base_lr=0.4, seeds=[0]
    )


def assert_one_line(err: str, *fragments: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def no_half_files(root: Path) -> None:
    """No temporary file of an atomic write is left, and every result.json is whole."""
    assert not [p for p in root.rglob("*") if p.name.endswith(".tmp")], "a half-written file was left"
    for result in root.rglob("result.json"):
        json.loads(result.read_text())


# --- the store's writes on a disk that fills up (fault-injected: runs on every machine) -------------


REAL_FSYNC = os.fsync


class FullAfter:
    """os.fsync that succeeds ``n`` times, then fails as a full disk does."""

    def __init__(self, n: int):
        self.n = n

    def __call__(self, fd):
        if self.n <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.n -= 1
        return REAL_FSYNC(fd)


def test_a_full_disk_is_one_line_naming_the_path_and_leaves_the_old_file_whole(tmp_path, monkeypatch):
    path = tmp_path / "results.csv"
    path.write_bytes(b"old table\n")
    monkeypatch.setattr(os, "fsync", FullAfter(0))
    with pytest.raises(UserError) as e:
        store_mod.atomic_write_bytes(path, b"x" * 5000)
    assert str(path) in str(e.value) and "no space left" in str(e.value) and "4.9 KB" in str(e.value)
    assert path.read_bytes() == b"old table\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv"], "the temporary file must be removed"


def test_a_run_cut_off_by_a_full_disk_never_looks_finished(tmp_path, monkeypatch):
    files = {name: name.encode() for name in ("config.json", "history.csv", "steps.csv", "model.pt")}
    files["result.json"] = b"{}"
    monkeypatch.setattr(os, "fsync", FullAfter(3))  # model.pt, the fourth file, meets the full disk
    with pytest.raises(UserError, match="model.pt"):
        store_mod.RunFolder(tmp_path).write(files)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "history.csv", "steps.csv"]
    monkeypatch.setattr(os, "fsync", FullAfter(99))  # space again: the same write completes
    store_mod.RunFolder(tmp_path).write(files)
    assert (tmp_path / "result.json").read_bytes() == b"{}"


def test_a_full_disk_outside_the_store_s_writes_is_still_one_line(tmp_path, monkeypatch, capsys):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "figure.png"))

    monkeypatch.setattr(report, "regenerate", full)
    monkeypatch.setattr(sys, "argv", ["forgetting", "figures", "--store", str(tmp_path)])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    out, err = capsys.readouterr()
    assert exit_.value.code == 2
    assert_one_line(err, "error:", str(tmp_path / "figure.png"), "no space left")


# --- a real full file system ----------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB tmpfs, where this machine lets the tests mount one (root, mount permitted)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root (the fault-injected tests above cover the writes)")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(disk: Path, leave: int) -> Path:
    """A ballast file that leaves ``leave`` bytes of the disk free."""
    ballast = disk / "ballast"
    with open(ballast, "wb") as f:
        f.write(b"\0" * (shutil.disk_usage(disk).free - leave))
    return ballast


@pytest.mark.integration
def test_a_sweep_on_a_full_disk_exits_2_and_finishes_once_space_is_freed(
    tmp_path, cifar, cifar_path, small_disk, one_thread, monkeypatch, capsys
):
    store = small_disk / "store"
    ballast = fill(small_disk, 600_000)  # room for one run's files (model.pt is 360 KB), not for two
    proc = sweep_cli(store, cifar_path, "100,200", 1)
    out, err = finish(proc)
    assert proc.returncode == 2, (out, err)
    line = assert_one_line(err, "error:", str(store / "cpu-lr-sweep" / "runs"), "no space left", "needs")
    assert "run the same command again" in line
    no_half_files(store)
    assert len(list(store.rglob("result.json"))) == 1, "the first run fitted; the second must not look finished"

    ballast.unlink()
    code, out, err = sweep_here(store, cifar_path, "100,200", 1, monkeypatch, capsys)
    assert code == 0, err
    assert "1 of 2 runs already finished" in out
    sweep.run_sweep(tiny_study([100, 200], 1), tmp_path / "clean", cifar, CPU)  # undisturbed
    got = pd.read_csv(store / "cpu-lr-sweep" / "results.csv", dtype={"run": str})
    want = pd.read_csv(tmp_path / "clean" / "cpu-lr-sweep" / "results.csv", dtype={"run": str})
    assert (got["status"] == "finished").all() and len(got) == 2
    pd.testing.assert_frame_equal(got.drop(columns=MACHINE_COLUMNS), want.drop(columns=MACHINE_COLUMNS))


# --- SIGTERM ---------------------------------------------------------------------------------------


def wait_for(proc: subprocess.Popen, ready, what: str) -> None:
    deadline = time.time() + 300
    while time.time() < deadline:
        if ready():
            return
        assert proc.poll() is None, f"the sweep ended before {what}: {proc.communicate()}"
        time.sleep(0.02)
    proc.kill()
    pytest.fail(f"no {what} within 300 s")


@pytest.mark.integration
def test_sigterm_mid_run_is_one_line_and_the_same_command_resumes_from_the_checkpoint(
    tmp_path, cifar_path, one_thread, monkeypatch, capsys
):
    store = tmp_path / "store"
    runs = store / "cpu-lr-sweep" / "runs"
    proc = sweep_cli(store, cifar_path, "100,200", 8)  # the second run checkpoints after each of 8 epochs

    def second_run_checkpointed() -> bool:
        done = {p.parent for p in runs.glob("*/result.json")}
        return len(done) == 1 and any(p.parent not in done for p in runs.glob("*/checkpoint.pt"))

    wait_for(proc, second_run_checkpointed, "the first run finished and the second checkpointed")
    os.kill(proc.pid, signal.SIGTERM)  # what SLURM sends at a time limit or a preemption
    out, err = finish(proc)
    assert proc.returncode == 128 + signal.SIGTERM, (out, err)
    assert_one_line(err, "terminated: run the same command again to resume")
    (finished,) = runs.glob("*/result.json")
    (checkpoint,) = runs.glob("*/checkpoint.pt")
    assert checkpoint.parent != finished.parent and not (checkpoint.parent / "result.json").exists()
    epoch = torch.load(checkpoint, map_location="cpu", weights_only=False)["epoch"]
    before = (finished.read_bytes(), finished.stat().st_mtime_ns)

    code, out, err = sweep_here(store, cifar_path, "100,200", 8, monkeypatch, capsys)
    assert code == 0, err
    assert "1 of 2 runs already finished" in out
    assert (finished.read_bytes(), finished.stat().st_mtime_ns) == before, "a finished run was redone"
    resumed = json.loads((checkpoint.parent / "result.json").read_text())
    assert resumed["resumed_from_epoch"] == epoch >= 1 and resumed["epochs_completed"] == 8
    assert not checkpoint.exists()


# --- a damaged result.json --------------------------------------------------------------------------


@pytest.mark.integration
def test_a_truncated_result_json_is_named_and_its_run_redone_the_rest_untouched(
    tmp_path, cifar, cifar_path, one_thread
):
    outcome = sweep.run_sweep(tiny_study([100, 200], 1), tmp_path, cifar, CPU)
    small, large = (outcome.store.run_dir(spec) for spec in outcome.specs)
    whole = (small / "result.json").read_bytes()
    (small / "result.json").write_bytes(whole[: len(whole) // 2])  # a copy cut off half way
    untouched = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in large.iterdir()}

    proc = sweep_cli(tmp_path, cifar_path, "100,200", 1)
    out, err = finish(proc)
    assert proc.returncode == 0, err
    assert_one_line(err, "warning:", str(small / "result.json"), "damaged", "redone")
    assert "1 of 2 runs already finished" in out
    redone = json.loads((small / "result.json").read_text())
    assert redone["test_loss"] == pytest.approx(json.loads(whole)["test_loss"], rel=1e-6)  # the same run again
    assert (small / "result.json.damaged").read_bytes() == whole[: len(whole) // 2]  # kept for a look
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in large.iterdir()} == untouched
    table = pd.read_csv(tmp_path / "cpu-lr-sweep" / "results.csv")
    assert (table["status"] == "finished").all() and len(table) == 2
    assert table["load_start"].notna().all() and table["load_end"].notna().all()  # the machine's load, recorded
