"""The Python API: the few calls a notebook needs, each the library function a command calls.

``import forgetting`` exposes these names lazily (importing the package stays cheap)::

    import forgetting as fg

    study = fg.load_study("cpu-lr-sweep", sizes=[500, 1000], multipliers=[0.5, 1, 2], epochs=1, width=0.125)
    outcome = fg.run_sweep(study, store="store")       # resumable; outcome.table is results.csv
    report = fg.summarise(outcome.store.dir)           # summary.json and figures; report.text()

Bad input raises ``forgetting.errors.UserError`` with a one-line message, as the command line prints it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the heavy modules load on first use, not on `import forgetting`
    from forgetting.data import Cifar10
    from forgetting.executors import ExecutorSettings
    from forgetting.probe import ProbeOutcome
    from forgetting.report import StudyReport
    from forgetting.studies import Study
    from forgetting.sweep import SweepEvents, SweepOutcome


def load_data(source: str | Path | None = None) -> Cifar10:
    """CIFAR-10 from ``source`` (an .npz or cifar-10-batches-py folder), else $FORGETTING_DATA, else
    torchvision's cache; verified (sizes 50,000 / 10,000 unless FORGETTING_DATA_SIZES=any)."""
    from forgetting import data

    return data.load_cifar10(source)


def load_study(name_or_path: str | Path, kind: str | None = None, **overrides: Any) -> Study:
    """A study from ``studies/`` (by name) or a .toml path, with overrides validated like file values.

    Overrides are the command-line options by their Python names: ``multipliers``, ``sizes``,
    ``epochs``, ``warmup``, ``batch_size``, ``seeds``, ``base_lr`` (a number or "find"), ``width``,
    and for probe studies ``subset``, ``last_epochs``, ``bn``. ``kind`` ("lr-sweep" or "probe")
    refuses a study of the other kind.
    """
    from forgetting import studies

    return studies.load_study(str(name_or_path), kind=kind).with_overrides(**overrides)


def train_run(
    out: str | Path | None = None,
    data: Cifar10 | None = None,
    device: str = "auto",
    preset: str | None = None,
    **settings: Any,
) -> dict:
    """Train one network; return its result (test loss and accuracy, seconds, diverged, ...).

    ``settings`` are `TrainConfig` fields (``net``, ``width``, ``subset``, ``epochs``, ``batch_size``,
    ``augment``, ``cutout``, ``seed``, ``eval_every``) and ``lr``; ``preset`` is one of the blog's
    stages ("part1".."part4"). With ``out``, the run's files are written there and it resumes from
    its checkpoint, as `forgetting train --out` does; without it nothing is written.
    """
    from forgetting import config, train
    from forgetting.device import resolve_device

    cfg = config.make_config(preset, **settings)
    data = data if data is not None else load_data()
    if out is not None:
        return train.train_to_dir(cfg, data, Path(out), resolve_device(device))
    return train.train(cfg, data, resolve_device(device)).result


def _settings(executor: ExecutorSettings | None, device: str | None) -> ExecutorSettings:
    from dataclasses import replace

    from forgetting.executors import ExecutorSettings

    executor = executor if executor is not None else ExecutorSettings()
    return executor if device is None else replace(executor, device=device)


def run_sweep(
    study: Study,
    store: str | Path = "store",
    data: Cifar10 | None = None,
    executor: ExecutorSettings | None = None,
    device: str | None = None,
    events: SweepEvents | None = None,
    shard: str | None = None,
) -> SweepOutcome:
    """Train every unfinished run of ``study`` into ``store/<study name>/`` and write its results.csv.

    Finished runs are skipped, so an interrupted sweep resumes. ``executor`` (`ExecutorSettings`) says
    how the runs are executed: in this process (the default), in ``workers`` local processes or on Ray,
    on which device, within which time limit; ``device`` alone overrides its device. ``shard`` "K/N"
    trains only the K-th of N pieces of equal work (join the stores with `merge_stores`). The outcome
    holds the resolved base LR, the runs (``specs``; ``mine`` for the shard's) and ``table`` (results.csv).
    """
    from forgetting import sweep
    from forgetting.shards import Shard

    data = data if data is not None else load_data()
    piece = Shard.parse(shard) if shard is not None else None
    return sweep.run_sweep(study, Path(store), data, _settings(executor, device), events=events, shard=piece)


def probe_study(
    study: Study,
    store: str | Path = "store",
    data: Cifar10 | None = None,
    *,
    executor: ExecutorSettings | None = None,
    device: str | None = None,
    shard: str | None = None,
) -> ProbeOutcome:
    """Train a probe study's missing runs, then re-evaluate each run's frozen final weights on the exact
    batches of its earlier epochs; writes probe.csv and its companions into ``store/<study name>/``.
    ``executor`` and ``device`` as for `run_sweep`; ``shard`` "K/N" trains and probes only the K-th of N
    pieces (join them with `merge_stores`)."""
    from forgetting import probe
    from forgetting.shards import Shard

    data = data if data is not None else load_data()
    piece = Shard.parse(shard) if shard is not None else None
    return probe.probe_study(study, Path(store), data, _settings(executor, device), shard=piece)


def merge_stores(sources: list[str | Path], into: str | Path, light: bool = False) -> list:
    """The union of the finished runs of ``sources`` (stores or study folders) in ``into``, study by study,
    as `forgetting merge` does; ``light`` copies each run's record only (no weights). Refuses, raising
    UserError and writing nothing, studies of one name that differ and runs of one id that differ."""
    from forgetting import merge

    return merge.merge_stores([Path(s) for s in sources], Path(into), light=light)


def summarise(folder: str | Path, out: str | Path | None = None) -> StudyReport:
    """Fits and checks of one study folder (``store/<study>`` or ``results/<study>``) from its tables alone;
    writes summary.json and the figures into ``out`` (default: the folder). ``.text()`` prints them."""
    from forgetting import report

    return report.study_report(Path(folder), Path(out) if out is not None else None)


def figures(store: str | Path = "store", out: str | Path | None = None) -> list[StudyReport]:
    """`summarise` for every study folder under ``store`` (or ``store`` itself if it is one)."""
    from forgetting import report

    return report.regenerate(Path(store), Path(out) if out is not None else None)
