"""`forgetting merge`: the union of the finished runs of several stores, study by study.

Run ids are hashes of the resolved config, so the shards of a study, or stores filled on different
machines, join by copying run folders: the same id is the same run. Everything is checked before
anything is written, and each study folder of DST is replaced whole (staged beside it, then swapped
in one rename), so a refused or killed merge leaves DST as it was. ``light`` copies only a run's
record (a few kB, what results.csv and the figures need): what is committed under results/.
"""

from __future__ import annotations

import ctypes
import io
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from forgetting.analysis import probe_fits
from forgetting.errors import UserError
from forgetting.grid import expand
from forgetting.lr_curve import read_curves, read_suggestion
from forgetting.store import (
    DAMAGED,
    TEMPORARY,
    RunFolder,
    StudyFolder,
    atomic_write_bytes,
    check_zip,
    json_bytes,
    read_back,
    read_json_object,
    read_table_text,
    study_folders,
)
from forgetting.sweep import results_csv_bytes, results_table, study_from_record


@dataclass
class StudyMerge:
    name: str
    dst: Path  # DST/<study>
    record: dict  # the study.json every folder agrees on
    folders: list[Path]  # the source folders of this study, in the order given
    runs: dict[str, RunFolder] = field(default_factory=dict)  # run id -> the run folder to take it from
    failed: dict[str, RunFolder] = field(default_factory=dict)  # id -> a failed run's folder (finished nowhere)
    new_runs: list[str] = field(default_factory=list)  # ids not yet in DST
    files: dict[str, bytes] = field(default_factory=dict)  # study-level files to (re)write
    changed: bool = False  # set once DST/<study> has been replaced


def _study_record(path: Path) -> dict:
    record = read_json_object(path)
    if not {"name", "kind", "train", "grid"} <= set(record):
        raise ValueError("not a study record written by sweep-lr or probe-epochs")
    return record


def _read_record(folder: Path) -> dict:
    """A folder's study.json, the one description of its grid here: damaged, it is refused (`store.read_back`)."""
    return read_back(StudyFolder(folder).study_json, _study_record)


def _read_table(path: Path) -> pd.DataFrame:
    """A probe table, text in, text out: its bytes kept."""
    return pd.read_csv(io.StringIO(read_table_text(path, ("run",))), dtype=str, keep_default_na=False)


# What merge copies of a run besides its record (not with --light): read back, so that no damage travels.
_HEAVY_READERS = {
    RunFolder.steps.name: read_table_text,
    RunFolder.examples.name: check_zip,
    RunFolder.model.name: check_zip,
}


def _check_heavy(merge: StudyMerge) -> None:
    """The weights and records of the runs a whole-run merge copies, read back: damaged, they are refused."""
    for run in merge.new_runs:
        for name, read in _HEAVY_READERS.items():
            if (merge.runs[run].dir / name).exists():
                read_back(merge.runs[run].dir / name, read)


def _same_study(a: dict, b: dict, where: str) -> None:
    """Refuse two records of one name that describe different runs (the study file's path may differ)."""
    for key in sorted(set(a) | set(b)):
        if key != "source" and a.get(key) != b.get(key):
            raise UserError(f"{where}: different studies named {a['name']!r} ('{key}' differs); not merged")


def _claim_runs(merge: StudyMerge, folder: Path) -> None:
    for run, found in StudyFolder(folder).finished_runs().items():
        missing = [f for f in RunFolder.LIGHT if not (found.dir / f).exists()]
        if missing:
            raise UserError(
                f"{found.dir}: a finished run without {', '.join(missing)}; remove the folder or redo the run"
            )
        for path, read in found.record().items():  # damaged: refused before anything is written
            read_back(path, read)
        held = merge.runs.get(run)
        if held is None:
            merge.runs[run] = found
        elif held.result.read_bytes() != found.result.read_bytes():
            raise UserError(f"run {run}: {held.result} and {found.result} differ; not merged")


def _probe_tables(merge: StudyMerge, specs) -> dict[str, bytes]:
    """Each probed run's rows from the first folder that has them, in the order of the study's runs
    (as one probe of the whole study writes them); probe_epochs recomputed from the union."""
    order = {s.id: i for i, s in enumerate(specs)}
    tables = {}
    for name in StudyFolder.PROBE_PER_RUN:
        frames = {}
        for folder in [merge.dst, *merge.folders]:
            path = folder / name
            if not path.exists():
                continue
            df = read_back(path, _read_table)
            for run, rows in df.groupby("run", sort=False):
                frames.setdefault(run, rows)
        if frames:
            runs = sorted(frames, key=lambda r: order.get(r, len(order)))
            tables[name] = pd.concat([frames[r] for r in runs]).to_csv(index=False).encode()
    if StudyFolder.probe_runs.name in tables:
        bn = set(pd.read_csv(io.BytesIO(tables[StudyFolder.probe_runs.name]))["bn"])
        if len(bn) > 1:
            raise UserError(f"{merge.name}: the folders were probed with different BN modes ({', '.join(sorted(bn))})")
    if StudyFolder.probe.name in tables:
        probe = pd.read_csv(io.BytesIO(tables[StudyFolder.probe.name]), dtype={"run": str})
        tables[StudyFolder.probe_epochs.name] = probe_fits.epoch_aggregates(probe).to_csv(index=False).encode()
    return tables


class _UnionView:
    """The store as it will be after the merge, for results_table: each run from where it is taken."""

    def __init__(self, merge: StudyMerge):
        self.merge = merge

    def run_dir(self, spec) -> Path:
        m = self.merge
        return (m.runs.get(spec.id) or m.failed.get(spec.id) or StudyFolder(m.dst).run(spec.id)).dir


def plan(name: str, folders: list[Path], dst_root: Path) -> StudyMerge:
    dst = Path(dst_root) / name
    records = [(f, _read_record(f)) for f in folders]
    if StudyFolder(dst).study_json.exists():
        records.insert(0, (dst, _read_record(dst)))
    for folder, record in records[1:]:
        _same_study(records[0][1], record, f"{records[0][0]} and {folder}")
    merge = StudyMerge(name, dst, records[0][1], folders)
    _claim_runs(merge, dst)
    held = set(merge.runs)
    for folder in folders:
        _claim_runs(merge, folder)
    merge.new_runs = [r for r in merge.runs if r not in held]
    for folder in folders:  # a failed run stays failed in the union, as in a store that ran it all
        for run, failed in StudyFolder(folder).failed_runs().items():
            if run not in merge.runs and not StudyFolder(dst).run(run).failed.exists():
                merge.failed.setdefault(run, failed)
    readers = {StudyFolder.lr_find_json.name: read_suggestion, StudyFolder.lr_find_csv.name: read_curves}
    for fname in StudyFolder.LR_FIND:  # from the first folder that has them
        source = next((f / fname for f in [dst, *folders] if (f / fname).exists()), None)
        if source is not None:
            read_back(source, readers[fname])
            merge.files[fname] = source.read_bytes()
    study = study_from_record(merge.record)
    specs = expand(study, float(merge.record["base_lr"]))
    merge.files[StudyFolder.study_json.name] = json_bytes(merge.record)
    merge.files[StudyFolder.results.name] = results_csv_bytes(results_table(study, _UnionView(merge), specs))
    merge.files.update(_probe_tables(merge, specs))
    return merge


def unchanged(merge: StudyMerge) -> bool:
    return (
        not merge.new_runs
        and not merge.failed
        and all((merge.dst / n).exists() and (merge.dst / n).read_bytes() == data for n, data in merge.files.items())
    )


def _fsync_tree(root: Path) -> None:
    for folder, _, names in os.walk(root):
        for name in names:
            with open(os.path.join(folder, name), "rb") as f:
                os.fsync(f.fileno())
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _exchange(a: Path, b: Path) -> None:
    """Swap two folders in one step (Linux renameat2 RENAME_EXCHANGE); elsewhere, two renames."""
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is not None and renameat2(-100, os.fsencode(a), -100, os.fsencode(b), 2) == 0:  # AT_FDCWD
        return
    aside = b.with_name(b.name + ".old")
    os.rename(b, aside)
    os.rename(a, b)
    os.rename(aside, a)


def apply(merge: StudyMerge, light: bool) -> None:
    """Stage DST/<study> anew beside it (hard links to what it held, copies of the new runs), then swap."""
    stage = merge.dst.with_name(f".{merge.name}.merge-tmp")
    shutil.rmtree(stage, ignore_errors=True)  # left by a killed merge
    if merge.dst.exists():
        but_the_lock = shutil.ignore_patterns(StudyFolder.lock_file.name)
        shutil.copytree(merge.dst, stage, copy_function=os.link, ignore=but_the_lock)
    staged = StudyFolder(stage)
    keep = set(RunFolder.LIGHT)
    for run in merge.new_runs:
        ignore = (
            (lambda d, names: [n for n in names if n not in keep])
            if light
            else shutil.ignore_patterns(*RunFolder.UNFINISHED, TEMPORARY, f"*{DAMAGED}")
        )
        shutil.copytree(merge.runs[run].dir, staged.run(run).dir, ignore=ignore)
    for run, source in merge.failed.items():
        atomic_write_bytes(staged.run(run).failed, source.failed.read_bytes())
    staged.write(merge.files)
    _fsync_tree(stage)
    if merge.dst.exists():
        _exchange(stage, merge.dst)
        shutil.rmtree(stage)
    else:
        os.rename(stage, merge.dst)


def merge_stores(sources: list[Path], dst_root: Path, light: bool = False) -> list[StudyMerge]:
    """Merge every study of ``sources`` into ``dst_root``; check all of them before writing any."""
    if not sources:
        raise UserError("merge needs at least one source store")
    dst_root = Path(dst_root)
    if dst_root.exists() and not dst_root.is_dir():
        raise UserError(f"{dst_root}: --into must be a folder, but it is a file")
    by_name: dict[str, list[Path]] = {}
    for root in sources:
        for folder in study_folders(root):
            if folder.resolve() != (dst_root / folder.name).resolve():  # DST itself adds nothing
                by_name.setdefault(_read_record(folder)["name"], []).append(folder)
    merges = [plan(name, folders, dst_root) for name, folders in sorted(by_name.items())]
    if not light:  # a whole-run merge copies weights and records besides
        for merge in merges:
            _check_heavy(merge)
    dst_root.mkdir(parents=True, exist_ok=True)
    for merge in merges:
        if unchanged(merge):
            continue
        if merge.dst.exists():
            with StudyFolder(merge.dst).lock():  # not while a sweep writes this study
                apply(merge, light)
        else:
            apply(merge, light)
        merge.changed = True
    return merges
