"""The LR sweep (docs/protocol.md §4a): test loss against LR multiplier on nested subsets of the data."""

from __future__ import annotations

from pathlib import Path

from forgetting.checks import SIZE, list_of
from forgetting.experiments.base import ReportContext, StudyKind, StudyError


class LrSweep(StudyKind):
    name = "lr-sweep"
    grid_schema = {"sizes": (list_of(SIZE), None)}  # the subset sizes
    fits_results = True

    def check(self, study, where: str) -> None:
        if not study.grid.get("sizes"):
            raise StudyError(f"{where}: an lr-sweep study needs 'grid.sizes'")

    def cells(self, study) -> list[tuple[int, bool, str]]:
        return [(size, study.train["augment"], "") for size in study.grid["sizes"]]

    def scale_words(self, study) -> str:
        t = study.train
        if not t["augment"]:
            return "no augmentation"
        return "crop+flip" + (f", cutout {t['cutout']}" if t["cutout"] else "")

    def figures(self, ctx: ReportContext) -> list[Path]:
        import pandas as pd

        from forgetting import plots

        finished = ctx.tables.get("finished")
        if finished is None or not len(finished):
            return []
        optimum = pd.DataFrame(ctx.summary.get("optimum") or []).apply(pd.to_numeric)  # None (NaN in JSON) -> NaN
        best = optimum if len(optimum) else None
        return plots.plot_lr_sweep(finished, ctx.fig_dir / "lr_sweep", ctx.study["scale"], best)

    def after_report(self, summary: dict, shared: dict) -> None:
        shared.setdefault("sweeps", []).append(summary)  # a probe study's tau law is set against them
