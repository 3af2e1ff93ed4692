"""Stored tables -> summary.json and every figure of a study. Reads CSV/JSON only, never weights.

A study folder (``STORE/<study>/`` or a copy of its tables such as ``results/<study>/``) holds
``study.json`` (name, kind, scale) and the tidy tables the sweep and the probe wrote. This is what
``sweep-lr`` and ``probe-epochs`` call when they finish, and what ``forgetting figures`` calls to
regenerate everything from tables alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from forgetting import amendments, clock, plots, plots_clock, plots_regime, predictions, report_text
from forgetting.analysis import regime, tables, verdicts
from forgetting.analysis.probe_fits import AMENDED
from forgetting.analysis.summary import summarise
from forgetting.errors import UserError
from forgetting.store import StudyFolder, atomic_write_bytes, atomic_write_json, read_json, study_folders


@dataclass
class StudyReport:
    name: str
    folder: Path
    summary: dict
    figures: list[Path]

    warning: str | None = None  # mixed thread counts / precisions / devices among the runs

    def text(self) -> str:
        table = report_text.format_table(self.summary)
        return f"{table}\n{self.warning}" if self.warning else table


def _read(path: Path) -> pd.DataFrame | None:
    if not path.exists():
        return None
    try:
        return pd.read_csv(path, dtype={"run": str})
    except (ValueError, OSError) as e:  # pandas' ParserError and EmptyDataError are ValueErrors
        raise UserError(f"{path}: not a readable table ({type(e).__name__})") from None


def _read_json(path: Path) -> dict:
    try:
        obj = read_json(path)
    except (ValueError, OSError) as e:
        raise UserError(f"{path}: not readable JSON ({type(e).__name__})") from None
    if not isinstance(obj, dict):
        raise UserError(f"{path}: expected a JSON object")
    return obj


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


def _partners(study: dict, folders: list[Path]) -> list:
    """(study.json, probe table) of each probe study in ``folders`` that ``study`` can be read against."""
    others = [_read_json(StudyFolder(f).study_json) for f in folders]
    return [(o, _read(StudyFolder(f).probe)) for o, f in zip(others, folders) if clock.comparable(study, o)]


def _clock_report(summary: dict, study: dict, probe, partners: list, sweeps: list[dict], fig_dir: Path) -> list:
    """Forgetting's clock against batch size (forgetting/clock.py), when one of the probe studies in
    ``partners`` is trained like this one at a smaller batch size: adds its verdicts to ``summary`` and
    returns its figures. Nothing for any other study, whose summary.json stays as it was."""
    if study["kind"] != "probe" or probe is None or not len(probe):
        return []
    found = clock.readings(study, probe, summary["verdicts"].get("tau_law"), partners, sweeps or [])
    if not found:
        return []
    summary["verdicts"].update(found)
    c = found["clock"]
    ref_probe = next(p for o, p in partners if o["name"] == c["reference"])
    curves = pd.concat([clock.age_curves(ref_probe, c["reference_batch"]), clock.age_curves(probe, c["batch"])])
    return plots_clock.plot_clock_taus(c, fig_dir / "clock_tau", study["scale"]) + plots_clock.plot_clock_curves(
        curves, c, fig_dir / "clock_curves", study["scale"]
    )


def _run_histories(folder: Path, runs: pd.DataFrame) -> pd.DataFrame:
    """The history.csv rows of ``runs`` (finished runs of the study in ``folder``), with their run id."""
    stored = StudyFolder(folder)
    frames = [
        pd.read_csv(path).assign(run=run)
        for run in runs["run"].astype(str)
        if (path := stored.run(run).history).exists()
    ]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["run", "epoch", "clean_train_loss"])


def _regime_report(summary: dict, study: dict, folder: Path, finished, probes: list[Path], fig_dir: Path) -> list:
    """Claim (a) in Page's regime (analysis/regime.py) for a complete sweep that evaluated its clean
    training loss (eval_train): the fit check and the turn-up ratio against the two accounts, read on
    the tau law of a probe study trained like it (same net, width and batch size)."""
    if study["kind"] != "lr-sweep" or not study["train"].get("eval_train") or summary.get("incomplete"):
        return []
    if finished is None or not len(finished):
        return []
    fit = regime.fit_check(finished, _run_histories(folder, finished))
    summary["verdicts"]["fit_check"] = fit
    same = ("net", "width", "batch_size")
    probe_studies = [(_read_json(StudyFolder(f).study_json), f) for f in probes]
    like = [(s, f) for s, f in probe_studies if all(s["train"].get(k) == study["train"].get(k) for k in same)]
    law, accounts = {}, {}
    if like:
        probe_study, probe_folder = like[0]
        law = verdicts.tau_lr_law(_read(StudyFolder(probe_folder).probe))
        accounts["law_from"] = probe_study["name"]
        laws = {study["train"]["batch_size"]: law}
        accounts["rows"] = predictions.a_predictions(laws, [summary], probe_study, AMENDED)
    for reading in verdicts.LOSS_READINGS:
        a = summary["verdicts"].get(f"a_{reading}") or {}
        accounts[reading] = regime.ratio_reading(a, law.get("alpha"), law.get("alpha_hi"))
    summary["verdicts"]["a_accounts"] = tables.clean(accounts)
    return plots_regime.plot_fit_check(fit, fig_dir / "fit_check", study["scale"]) if fit["curves"] else []


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
    folder: Path, out: Path | None = None, sweeps: list[dict] | None = None, probes: list[Path] | None = None
) -> StudyReport:
    """Write summary.json and the figures of the study in ``folder`` into ``out`` (default: folder).

    ``sweeps``: summaries of LR-sweep studies to set a probe study's tau law against (see
    _comparable_sweeps); ``probes``: folders of probe studies to read forgetting's clock against (see
    _clock_report); ``regenerate`` passes every sweep and probe study it found."""
    folder = Path(folder)
    out = Path(out) if out is not None else folder
    stored = StudyFolder(folder)
    if not stored.study_json.exists():
        raise UserError(f"{folder}: no study.json; not a study folder written by sweep-lr or probe-epochs")
    study = _read_json(stored.study_json)
    missing = [k for k in ("name", "kind", "scale") if k not in study]
    if missing:
        raise UserError(f"{stored.study_json}: lacks {', '.join(missing)}; not written by sweep-lr or probe-epochs")
    if out.resolve() != folder.resolve():
        out.mkdir(parents=True, exist_ok=True)
        for name in StudyFolder.TABLES:
            if (folder / name).exists():  # through the store's writes: a full disk is one line, no half file
                atomic_write_bytes(out / name, (folder / name).read_bytes())
    scale = study["scale"]
    results = _read(stored.results)
    probe, probe_runs, recency = _read(stored.probe), _read(stored.probe_runs), _read(stored.probe_recency)
    try:
        finished = results[results["status"] == "finished"] if results is not None else None
        summary = summarise(
            results=finished if study["kind"] == "lr-sweep" else None,
            probe=probe,
            probe_runs=probe_runs,
            recency=recency,
        )
    except KeyError as e:
        raise UserError(f"{folder}: a table lacks the column {e}; not written by this version of the toolkit") from None
    summary = dict(study=study, **summary)
    _undecided_while_incomplete(summary, results)
    law = summary["verdicts"].get("tau_law")
    if law and law.get("alpha") is not None and sweeps:
        law["versus_sweep"] = tables.clean(_versus_sweeps(law, study, sweeps))
    figures: list[Path] = []
    fig_dir = StudyFolder(out).figures
    if study["kind"] == "lr-sweep" and finished is not None and len(finished):
        optimum = pd.DataFrame(summary.get("optimum") or []).apply(pd.to_numeric)  # None (NaN in JSON) -> NaN
        figures += plots.plot_lr_sweep(finished, fig_dir / "lr_sweep", scale, optimum if len(optimum) else None)
    if probe is not None and len(probe):
        figures += plots.plot_forgetting(probe, probe_runs, fig_dir / "forgetting", scale)
    if law and law.get("alpha") is not None and len(law["taus"]) >= 3:  # two points make no law worth a figure
        figures += plots.plot_tau_lr(law, fig_dir / "tau_lr", scale)
    figures += _regime_report(summary, study, folder, finished, probes or [], fig_dir)
    partners = _partners(study, probes or []) if study["kind"] == "probe" else []
    figures += _clock_report(summary, study, probe, partners, sweeps or [], fig_dir)
    amended = amendments.amended_verdicts(summary["verdicts"], study, probe, partners, sweeps or [])
    if amended:
        summary["verdicts"]["amended"] = amended
    if recency is not None and len(recency):
        figures += plots.plot_recency(recency, fig_dir / "recency", scale, probe_runs)
    curves = _read(stored.lr_find_csv)
    if curves is not None and stored.lr_find_json.exists():
        found = _read_json(stored.lr_find_json)
        title = f"LR range test: {study['name']} ({scale})"
        figures += plots.plot_lr_find(curves, found["suggestion"], found["method"], fig_dir / "lr_find", title)
    atomic_write_json(StudyFolder(out).summary, summary)
    return StudyReport(study["name"], out, summary, figures, mixed_execution_warning(results))


def regenerate(store: Path, out: Path | None = None) -> list[StudyReport]:
    """Every study folder under ``store`` (or ``store`` itself if it is one)."""
    store = Path(store)
    folders = study_folders(store)
    # sweeps first: a probe study's tau law is set against the sweeps trained like it
    kinds = {folder: _read_json(StudyFolder(folder).study_json).get("kind") for folder in folders}
    folders.sort(key=lambda f: (kinds[f] != "lr-sweep", f.name))
    probes = [f for f in folders if kinds[f] == "probe"]  # forgetting's clock compares probe studies
    reports = []
    for folder in folders:
        target = None if out is None else (Path(out) if folder == store else Path(out) / folder.name)
        sweeps = [r.summary for r in reports if r.summary["study"]["kind"] == "lr-sweep"]
        reports.append(study_report(folder, target, sweeps, probes))
    return reports
