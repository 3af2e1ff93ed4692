"""Files on disk: the store's folder layout, atomic writes, the store lock and damaged files.

The store alone names the files of a study folder (`StudyFolder`) and of a run folder (`RunFolder`).
Every file that marks something as finished is written to a temporary name in the same folder, fsynced
and renamed into place, so a killed process leaves either the old file or the new one, never half of one.
A file that comes back damaged all the same (a truncated copy, a disk that filled, a node lost elsewhere)
meets one policy, `read_back`: redone where the command reading it can redo it, else refused in one line.
"""

from __future__ import annotations

import csv
import errno
import fcntl
import hashlib
import io
import json
import math
import os
import shutil
import socket
import sys
import tempfile
import zipfile
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, NamedTuple

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
# Damaged files: one policy for every file the toolkit reads back (REMEDIES names them). A command that
# can redo the work a damaged file held sets it aside (PATH.damaged, kept for a look), says so in one
# warning line and redoes the work; one that cannot (figures and merge read what others made; the probe
# needs a finished run's own weights) refuses in one line naming the file and what to do, exit 2.

DAMAGED = ".damaged"


class Remedy(NamedTuple):
    redo: str | None  # the work a command that can redo it does, once the file is set aside (None: none can)
    fix: str  # what the user does when a command refuses the file; {folder} is the file's folder


class DamagedFile(UserError):
    """A file the toolkit wrote that does not read back, met where the work cannot be redone."""


def warn(text: str) -> None:
    """A warning line where no progress display takes it (a worker process, `forgetting train`)."""
    print(f"warning: {text}", file=sys.stderr, flush=True)


def read_back(path: Path, read: Callable[[Path], object], notice: Callable[[str], None] | None = None):
    """``read(path)``; if it raises (the file is damaged): with ``notice`` (the caller redoes the work) the file
    is set aside, named in one line to ``notice``, and None returned; else DamagedFile, nothing moved."""
    path = Path(path)
    try:
        return read(path)
    except (FileNotFoundError, PermissionError):  # not damage: the caller's own check, or the user's to fix
        raise
    except Exception as e:  # whatever the reader raises on bytes that are not what the toolkit wrote
        remedy, first = REMEDIES[path.name], (str(e).strip().splitlines() or [""])[0][:80]
        damaged = f"{path} is damaged ({type(e).__name__}{': ' + first if first else ''})"
        if notice is None or remedy.redo is None:
            raise DamagedFile(f"{damaged}; {remedy.fix.format(folder=path.parent)}") from None
        os.replace(path, path.with_name(path.name + DAMAGED))
        notice(f"{damaged}: set aside as {path.name}{DAMAGED}; {remedy.redo}")
        return None


def read_json_object(path: Path) -> dict:
    obj = read_json(path)
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    return obj


def read_table_text(path: Path, columns: tuple[str, ...] = ()) -> str:
    """A CSV table the toolkit wrote, as text: whole (its last line ends) and with ``columns`` in its header."""
    text = Path(path).read_bytes().decode()
    if not text.endswith("\n"):
        raise ValueError("cut off: its last line has no end")
    missing = [c for c in columns if c not in next(csv.reader([text.split("\n", 1)[0]]))]
    if missing:
        raise ValueError(f"no column {missing[0]!r}")
    return text


def check_zip(path: Path) -> Path:
    """An archive the toolkit wrote (torch.save, np.savez), whole: each member against its checksum."""
    with zipfile.ZipFile(path) as archive:
        if archive.testzip() is not None:
            raise ValueError("a member does not match its checksum")
    return Path(path)


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
    checkpoint = _File("checkpoint.pt")  # the last finished epoch of an unfinished run
    failed = _File("failed.json")  # why the run's last attempt failed
    # The run's block of each study probe table of the same name; probe.json last: settings and digests.
    probe_steps = _File("probe.csv")
    probe_runs = _File("probe_runs.csv")
    probe_recency = _File("probe_recency.csv")
    probe_examples = _File("probe_examples.csv")
    probe_record = _File("probe.json")
    # The record of a finished run, a few kB: what results.csv and figures need, committed under results/
    # (.gitignore lets exactly these through). HEAVY: what the probe needs besides, kept where it was made.
    LIGHT = tuple(f.name for f in (config, meta, result, history))
    HEAVY = tuple(f.name for f in (steps, examples, model))
    UNFINISHED = tuple(f.name for f in (checkpoint, failed))  # never copied to another store
    PROBE_TABLES = tuple(f.name for f in (probe_steps, probe_runs, probe_recency, probe_examples))

    def __init__(self, path: Path):
        self.dir = Path(path)

    def read_result(self) -> dict | None:
        """result.json; None when it is missing or damaged (a truncated copy, a bad disk)."""
        try:
            return read_json_object(self.result)
        except (ValueError, OSError):  # missing, or not a JSON object (json's errors are ValueErrors)
            return None

    def finished(self) -> bool:
        """The run finished and its record is whole: result.json reads back, and no file of it is missing."""
        return self.read_result() is not None and all((self.dir / name).exists() for name in self.LIGHT)

    def record(self) -> dict[Path, Callable]:
        """Each file of a finished run's record, with what reads it back."""
        readers = dict.fromkeys((self.config, self.meta, self.result), read_json_object)
        return {**readers, self.history: lambda path: read_table_text(path, ("epoch",))}

    def set_aside_damaged(self, notice: Callable[[str], None] = warn) -> bool:
        """Set aside each damaged file of a finished run's record (one line each to ``notice``): the run,
        its record no longer whole, is then trained again. True if a file was set aside."""
        if not self.result.exists():
            return False
        return any([read_back(path, read, notice) is None for path, read in self.record().items() if path.exists()])

    def write(self, files: dict[str, bytes]) -> None:
        """Write a run's files (name -> bytes) atomically, result.json last: its presence means the run is
        complete. A probe of the weights they replace goes first."""
        self.result.unlink(missing_ok=True)
        for name in (self.probe_record.name, *self.PROBE_TABLES):
            (self.dir / name).unlink(missing_ok=True)
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
    PROBE_PER_RUN = RunFolder.PROBE_TABLES  # a block of rows per run: the runs' own tables of the same name, joined
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


_AGAIN = "run the {} command that made the store again: it {}"
_SWEEPS = "sweep-lr or probe-epochs"
_RUN_OWN = (  # a finished run's weights and its records of them: training again makes other weights
    "the probe needs this finished run's own weights and records: restore the file from a copy, or delete {folder} "
    f"and train the run anew with the {_SWEEPS} command that made it"
)
_FINDER = Remedy("the LR finder is redone", "run `forgetting lr-find STUDY --store STORE` on that store again")
_PROBE = Remedy("the run's probe is redone", _AGAIN.format("probe-epochs", "writes the tables anew from each run's"))
# Every file the toolkit reads back, and what is done when it is damaged (docs/clusters.md: "Long jobs").
REMEDIES: dict[str, Remedy] = {
    **dict.fromkeys(RunFolder.LIGHT, Remedy("the run is redone", _AGAIN.format(_SWEEPS, "trains the run again"))),
    **dict.fromkeys(RunFolder.HEAVY, Remedy(None, _RUN_OWN)),
    RunFolder.checkpoint.name: Remedy("the run is redone from its first epoch", "delete it: the run starts anew"),
    **dict.fromkeys(StudyFolder.LR_FIND, _FINDER),
    **dict.fromkeys((*StudyFolder.PROBE_TABLES, RunFolder.probe_record.name), _PROBE),
    StudyFolder.study_json.name: Remedy(None, _AGAIN.format(_SWEEPS, "writes it anew")),
    StudyFolder.results.name: Remedy(None, _AGAIN.format("sweep-lr, probe-epochs or merge", "writes it anew")),
}


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
