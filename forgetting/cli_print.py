"""What a study command prints besides its progress: the plan of a dry run, and the report at its end."""

from __future__ import annotations

from pathlib import Path


def show_plan(study, store: Path, shard) -> None:
    """The runs a study would train (``shard``: one piece of them), and which are done already."""
    from forgetting import sweep
    from forgetting.console import console, plan_table

    console.print(plan_table(sweep.plan_sweep(study, store, shard, study.load_data().identity)))


def show_report(folder: Path, table, lines: list[str], written: Path) -> None:
    """A study's table (None: none), its report (fits and verdicts), ``lines``, and the files written;
    writes the study folder's summary.json and figures."""
    from forgetting import report
    from forgetting.console import console
    from forgetting.store import StudyFolder

    if table is not None:
        console.print(table)
    rep = report.study_report(folder)
    console.print(rep.text(), markup=False, soft_wrap=True, highlight=False)
    for line in lines:
        console.print(line)
    console.print(f"wrote {written}, {StudyFolder.summary.name} and {', '.join(str(p) for p in rep.figures)}")
