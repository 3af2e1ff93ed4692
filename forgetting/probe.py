"""The forgetting probe of a study: its finished runs probed (`replay`), each a job on the study's executor.

Each run's probe tables are written into its folder as its probe ends, each atomically and probe.json
last (the probe's settings and each table's digest), so an interrupted probe resumes: the same command
again probes only the runs without whole tables of the same settings. The study's tables join the runs'
own, in the order of the study's runs.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from forgetting.analysis import probe_fits
from forgetting.execution.base import Job, RunFailure
from forgetting.execution.jobs import probe_job
from forgetting.replay import ProbeError, RunProbe, check_bn, load_run, count_forgetting, probe_run
from forgetting.store import (
    DamagedFile,
    RunFolder,
    StudyFolder,
    atomic_write_bytes,
    atomic_write_json,
    read_back,
    read_json_object,
    warn,
)

__all__ = ["ProbeError", "ProbeOutcome", "RunProbe", "count_forgetting", "probe_run", "probe_finished_runs"]

PROBE_COLUMNS = [
    "run",
    "condition",
    "multiplier",
    "lr",
    "seed",
    "step",
    "epoch",
    "epoch_age",
    "step_lr",
    "loss_now",
    "acc_now",
    "loss_when_seen",
    "n",
]
KEYS = ["run", "condition", "multiplier", "lr", "seed"]


@dataclass
class ProbeOutcome:
    sweep: object  # the SweepOutcome that trained (or found) the runs
    probe: pd.DataFrame  # probe.csv
    runs: pd.DataFrame  # probe_runs.csv
    recency: pd.DataFrame  # probe_recency.csv
    examples: pd.DataFrame  # probe_examples.csv
    epochs: pd.DataFrame  # probe_epochs.csv
    seconds: dict  # run id -> (train seconds, probe seconds)


def check_before_training(plan, store, last_epochs: int, bn: str) -> None:
    """Before anything is trained or written (``plan``: the sweep's `SweepPlan`): the probe's settings, and
    what it needs of each finished run it will probe, so that a damaged file is refused with the store as it was."""
    check_bn(bn)
    _check_finished_runs(plan, store, dict(bn=bn, last_epochs=last_epochs))


# ---------------------------------------------------------------------------------------------
# A run's own probe tables: written as its probe ends, probe.json last; read back whole or not at all.


def _write_run_tables(run: RunFolder, tables: dict[str, bytes], settings: dict) -> None:
    run.probe_record.unlink(missing_ok=True)
    for name, blob in tables.items():
        atomic_write_bytes(run.dir / name, blob)
    digests = {name: hashlib.sha256(blob).hexdigest() for name, blob in tables.items()}
    atomic_write_json(run.probe_record, dict(settings, tables=digests))


def _read_record(path: Path) -> dict:
    record = read_json_object(path)
    if sorted(record.get("tables") or ()) != sorted(RunFolder.PROBE_TABLES):
        raise ValueError("it does not list the run's probe tables")
    return record


def _digested(path: Path, digest: str) -> bytes:
    blob = Path(path).read_bytes()
    if hashlib.sha256(blob).hexdigest() != digest:
        raise ValueError("its bytes are not the ones its probe wrote (probe.json's digest)")
    return blob


def _read_run_tables(run: RunFolder, settings: dict, notice=None) -> dict[str, bytes] | None:
    """The run's probe tables from an earlier probe with these ``settings``, each the bytes its digest
    names; None when the run is to be probed (again). A damaged file meets `store.read_back` with ``notice``."""
    if not run.probe_record.exists():
        return None
    record = read_back(run.probe_record, _read_record, notice)
    if record is None or any(record.get(key) != value for key, value in settings.items()):
        return None
    tables = {}
    for name, digest in record["tables"].items():
        if not (run.dir / name).exists():
            return None
        tables[name] = read_back(run.dir / name, lambda path, digest=digest: _digested(path, digest), notice)
        if tables[name] is None:
            return None
    return tables


def _to_probe(run: RunFolder) -> bool:
    """A finished run that did not diverge: failed or diverged runs are in results.csv, with nothing to probe."""
    result = run.read_result()
    return result is not None and not result.get("diverged")


def _check_finished_runs(plan, store, settings: dict) -> None:
    """Before anything is trained or written: read back what the probe needs of each finished run it will
    probe, so that a damaged file no command can make again is refused with the store as it was."""
    for spec in plan.mine:
        run = store.run(spec.id)
        if spec.id not in plan.finished or not _to_probe(run):
            continue
        try:
            for path, read in run.record().items():
                if path.exists():
                    read_back(path, read)
        except DamagedFile:
            continue  # the sweep trains the run again
        try:
            if _read_run_tables(run, settings) is not None:
                continue  # probed already
        except DamagedFile:
            pass  # its probe is redone, from its weights
        load_run(run.dir)


# ---------------------------------------------------------------------------------------------
# The study's probe: the runs not yet probed, then the study's tables from every run's own.


class _ProbeSink:
    """Where probe jobs end (`execution.base.Sink`): each run's tables written into its folder as its probe
    ends (so an interrupted probe resumes), the progress, and the curves."""

    def __init__(self, outcome, settings: dict, events, board, done: int, total: int):
        self.store, self.settings, self.events, self.board = outcome.store, settings, events, board
        self.heartbeat_seconds = getattr(events, "heartbeat_seconds", None)
        self.scratch = outcome.store.jobs
        self.done, self.total = done, total
        self.tables: dict[str, dict[str, bytes]] = {}
        self.failures: list[tuple] = []

    def started(self, spec) -> None:
        if self.events is not None:
            last = self.settings["last_epochs"]
            epochs = spec.config.epochs if last == 0 else min(last, spec.config.epochs)
            self.events.start_run(spec, epochs, done=self.done, total=self.total)
        self.done += 1

    def callbacks(self, spec):
        return self.events

    def heartbeat(self) -> None:
        pass

    def keeper(self, spec):
        return None  # the tables come back to the driver, which writes them

    def finished(self, spec, outcome) -> None:
        rp, seconds = outcome
        facts = dict(probe_seconds=round(seconds, 3), bn=self.settings["bn"])
        self.tables[spec.id] = _run_tables(spec, rp, facts)
        _write_run_tables(self.store.run(spec.id), self.tables[spec.id], self.settings)
        if self.board is not None:
            self.board.probe(spec, rp.steps)

    def failed(self, spec, failure: RunFailure) -> None:
        self.failures.append((spec, failure))


SHIPPED = (*RunFolder.LIGHT, *RunFolder.HEAVY)  # a run's files, for a worker that does not share the store's disk


def probe_finished_runs(
    outcome, data, executor, last_epochs: int, bn: str, events=None, board=None, notice=warn
) -> ProbeOutcome:
    """Probe the finished runs of ``outcome`` (the sweep's; a shard's own) not yet probed so, each a job on
    ``executor`` (`ExecutorSettings`); then the study's tables from every run's own."""
    settings = dict(bn=bn, last_epochs=last_epochs)
    runs = [(spec, RunFolder(outcome.store.run_dir(spec))) for spec in outcome.mine]  # a shard probes its own
    runs = [(spec, run) for spec, run in runs if _to_probe(run)]
    if not runs:
        raise ProbeError(f"{outcome.study.name}: no finished, non-diverged run to probe")
    tables = {spec.id: _read_run_tables(run, settings, notice) for spec, run in runs}
    todo = [(spec, run) for spec, run in runs if tables[spec.id] is None]
    if events is not None:
        events.start(len(runs), len(runs) - len(todo))
    runner = executor.make(data)
    jobs = []
    for spec, run in todo:
        kwargs = dict(run_dir=str(run.dir), last_epochs=last_epochs, bn=bn)
        if not runner.shares_disk:  # the run's files travel with its job
            kwargs["files"] = {name: (run.dir / name).read_bytes() for name in SHIPPED}
        jobs.append(Job(spec, probe_job, kwargs))
    sink = _ProbeSink(outcome, settings, events, board, len(runs) - len(todo), len(runs))
    runner.run(jobs, sink)
    if sink.failures:
        spec, failure = sink.failures[0]
        raise ProbeError(f"run {spec.id}: its probe failed ({failure.line}); run the same command again to retry")
    tables.update(sink.tables)
    return _join(outcome, [tables[spec.id] for spec, _ in runs])


def _run_tables(spec, rp: RunProbe, facts: dict) -> dict[str, bytes]:
    """One run's block of each of the study's probe tables, as CSV bytes."""
    keys = dict(
        run=spec.id,
        condition=spec.meta["condition"],
        multiplier=spec.meta["multiplier"],
        lr=spec.meta["lr"],
        seed=spec.config.seed,
    )

    def keys_first(df: pd.DataFrame) -> pd.DataFrame:
        return df.assign(**keys)[KEYS + [c for c in df.columns if c not in KEYS]]

    frames = {
        RunFolder.probe_steps.name: rp.steps.assign(**keys)[PROBE_COLUMNS],
        RunFolder.probe_runs.name: pd.DataFrame([dict(keys, **rp.run, **facts)]),
        RunFolder.probe_recency.name: keys_first(rp.recency),
        RunFolder.probe_examples.name: keys_first(rp.examples),
    }
    return {name: df.to_csv(index=False).encode() for name, df in frames.items()}


def _join(outcome, per_run: list[dict[str, bytes]]) -> ProbeOutcome:
    """The study's probe tables: the runs' own, joined in the order given, and probe_epochs from them."""

    def frame(blob: bytes) -> pd.DataFrame:
        return pd.read_csv(io.BytesIO(blob), dtype={"run": str})

    frames = {
        name: pd.concat([frame(t[name]) for t in per_run], ignore_index=True).fillna({"condition": ""})
        for name in StudyFolder.PROBE_PER_RUN
    }
    probe, runs = frames[StudyFolder.probe.name], frames[StudyFolder.probe_runs.name]
    frames[StudyFolder.probe_epochs.name] = epochs = probe_fits.epoch_aggregates(probe)
    outcome.store.write({name: df.to_csv(index=False).encode() for name, df in frames.items()})
    seconds = {r.run: (r.train_seconds, r.probe_seconds) for r in runs.itertuples()}
    recency, examples = frames[StudyFolder.probe_recency.name], frames[StudyFolder.probe_examples.name]
    return ProbeOutcome(outcome, probe, runs, recency, examples, epochs, seconds)
