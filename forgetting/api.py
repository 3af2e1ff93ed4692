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
    from forgetting.datasets import Dataset
    from forgetting.execution.settings import ExecutorSettings
    from forgetting.probe import ProbeOutcome
    from forgetting.report import StudyReport
    from forgetting.studies import Study
    from forgetting.sweep import SweepEvents, SweepOutcome


def load_data(source: str | Path | None = None, dataset: str = "cifar10") -> Dataset:
    """Data set ``dataset`` (cifar10, cifar100, svhn, mnist, fashion-mnist, or a name of your own for an .npz)
    from ``source`` (an .npz, or a folder in torchvision's format), else (CIFAR-10) $FORGETTING_DATA, else
    the user cache that `forgetting data NAME --download` fills; checked, with its fingerprint."""
    from forgetting import datasets

    return datasets.load_dataset(dataset, source)


def load_study(name_or_path: str | Path, kind: str | None = None, **overrides: Any) -> Study:
    """A study from ``studies/`` (by name) or a .toml path, with overrides validated like file values.

    Overrides are the command-line options by their Python names: ``multipliers``, ``sizes``,
    ``epochs``, ``warmup``, ``batch_size``, ``seeds``, ``base_lr`` (a number or "find"), ``width``,
    ``net`` (a name, "package.module:factory", or a callable returning an ``nn.Module``: one that worker
    processes cannot import by name trains in this process only), ``dataset`` and ``data`` (its file),
    and for probe studies ``subset``, ``last_epochs``, ``bn``. ``kind`` ("lr-sweep" or "probe")
    refuses a study of the other kind.
    """
    from forgetting import nets, studies

    if overrides.get("net") is not None:  # a callable joins the registry (or is named by its import path)
        overrides["net"] = nets.name_of(overrides["net"])
    return studies.load_study(str(name_or_path), kind=kind).with_overrides(**overrides)


def train_run(
    out: str | Path | None = None,
    data: Dataset | None = None,
    device: str = "auto",
    preset: str | None = None,
    **settings: Any,
) -> dict:
    """Train one network; return its result (test loss and accuracy, seconds, diverged, ...).

    ``settings`` are `TrainConfig` fields (``net``, ``width``, ``subset``, ``epochs``, ``batch_size``,
    ``augment``, ``cutout``, ``seed``, ``eval_every``) and ``lr``; ``preset`` is one of the blog's
    stages ("part1".."part4"). ``data`` (`load_data`) defaults to CIFAR-10, ``subset`` to all its
    training images. With ``out``, the run's files are written there and it resumes from its
    checkpoint, as `forgetting train --out` does; without it nothing is written.
    """
    from forgetting import config, train
    from forgetting.device import resolve_device

    from forgetting import nets

    if settings.get("net") is not None:
        settings["net"] = nets.name_of(settings["net"])
    cfg = config.make_config(preset, **settings)
    data = data if data is not None else load_data()
    cfg = cfg if settings.get("subset") is not None else config.with_all_images(cfg, data)
    if out is not None:
        return train.train_to_dir(cfg, data, Path(out), resolve_device(device))
    return train.train(cfg, data, resolve_device(device)).result


def run_study(
    study: Study,
    store: str | Path = "store",
    data: Dataset | None = None,
    executor: ExecutorSettings | None = None,
    device: str | None = None,
    events: SweepEvents | None = None,
    shard: str | None = None,
    tensorboard: str | Path | None = None,
    **stage_options: Any,
) -> SweepOutcome | ProbeOutcome:
    """Run ``study`` into ``store/<study name>/``: train every unfinished run (finished ones are skipped, so
    an interrupted study resumes); an LR sweep then writes results.csv, a probe study re-evaluates each
    run's frozen final weights on the exact batches of its earlier epochs (probe.csv and companions).

    ``executor`` (`ExecutorSettings`) says how the jobs (training, probing) are executed: in this process
    (the default), in ``workers`` local processes, on Ray or as a SLURM array job, on which device, within
    which time limit; ``device`` alone overrides its device. ``events`` receives the training progress.
    ``shard`` "K/N" runs only the K-th of N pieces of equal work (join the stores with `merge_stores`).
    ``tensorboard``: a folder for each run's curves (default: the study's ``tensorboard`` key).
    ``stage_options`` go to the stage after training (a probe's ``last_epochs``, ``bn``). ``data`` defaults
    to the study's own data set (its [data] section; `load_study(..., dataset=..., data=...)` overrides it).
    """
    from dataclasses import replace

    from forgetting.execution.settings import ExecutorSettings
    from forgetting.experiments.run import run_study as run
    from forgetting.shards import Shard

    data = data if data is not None else study.load_data()
    settings = executor if executor is not None else ExecutorSettings()
    settings = settings if device is None else replace(settings, device=device)
    piece = Shard.parse(shard) if shard is not None else None
    return run(study, Path(store), data, settings, events, piece, tensorboard=tensorboard, **stage_options)


def run_sweep(study: Study, store: str | Path = "store", **options: Any) -> SweepOutcome:
    """`run_study` for an LR-sweep study; the outcome holds the resolved base LR, the runs (``specs``;
    ``mine`` for a shard's) and ``table`` (results.csv). A probe study is refused (UserError)."""
    return run_study(_of_kind(study, "lr-sweep"), store, **options)


def probe_study(study: Study, store: str | Path = "store", **options: Any) -> ProbeOutcome:
    """`run_study` for a probe study; the outcome holds the probe tables. An LR sweep is refused (UserError)."""
    return run_study(_of_kind(study, "probe"), store, **options)


def _of_kind(study: Study, kind: str) -> Study:
    from forgetting.errors import UserError

    if study.kind != kind:
        raise UserError(f"study {study.name!r} is a '{study.kind}' study, this call needs a '{kind}' study")
    return study


def merge_stores(sources: list[str | Path], into: str | Path, light: bool = False) -> list:
    """The union of the finished runs of ``sources`` (stores or study folders) in ``into``, study by study,
    as `forgetting merge` does; ``light`` copies each run's record only (no weights). Refuses, raising
    UserError and writing nothing, studies of one name that differ and runs of one id that differ."""
    from forgetting import merge

    return merge.merge_stores([Path(s) for s in sources], Path(into), light=light)


def summarise(folder: str | Path, out: str | Path | None = None) -> StudyReport:
    """Fits and checks of one study folder (``store/<study>`` or ``results/<study>``) from stored tables: its
    own, and those of the probe studies beside it in its store (the tau law an LR sweep is read against);
    writes summary.json and the figures into ``out`` (default: the folder). ``.text()`` prints them."""
    from forgetting import report

    return report.study_report(Path(folder), Path(out) if out is not None else None)


def figures(store: str | Path = "store", out: str | Path | None = None) -> list[StudyReport]:
    """`summarise` for every study folder under ``store`` (or ``store`` itself if it is one). ``out=None``
    writes into the store's own folders, over their summary.json and figures (the command line's
    ``--in-place``); `forgetting figures` without options writes into a new folder instead."""
    from forgetting import report

    return report.regenerate(Path(store), Path(out) if out is not None else None)


def scores(
    store: str | Path,
    study: str | None = None,
    condition: str | None = None,
    multiplier: float | None = None,
    subset: int | None = None,
    data: Dataset | str | Path | None = None,
    n_boot: int | None = None,
):
    """Per-example forgetting scores (Toneva et al. 2019) pooled over the seeds of one group of a study's runs,
    as `forgetting scores` writes them: a pandas DataFrame with one row per example (``index``: its position in
    the data set's training arrays as loaded, train_x/train_y, from 0; ``label``: its class; ``n_seeds``: the
    runs that presented it) and per score (forgetting_events, first_learned_epoch, never_learned, unforgettable)
    the mean over those seeds with its 95% bootstrap interval (``_lo``, ``_hi``). ``attrs["agreement"]``: the
    seeds' rankings' mean Spearman rho and its interval. ``store`` is a store or a study folder (results/<study>);
    ``condition``, ``multiplier``, ``subset`` choose the group where the study has several. Where the study
    was not probed, each run's examples.npz is read with the labels of ``data`` (default: the study's data set).
    ``n_boot``: bootstrap draws (default: the project's 1,000)."""
    from forgetting import scoring

    pool = scoring.pool(Path(store), study, condition, multiplier, subset, data)
    return scoring.pooled_table(pool) if n_boot is None else scoring.pooled_table(pool, n_boot)
