"""Stored tables -> summary.json and every figure of a study. Reads CSV/JSON only, never weights.

A study folder (``STORE/<study>/`` or a copy of its tables such as ``results/<study>/``) holds
``study.json`` (name, kind, scale) and the tidy tables the sweep and the probe wrote. This is what
``sweep-lr`` and ``probe-epochs`` call when they finish, and what ``forgetting figures`` calls to
regenerate everything from tables alone.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from forgetting import amendments, plots, plots_lr_find, report_text
from forgetting.analysis import tables, verdicts
from forgetting.analysis.summary import summarise
from forgetting.errors import UserError
from forgetting.experiments.base import ReportContext
from forgetting.experiments.registry import kind_named
from forgetting.lr_curve import finder_scale, read_curves, read_suggestion
from forgetting.store import (
    StudyFolder,
    atomic_write_bytes,
    atomic_write_json,
    read_back,
    read_json_object,
    read_table_text,
    study_folders,
)


@dataclass
class StudyReport:
    name: str
    folder: Path
    summary: dict
    figures: list[Path]

    warning: str | None = None  # mixed thread counts / precisions / devices among the runs
    source: Path | None = None  # the study folder whose tables it was made from (``folder`` when in place)

    def text(self) -> str:
        table = report_text.format_table(self.summary)
        return f"{table}\n{self.warning}" if self.warning else table


def _table(path: Path) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(read_table_text(path)), dtype={"run": str})


def _study(path: Path) -> dict:
    study = read_json_object(path)
    missing = [k for k in ("name", "kind", "scale") if k not in study]
    if missing:
        raise ValueError(f"lacks {', '.join(missing)}")
    return study


def _read(path: Path, read=_table):
    """A table (or a record) the report reads, None where there is none. The report only reads what
    sweep-lr and probe-epochs made: a damaged one is refused, naming the command that makes it again."""
    return read_back(path, read) if path.exists() else None


def _run_histories(folder: Path, runs: pd.DataFrame) -> pd.DataFrame:
    """The history.csv rows of ``runs`` (finished runs of the study in ``folder``), with their run id."""
    stored = StudyFolder(folder)
    frames = [
        _read(path, lambda p: pd.read_csv(io.StringIO(read_table_text(p, ("epoch",))))).assign(run=run)
        for run in runs["run"].astype(str)
        if (path := stored.run(run).history).exists()
    ]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["run", "epoch", "clean_train_loss"])


@dataclass
class StudyTables:
    """What the report reads of a study folder: all of it read back before anything is written."""

    folder: Path
    study: dict  # study.json
    results: pd.DataFrame | None
    probe: pd.DataFrame | None
    probe_runs: pd.DataFrame | None
    recency: pd.DataFrame | None
    lr_find_curves: pd.DataFrame | None
    lr_find: dict | None  # lr_find.json, read where its curves are
    histories: pd.DataFrame | None  # the finished runs' history.csv, for a sweep that evaluated eval_train

    @classmethod
    def read(cls, folder: Path) -> "StudyTables":
        folder = Path(folder)
        stored = StudyFolder(folder)
        if not stored.study_json.exists():
            raise UserError(f"{folder}: no study.json; not a study folder written by sweep-lr or probe-epochs")
        study, results = _read(stored.study_json, _study), _read(stored.results)
        curves = _read(stored.lr_find_csv, read_curves)
        histories = None
        if kind_named(study["kind"]).reads_histories(study) and results is not None and "status" in results.columns:
            histories = _run_histories(folder, results[results["status"] == "finished"])
        return cls(
            folder,
            study,
            results,
            _read(stored.probe),
            _read(stored.probe_runs),
            _read(stored.probe_recency),
            curves,
            _read(stored.lr_find_json, read_suggestion) if curves is not None else None,
            histories,
        )


# Settings outside the run id (config.TrainConfig.identity) that still change a run's digits: one study
# mixing them is flagged.
EXECUTION_COLUMNS = {
    "threads": "thread counts",
    "precision": "precisions",
    "device": "devices",
    "processor": "processors",
}


def mixed_execution_warning(results: pd.DataFrame | None) -> str | None:
    """One line when a study's finished runs were trained at different thread counts, precisions, devices
    or processors (CPU models, GPUs).

    Their numbers are not comparable (1 vs 2 CPU threads gave test loss 2.30 vs 2.86 for the same run id),
    so this must never pass silently. Tables written before a column existed simply lack it.
    """
    if results is None or "status" not in results.columns:
        return None
    finished = results[results["status"] == "finished"]
    mixed = []
    for column, what in EXECUTION_COLUMNS.items():
        if column not in finished.columns:
            continue
        counts = finished[column].dropna().astype(str).value_counts().sort_index()
        if len(counts) > 1:
            mixed.append(f"{what} " + ", ".join(f"{v} ({n} runs)" for v, n in counts.items()))
    if not mixed:
        return None
    study = finished["study"].iloc[0] if "study" in finished.columns and len(finished) else "this study"
    return f"warning: the runs of {study} were trained at different {'; '.join(mixed)}: compare them with care"


def _threads(value) -> str:
    try:
        return f"{float(value):g} threads"  # "2.0" where a column also holds blanks
    except ValueError:
        return f"{value} threads"


def machine_line(results: pd.DataFrame | None) -> str | None:
    """What a study's finished runs were trained on (processor, device, threads, precision), for its
    figures' titles; None where the table does not record the processor (tables older than its column).
    Several kinds of machine are each named with their share of the runs."""
    if results is None or "processor" not in results.columns or "status" not in results.columns:
        return None
    finished = results[(results["status"] == "finished") & results["processor"].notna()]
    finished = finished[finished["processor"].astype(str).str.strip() != ""]
    if not len(finished):
        return None
    columns = [c for c in EXECUTION_COLUMNS if c in finished.columns]
    kinds = finished[columns].astype(str).value_counts(sort=False).sort_index()
    named = []
    for values, n in kinds.items():
        got = dict(zip(columns, values))
        how = [got.get("device"), _threads(got["threads"]) if got.get("threads") else None, got.get("precision")]
        how = ", ".join(h for h in how if h and h != "nan")
        named.append(f"{got['processor']}" + (f" ({how})" if how else "") + (f": {n} runs" if len(kinds) > 1 else ""))
    return "runs trained on " + "; ".join(named)


def figure_caption(scale: str, results: pd.DataFrame | None) -> str:
    """The scale line under every figure's title, and the machine its runs were trained on where known."""
    machine = machine_line(results)
    return f"{scale}\n{machine}" if machine else scale


def _comparable_sweeps(study: dict, sweeps: list[dict]) -> list[dict]:
    """LR-sweep summaries trained like ``study`` (same net, width and batch size): the ones whose
    revisit interval N/B can be set against this probe study's forgetting timescale in steps."""
    same = ("net", "width", "batch_size")
    return [s for s in sweeps if all(s["study"]["train"].get(k) == study["train"].get(k) for k in same)]


def _versus_sweeps(law: dict, study: dict, sweeps: list[dict]) -> list[dict]:
    rows = []
    for sweep in _comparable_sweeps(study, sweeps):
        for reading in verdicts.LOSS_READINGS:
            verdict = sweep.get("verdicts", {}).get(f"a_{reading}") or {}
            if not verdict.get("readings"):
                continue
            base_lr = sweep["study"]["base_lr"]
            for r in verdicts.tau_vs_turn_up(law, verdict["readings"], sweep["study"]["train"]["batch_size"], base_lr):
                rows.append(dict(sweep=sweep["study"]["name"], reading=reading, base_lr=base_lr, **r))
    return rows


def _undecided_while_incomplete(summary: dict, results: pd.DataFrame | None) -> None:
    """A sweep with runs still missing (a study in pieces, part-way) is not read: its (a) verdicts say so."""
    if results is None or "status" not in results.columns:
        return
    missing = int((results["status"] == "missing").sum())
    if not missing:
        return
    reason = f"study incomplete: {len(results) - missing} of {len(results)} runs in the table; read when all are in"
    for name in list(summary.get("verdicts", {})):
        if name.startswith("a_"):
            summary["verdicts"][name] = dict(holds=None, reason=reason)
    summary["incomplete"] = dict(runs=len(results), missing=missing)


def study_report(
    folder: Path, out: Path | None = None, sweeps: list[dict] | None = None, probes: list | None = None
) -> StudyReport:
    """Write summary.json and the figures of the study in ``folder`` into ``out`` (default: folder).

    ``sweeps``: summaries of LR-sweep studies to set a probe study's tau law against (see
    _comparable_sweeps); ``probes``: probe studies (folders, or their `StudyTables`) to read forgetting's
    clock against (the kinds' figures); ``regenerate`` passes every sweep and probe study it found. Without
    ``probes``, the probe studies beside ``folder`` in its store, as ``regenerate`` would share them."""
    folder = Path(folder)
    if probes is None:
        probes = _neighbour_probes(folder)
    others = [p if isinstance(p, StudyTables) else StudyTables.read(p) for p in probes]
    return _report(StudyTables.read(folder), out, sweeps, others)


def _neighbour_probes(folder: Path) -> list[StudyTables]:
    """What the probe studies in ``folder``'s store offer the others (the kinds' ``before_reports``), so
    that a study's own report reads the tau law that `forgetting figures` would; a neighbour whose
    tables do not read is left out (it is not this study's to refuse)."""
    shared: dict = {"probes": []}
    try:
        neighbours = study_folders(folder.parent)
    except UserError:
        return []
    for other in neighbours:
        try:
            tables_read = StudyTables.read(other)
        except (UserError, OSError):
            continue
        kind_named(tables_read.study["kind"]).before_reports(tables_read, shared)
    return shared["probes"]


def _report(t: StudyTables, out: Path | None, sweeps: list[dict] | None, probes: list[StudyTables]) -> StudyReport:
    folder, study, results, probe = t.folder, t.study, t.results, t.probe
    caption, kind = figure_caption(study["scale"], results), kind_named(study["kind"])
    try:
        finished = results[results["status"] == "finished"] if results is not None else None
        summary = summarise(
            results=finished if kind.fits_results else None,
            probe=probe,
            probe_runs=t.probe_runs,
            recency=t.recency,
        )
    except KeyError as e:
        raise UserError(f"{folder}: a table lacks the column {e}; not written by this version of the toolkit") from None
    out = Path(out) if out is not None else folder
    if out.resolve() != folder.resolve():  # only once the tables have read as a report: bad input writes nothing
        out.mkdir(parents=True, exist_ok=True)
        for name in StudyFolder.TABLES:
            if (folder / name).exists():  # through the store's writes: a full disk is one line, no half file
                atomic_write_bytes(out / name, (folder / name).read_bytes())
    summary = dict(study=study, **summary)
    _undecided_while_incomplete(summary, results)
    law = summary["verdicts"].get("tau_law")
    if law and law.get("alpha") is not None and sweeps:
        law["versus_sweep"] = tables.clean(_versus_sweeps(law, study, sweeps))
    figures: list[Path] = []
    fig_dir = StudyFolder(out).figures
    if probe is not None and len(probe):
        figures += plots.plot_forgetting(probe, t.probe_runs, fig_dir / "forgetting", caption)
    if law and law.get("alpha") is not None and len(law["taus"]) >= 3:  # two points make no law worth a figure
        figures += plots.plot_tau_lr(law, fig_dir / "tau_lr", caption)
    read = dict(results=results, finished=finished, probe=probe, probe_runs=t.probe_runs, histories=t.histories)
    ctx = ReportContext(study, summary, read, fig_dir, dict(sweeps=sweeps or [], probes=probes), caption=caption)
    figures += kind.figures(ctx)  # its own figures and verdicts (the LR sweep's, the clock's)
    amended = amendments.amended_verdicts(summary["verdicts"], study, probe, ctx.partners, sweeps or [])
    if amended:
        summary["verdicts"]["amended"] = amended
    if t.recency is not None and len(t.recency):
        figures += plots.plot_recency(t.recency, fig_dir / "recency", caption, t.probe_runs)
    if t.lr_find is not None:
        found, stem = t.lr_find, fig_dir / "lr_find"  # the finder's own scale: one short ramp, not the study's
        args = (found["suggestion"], found["method"], stem, finder_scale(found), study["name"])
        figures += plots_lr_find.plot_lr_find(t.lr_find_curves, *args)
    atomic_write_json(StudyFolder(out).summary, summary)
    return StudyReport(study["name"], out, summary, figures, mixed_execution_warning(results), folder)


def regenerate(store: Path, out: Path | None = None) -> list[StudyReport]:
    """Every study folder under ``store`` (or ``store`` itself if it is one), each read back whole before
    anything is written: a damaged table is refused with every folder as it was."""
    store = Path(store)
    read = {folder: StudyTables.read(folder) for folder in study_folders(store)}
    kinds = {folder: kind_named(t.study["kind"]) for folder, t in read.items()}
    # in the kinds' order: an LR sweep's summary feeds the probe studies' reports that follow
    folders = sorted(read, key=lambda f: (kinds[f].report_rank, f.name))
    shared: dict = {"sweeps": [], "probes": []}
    for folder in folders:
        kinds[folder].before_reports(read[folder], shared)
    reports = []
    for folder in folders:
        target = None if out is None else (Path(out) if folder == store else Path(out) / folder.name)
        reports.append(_report(read[folder], target, list(shared["sweeps"]), shared["probes"]))
        kinds[folder].after_report(reports[-1].summary, shared)
    return reports


OUT_PARENT = Path("figures-out")  # in the working folder; `forgetting figures` writes a new folder in it


def figures_target(store: Path, out: Path | None, in_place: bool, now: float | None = None) -> Path | None:
    """Where `forgetting figures` writes: ``out``; None (the store's own folders) with ``in_place``; by
    default a folder no earlier run wrote, OUT_PARENT/<store>-<date>-<time>, so that regenerating a
    committed folder never writes over it unless asked."""
    if in_place and out is not None:
        raise UserError("--out and --in-place name two places to write: give one")
    if in_place or out is not None:
        return out
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    name = f"{Path(store).resolve().name or 'store'}-{stamp}"
    target, k = OUT_PARENT / name, 1
    while target.exists():  # two runs in one second
        k += 1
        target = OUT_PARENT / f"{name}-{k}"
    return target
