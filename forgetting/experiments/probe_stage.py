"""A probe study's stage after training: each finished run's probe as a job on the study's executor,
then the five probe tables (probe.csv and companions) from what came back, in the order of the runs."""

from __future__ import annotations

import pandas as pd

from forgetting.analysis import probe_fits
from forgetting.execution.base import Job, RunFailure
from forgetting.execution.jobs import probe_job
from forgetting.probe import KEYS, PROBE_COLUMNS, ProbeError, ProbeOutcome
from forgetting.store import RunFolder, StudyFolder

SHIPPED = (RunFolder.config.name, RunFolder.result.name, *RunFolder.HEAVY)  # what a probe reads of a run


class ProbeSink:
    """Where probe jobs end (`execution.base.Sink`): their tables kept by run, the progress, the curves."""

    def __init__(self, outcome, events, board, last_epochs: int, total: int):
        self.events, self.board, self.last_epochs, self.total = events, board, last_epochs, total
        self.heartbeat_seconds = getattr(events, "heartbeat_seconds", None)
        self.scratch = outcome.store.jobs
        self.probed: dict = {}  # run id -> (RunProbe, probe seconds)
        self.failures: list[tuple] = []
        self.begun = 0

    def started(self, spec) -> None:
        if self.events is not None:
            epochs = spec.config.epochs if self.last_epochs == 0 else min(self.last_epochs, spec.config.epochs)
            self.events.start_run(spec, epochs, done=self.begun, total=self.total)
        self.begun += 1

    def callbacks(self, spec):
        return self.events

    def heartbeat(self) -> None:
        pass

    def keeper(self, spec):
        return None  # the tables come back to the driver, which writes them together

    def finished(self, spec, outcome) -> None:
        self.probed[spec.id] = outcome
        if self.board is not None:
            self.board.probe(spec, outcome[0].steps)

    def failed(self, spec, failure: RunFailure) -> None:
        self.failures.append((spec, failure))


def _jobs(outcome, shares_disk: bool, last_epochs: int, bn: str) -> tuple[list[Job], dict]:
    jobs, results = [], {}
    for spec in outcome.mine:  # a shard probes its own runs; `forgetting merge` joins the tables
        run = RunFolder(outcome.store.run_dir(spec))
        result = run.read_result()
        if result is None or result.get("diverged"):
            continue  # failed or diverged runs are in results.csv; there is nothing to probe
        kwargs = dict(run_dir=str(run.dir), last_epochs=last_epochs, bn=bn)
        if not shares_disk:  # the run's files travel with its job
            kwargs["files"] = {name: (run.dir / name).read_bytes() for name in SHIPPED}
        jobs.append(Job(spec, probe_job, kwargs))
        results[spec.id] = result
    return jobs, results


def probe_finished_runs(outcome, data, executor, last_epochs: int, bn: str, events=None, board=None) -> ProbeOutcome:
    runner = executor.make(data)
    jobs, results = _jobs(outcome, runner.shares_disk, last_epochs, bn)
    if not jobs:
        raise ProbeError(f"{outcome.study.name}: no finished, non-diverged run to probe")
    sink = ProbeSink(outcome, events, board, last_epochs, len(outcome.mine))
    runner.run(jobs, sink)
    if sink.failures:
        spec, failure = sink.failures[0]
        raise ProbeError(f"run {spec.id}: its probe failed ({failure.line}); run the same command again to retry")
    tables = {"probe": [], "runs": [], "recency": [], "examples": []}
    seconds = {}
    for job in jobs:
        spec = job.spec
        keys = dict(
            run=spec.id,
            condition=spec.meta["condition"],
            multiplier=spec.meta["multiplier"],
            lr=spec.meta["lr"],
            seed=spec.config.seed,
        )
        rp, probe_seconds = sink.probed[spec.id]
        seconds[spec.id] = (results[spec.id]["seconds"], probe_seconds)
        for name, df in (("probe", rp.steps), ("recency", rp.recency), ("examples", rp.examples)):
            tables[name].append(df.assign(**keys))
        tables["runs"].append(dict(keys, **rp.run, probe_seconds=round(probe_seconds, 3), bn=bn))
    return _write_tables(outcome, tables, seconds)


def _write_tables(outcome, tables: dict, seconds: dict) -> ProbeOutcome:
    probe = pd.concat(tables["probe"], ignore_index=True)[PROBE_COLUMNS]
    runs = pd.DataFrame(tables["runs"])
    recency = pd.concat(tables["recency"], ignore_index=True)
    recency = recency[KEYS + [c for c in recency.columns if c not in KEYS]]
    examples = pd.concat(tables["examples"], ignore_index=True)
    examples = examples[KEYS + [c for c in examples.columns if c not in KEYS]]
    epochs = probe_fits.epoch_aggregates(probe)
    frames = {
        StudyFolder.probe.name: probe,
        StudyFolder.probe_runs.name: runs,
        StudyFolder.probe_recency.name: recency,
        StudyFolder.probe_examples.name: examples,
        StudyFolder.probe_epochs.name: epochs,
    }
    outcome.store.write({name: df.to_csv(index=False).encode() for name, df in frames.items()})
    return ProbeOutcome(outcome, probe, runs, recency, examples, epochs, seconds)
