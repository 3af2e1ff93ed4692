"""report.mixed_execution_warning: runs of one study trained at different thread counts or precisions are never mixed silently."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from forgetting import report

RESULTS = Path(__file__).resolve().parent.parent / "results"


def table(**columns) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    return pd.DataFrame(dict(study=["s"] * n, status=["finished"] * n, **columns))


def test_one_thread_count_and_no_precision_column_is_quiet():
    assert report.mixed_execution_warning(table(threads=[2, 2, 2], device=["cpu"] * 3)) is None
    assert report.mixed_execution_warning(None) is None


def test_mixed_threads_are_named_with_their_run_counts():
    line = report.mixed_execution_warning(table(threads=[1, 2, 2], device=["cpu"] * 3))
    assert line is not None and "\n" not in line
    assert line.startswith("warning: the runs of s were trained at different thread counts 1 (1 runs), 2 (2 runs)")


def test_mixed_precisions_are_named_and_unfinished_runs_do_not_count():
    t = table(threads=[2, 2, 2], precision=["fp32", "bf16", "fp32"])
    assert "precisions bf16 (1 runs), fp32 (2 runs)" in report.mixed_execution_warning(t)
    t.loc[1, "status"] = "failed"
    assert report.mixed_execution_warning(t) is None


def test_runs_from_two_cpu_models_are_flagged():
    # Same run ids on an Intel and an AMD machine gave other digits (results/README.md): never silent.
    t = table(threads=[2, 2], device=["cpu"] * 2, processor=["Intel(R) Xeon(R) Processor @ 2.80GHz", "AMD EPYC"])
    assert "processors AMD EPYC (1 runs), Intel(R) Xeon(R) Processor @ 2.80GHz (1 runs)" in (
        report.mixed_execution_warning(t)
    )


def test_committed_results_are_not_mixed():
    for study in ("cpu-lr-sweep", "cpu-probe"):
        assert report.mixed_execution_warning(pd.read_csv(RESULTS / study / "results.csv")) is None


def test_figures_report_carries_the_warning(tmp_path):
    for name in ("study.json", "results.csv"):
        (tmp_path / name).write_bytes((RESULTS / "cpu-lr-sweep" / name).read_bytes())
    results = pd.read_csv(tmp_path / "results.csv", dtype={"run": str})
    results.loc[0, "threads"] = 1
    results.to_csv(tmp_path / "results.csv", index=False)
    (rep,) = report.regenerate(tmp_path)
    assert rep.warning is not None and rep.text().endswith(rep.warning)
    assert "thread counts 1 (1 runs), 2 (83 runs)" in rep.warning


def test_a_sweep_with_runs_still_missing_is_not_read(tmp_path):
    """A study in pieces, part-way: the (a) verdicts say it is incomplete instead of reading part of it."""
    source = Path(__file__).resolve().parent.parent / "results" / "cpu-lr-sweep"
    folder = tmp_path / "cpu-lr-sweep"
    folder.mkdir()
    for name in ("study.json", "results.csv"):
        shutil.copyfile(source / name, folder / name)
    rows = pd.read_csv(folder / "results.csv", dtype={"run": str})
    rows.loc[rows.index[-5:], "status"] = "missing"
    rows.to_csv(folder / "results.csv", index=False)
    summary = report.study_report(folder).summary
    for name in ("a_final", "a_last5"):
        verdict = summary["verdicts"].get(name)
        if verdict is not None:
            assert verdict["holds"] is None and "79 of 84 runs" in verdict["reason"]
    assert summary["incomplete"] == dict(runs=84, missing=5)
    assert summary["verdicts"]["a_final"]["holds"] is None


def test_the_machine_line_names_what_the_runs_trained_on_where_recorded():
    t = table(threads=["2.0", "2.0"], device=["cpu"] * 2, processor=["AMD EPYC"] * 2, precision=["float32"] * 2)
    assert report.machine_line(t) == "runs trained on AMD EPYC (cpu, 2 threads, float32)"
    assert report.figure_caption("S", t) == "S\nruns trained on AMD EPYC (cpu, 2 threads, float32)"
    mixed = t.assign(processor=["AMD EPYC", "Intel(R) Xeon(R) Processor"])
    line = report.machine_line(mixed)
    assert "AMD EPYC (cpu, 2 threads, float32): 1 runs; Intel(R) Xeon(R) Processor (cpu" in line
    # tables older than the processor column, and runs not yet in (blank), name no machine
    assert report.machine_line(t.drop(columns="processor")) is None
    assert report.machine_line(t.assign(processor=["", ""])) is None
    assert report.figure_caption("S", t.drop(columns="processor")) == "S"


def test_every_figure_names_the_machine_in_its_title(tmp_path):
    for name in ("study.json", "results.csv", "lr_find.json", "lr_find.csv"):
        (tmp_path / name).write_bytes((RESULTS / "cpu-lr-sweep" / name).read_bytes())
    results = pd.read_csv(tmp_path / "results.csv", dtype={"run": str})
    results.assign(processor="AMD EPYC").to_csv(tmp_path / "results.csv", index=False)
    (rep,) = report.regenerate(tmp_path)
    svgs = {p.name: p.read_text() for p in rep.figures if p.suffix == ".svg"}
    assert set(svgs) == {"lr_sweep.svg", "lr_find.svg"}
    assert "runs trained on AMD EPYC (cpu, 2 threads)" in svgs["lr_sweep.svg"]
    assert "finder: dawn18 width 0.25" in svgs["lr_find.svg"] and "6 epochs" not in svgs["lr_find.svg"]
