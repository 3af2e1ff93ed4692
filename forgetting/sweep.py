"""The sweep's driver: a study's runs (`grid`) -> an executor (`execution`) -> the store -> results.csv.

Re-running a study skips every finished run: result.json (written last, atomically) and the rest of
its record. Any other run is restarted, from its epoch checkpoint when there is one. Only the
driver writes the store (Ray tasks send their files back), under a lock. The folder layout is the
store's (`store.StudyFolder`, `store.RunFolder`).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from forgetting import lr_finder
from forgetting.datasets import DataIdentity, Dataset
from forgetting.errors import Stopped, UserError
from forgetting.execution.base import RunFailure
from forgetting.execution.settings import ExecutorSettings
from forgetting.execution.training import TrainSink, training_jobs
from forgetting.grid import RunSpec, expand, study_config
from forgetting.shards import Shard, select
from forgetting.store import DamagedFile, RunFolder, StudyFolder, atomic_write_bytes, atomic_write_json, read_json, warn
from forgetting.study_record import recorded_data, study_from_record, study_record  # noqa: F401 (merge's names)
from forgetting.studies import Study
from forgetting.timelimit import TimeBudget
from forgetting.config import TrainConfig
from forgetting.device import resolve_device
from forgetting.train import Callbacks

RUN_COLUMNS = [  # what the grid says about a run
    "run",
    "study",
    "condition",
    "net",
    "width",
    "subset",
    "multiplier",
    "base_lr",
    "lr",
    "batch_size",
    "epochs",
    "warmup",
    "augment",
    "seed",
    "dataset",
    "data_fingerprint",
]
RESULT_FIELDS = [  # copied from the run's result.json
    "train_loss",
    "clean_train_loss",
    "clean_train_acc",
    "test_loss",
    "test_acc",
    "test_loss_tail",
    "test_acc_tail",
    "tail_epochs",
    "diverged",
    "seconds",
    "device",
    "processor",
    "threads",
    "precision",
    "compiled",
    "compile_seconds",
    "load_start",  # the machine's 1-minute load average as the run started and ended: was it shared?
    "load_end",
]
RESULT_COLUMNS = RUN_COLUMNS + RESULT_FIELDS + ["status"]
# Fields that measure the machine, not the run: two trainings of one run id differ in these alone.
MACHINE_FIELDS = ("seconds", "compile_seconds", "load_start", "load_end")


class SweepEvents:
    """Progress hooks for a sweep; the command line passes one that draws bars."""

    def start(self, total: int, done: int, todo: list[RunSpec] | None = None) -> None: ...
    def run_started(self, spec: RunSpec) -> None: ...
    def run_finished(self, spec: RunSpec, result: dict) -> None: ...
    def run_failed(self, spec: RunSpec, failure: RunFailure) -> None: ...
    def train_callbacks(self, spec: RunSpec) -> Callbacks | None:
        """Progress hooks for a run trained in this process."""
        return None

    def lr_find_callbacks(self):
        return None

    # Hooks added for long unattended jobs (a log file's progress lines, a store's damaged files).
    heartbeat_seconds: float | None = None  # the longest a multi-worker driver waits before heartbeat()

    def planned(self, runs: int, work: float, batch_size: int) -> None:
        """Before the base LR is known: how many runs, how much work (the LR finder's ETA needs it)."""

    def heartbeat(self) -> None: ...

    def notice(self, text: str) -> None:
        """Something the user must hear about even without bars (a damaged file in the store)."""
        print(f"warning: {text}", file=sys.stderr, flush=True)


class StudyStore(StudyFolder):
    """A study's folder in a store (``root/<study name>/``), its runs found by their `RunSpec`."""

    def __init__(self, root: Path, study_name: str):
        super().__init__(Path(root) / study_name)

    def run_dir(self, spec: RunSpec) -> Path:
        return self.run(spec.id).dir

    def finished(self, spec: RunSpec) -> bool:
        return self.run(spec.id).finished()

    def checkpoint(self, spec: RunSpec) -> Path:
        return self.run(spec.id).checkpoint

    def record(self, spec: RunSpec, files: dict[str, bytes]) -> dict:
        """Write a finished run's files (result.json last); drop its checkpoint and any earlier failure."""
        run = self.run(spec.id)
        run.write(files)
        run.checkpoint.unlink(missing_ok=True)
        run.failed.unlink(missing_ok=True)
        return json.loads(files[RunFolder.result.name])

    def record_failure(self, spec: RunSpec, failure: RunFailure) -> None:
        atomic_write_json(
            self.run(spec.id).failed, dict(error=failure.to_dict(), meta=spec.meta, config=spec.config.to_dict())
        )


def _lr_find_setup(study: Study, data: DataIdentity | None = None) -> tuple[TrainConfig, dict]:
    """The finder's config and the key its stored result must match to be reused."""
    f = study.lr_find
    t = study.train
    subset = f["subset"] or study.largest_subset()
    cfg = study_config(study, data, subset=subset, augment=t["augment"], cutout=t["cutout"], seed=f["seeds"][0])
    key = dict(
        config=cfg.identity(),
        method=f["method"],
        steps=f["steps"],
        start_lr=f["start_lr"],
        end_lr=f["end_lr"],
        seeds=f["seeds"],
    )
    return cfg, key


def stored_base_lr(study: Study, store: StudyStore, data: DataIdentity | None = None, notice=None) -> float | None:
    """The study's base LR if it is known without training: a number, or the finder's stored result for
    ``data`` (a finder's result on other data is not this study's; a damaged one set aside with ``notice``,
    else refused: `lr_finder.read_files`)."""
    if study.grid["base_lr"] != "find":
        return float(study.grid["base_lr"])
    saved = lr_finder.read_files(store.dir, notice)
    if saved is not None and saved.get("key") == _lr_find_setup(study, data)[1]:
        return float(saved["suggestion"])
    return None


def _require_finder_result(study: Study, store: StudyStore, shard: Shard | None, data: DataIdentity) -> None:
    if shard is not None and shard.index > 1 and stored_base_lr(study, store, data) is None:
        raise UserError(
            f'{study.name}: base_lr = "find" and {store.lr_find_json} is not there: run the finder first '
            f"(`forgetting lr-find {study.name} --store DIR`, or shard 1/{shard.count}), then "
            f"`forgetting merge DIR --into {store.dir.parent}`"
        )


def resolve_base_lr(
    study: Study, store: StudyStore, data: Dataset, device, events=None, shard: Shard | None = None
) -> float:
    """The study's base LR: a number, or the LR finder's suggestion on ``data`` (computed once, then reused).

    Only a whole study or its first shard runs the finder: pieces trained at two base LRs would be two
    studies under one name."""
    known = stored_base_lr(study, store, data.identity, events.notice if events else warn)
    if known is not None:
        return known
    _require_finder_result(study, store, shard, data.identity)
    f = study.lr_find
    cfg, key = _lr_find_setup(study, data.identity)
    found = lr_finder.find_lr(
        cfg,
        data,
        resolve_device(device) if isinstance(device, str) else device,
        method=f["method"],
        seeds=tuple(f["seeds"]),
        num_steps=f["steps"],
        start_lr=f["start_lr"],
        end_lr=f["end_lr"],
        callbacks=events.lr_find_callbacks() if events else None,
    )
    lr_finder.write_files(found, store.dir, key=key)
    return float(found.suggestion)


def results_table(study: Study, store: StudyStore, specs: list[RunSpec]) -> pd.DataFrame:
    rows = []
    for spec in specs:
        c, m = spec.config, spec.meta
        row = dict(
            run=spec.id,
            study=study.name,
            condition=m.get("condition", ""),
            net=c.net,
            width=c.width,
            subset=c.subset,
            multiplier=m["multiplier"],
            base_lr=m["base_lr"],
            lr=m["lr"],
            batch_size=c.batch_size,
            epochs=c.epochs,
            warmup=m["warmup"],
            augment=c.augment,
            seed=c.seed,
            dataset=c.dataset,
            data_fingerprint=c.data_fingerprint,
        )
        run = RunFolder(store.run_dir(spec))  # all it asks of store: `forgetting merge` passes a view with nothing else
        r = run.read_result() if run.finished() else None
        if r is not None:
            row.update({k: r.get(k) for k in RESULT_FIELDS})
            row["status"] = "finished"
        else:
            row["status"] = "failed" if run.failed.exists() else "missing"
        rows.append(row)
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)


def results_csv_bytes(table: pd.DataFrame) -> bytes:
    return table.to_csv(index=False).encode()


@dataclass
class SweepPlan:
    """What a sweep (or one shard of it) would train, without training: the dry run's view."""

    study: Study
    shard: Shard | None
    specs: list[RunSpec]  # every run of the study
    mine: list[RunSpec]  # this shard's runs (all runs without a shard)
    finished: set[str]  # ids of this shard's runs already in the store
    base_lr: float | None  # None: the LR finder has not run, so run ids are not known yet

    @property
    def work(self) -> tuple[float, float]:
        """This shard's work and the whole study's."""
        return sum(s.work for s in self.mine), sum(s.work for s in self.specs)


def plan_sweep(
    study: Study, store_root: Path, shard: Shard | None = None, data: DataIdentity | None = None
) -> SweepPlan:
    """The runs of ``study`` on ``data`` (default: `Study.data_identity`), and which of them are in the store."""
    store = StudyStore(store_root, study.name)
    try:
        base_lr = stored_base_lr(study, store, data)
    except DamagedFile:  # a sweep sets it aside and runs the finder again; a plan changes nothing
        base_lr = None
    # Work and shards do not depend on the base LR, so a placeholder still gives the true pieces.
    specs = expand(study, base_lr if base_lr is not None else 1.0, data)
    mine = select(specs, [s.work for s in specs], shard)
    finished = {s.id for s in mine if base_lr is not None and store.finished(s)}
    return SweepPlan(study, shard, specs, mine, finished, base_lr)


def find_base_lr(study: Study, store_root: Path, data: Dataset, device: str = "auto", events=None) -> float:
    """A study's LR finder alone, into its store (study.json and lr_find.*): run once before shards 2..N."""
    store = StudyStore(store_root, study.name)
    study.check_data(data)
    with store.lock():
        _say_if_other_data(store, data, events or SweepEvents())
        base_lr = resolve_base_lr(study, store, data, resolve_device(device), events)
        atomic_write_json(store.study_json, study_record(study, base_lr, data))
    return base_lr


def _say_if_other_data(store: StudyStore, data: Dataset, events: SweepEvents) -> None:
    """One line when the store holds this study's runs on another data set: those runs stay as they are,
    and the runs on ``data`` are others (their ids name their data)."""
    if not store.study_json.exists():
        return
    try:
        before = recorded_data(read_json(store.study_json))
    except (ValueError, OSError, KeyError, TypeError):
        return  # an unreadable study.json is rewritten below; it names no data set to compare
    if before != data.identity:
        events.notice(
            f"{store.dir} holds runs on data set {before}; this data set is {data.identity} "
            f"({data.source}): its runs are new runs with ids of their own, the runs on the other stay untouched"
        )


@dataclass
class SweepOutcome:
    study: Study
    store: StudyStore
    specs: list[RunSpec]  # every run of the study: results.csv has a row for each
    base_lr: float
    table: pd.DataFrame
    seconds: float
    mine: list[RunSpec]  # the runs this invocation was given: its shard's, or all of them


def run_sweep(
    study: Study,
    store_root: Path,
    data: Dataset,
    executor: ExecutorSettings = ExecutorSettings(),
    events: SweepEvents | None = None,
    shard: Shard | None = None,
    board=None,
) -> SweepOutcome:
    """Run every unfinished run of ``study`` (or of its ``shard``) on ``data`` into ``store_root`` and write
    its results.csv. A run's id names its data set, so runs on other data are never skipped or resumed.

    With ``executor.time_limit`` (seconds from now): start no run that would not end in time at the pace
    measured so far; if runs are left, write results.csv and raise `Stopped` (the same call again continues).
    ``board`` (`tensorboard.Board`): each run's curves, as it trains, in TensorBoard's event files."""
    study.check_data(data)
    runner = executor.make(data)  # checked, and the device resolved where the jobs run here
    budget = TimeBudget(executor.time_limit) if executor.time_limit is not None else None
    events = events or SweepEvents()
    store = StudyStore(store_root, study.name)
    t0 = time.perf_counter()
    _require_finder_result(study, store, shard, data.identity)  # before the lock, which would create the store
    with store.lock():
        _say_if_other_data(store, data, events)
        every = expand(study, 1.0, data.identity)  # the base LR changes run ids, not their number, work or shard
        planned = select(every, [s.work for s in every], shard)
        events.planned(len(planned), sum(s.work for s in planned), study.train["batch_size"])
        base_lr = resolve_base_lr(study, store, data, executor.device, events, shard)
        atomic_write_json(store.study_json, study_record(study, base_lr, data))
        specs = expand(study, base_lr, data.identity)
        mine = select(specs, [s.work for s in specs], shard)
        for s in mine:  # a run whose record is damaged is trained again (`store.read_back`)
            store.run(s.id).set_aside_damaged(events.notice)
        todo = [s for s in mine if not store.finished(s)]
        events.start(len(mine), len(mine) - len(todo), todo)
        runner.run(training_jobs(todo, store, board), TrainSink(store, events), budget)
        table = results_table(study, store, specs)
        atomic_write_bytes(store.results, results_csv_bytes(table))
    if budget is not None and budget.stopped:
        done = sum(store.finished(s) for s in mine)
        raise Stopped(f"time limit: {done} of {len(mine)} runs done; run the same command again to continue")
    return SweepOutcome(study, store, specs, base_lr, table, time.perf_counter() - t0, mine)
