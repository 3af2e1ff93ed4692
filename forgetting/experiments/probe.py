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
    in_every_record = True

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

    def before_training(self, study, plan, store, last_epochs=None, bn=None) -> None:
        """The probe's settings, and what it needs of the runs already finished, checked before any training."""
        from forgetting import probe

        probe.check_before_training(plan(), store, *_settings(study, last_epochs, bn))

    def after_training_work(self, study, config) -> float:
        """The replay: the run's batches of each probed epoch through the frozen weights, forward only."""
        from forgetting.grid import EVAL_COST

        last_epochs = study.probe["last_epochs"]
        epochs = config.epochs if last_epochs == 0 else min(last_epochs, config.epochs)
        return EVAL_COST * config.subset * epochs

    def after_training(self, outcome, data, executor, events=None, board=None, notice=None, last_epochs=None, bn=None):
        """Probe the finished runs of ``outcome`` not yet probed so (a shard's own: `forgetting merge` joins
        the tables), each a job on ``executor``, as the training was."""
        from forgetting import probe

        last_epochs, bn = _settings(outcome.study, last_epochs, bn)
        # Probing writes tables that belong together: hold the store, as the sweep did, so that two probes
        # (say --bn eval and --bn batch) at once cannot leave a mix of both.
        with outcome.store.lock():
            return probe.probe_finished_runs(
                outcome, data, executor, last_epochs, bn, events, board, notice or probe.warn
            )

    def figures(self, ctx: ReportContext) -> list[Path]:
        """Forgetting's clock against batch size (forgetting/clock.py), when one of the store's probe studies
        is trained like this one at a smaller batch size: adds its verdicts to the summary."""
        import pandas as pd

        from forgetting import clock, plots_clock

        study, probe = ctx.study, ctx.tables.get("probe")
        ctx.partners = [(o.study, o.probe) for o in ctx.shared.get("probes") or [] if clock.comparable(study, o.study)]
        if probe is None or not len(probe):
            return []
        partners = ctx.partners
        law, sweeps = ctx.summary["verdicts"].get("tau_law"), ctx.shared.get("sweeps") or []
        found = clock.readings(study, probe, law, partners, sweeps)
        if not found:
            return []
        ctx.summary["verdicts"].update(found)
        c = found["clock"]
        ref_probe = next(p for o, p in partners if o["name"] == c["reference"])
        curves = pd.concat([clock.age_curves(ref_probe, c["reference_batch"]), clock.age_curves(probe, c["batch"])])
        taus = plots_clock.plot_clock_taus(c, ctx.fig_dir / "clock_tau", ctx.caption)
        return taus + plots_clock.plot_clock_curves(curves, c, ctx.fig_dir / "clock_curves", ctx.caption)

    def before_reports(self, tables, shared: dict) -> None:
        shared.setdefault("probes", []).append(tables)  # forgetting's clock compares probe studies


def _settings(study, last_epochs, bn) -> tuple[int, str]:
    """The probe's settings: the given ones, else the study's [probe] section."""
    last_epochs = study.probe["last_epochs"] if last_epochs is None else last_epochs
    return last_epochs, study.probe["bn"] if bn is None else bn
