"""How a command ends: a UserError is one line on stderr and exit code 2, never a traceback; SIGTERM and
Ctrl-C stop it with one line saying the same command resumes; a time limit ends it with what was done kept."""

from __future__ import annotations

import signal
import sys

from forgetting.errors import UserError

_TERMINATED: list[int] = []  # the signal that ended the command, if one did


def _terminate(signum, frame) -> None:
    """SIGTERM (what SLURM sends at a time limit or preemption) stops the command as Ctrl-C does: the
    run in flight keeps its last epoch checkpoint. A second SIGTERM kills at once."""
    _TERMINATED.append(signum)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise KeyboardInterrupt


def _interrupted() -> None:
    if _TERMINATED:
        print("terminated: run the same command again to resume", file=sys.stderr)
        sys.exit(128 + signal.SIGTERM)  # the status a shell reports for a process SIGTERM ended
    print("interrupted: run the same command again to resume", file=sys.stderr)
    sys.exit(130)


def run(app) -> None:
    """Run the typer ``app`` with the exits above."""
    from forgetting.errors import Stopped
    from forgetting.store import DISK_FULL, disk_full_error

    _TERMINATED.clear()
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        app()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except Stopped as e:  # the time limit: what was done is kept, the same command again continues
        print(e, file=sys.stderr)
        sys.exit(0)
    except OSError as e:  # a write that went around the store's own (a library's): still one line
        if e.errno not in DISK_FULL:
            raise
        print(f"error: {disk_full_error(e.filename)}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:  # one that came before or after typer's own handling
        _interrupted()
    except SystemExit as e:
        if e.code == 130:  # typer turns Ctrl-C into exit code 130 itself
            _interrupted()
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
