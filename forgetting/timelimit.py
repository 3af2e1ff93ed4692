"""--time-limit: read a duration, and decide before each run whether it would end before the deadline."""

from __future__ import annotations

import re
import time
from typing import Callable

from forgetting.errors import UserError

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str, what: str = "--time-limit") -> float:
    """Seconds in ``text``: 90m, 2h, 3600s, 1.5h, or plain seconds (3600)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([smhd]?)\s*", str(text))
    if not m or float(m.group(1)) <= 0:
        raise UserError(f"{what} must be a duration such as 90m, 2h, 3600s or 3600 (seconds), not {text!r}")
    return float(m.group(1)) * UNITS[m.group(2) or "s"]


class TimeBudget:
    """Starts no run that the pace measured in this invocation says would end after the deadline.

    The pace is seconds per unit of work (subset x epochs + evaluation, as the ETA weighs runs) over the
    runs finished so far; before one has finished there is no pace, so a run may start.
    """

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.seconds = float(seconds)
        self.deadline = clock() + self.seconds
        self.work_done = 0.0
        self.seconds_spent = 0.0
        self.stopped = False  # set once a run was refused: no later run starts either

    def finished(self, work: float, seconds: float) -> None:
        self.work_done += work
        self.seconds_spent += seconds

    def predicted(self, work: float) -> float | None:
        """Seconds a run of ``work`` would take at the measured pace; None before any run finished."""
        return None if self.work_done <= 0 else work * self.seconds_spent / self.work_done

    def allows(self, work: float) -> bool:
        if not self.stopped:
            need = self.predicted(work)
            self.stopped = need is not None and self.clock() + need > self.deadline
        return not self.stopped
