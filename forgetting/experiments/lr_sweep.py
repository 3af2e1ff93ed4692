"""The LR sweep (docs/protocol.md §4a): test loss against LR multiplier on nested subsets of the data."""

from __future__ import annotations

from pathlib import Path

from forgetting.checks import SIZE, list_of
from forgetting.experiments.base import ReportContext, StudyKind, StudyError


class LrSweep(StudyKind):
    name = "lr-sweep"
    grid_schema = {"sizes": (list_of(SIZE), None)}  # the subset sizes
    fits_results = True
    in_every_record = True

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

    def reads_histories(self, study: dict) -> bool:
        return bool((study.get("train") or {}).get("eval_train"))  # the fit check reads the clean training loss

    def figures(self, ctx: ReportContext) -> list[Path]:
        import pandas as pd

        from forgetting import plots

        finished = ctx.tables.get("finished")
        if finished is None or not len(finished):
            return []
        optimum = pd.DataFrame(ctx.summary.get("optimum") or []).apply(pd.to_numeric)  # None (NaN in JSON) -> NaN
        best = optimum if len(optimum) else None
        figures = plots.plot_lr_sweep(finished, ctx.fig_dir / "lr_sweep", ctx.caption, best)
        tail = int(ctx.study["train"].get("eval_last") or 0)
        if tail and "test_loss_tail" in finished and finished["test_loss_tail"].notna().any():  # the primary reading
            stem = ctx.fig_dir / "lr_sweep_last_epochs"
            figures += plots.plot_lr_sweep(finished, stem, ctx.caption, tail_epochs=tail)
        return figures + _regime(ctx, finished)

    def after_report(self, summary: dict, shared: dict) -> None:
        shared.setdefault("sweeps", []).append(summary)  # a probe study's tau law is set against them


def _regime(ctx: ReportContext, finished) -> list[Path]:
    """Claim (a) in Page's regime (analysis/regime.py) for a complete sweep that evaluated its clean
    training loss (eval_train): the fit check and the turn-up ratio against the two accounts, read on
    the tau law of a probe study trained like it (same net, width and batch size)."""
    from forgetting import plots_regime, predictions
    from forgetting.analysis import regime, tables, verdicts
    from forgetting.analysis.probe_fits import AMENDED

    study, summary = ctx.study, ctx.summary
    if not study["train"].get("eval_train") or summary.get("incomplete"):
        return []
    fit = regime.fit_check(finished, ctx.tables.get("histories"))
    summary["verdicts"]["fit_check"] = fit
    law, accounts = {}, {}
    source = law_source(study, ctx.shared.get("probes") or [])
    if source is None and study.get("tau_law_from"):
        accounts["law_missing"] = study["tau_law_from"]  # named, not in this store: no forgetting prediction
    if source is not None:
        probe_study = source.study
        law = verdicts.tau_lr_law(source.probe)
        accounts["law_from"] = probe_study["name"]
        laws = {study["train"]["batch_size"]: law}
        accounts["rows"] = predictions.a_predictions(laws, [summary], probe_study, AMENDED)
    for reading in verdicts.LOSS_READINGS:
        a = summary["verdicts"].get(f"a_{reading}") or {}
        accounts[reading] = regime.ratio_reading(a, law.get("alpha"), law.get("alpha_hi"))
    summary["verdicts"]["a_accounts"] = tables.clean(accounts)
    return plots_regime.plot_fit_check(fit, ctx.fig_dir / "fit_check", ctx.caption) if fit["curves"] else []


def law_source(study: dict, probes: list):
    """The probe study whose tau-against-LR law predicts this sweep's turn-ups: the one its study file
    names (``[study] tau_law_from``, fixed with a pre-registration), else the one trained like it (same
    net, width, batch size) over the most learning rates, since a law is a fit across them (by name on a
    tie: never the store's order). None when there is none."""
    named = study.get("tau_law_from")
    if named:
        return next((p for p in probes if p.study["name"] == named), None)
    same = ("net", "width", "batch_size")
    like = [p for p in probes if all(p.study["train"].get(k) == study["train"].get(k) for k in same)]
    ranked = sorted(like, key=lambda p: (-len(set(p.study["grid"].get("multipliers") or ())), p.study["name"]))
    return ranked[0] if ranked else None
