"""Faults on a real local Ray: a task's worker process SIGKILLed mid-run, and the driver SIGKILLed mid-sweep.

Both use the real CIFAR-10 at tiny scale (dawn18 width 0.125, 1 epoch). They start a real Ray, which
takes 10-30 s on a 2-core machine; they are skipped where Ray is not installed or /proc is missing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from helpers import start_cli
from forgetting import studies, sweep
from forgetting.execution.settings import ExecutorSettings

ray = pytest.importorskip("ray")
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="finds Ray's workers through /proc"),
]

# Everything a finished run holds. Nothing else may be there: no checkpoint, temporary or failed.json.
RUN_FILES = {"config.json", "history.csv", "steps.csv", "examples.npz", "model.pt", "meta.json", "result.json"}


def processes_named(title: str) -> list[int]:
    """Pids whose command line contains ``title``. Ray retitles a worker 'ray::run_job' while it runs that task."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if title in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(entry.name))
            except OSError:  # the process ended while we looked
                pass
    return pids


def is_gone(pid: int) -> bool:
    """True when ``pid`` has exited (a zombie awaiting its parent's wait counts as exited)."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().split(") ")[1].startswith("Z")
    except OSError:
        return True


def assert_store_complete(study_dir: Path, n_runs: int) -> pd.DataFrame:
    table = pd.read_csv(study_dir / "results.csv", dtype={"run": str})
    assert len(table) == n_runs and table["run"].is_unique
    assert (table["status"] == "finished").all(), table[["run", "status"]]
    run_dirs = sorted((study_dir / "runs").iterdir())
    assert sorted(d.name for d in run_dirs) == sorted(table["run"])
    for run_dir in run_dirs:
        assert {p.name for p in run_dir.iterdir()} == RUN_FILES, sorted(p.name for p in run_dir.iterdir())
    assert not list(study_dir.glob("*.tmp")) and not list(study_dir.glob("runs/*/*.tmp"))
    return table


def test_a_task_whose_worker_is_killed_is_retried_and_recorded_once(tmp_path, cifar):
    study = studies.load_study("cpu-lr-sweep").with_overrides(
        sizes=[1000], multipliers=[1.0], seeds=[0], epochs=1, warmup=0, width=0.125, batch_size=100, base_lr=0.4
    )
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    outcome: dict = {}
    killed = None
    try:
        driver = threading.Thread(
            target=lambda: outcome.update(
                result=sweep.run_sweep(study, tmp_path, cifar, ExecutorSettings(executor="ray", device="cpu"))
            )
        )
        driver.start()
        deadline = time.time() + 300
        while killed is None and driver.is_alive() and time.time() < deadline:
            pids = processes_named("ray::run_job")
            if pids:
                time.sleep(0.5)  # let it get into training, so the kill lands mid-run
                killed = pids[0]
                os.kill(killed, signal.SIGKILL)
            time.sleep(0.02)
        driver.join(timeout=600)
    finally:
        ray.shutdown()
    assert killed is not None, "the task finished (or never started) before its worker could be killed"
    assert not driver.is_alive(), "the sweep did not finish after its worker was killed"
    assert "result" in outcome, "the sweep raised instead of retrying the task"
    assert is_gone(killed)
    table = assert_store_complete(tmp_path / study.name, 1)
    assert table["run"].tolist() == [outcome["result"].specs[0].id]
    assert not table["diverged"].any()


def cli_sweep(store: Path, data: Path) -> subprocess.Popen:
    """`forgetting sweep-lr --executor ray` on 3 tiny runs of a slice of the real images (each process loads
    and tests on less); 2 CPUs per run on 2 cores: they finish one by one."""
    tiny = "--sizes 200,400,800 --multipliers 1 --seeds 0 --epochs 1 --warmup 0 --width 0.125 --batch-size 100"
    ray_args = "--base-lr 0.4 --cpus-per-run 2 --executor ray --device cpu"
    env = dict(os.environ, FORGETTING_DATA_SIZES="any")
    return start_cli("sweep-lr", "cpu-lr-sweep", *tiny.split(), *ray_args.split(), "--store", str(store), data=data, env=env)


def test_a_driver_killed_mid_sweep_loses_nothing_and_the_rerun_redoes_nothing(tmp_path, cifar_slice_path):
    store = tmp_path / "store"
    runs = store / "cpu-lr-sweep" / "runs"
    proc = cli_sweep(store, cifar_slice_path)
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None and not list(runs.glob("*/result.json")):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the local Ray it started
    proc.communicate()
    finished = sorted(runs.glob("*/result.json"))
    assert 1 <= len(finished) < 3, f"{len(finished)} runs finished before the kill; expected some, not all"
    snapshot = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in finished}
    assert not (store / "cpu-lr-sweep" / "results.csv").exists()  # the killed sweep wrote no table

    proc = cli_sweep(store, cifar_slice_path)
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err
    assert f"{len(finished)} of 3 runs already finished" in out
    for p, (blob, mtime) in snapshot.items():
        assert p.read_bytes() == blob and p.stat().st_mtime_ns == mtime, f"{p} was redone"
    assert_store_complete(store / "cpu-lr-sweep", 3)
