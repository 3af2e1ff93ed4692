"""Files on disk: atomic writes, run directories and the store lock.

Every file that marks something as finished is written to a temporary name in the same folder and
renamed into place, so a killed process leaves either the old file or the new one, never half of one.
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
