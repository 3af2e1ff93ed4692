"""A study's record (study.json): what figures and merges know of a study without its TOML, data set included."""

from __future__ import annotations

from pathlib import Path

from forgetting.config import REFERENCE_DATA, recorded_data
from forgetting.datasets import Dataset
from forgetting.experiments.registry import KINDS
from forgetting.studies import ADDED_TRAIN_KEYS, COMMON_SCHEMA, STUDIES_DIR, Condition, Study, kind_sections


def _portable_source(source: str) -> str:
    """The study file as a path relative to the working folder or the toolkit (no machine path in tables)."""
    path = Path(source)
    for root in (Path.cwd(), STUDIES_DIR.parent):
        try:
            return str(path.resolve().relative_to(root.resolve()))
        except ValueError:
            continue
    return path.name


def data_record(data: Dataset) -> dict | None:
    """What a study.json says of its data set (no path: tables travel between machines); None for the
    reference CIFAR-10, which every study recorded before data sets had identities trained on."""
    if data.identity == REFERENCE_DATA:
        return None
    h, w = data.image_size
    return dict(
        name=data.name,
        fingerprint=data.fingerprint,
        image=[h, w, data.channels],
        classes=data.num_classes,
        train=data.train_size,
        test=data.test_size,
        mean=list(data.mean),
        std=list(data.std),
    )


def _recorded_keys(study: Study) -> dict:
    """The study's grid and the kinds' sections, less another kind's that not every record carries
    (`StudyKind.in_every_record`): a record written before that kind joined and one written since are
    the same study (`forgetting merge` compares them)."""
    others = [kind for name, kind in KINDS.items() if name != study.kind and not kind.in_every_record]
    grid = {k: v for k, v in study.grid.items() if not any(k in kind.grid_schema for kind in others)}
    sections = {k: v for k, v in study.sections.items() if not any(k in kind.sections for kind in others)}
    return dict(grid=grid, **sections)  # the kinds' own sections ([probe])


def study_record(study: Study, base_lr: float, data: Dataset | None = None) -> dict:
    """What figures need to know about a study without its TOML: name, kind, scale, resolved grid, data set."""
    defaults = {key: COMMON_SCHEMA["train"][key][1] for key in ADDED_TRAIN_KEYS}
    train = {k: v for k, v in study.train.items() if not (k in defaults and v == defaults[k])}
    record = dict(
        name=study.name,
        kind=study.kind,
        scale=study.scale,
        description=study.description,
        base_lr=base_lr,
        train=train,
        **_recorded_keys(study),
        conditions=[vars(c) for c in study.conditions],
        source=_portable_source(study.source),
    )
    if study.tau_law_from is not None:  # only when named: every other record stays as it was written
        record["tau_law_from"] = study.tau_law_from
    described = data_record(data) if data is not None else None
    return record if described is None else dict(record, data=described)


def study_from_record(record: dict) -> Study:
    """The study a study.json describes, complete enough to expand its runs (merge rebuilds results.csv so);
    [train] keys a record predates take their defaults."""
    identity = recorded_data(record)
    return Study(
        name=record["name"],
        kind=record["kind"],
        scale=record["scale"],
        description=record.get("description", ""),
        train={key: default for key, (_, default) in COMMON_SCHEMA["train"].items()} | record["train"],
        grid=record["grid"],
        lr_find={},
        sections={name: record.get(name) or {} for name in kind_sections()},
        conditions=tuple(Condition(**c) for c in record.get("conditions") or ()),
        source=record.get("source", ""),
        tau_law_from=record.get("tau_law_from"),
        data={"name": identity.name, "path": None, "fingerprint": identity.fingerprint},
    )
