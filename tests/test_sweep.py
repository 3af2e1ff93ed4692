"""Sweep engine: grid expansion, run ids, resumability after SIGKILL, divergence, lock, Ray = local."""

from __future__ import annotations

import json
import os
import signal
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import pandas as pd
import pytest

from helpers import start_cli
from forgetting import grid, studies, sweep
from forgetting.execution import jobs, ray_backend, slurm
from forgetting.errors import UserError
from forgetting.execution.base import RunFailure
from forgetting.execution.settings import ExecutorSettings
from forgetting.store import exclusive_lock

TINY = "--multipliers 1,1000 --sizes 500,1000 --epochs 1 --width 0.125 --base-lr 0.4 --seeds 0 --workers 1".split()


def tiny_study(**kw):
    base = dict(multipliers=[1.0, 1000.0], sizes=[500, 1000], epochs=1, width=0.125, base_lr=0.4, seeds=[0])
    return studies.load_study("cpu-lr-sweep").with_overrides(**{**base, **kw})


def test_expand_is_the_full_grid_with_stable_distinct_ids():
    s = tiny_study(multipliers=[0.5, 1.0, 2.0], sizes=[500, 1000], seeds=[0, 1])
    specs = grid.expand(s, base_lr=0.4)
    assert len(specs) == 3 * 2 * 2
    assert len({sp.id for sp in specs}) == len(specs)
    assert [sp.id for sp in specs] == [sp.id for sp in grid.expand(s, base_lr=0.4)]
    assert {round(sp.meta["lr"], 6) for sp in specs} == {0.2, 0.4, 0.8}
    # warm-up then constant LR at multiplier x base
    knots = specs[0].config.lr_knots
    assert knots[0] == (0.0, 0.0) and knots[-1][1] == pytest.approx(specs[0].meta["lr"])
    # a different base LR is a different run
    assert grid.expand(s, base_lr=0.3)[0].id != specs[0].id


def test_lock_refuses_a_second_writer(tmp_path):
    with exclusive_lock(tmp_path / "sweep.lock"):
        with pytest.raises(UserError, match="in use"):
            with exclusive_lock(tmp_path / "sweep.lock"):
                pass


@pytest.mark.integration
def test_sweep_survives_sigkill_and_resumes_without_recomputing(tmp_path, cifar_slice_path):
    store = tmp_path / "store"
    env = dict(os.environ, FORGETTING_DATA_SIZES="any")  # a slice of the real images: less to load and test on
    args = ("sweep-lr", "cpu-lr-sweep", *TINY, "--store", str(store), "--device", "cpu")
    proc = start_cli(*args, data=cifar_slice_path, env=env)
    runs = store / "cpu-lr-sweep" / "runs"
    deadline = time.time() + 300
    first = None
    while time.time() < deadline and proc.poll() is None:
        done = sorted(runs.glob("*/result.json")) if runs.exists() else []
        if done:
            first = done[0]
            break
        time.sleep(0.05)
    assert first is not None, "no run finished before the deadline"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished_before = sorted(runs.glob("*/result.json"))
    assert len(finished_before) < 4, "the sweep finished before it could be killed"
    snapshot = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in finished_before}

    proc = start_cli(*args, data=cifar_slice_path, env=env)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert "already finished" in out
    for p, (blob, mtime) in snapshot.items():
        assert p.read_bytes() == blob and p.stat().st_mtime_ns == mtime, f"{p} was recomputed"
    table = pd.read_csv(store / "cpu-lr-sweep" / "results.csv")
    assert len(table) == 4
    columns = "run net width subset multiplier base_lr lr batch_size epochs augment seed"
    columns += " train_loss clean_train_loss test_loss test_acc diverged seconds device"
    for col in columns.split():
        assert col in table.columns, col
    assert (table["status"] == "finished").all()
    # the huge multiplier diverges and is recorded as such; the sweep still finished
    assert table.loc[table["multiplier"] == 1000, "diverged"].all()
    assert not table.loc[table["multiplier"] == 1, "diverged"].any()
    assert (store / "cpu-lr-sweep" / "figures" / "lr_sweep.png").stat().st_size > 0
    assert not list(runs.glob("*/checkpoint.pt")), "checkpoints must be removed once a run finishes"


@pytest.mark.integration
def test_ray_executor_matches_local(tmp_path, cifar):
    ray = pytest.importorskip("ray")
    s = tiny_study(multipliers=[1.0], sizes=[500])
    local = sweep.run_sweep(s, tmp_path / "local", cifar, ExecutorSettings(device="cpu"))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        # 2 CPUs per task = the threads the local run used, so the arithmetic is the same
        remote = sweep.run_sweep(
            s, tmp_path / "ray", cifar, ExecutorSettings(executor="ray", device="cpu", cpus_per_run=2)
        )
    finally:
        ray.shutdown()
    cols = ["run", "train_loss", "test_loss", "clean_train_loss"]
    assert (remote.table["status"] == "finished").all()
    pd.testing.assert_frame_equal(local.table[cols], remote.table[cols])
    # the driver alone wrote the store: the Ray run's files are all there
    run_dir = remote.store.run_dir(remote.specs[0])
    assert {"config.json", "history.csv", "model.pt", "result.json", "meta.json"} <= {p.name for p in run_dir.iterdir()}


def test_failed_run_is_recorded_and_the_sweep_goes_on(tmp_path, synthetic_cifar, monkeypatch):
    s = tiny_study(multipliers=[1.0, 2.0], sizes=[100], batch_size=50)
    calls = []
    real = jobs.execute_run

    def flaky(cfg_dict, meta, *a, **k):
        calls.append(meta["multiplier"])
        if meta["multiplier"] == 1.0:
            raise RuntimeError("simulated out-of-memory")
        return real(cfg_dict, meta, *a, **k)

    monkeypatch.setattr(jobs, "execute_run", flaky)
    out = sweep.run_sweep(s, tmp_path, synthetic_cifar, ExecutorSettings(device="cpu"))
    assert calls == [1.0, 2.0]
    status = dict(zip(out.table["multiplier"], out.table["status"]))
    assert status == {1.0: "failed", 2.0: "finished"}
    record = json.loads((out.store.run_dir(out.specs[0]) / "failed.json").read_text())
    error = record["error"]
    assert (error["type"], error["message"]) == ("RuntimeError", "simulated out-of-memory")
    assert error["traceback"].startswith("Traceback") and "in flaky" in error["traceback"]
    assert record["meta"] == out.specs[0].meta and record["config"] == out.specs[0].config.to_dict()


def test_results_csv_is_written_through_the_store_s_atomic_writer(tmp_path, synthetic_cifar, monkeypatch):
    written = []
    real = sweep.atomic_write_bytes

    def recording(path, data):
        written.append(path.name)
        real(path, data)

    def no_training(*args, **kwargs):
        raise RuntimeError("not trained here")

    monkeypatch.setattr(sweep, "atomic_write_bytes", recording)
    monkeypatch.setattr(jobs, "execute_run", no_training)
    s = tiny_study(multipliers=[1.0], sizes=[100], batch_size=50)
    out = sweep.run_sweep(s, tmp_path, synthetic_cifar, ExecutorSettings(device="cpu"))
    assert written == ["results.csv"]
    assert (out.store.dir / "results.csv").read_bytes() == sweep.results_csv_bytes(out.table)
    assert out.table["status"].tolist() == ["failed"]


def test_a_failure_is_recorded_in_one_shape_whichever_executor_ran_it():
    """Type, message and the traceback of where it was raised: in this process, a worker, or a Ray task."""
    try:
        int("x")
    except ValueError as e:
        here = RunFailure.of(e)
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        worker = RunFailure.of(pool.submit(int, "x").exception())

    class RayTaskError(ValueError):  # what ray.get raises: the task's exception as `cause`, its traceback as text
        def __init__(self, cause):
            self.cause = cause

        def __str__(self):
            return "\x1b[36mray::execute_run()\x1b[39m (pid=1)\n  File task.py, line 1\nValueError: bad"

    task = ray_backend.RayExecutor.failure(None, RayTaskError(ValueError("bad")))  # the Ray backend's own translation
    trace = 'Traceback (most recent call last):\n  File "task.py", line 1\nValueError: bad\n'
    array_task = slurm.SlurmExecutor.failure(  # what submitit's job.result() raises: the task's traceback as text
        None, RuntimeError(f"Job (task=0) failed during processing with trace:\n{'-' * 22}\n{trace}\n{'-' * 22}\nlogs")
    )
    assert (array_task.type, array_task.message, array_task.line) == ("ValueError", "bad", "ValueError: bad")
    assert array_task.traceback == trace.strip()
    for failure in (here, worker):
        assert (failure.type, failure.line) == ("ValueError", "ValueError: invalid literal for int() with base 10: 'x'")
    assert "_process_worker" in worker.traceback  # the worker's own frames, not only the driver's
    assert (task.type, task.message, task.line) == ("ValueError", "bad", "ValueError: bad")
    assert task.traceback.startswith("ray::execute_run() (pid=1)") and "\x1b" not in task.traceback
    assert set(here.to_dict()) == set(worker.to_dict()) == set(task.to_dict()) == {"type", "message", "traceback"}
    assert set(array_task.to_dict()) == set(here.to_dict())


@pytest.mark.parametrize("name", ["cpu-lr-sweep", "cpu-probe"])
def test_committed_results_keep_their_run_ids(name):
    """Settings added since (precision, drop_last, compile, ...) must not rename committed runs."""
    from helpers import REPO_ROOT

    folder = REPO_ROOT / "results" / name
    base_lr = json.loads((folder / "study.json").read_text())["base_lr"]
    committed = set(pd.read_csv(folder / "results.csv", dtype={"run": str})["run"])
    assert committed and committed <= {sp.id for sp in grid.expand(studies.load_study(name), base_lr)}
