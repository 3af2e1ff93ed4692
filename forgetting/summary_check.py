"""Do a folder's committed summary.json files still follow from its tables? (`forgetting figures --check`)

Every study folder is regenerated into a temporary folder and its new summary.json compared with the
committed one: verdicts, strings, booleans, None and the shape of the record must be identical; numbers
may differ by REL_TOL relative. The figures are drawn too (so that a figure that no longer draws fails
the check) and thrown away with the temporary folder; nothing under the store is written.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from forgetting import report
from forgetting.store import StudyFolder, read_json_object

# The same tables give other last digits on another CPU type (NumPy's BLAS picks its kernels per
# processor): fits differ in the 7th significant digit, the largest relative difference measured 8.3e-7
# (Intel Xeon against AMD EPYC). 1e-5 passes that with room and still catches any change a reader of
# the 3 or 4 digits the results quote could see.
REL_TOL = 1e-5
# A number this close to zero (a fitted offset, a difference of two equal losses) is compared absolutely:
# relative to nearly nothing, rounding noise would read as a change.
ABS_TOL = 1e-12


@dataclass
class Difference:
    file: Path
    path: str  # where in the record: verdicts.tau_law.taus[2].tau
    committed: object
    regenerated: object
    relative: float | None = None  # numbers only: |a - b| / max(|a|, |b|)

    def line(self) -> str:
        what = f" (relative {self.relative:.2g})" if self.relative is not None else ""
        a, b = _short(self.committed), _short(self.regenerated)
        return f"{self.file}: {self.path}: committed {a}, regenerated {b}{what}"


def _short(value) -> str:
    """A value for one line: a record or a list by its size (its own differences are named one by one)."""
    if isinstance(value, dict):
        return f"a record of {len(value)} keys"
    if isinstance(value, list):
        return f"a list of {len(value)} items"
    return repr(value)


class _Note(str):
    """What stands where a value is not: printed as it is, unlike a string of the record (quoted)."""

    def __repr__(self) -> str:
        return str(self)


MISSING = _Note("(missing)")


@dataclass
class Comparison:
    """What comparing records found: the differences beyond tolerance, and the largest numeric difference
    of all (within tolerance or not), for the report."""

    differences: list[Difference] = field(default_factory=list)
    largest: Difference | None = None
    numbers: int = 0  # numbers compared

    @property
    def ok(self) -> bool:
        return not self.differences

    def lines(self) -> list[str]:
        if self.largest is None:
            largest = f"no number differs ({self.numbers} compared)"
        else:
            largest = f"largest difference of {self.numbers} numbers: {self.largest.line()}"
        n = len(self.differences)
        verdict = f"within {REL_TOL:g} relative" if self.ok else f"{n} difference{'s' if n > 1 else ''}"
        return [d.line() for d in self.differences] + [largest, f"summary.json: {verdict}"]


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _compare_numbers(a: float, b: float, where: str, file: Path, out: Comparison) -> None:
    out.numbers += 1
    if (math.isnan(a) and math.isnan(b)) or a == b:
        return
    if not (math.isfinite(a) and math.isfinite(b)):  # inf against a number, NaN against a number
        out.differences.append(Difference(file, where, a, b))
        return
    gap = abs(a - b)
    rel = gap / max(abs(a), abs(b))
    if out.largest is None or rel > (out.largest.relative or 0.0):
        out.largest = Difference(file, where, a, b, rel)
    if gap > ABS_TOL and rel > REL_TOL:
        out.differences.append(Difference(file, where, a, b, rel))


def compare(committed, regenerated, file: Path | str = "summary.json", out: Comparison | None = None, where=""):
    """Compare two JSON records (dicts, lists, strings, numbers, booleans, None) into ``out`` (a new
    Comparison by default), which it returns; ``where`` is the path of these values in the record."""
    out = Comparison() if out is None else out
    file = Path(file)
    if isinstance(committed, dict) and isinstance(regenerated, dict):
        for key in list(committed) + [k for k in regenerated if k not in committed]:
            at = f"{where}.{key}" if where else str(key)
            if key not in regenerated:
                out.differences.append(Difference(file, at, committed[key], MISSING))
            elif key not in committed:
                out.differences.append(Difference(file, at, MISSING, regenerated[key]))
            else:
                compare(committed[key], regenerated[key], file, out, at)
    elif isinstance(committed, list) and isinstance(regenerated, list):
        if len(committed) != len(regenerated):
            out.differences.append(Difference(file, where, committed, regenerated))
        for i, (a, b) in enumerate(zip(committed, regenerated)):
            compare(a, b, file, out, f"{where}[{i}]")
    elif _number(committed) and _number(regenerated):
        _compare_numbers(float(committed), float(regenerated), where, file, out)
    elif type(committed) is not type(regenerated) or committed != regenerated:
        out.differences.append(Difference(file, where or "(the record)", committed, regenerated))
    return out


def check_store(store: Path) -> Comparison:
    """Regenerate every study folder under ``store`` into a temporary folder and compare each new
    summary.json with the committed one beside its tables. A folder without one is a difference."""
    store = Path(store)
    out = Comparison()
    with tempfile.TemporaryDirectory(prefix="forgetting-check-") as tmp:
        for rep in report.regenerate(store, Path(tmp)):
            committed = StudyFolder(rep.source).summary
            if not committed.exists():
                out.differences.append(Difference(committed, "(the file)", MISSING, _Note("(regenerated)")))
                continue
            try:
                record = read_json_object(committed)
            except ValueError as e:  # damaged or not a record: what it held cannot be compared
                unreadable = _Note(f"(unreadable: {e})")
                out.differences.append(Difference(committed, "(the file)", unreadable, _Note("(regenerated)")))
                continue
            compare(record, read_json_object(StudyFolder(rep.folder).summary), committed, out)
    return out
