"""The probe study (docs/protocol.md §4b): train the conditions' runs, then freeze each run's final
weights and re-evaluate the exact batches of its earlier epochs (loss against epoch age).

Its stage after training sends each finished run's probe (`probe.probe_run`) through the same executor
as the training, and writes the five probe tables from what comes back, in the order of the runs.
"""

from __future__ import annotations

from pathlib import Path

from forgetting import config
from forgetting.checks import SIZE, number, one_of
from forgetting.experiments.base import ReportContext, StudyKind, StudyError


class ProbeStudy(StudyKind):
    name = "probe"
    grid_schema = {"subset": (SIZE, None)}  # the size of the full condition
    sections = {
        "probe": {
            "last_epochs": (number(integer=True, lo=0), 0),  # 0 = every epoch
            "bn": (one_of(*config.BN_MODES), "eval"),
        }
    }
    report_rank = 1  # after the LR sweeps: its tau law is set against theirs

    def check(self, study, where: str) -> None:
        if not study.grid.get("subset"):
            raise StudyError(f"{where}: a probe study needs 'grid.subset'")
        if not study.conditions:
            raise StudyError(f"{where}: a probe study needs at least one [[conditions]] table")

    def cells(self, study) -> list[tuple[int, bool, str]]:
        return [(max(1, round(c.fraction * study.grid["subset"])), c.augment, c.name) for c in study.conditions]

    def largest_subset(self, study) -> int:
        return study.grid["subset"]

    def scale_words(self, study) -> str:
        return f"{study.grid['subset']:,} images"

    def after_training(self, outcome, data, executor, events=None, board=None, last_epochs=None, bn=None):
        """Probe every finished run of ``outcome`` (a shard's own runs: `forgetting merge` joins the tables)."""
        from forgetting.experiments.probe_stage import probe_finished_runs

        last_epochs = outcome.study.probe["last_epochs"] if last_epochs is None else last_epochs
        bn = outcome.study.probe["bn"] if bn is None else bn
        # Probing writes five tables that belong together: hold the store, as the sweep did, so that two
        # probes (say --bn eval and --bn batch) at once cannot leave a mix of both.
        with outcome.store.lock():
            return probe_finished_runs(outcome, data, executor, last_epochs, bn, events, board)

    def figures(self, ctx: ReportContext) -> list[Path]:
        """Forgetting's clock against batch size (forgetting/clock.py), when one of the store's probe studies
        is trained like this one at a smaller batch size: adds its verdicts to the summary."""
        import pandas as pd

        from forgetting import clock, plots_clock
        from forgetting.store import StudyFolder

        study, probe = ctx.study, ctx.tables.get("probe")
        if probe is None or not len(probe):
            return []
        folders = ctx.shared.get("probes") or []
        others = [ctx.read_json(StudyFolder(f).study_json) for f in folders]
        partners = [
            (o, ctx.read_table(StudyFolder(f).probe)) for o, f in zip(others, folders) if clock.comparable(study, o)
        ]
        law, sweeps = ctx.summary["verdicts"].get("tau_law"), ctx.shared.get("sweeps") or []
        found = clock.readings(study, probe, law, partners, sweeps)
        if not found:
            return []
        ctx.summary["verdicts"].update(found)
        c = found["clock"]
        ref_probe = next(p for o, p in partners if o["name"] == c["reference"])
        curves = pd.concat([clock.age_curves(ref_probe, c["reference_batch"]), clock.age_curves(probe, c["batch"])])
        taus = plots_clock.plot_clock_taus(c, ctx.fig_dir / "clock_tau", study["scale"])
        return taus + plots_clock.plot_clock_curves(curves, c, ctx.fig_dir / "clock_curves", study["scale"])

    def before_reports(self, folder: Path, shared: dict) -> None:
        shared.setdefault("probes", []).append(folder)  # forgetting's clock compares probe studies
