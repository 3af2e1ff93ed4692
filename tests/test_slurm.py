"""The SLURM executor for real, through submitit's local executor (the same submitit API, real processes,
no scheduler): a probe study's training and probing as array tasks, two of them preempted (SIGUSR2, what
SLURM sends before a time limit or a preemption) and then killed (SIGKILL, a lost node) mid-run; every run
is requeued or submitted again, resumes from its checkpoint and finishes; results.csv and the probe tables
are those of the in-process executor; the same call again trains nothing."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from forgetting import curves, data as data_mod, studies, sweep
from forgetting.execution.settings import ExecutorSettings
from forgetting.experiments.run import run_study
from forgetting.store import StudyFolder
from forgetting.sweep import MACHINE_FIELDS

pytest.importorskip("submitit")
event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="finds the array tasks through /proc"),
]

TASK = "submitit.core._submit"  # an array task's command line (the controller's is submitit.local._local)


def tasks_of(store: Path) -> set[int]:
    """Pids of the array tasks whose job folder is under ``store``."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                line = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:  # it ended while we looked
                continue
            if TASK in line and str(store) in line:
                pids.add(int(entry.name))
    return pids


def wait_for(condition, seconds: float = 300) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def signal_all(pids: set[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def checkpoints(folder: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in folder.glob("runs/*/checkpoint.pt") if p.exists()}


def tiny_probe_study():
    return studies.load_study("cpu-probe").with_overrides(
        epochs=4, warmup=0, width=0.125, subset=400, batch_size=50, multipliers=[1.0], base_lr=0.4, seeds=[0]
    )


def without_machine(table: pd.DataFrame) -> pd.DataFrame:
    return table.drop(columns=[c for c in (*MACHINE_FIELDS, "probe_seconds", "train_seconds") if c in table])


def read(folder: Path, name: str) -> pd.DataFrame:
    return without_machine(pd.read_csv(folder / name, dtype={"run": str}))


def test_slurm_array_survives_preemption_and_kills_and_matches_the_local_executor(
    tmp_path, cifar_slice_path, any_size_data, one_thread
):
    study = tiny_probe_study()
    data = data_mod.load_cifar10(cifar_slice_path)
    local = run_study(study, tmp_path / "local", data, ExecutorSettings(device="cpu"))

    store = tmp_path / "slurm"
    folder = store / study.name
    slurm = ExecutorSettings("slurm", device="cpu", slurm_cluster="local", cpus_per_task=1, slurm_time="30m")
    outcome: dict = {}
    board = store / "tb"
    driver = threading.Thread(
        target=lambda: outcome.update(probed=run_study(study, store, data, slurm, tensorboard=board))
    )
    driver.start()
    try:
        # Preempted after a first epoch checkpoint: submitit requeues each task, which resumes from it.
        assert wait_for(lambda: checkpoints(folder)), "no run reached its first checkpoint"
        first = tasks_of(store)
        signal_all(first, signal.SIGUSR2)
        # Killed once a requeued task has saved another epoch: the driver submits it again.
        saved = checkpoints(folder)
        assert wait_for(lambda: tasks_of(store) - first and checkpoints(folder).items() - saved.items())
        signal_all(tasks_of(store) - first, signal.SIGKILL)
    finally:
        driver.join(timeout=900)
    assert not driver.is_alive() and "probed" in outcome, "the SLURM study did not finish"

    logs = "".join(p.read_text(errors="replace") for p in folder.glob("jobs/*/*_log.*"))
    assert "Caught signal SIGUSR2" in logs and "not requeued" not in logs, logs
    assert len(list((folder / "jobs").iterdir())) > 4, "no task was submitted again after its SIGKILL"  # 2 + 2 probes
    resumed = [r for r in outcome["probed"].sweep.table["run"] if _resumed(folder, r)]
    assert resumed, "no run resumed from its checkpoint"

    mine = outcome["probed"].sweep.table
    assert (mine["status"] == "finished").all() and not list(folder.glob("runs/*/checkpoint.pt"))
    for name in ("results.csv", *StudyFolder.PROBE_TABLES):  # the same numbers as in this process
        pd.testing.assert_frame_equal(read(folder, name), read(local.sweep.store.dir, name), check_exact=True)

    # Each run's curves, from the processes that trained it (a SIGKILL just after a checkpoint may lose that
    # epoch's point; a resumed task does not write an epoch twice).
    for spec in outcome["probed"].sweep.specs:
        acc = event_accumulator.EventAccumulator(str(board / curves.run_label(spec)))
        acc.Reload()
        steps = [e.step for e in acc.Scalars("train/loss")]
        assert len(set(steps)) == len(steps) and 4 in steps and set(steps) <= {1, 2, 3, 4}, steps
        assert [e.step for e in acc.Scalars("probe/loss")] == [0, 1, 2, 3]

    # The same call again: every run is in the store, so no task is submitted and nothing is trained.
    finished = {p: p.stat().st_mtime_ns for p in folder.glob("runs/*/result.json")}
    jobs = set((folder / "jobs").iterdir())
    again = sweep.run_sweep(study, store, data, slurm)
    assert {p: p.stat().st_mtime_ns for p in folder.glob("runs/*/result.json")} == finished
    assert set((folder / "jobs").iterdir()) == jobs
    pd.testing.assert_frame_equal(again.table, outcome["probed"].sweep.table)


def _resumed(folder: Path, run: str) -> bool:
    import json

    return json.loads((folder / "runs" / run / "result.json").read_text())["resumed_from_epoch"] > 0
