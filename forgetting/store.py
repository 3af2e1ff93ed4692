"""Files on disk: the store's folder layout, atomic writes and the store lock.

The store alone names the files of a study folder (`StudyFolder`) and of a run folder (`RunFolder`).
Every file that marks something as finished is written to a temporary name in the same folder, fsynced
and renamed into place, so a killed process leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import csv
import errno
import fcntl
import io
import json
import math
import os
import shutil
import socket
import tempfile
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from forgetting.errors import UserError


# A full disk or an exhausted quota: the user's to fix, so one line (UserError), not a traceback.
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def _size(n: float) -> str:
    if n < 1024:
        return f"{n:,.0f} bytes"
    for unit in ("KB", "MB", "GB"):
        n /= 1024
        if n < 1024 or unit == "GB":
            return f"{n:,.1f} {unit}"


def disk_full_error(path: Path | None, needed: int | None = None) -> UserError:
    """The one line a full disk gets: the path, the space the write needed and what is free."""
    facts = [f"it needs {_size(needed)}"] if needed is not None else []
    try:
        facts.append(f"{_size(shutil.disk_usage(Path(path).parent).free)} free")
    except (OSError, TypeError):
        pass
    where = f"{path}: no" if path else "No"
    facts_text = f" ({', '.join(facts)})" if facts else ""
    return UserError(
        f"{where} space left on the disk{facts_text}; free some space, then run the same command again to resume"
    )


TEMPORARY = ".*.tmp"  # the name of an atomic write in progress (or cut off): never copied, never read


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)  # no half-written file is left, whatever stopped the write
        if isinstance(e, OSError) and e.errno in DISK_FULL:
            raise disk_full_error(path, len(data)) from None
        raise


def _json_safe(obj):
    """NaN and infinities become null: strict JSON readers reject them."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def json_bytes(obj) -> bytes:
    return (json.dumps(_json_safe(obj), indent=2, sort_keys=True) + "\n").encode()


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, json_bytes(obj))


def csv_bytes(rows: list[dict], columns: list[str] | None = None) -> bytes:
    columns = columns or (list(rows[0]) if rows else [])
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue().encode()


def read_json(path: Path):
    with open(path) as f:
        return json.load(f)


def ensure_folder(path: Path, what: str) -> Path:
    """Create ``path`` as a folder, or say in one line why it cannot be one (a file, no permission)."""
    path = Path(path)
    for p in (path, *path.parents):
        if p.exists() and not p.is_dir():
            raise UserError(f"{path}: {what} must be a folder, but {p} is a file")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"{path}: cannot create the {what} ({e.strerror})") from None
    return path


def _holder(text: str) -> str:
    try:
        h = json.loads(text)
        return f"pid {h['pid']} on {h['host']} since {h['since']}"
    except (ValueError, KeyError, TypeError):
        return "a process that has not yet written its name"


@contextmanager
def exclusive_lock(path: Path):
    """Hold an advisory lock on ``path``; a second holder gets a one-line error naming the first, not a wait.

    The kernel releases a flock when its process dies, however it dies, so a lock file left behind by a
    killed sweep never blocks the next one; the pid, host and start time written into it are for people.
    """
    path = Path(path)
    ensure_folder(path.parent, "store")
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            raise UserError(
                f"{path.parent} is in use by another sweep or probe: {_holder(f.read())} (lock {path})"
            ) from None
        try:
            f.seek(0)
            f.truncate()
            since = datetime.now(timezone.utc).isoformat(timespec="seconds")
            f.write(json.dumps(dict(pid=os.getpid(), host=socket.gethostname(), since=since)))
            f.flush()
            yield
        finally:
            f.truncate(0)  # an empty lock file after a clean exit; a named holder is one that was killed
            fcntl.flock(f, fcntl.LOCK_UN)


# ---------------------------------------------------------------------------------------------
# The folder layout::
#
#     STORE/<study>/                 StudyFolder: study.json, results.csv, lr_find.*, probe*.csv, sweep.lock
#     STORE/<study>/runs/<run id>/   RunFolder: config.json ... result.json (last), or checkpoint.pt / failed.json
#     results/<study>/               a copy of a study's tables, its light run records, summary.json, figures/


class _File:
    """A file of a folder, by name. On the class it is the name (``RunFolder.result.name`` is
    "result.json"); on a folder, that folder's file (``RunFolder(path).result`` is ``path / "result.json"``)."""

    def __init__(self, name: str):
        self.name = name

    def __get__(self, folder, owner=None):
        return self if folder is None else folder.dir / self.name


class RunFolder:
    """One run's folder (``STORE/<study>/runs/<run id>/``, or where `forgetting train --out` writes).

    result.json is written last: its presence means the run finished. A checkpoint or a failed.json
    belongs to a run that has not, and stays in the store that made it."""

    config = _File("config.json")  # the resolved TrainConfig
    meta = _File("meta.json")  # what the grid says of the run (condition, multiplier, LR): a sweep's runs
    history = _File("history.csv")  # one row per epoch
    steps = _File("steps.csv")  # one row per step: each batch's digest and loss at the time
    examples = _File("examples.npz")  # every example's order, loss and correctness at each presentation
    model = _File("model.pt")  # the final weights
    result = _File("result.json")  # the final numbers; written last
    damaged = _File("result.json.damaged")  # a result.json that was not JSON, set aside
    checkpoint = _File("checkpoint.pt")  # the last finished epoch of an unfinished run
    failed = _File("failed.json")  # why the run's last attempt failed
    # The record of a finished run, a few kB: what results.csv and figures need, committed under results/
    # (.gitignore lets exactly these through). HEAVY: what the probe needs besides, kept where it was made.
    LIGHT = tuple(f.name for f in (config, meta, result, history))
    HEAVY = tuple(f.name for f in (steps, examples, model))
    UNFINISHED = tuple(f.name for f in (checkpoint, failed))  # never copied to another store

    def __init__(self, path: Path):
        self.dir = Path(path)

    def read_result(self) -> dict | None:
        """result.json; None when it is missing or damaged (a truncated copy, a bad disk)."""
        try:
            result = read_json(self.result)
        except (ValueError, OSError):  # missing, or not JSON (json's errors are ValueErrors)
            return None
        return result if isinstance(result, dict) else None

    def set_aside_damaged(self) -> bool:
        """Move a damaged result.json out of the way, so that the run counts as unfinished and is redone."""
        if not self.result.exists() or self.read_result() is not None:
            return False
        os.replace(self.result, self.damaged)
        return True

    def write(self, files: dict[str, bytes]) -> None:
        """Write a run's files (name -> bytes) atomically, result.json last: its presence means the run is complete."""
        self.result.unlink(missing_ok=True)
        for name, blob in files.items():
            if name != self.result.name:
                atomic_write_bytes(self.dir / name, blob)
        atomic_write_bytes(self.result, files[self.result.name])


class StudyFolder:
    """One study's folder (``STORE/<study>/``, or a copy of its tables such as ``results/<study>/``)."""

    study_json = _File("study.json")  # what the study is (name, kind, scale, resolved grid, base LR)
    results = _File("results.csv")  # one row per run of the study as last expanded
    lr_find_json = _File("lr_find.json")  # the LR finder's suggestions (and the setup they answer)
    lr_find_csv = _File("lr_find.csv")  # the LR finder's loss curves
    lr_find_figure = _File("lr_find")  # the finder's plot, .png and .svg (`forgetting lr-find --out`)
    probe = _File("probe.csv")  # one row per probed step
    probe_runs = _File("probe_runs.csv")  # one row per probed run
    probe_recency = _File("probe_recency.csv")  # one row per example and run: steps since it was seen
    probe_examples = _File("probe_examples.csv")  # one row per example and run: forgetting events
    probe_epochs = _File("probe_epochs.csv")  # probe.csv by epoch age, computed from it
    summary = _File("summary.json")  # the report's fits and verdicts
    figures = _File("figures")  # the report's figures
    lock_file = _File("sweep.lock")  # held while a sweep, a probe or a merge writes the folder
    runs = _File("runs")  # a RunFolder per run id
    jobs = _File("jobs")  # an executor's own files: submitit's job files and logs (the SLURM executor)
    LR_FIND = (lr_find_json.name, lr_find_csv.name)
    PROBE_PER_RUN = tuple(f.name for f in (probe, probe_runs, probe_recency, probe_examples))  # a block of rows per run
    PROBE_TABLES = (*PROBE_PER_RUN, probe_epochs.name)
    # What the report reads, and `figures --out` copies so that its output stands on its own.
    TABLES = (study_json.name, results.name, lr_find_csv.name, lr_find_json.name, *PROBE_TABLES)

    def __init__(self, path: Path):
        self.dir = Path(path)

    def run(self, run_id: str) -> RunFolder:
        return RunFolder(self.runs / run_id)

    def finished_runs(self) -> dict[str, RunFolder]:
        """Run id -> folder of every run with a result.json, in the order of their ids."""
        if not self.runs.is_dir():
            return {}
        return {p.name: RunFolder(p) for p in sorted(self.runs.iterdir()) if RunFolder(p).result.exists()}

    def failed_runs(self) -> dict[str, RunFolder]:
        """Run id -> folder of every run with a failed.json."""
        return {p.parent.name: RunFolder(p.parent) for p in sorted(self.runs.glob(f"*/{RunFolder.failed.name}"))}

    def write(self, files: dict[str, bytes]) -> None:
        """Write the folder's files (name -> bytes), each atomically, in the order given."""
        for name, data in files.items():
            atomic_write_bytes(self.dir / name, data)

    def lock(self):
        """The folder's lock, held while its files are written (see `exclusive_lock`)."""
        ensure_folder(self.dir.parent, "store")  # names --store itself when it is a file
        return exclusive_lock(self.lock_file)


def study_folders(root: Path) -> list[Path]:
    """``root`` if it is a study folder (one with a study.json), else the study folders in it, by name."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: no such folder")
    if StudyFolder(root).study_json.exists():
        return [root]
    folders = sorted(p.parent for p in root.glob(f"*/{StudyFolder.study_json.name}"))
    if not folders:
        raise UserError(f"{root}: no study folders (folders with a study.json) found")
    return folders
