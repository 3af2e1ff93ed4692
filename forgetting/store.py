"""Files on disk: atomic writes, run directories and the store lock.

Every file that marks something as finished is written to a temporary name in the same folder and
renamed into place, so a killed process leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import math
import os
import socket
import tempfile
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from forgetting.errors import UserError


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
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
