"""Two sweeps on one store: the second exits 2 naming the holder; a lock left by a killed sweep does not block."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from helpers import start_cli
from forgetting.errors import UserError
from forgetting.store import exclusive_lock

TINY = (
    "--multipliers 1 --batch-size 100 --epochs 1 --warmup 0 --width 0.125 --base-lr 0.4 --seeds 0 --device cpu".split()
)


def test_lock_names_its_holder_and_is_empty_after_release(tmp_path):
    lock = tmp_path / "sweep.lock"
    with exclusive_lock(lock):
        holder = json.loads(lock.read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname() and holder["since"]
    assert lock.read_text() == ""
    with exclusive_lock(lock):  # released: a second holder gets it at once
        pass


def sweep(store: Path, cifar_path: Path, sizes: str = "200") -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return start_cli("sweep-lr", "cpu-lr-sweep", *TINY, "--sizes", sizes, "--store", str(store), data=cifar_path, env=env)


def wait_until_locked(proc: subprocess.Popen, lock: Path) -> None:
    """Poll until ``proc`` has written its name into the lock, that is, holds it."""
    deadline = time.time() + 300
    while time.time() < deadline:
        assert proc.poll() is None, f"the sweep ended before it took the lock: {proc.communicate()}"
        try:
            if json.loads(lock.read_text())["pid"] == proc.pid:
                return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    proc.kill()
    pytest.fail("the sweep did not take the store lock within 300 s")


@pytest.mark.integration
def test_second_sweep_on_a_held_store_exits_2_and_a_killed_holder_does_not_block(tmp_path, cifar_path):
    store = tmp_path / "store"
    lock = store / "cpu-lr-sweep" / "sweep.lock"
    first = sweep(store, cifar_path)
    wait_until_locked(first, lock)
    os.kill(first.pid, signal.SIGSTOP)  # hold it mid-sweep, however fast this machine is
    try:
        second = sweep(store, cifar_path)
        out, err = second.communicate(timeout=300)
    finally:
        os.kill(first.pid, signal.SIGCONT)
    assert second.returncode == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert f"pid {first.pid}" in lines[0] and socket.gethostname() in lines[0] and "since" in lines[0], lines[0]
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    table = pd.read_csv(store / "cpu-lr-sweep" / "results.csv")
    assert len(table) == 1 and (table["status"] == "finished").all()
    assert len(list((store / "cpu-lr-sweep" / "runs").glob("*/result.json"))) == 1
    assert lock.read_text() == ""

    # A sweep killed while it holds the lock leaves its name in the file, but not the lock itself.
    killed = sweep(store, cifar_path, "200,400")  # one new run: it holds the lock for a while
    wait_until_locked(killed, lock)
    killed.kill()
    killed.communicate()
    assert json.loads(lock.read_text())["pid"] == killed.pid
    again = sweep(store, cifar_path, "200,400")
    out, err = again.communicate(timeout=600)
    assert again.returncode == 0, err
    assert "1 of 2 runs already finished" in out
    assert (pd.read_csv(store / "cpu-lr-sweep" / "results.csv")["status"] == "finished").sum() == 2


@pytest.mark.integration
def test_the_probe_writes_its_tables_while_holding_the_store(tmp_path, cifar, monkeypatch):
    """A probe's five tables belong together: another sweep or probe must not get the store between them."""
    from forgetting import probe, store as store_mod, studies
    from forgetting.execution.settings import ExecutorSettings
    from forgetting.experiments.run import run_study

    study = studies.load_study("cpu-probe").with_overrides(
        epochs=1, warmup=0, width=0.125, subset=200, batch_size=100, multipliers=[1.0], base_lr=0.4, seeds=[0]
    )
    lock = tmp_path / study.name / "sweep.lock"
    written, refused = [], []

    def write_while_checking_the_lock(path, blob):
        if Path(path).suffix == ".csv" and Path(path).stem.startswith("probe"):
            written.append(Path(path).name)
            try:
                with exclusive_lock(lock):  # as a second process would: it must be refused
                    pass
            except UserError as e:
                refused.append(str(e))
        return real_write(path, blob)

    real_write = store_mod.atomic_write_bytes
    monkeypatch.setattr(store_mod, "atomic_write_bytes", write_while_checking_the_lock)  # StudyFolder.write
    run_study(study, tmp_path, cifar, ExecutorSettings(device="cpu"))
    assert len(written) == 5 and len(refused) == 5, (written, refused)
    assert all("in use by another sweep or probe" in e and f"pid {os.getpid()}" in e for e in refused)
    assert lock.read_text() == ""  # released at the end
