"""The study kinds by name (``[study] kind``): the built-ins join as a user's own kind would."""

from __future__ import annotations

from forgetting.experiments.base import StudyKind, StudyError
from forgetting.experiments.lr_sweep import LrSweep
from forgetting.experiments.probe import ProbeStudy
from forgetting.experiments.prune import PruneStudy

KINDS: dict[str, StudyKind] = {}


def register(kind: StudyKind) -> StudyKind:
    """Make ``kind`` a study file's ``[study] kind = "<kind.name>"``."""
    KINDS[kind.name] = kind
    return kind


def kind_named(name: str) -> StudyKind:
    if name not in KINDS:
        raise StudyError(f"unknown study kind {name!r} (known: {', '.join(KINDS)})")
    return KINDS[name]


for _builtin in (LrSweep(), ProbeStudy(), PruneStudy()):
    register(_builtin)
