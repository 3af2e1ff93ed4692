"""Study -> runs -> executor (local processes or Ray) -> store -> results.csv.

Store layout::

    STORE/<study>/runs/<run id>/   config.json history.csv steps.csv examples.npz model.pt meta.json result.json
    STORE/<study>/results.csv      one row per run of the study as last expanded
    STORE/<study>/lr_find.json     the base LR when the study says base_lr = "find"

A run's id is a hash of its fully resolved TrainConfig, so changing any setting makes a new run and
re-running a study skips every run whose result.json exists. result.json is written last and
atomically; a run without it is restarted, from its epoch checkpoint when there is one. Only the
driver writes the store (Ray tasks send their files back), under a lock.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import pandas as pd
import torch

from forgetting import data as data_mod
from forgetting.errors import Stopped, UserError
from forgetting.schedules import warmup_constant
from forgetting.shards import Shard, select
from forgetting.store import atomic_write_bytes, atomic_write_json, ensure_folder, exclusive_lock, json_bytes, read_json
from forgetting.studies import STUDIES_DIR, Condition, Study
from forgetting.timelimit import TimeBudget
from forgetting.train import CHECKPOINT, Callbacks, TrainConfig, resolve_device, train, write_run

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
RAY_RETRIES = 2  # a failed Ray task is retried this many times, then recorded as failed


def run_id(cfg: TrainConfig) -> str:
    blob = json.dumps(cfg.identity(), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


# A test-set or clean-training-set image costs about half a training image (forward only, no
# augmentation): the fit that makes seconds / work most nearly constant across the committed
# cpu-lr-sweep runs (0.00079-0.00084 s per unit from 1,280 to 10,240 images; 1/3 gives 0.00085-0.00093).
EVAL_COST = 0.5


def run_work(cfg: TrainConfig, test_size: int = data_mod.TEST_SIZE) -> float:
    """subset x epochs, plus each test-set evaluation and the final clean pass over the subset."""
    evaluations = sum(
        1
        for e in range(cfg.epochs)
        if e == cfg.epochs - 1 or e >= cfg.epochs - cfg.eval_last or (cfg.eval_every and (e + 1) % cfg.eval_every == 0)
    )  # as train() decides
    return cfg.subset * cfg.epochs + EVAL_COST * (evaluations * test_size + cfg.subset)


@dataclass(frozen=True)
class RunSpec:
    config: TrainConfig
    meta: dict  # study, condition, multiplier, base_lr, lr, warmup: what the grid says about this run

    @property
    def id(self) -> str:
        return run_id(self.config)

    @property
    def work(self) -> float:
        """What the run costs, in training-image equivalents: what the sweep's ETA weighs runs by."""
        return run_work(self.config)

    def describe(self) -> str:
        cond = f"{self.meta['condition']} " if self.meta.get("condition") else ""
        return f"{cond}n={self.config.subset} x{self.meta['multiplier']:g} seed {self.config.seed}"


def study_config(study: Study, **run) -> TrainConfig:
    """A TrainConfig with the network and recipe of the study's [train] section, plus ``run``'s own
    settings (subset, seed, LR schedule, ...): the one place a new [train] key reaches every run."""
    t = study.train
    shared = dict(
        net=t["net"],
        width=float(t["width"]),
        shortcut=t["shortcut"],
        bn_init=t["bn_init"],
        epochs=t["epochs"],
        batch_size=t["batch_size"],
        precision=t["precision"],
        drop_last=t["drop_last"],
        compile=t["compile"],
    )
    return TrainConfig(**shared, **run)


def expand(study: Study, base_lr: float) -> list[RunSpec]:
    """Every run of the study, smallest subsets first (so results arrive early)."""
    t = study.train
    cells = []  # (subset, augment, condition)
    if study.kind == "lr-sweep":
        cells = [(size, t["augment"], "") for size in study.grid["sizes"]]
    else:
        cells = [(max(1, round(c.fraction * study.grid["subset"])), c.augment, c.name) for c in study.conditions]
    specs = []
    for subset, augment, condition in sorted(cells):
        for m in study.grid["multipliers"]:
            for seed in study.grid["seeds"]:
                lr = m * base_lr
                cfg = study_config(
                    study,
                    subset=subset,
                    lr_knots=warmup_constant(lr, t["warmup"], t["epochs"]).knots,
                    augment=augment,
                    cutout=t["cutout"] if augment else 0,
                    seed=seed,
                    eval_every=t["eval_every"],
                    eval_last=t["eval_last"],
                )
                meta = dict(
                    study=study.name, condition=condition, multiplier=m, base_lr=base_lr, lr=lr, warmup=t["warmup"]
                )
                specs.append(RunSpec(cfg, meta))
    return specs


class SweepEvents:
    """Progress hooks for a sweep; the command line passes one that draws bars."""

    def start(self, total: int, done: int, todo: list[RunSpec] | None = None) -> None: ...
    def run_started(self, spec: RunSpec) -> None: ...
    def run_finished(self, spec: RunSpec, result: dict) -> None: ...
    def run_failed(self, spec: RunSpec, error: str) -> None: ...
    def train_callbacks(self, spec: RunSpec) -> Callbacks | None:
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


def read_result(run_dir: Path) -> dict | None:
    """A run folder's result.json; None when it is missing or damaged (a truncated copy, a bad disk)."""
    try:
        result = read_json(Path(run_dir) / "result.json")
    except (ValueError, OSError):  # missing, or not JSON (json's errors are ValueErrors)
        return None
    return result if isinstance(result, dict) else None


class StudyStore:
    def __init__(self, root: Path, study_name: str):
        self.dir = Path(root) / study_name
        self.runs = self.dir / "runs"

    def run_dir(self, spec: RunSpec) -> Path:
        return self.runs / spec.id

    def finished(self, spec: RunSpec) -> bool:
        return self.result(spec) is not None

    def result(self, spec: RunSpec) -> dict | None:
        return read_result(self.run_dir(spec))

    def set_aside_damaged(self, spec: RunSpec) -> Path | None:
        """Move a damaged result.json out of the way, so that its run counts as unfinished and is redone."""
        path = self.run_dir(spec) / "result.json"
        if not path.exists() or self.finished(spec):
            return None
        aside = path.with_name("result.json.damaged")
        os.replace(path, aside)
        return aside

    def lock(self):
        ensure_folder(self.dir.parent, "store")  # names --store itself when it is a file
        return exclusive_lock(self.dir / "sweep.lock")


# ---------------------------------------------------------------------------------------------
# Executing one run: the same function in-process, in a local worker process, or as a Ray task.

_WORKER: dict = {}


def _init_worker(source: str, threads: int) -> None:
    torch.set_num_threads(threads)
    _WORKER["cifar"] = data_mod.load_cifar10(source)
    _WORKER["cache"] = {}


def execute_run(
    cfg_dict: dict,
    meta: dict,
    cifar=None,
    device: str = "auto",
    checkpoint: str | None = None,
    threads: int | None = None,
    callbacks=None,
    cache=None,
) -> dict[str, bytes]:
    """Train one run and return its files (result.json last), ready for the driver to write."""
    if threads:
        torch.set_num_threads(threads)
    cifar = cifar if cifar is not None else _WORKER["cifar"]
    cache = cache if cache is not None else _WORKER.get("cache")
    cfg = TrainConfig.from_dict(cfg_dict)
    out = train(
        cfg,
        cifar,
        resolve_device(device),
        checkpoint=Path(checkpoint) if checkpoint else None,
        callbacks=callbacks,
        cache=cache,
    )
    files = out.files()
    result = files.pop("result.json")
    files["meta.json"] = json_bytes(meta)
    files["result.json"] = result
    return files


def _record(store: StudyStore, spec: RunSpec, files: dict[str, bytes]) -> dict:
    run_dir = store.run_dir(spec)
    write_run(run_dir, files)
    (run_dir / CHECKPOINT).unlink(missing_ok=True)
    (run_dir / "failed.json").unlink(missing_ok=True)
    return json.loads(files["result.json"])


def _record_failure(store: StudyStore, spec: RunSpec, error: str) -> None:
    atomic_write_json(
        store.run_dir(spec) / "failed.json", dict(error=error, meta=spec.meta, config=spec.config.to_dict())
    )


def _run_local(specs, store, cifar, device, workers, events: SweepEvents, budget: TimeBudget | None = None) -> None:
    if workers <= 1:
        cache: dict = {}
        for spec in specs:
            if budget is not None and not budget.allows(spec.work):
                return
            events.run_started(spec)
            t0 = time.monotonic()
            try:
                files = execute_run(
                    spec.config.to_dict(),
                    spec.meta,
                    cifar,
                    str(device),
                    checkpoint=str(store.run_dir(spec) / CHECKPOINT),
                    callbacks=events.train_callbacks(spec),
                    cache=cache,
                )
            except (KeyboardInterrupt, UserError):
                raise
            except Exception:
                error = traceback.format_exc(limit=3)
                _record_failure(store, spec, error)
                events.run_failed(spec, error)
                continue
            events.run_finished(spec, _record(store, spec, files))
            if budget is not None:
                budget.finished(spec.work, time.monotonic() - t0)
        return
    threads = max(1, (os.cpu_count() or 1) // workers)  # share the cores, do not oversubscribe them
    with ProcessPoolExecutor(
        workers, mp_context=get_context("spawn"), initializer=_init_worker, initargs=(cifar.source, threads)
    ) as pool:
        try:
            _run_pool(pool, workers, specs, store, device, events, budget)
        except BaseException:
            # A SIGTERM or Ctrl-C meant for the sweep: its workers stop too (their checkpoints are whole
            # files), rather than the pool waiting for every run in flight to end.
            for proc in list((getattr(pool, "_processes", None) or {}).values()):
                proc.terminate()
            raise


def _run_pool(pool, workers, specs, store, device, events: SweepEvents, budget: TimeBudget | None) -> None:
    """At most ``workers`` runs in flight, each submitted when a worker is free and the budget allows it."""
    queue, pending = list(specs), {}
    while queue or pending:
        while queue and len(pending) < workers and (budget is None or budget.allows(queue[0].work)):
            spec = queue.pop(0)
            store.run_dir(spec).mkdir(parents=True, exist_ok=True)
            fut = pool.submit(
                execute_run, spec.config.to_dict(), spec.meta, None, str(device), str(store.run_dir(spec) / CHECKPOINT)
            )
            pending[fut] = (spec, time.monotonic())
            events.run_started(spec)
        if budget is not None and budget.stopped:
            queue = []
        if not pending:
            return
        done, _ = wait(pending, timeout=events.heartbeat_seconds, return_when=FIRST_COMPLETED)
        events.heartbeat()
        for fut in done:
            spec, t0 = pending.pop(fut)
            try:
                events.run_finished(spec, _record(store, spec, fut.result()))
            except UserError:  # a full disk, in the worker's checkpoint or in the driver's writes
                raise
            except Exception as e:
                _record_failure(store, spec, repr(e))
                events.run_failed(spec, repr(e))
                continue
            if budget is not None:
                budget.finished(spec.work, time.monotonic() - t0)


def _run_ray(specs, store, cifar, address, gpus_per_run, cpus_per_run, events: SweepEvents) -> None:
    try:
        import ray
    except ImportError:
        raise UserError("--executor ray needs Ray: pip install 'forgetting[ray]'") from None
    if not ray.is_initialized():
        # A cluster's own settings stand when joining one; a local Ray gets no dashboard.
        ray.init(address=address, log_to_driver=False) if address else ray.init(
            include_dashboard=False, log_to_driver=False
        )
    device = "cuda" if gpus_per_run > 0 else "cpu"
    cifar_ref = ray.put(cifar)  # shipped once to the object store: no shared filesystem needed
    task = ray.remote(execute_run).options(
        num_cpus=cpus_per_run, num_gpus=gpus_per_run, max_retries=RAY_RETRIES, retry_exceptions=True
    )
    pending = {}
    for spec in specs:
        ref = task.remote(spec.config.to_dict(), spec.meta, cifar_ref, device, None, max(1, int(cpus_per_run)))
        pending[ref] = spec
        events.run_started(spec)
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        spec = pending.pop(done[0])
        try:
            events.run_finished(spec, _record(store, spec, ray.get(done[0])))
        except Exception as e:  # the task failed RAY_RETRIES + 1 times
            _record_failure(store, spec, f"{type(e).__name__}: {e}")
            events.run_failed(spec, f"{type(e).__name__}: {e}")


# ---------------------------------------------------------------------------------------------


def _lr_find_setup(study: Study) -> tuple[TrainConfig, dict]:
    """The finder's config and the key its stored result must match to be reused."""
    f = study.lr_find
    t = study.train
    subset = f["subset"] or study.largest_subset()
    cfg = study_config(study, subset=subset, augment=t["augment"], cutout=t["cutout"], seed=f["seeds"][0])
    key = dict(
        config=cfg.identity(),
        method=f["method"],
        steps=f["steps"],
        start_lr=f["start_lr"],
        end_lr=f["end_lr"],
        seeds=f["seeds"],
    )
    return cfg, key


def stored_base_lr(study: Study, store: StudyStore) -> float | None:
    """The study's base LR if it is known without training: a number, or the finder's stored result."""
    if study.grid["base_lr"] != "find":
        return float(study.grid["base_lr"])
    path = store.dir / "lr_find.json"
    if path.exists():
        saved = read_json(path)
        if saved.get("key") == _lr_find_setup(study)[1]:
            return float(saved["suggestion"])
    return None


def _require_finder_result(study: Study, store: StudyStore, shard: Shard | None) -> None:
    if shard is not None and shard.index > 1 and stored_base_lr(study, store) is None:
        raise UserError(
            f'{study.name}: base_lr = "find" and {store.dir / "lr_find.json"} is not there: run the finder first '
            f"(`forgetting lr-find {study.name} --store DIR`, or shard 1/{shard.count}), then "
            f"`forgetting merge DIR --into {store.dir.parent}`"
        )


def resolve_base_lr(study: Study, store: StudyStore, cifar, device, events=None, shard: Shard | None = None) -> float:
    """The study's base LR: a number, or the LR finder's suggestion (computed once, then reused).

    Only a whole study or its first shard runs the finder: pieces trained at two base LRs would be two
    studies under one name."""
    known = stored_base_lr(study, store)
    if known is not None:
        return known
    _require_finder_result(study, store, shard)
    from forgetting import lr_finder

    f = study.lr_find
    cfg, key = _lr_find_setup(study)
    found = lr_finder.find_lr(
        cfg,
        cifar,
        device,
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
        )
        run_dir = store.run_dir(spec)  # all it asks of store: `forgetting merge` passes a view with nothing else
        r = read_result(run_dir)
        if r is not None:
            row.update({k: r.get(k) for k in RESULT_FIELDS})
            row["status"] = "finished"
        else:
            row["status"] = "failed" if (run_dir / "failed.json").exists() else "missing"
        rows.append(row)
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)


def _portable_source(source: str) -> str:
    """The study file as a path relative to the working folder or the toolkit (no machine path in tables)."""
    path = Path(source)
    for root in (Path.cwd(), STUDIES_DIR.parent):
        try:
            return str(path.resolve().relative_to(root.resolve()))
        except ValueError:
            continue
    return path.name


def study_record(study: Study, base_lr: float) -> dict:
    """What figures need to know about a study without its TOML: name, kind, scale, resolved grid."""
    return dict(
        name=study.name,
        kind=study.kind,
        scale=study.scale,
        description=study.description,
        base_lr=base_lr,
        train=study.train,
        grid=study.grid,
        probe=study.probe,
        conditions=[vars(c) for c in study.conditions],
        source=_portable_source(study.source),
    )


def study_from_record(record: dict) -> Study:
    """The study a study.json describes, complete enough to expand its runs (merge rebuilds results.csv so)."""
    return Study(
        name=record["name"],
        kind=record["kind"],
        scale=record["scale"],
        description=record.get("description", ""),
        train=record["train"],
        grid=record["grid"],
        lr_find={},
        probe=record.get("probe") or {},
        conditions=tuple(Condition(**c) for c in record.get("conditions") or ()),
        source=record.get("source", ""),
    )


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


def plan_sweep(study: Study, store_root: Path, shard: Shard | None = None) -> SweepPlan:
    store = StudyStore(store_root, study.name)
    base_lr = stored_base_lr(study, store)
    # Work and shards do not depend on the base LR, so a placeholder still gives the true pieces.
    specs = expand(study, base_lr if base_lr is not None else 1.0)
    mine = select(specs, [s.work for s in specs], shard)
    finished = {s.id for s in mine if base_lr is not None and store.finished(s)}
    return SweepPlan(study, shard, specs, mine, finished, base_lr)


def find_base_lr(study: Study, store_root: Path, cifar, device: str = "auto", events=None) -> float:
    """A study's LR finder alone, into its store (study.json and lr_find.*): run once before shards 2..N."""
    store = StudyStore(store_root, study.name)
    with store.lock():
        base_lr = resolve_base_lr(study, store, cifar, resolve_device(device), events)
        atomic_write_json(store.dir / "study.json", study_record(study, base_lr))
    return base_lr


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
    cifar: data_mod.Cifar10,
    executor: str = "local",
    workers: int = 1,
    device: str = "auto",
    address: str | None = None,
    gpus_per_run: float = 0.0,
    cpus_per_run: float = 1.0,
    events: SweepEvents | None = None,
    shard: Shard | None = None,
    time_limit: float | None = None,
) -> SweepOutcome:
    """Run every unfinished run of ``study`` (or of its ``shard``) into ``store_root`` and write its results.csv.

    ``time_limit`` (seconds from now): start no run that would not end in time at the pace measured so
    far; if runs are left, write results.csv and raise `Stopped` (the same call again continues)."""
    if executor not in ("local", "ray"):
        raise UserError(f"executor must be local or ray, not {executor!r}")
    if workers < 1:
        raise UserError(f"--workers must be at least 1, not {workers}")
    if time_limit is not None and executor != "local":
        raise UserError("--time-limit needs the local executor (a Ray cluster schedules runs itself)")
    budget = TimeBudget(time_limit) if time_limit is not None else None
    events = events or SweepEvents()
    dev = resolve_device(device)
    store = StudyStore(store_root, study.name)
    t0 = time.perf_counter()
    _require_finder_result(study, store, shard)  # before the lock, which would create the store
    with store.lock():
        every = expand(study, 1.0)  # the base LR changes run ids, not their number, work or shard
        planned = select(every, [s.work for s in every], shard)
        events.planned(len(planned), sum(s.work for s in planned), study.train["batch_size"])
        base_lr = resolve_base_lr(study, store, cifar, dev, events, shard)
        atomic_write_json(store.dir / "study.json", study_record(study, base_lr))
        specs = expand(study, base_lr)
        mine = select(specs, [s.work for s in specs], shard)
        for spec in mine:
            aside = store.set_aside_damaged(spec)
            if aside is not None:
                events.notice(f"{aside.with_name('result.json')} is damaged (not JSON): set aside, the run is redone")
        todo = [s for s in mine if not store.finished(s)]
        events.start(len(mine), len(mine) - len(todo), todo)
        if executor == "local":
            _run_local(todo, store, cifar, dev, workers, events, budget)
        else:
            _run_ray(todo, store, cifar, address, gpus_per_run, cpus_per_run, events)
        table = results_table(study, store, specs)
        atomic_write_bytes(store.dir / "results.csv", results_csv_bytes(table))
    if budget is not None and budget.stopped:
        done = sum(store.finished(s) for s in mine)
        raise Stopped(f"time limit: {done} of {len(mine)} runs done; run the same command again to continue")
    return SweepOutcome(study, store, specs, base_lr, table, time.perf_counter() - t0, mine)
