"""Study files (TOML) -> validated, resolved studies. Studies are data, not code.

A study names its kind (``lr-sweep`` or ``probe``), the training settings shared by its runs, and a
grid (LR multipliers x subset sizes or conditions x seeds). Every key is checked: an unknown key or
a bad value is one line naming the file and the key.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

from forgetting import config, lr_settings, models
from forgetting.checks import SIZE
from forgetting.checks import base_lr as _base_lr, boolean as _boolean, list_of as _list_of
from forgetting.checks import number as _number, one_of as _one_of, string as _string
from forgetting.experiments.base import StudyError
from forgetting.experiments.registry import KINDS, kind_named

STUDIES_DIR = Path(__file__).resolve().parent.parent / "studies"


# section -> key -> (check, default); a default of ... means required. The kinds add theirs (`schema`).
COMMON_SCHEMA: dict[str, dict[str, tuple]] = {
    "study": {
        "name": (_string, ...),
        "kind": (_string, ...),  # a registered kind (`schema` names them)
        "scale": (_string, ...),  # one line saying what scale this is, printed on every figure
        "description": (_string, ""),
        "tensorboard": (_string, None),  # a folder for TensorBoard's live curves (--tensorboard)
    },
    "train": {
        "net": (_one_of(*models.NETS), "dawn18"),
        "width": (_number(positive=True), 1.0),
        "batch_size": (_number(integer=True, lo=1), 512),
        "epochs": (_number(integer=True, lo=1), 30),
        "warmup": (_number(lo=0), 5),  # epochs of linear warm-up, then constant LR
        "augment": (_boolean, True),
        "cutout": (_number(integer=True, lo=0, hi=32), 0),
        "eval_every": (_number(integer=True, lo=0), 0),
        "eval_last": (_number(integer=True, lo=0), 0),  # also evaluate on each of the last N epochs
        "eval_train": (_boolean, False),  # also the clean training subset on each evaluated epoch
        "bn_init": (_one_of(*config.BN_INITS), "default"),
        "shortcut": (_one_of(*models.SHORTCUTS), "page"),
        "precision": (_one_of(*config.PRECISIONS), "auto"),  # auto: AMP on CUDA, fp32 on CPU
        "drop_last": (_boolean, False),  # false = Page's loader: each epoch ends with the partial batch
        "compile": (_boolean, None),  # torch.compile; left out = on for CUDA, off on CPU
    },
    "grid": {
        "multipliers": (_list_of(_number(positive=True)), ...),
        "seeds": (_list_of(_number(integer=True, lo=0)), [0]),
        "base_lr": (_base_lr, "find"),
    },
    "lr_find": {
        "method": (_one_of(*lr_settings.METHODS), lr_settings.DEFAULT_METHOD),
        "steps": (_number(integer=True, lo=10), lr_settings.NUM_STEPS),
        "start_lr": (_number(positive=True), lr_settings.START_LR),
        "end_lr": (_number(positive=True), lr_settings.END_LR),
        "seeds": (_list_of(_number(integer=True, lo=0)), [0]),
        "subset": (SIZE, None),  # default: the study's largest subset
    },
}


def schema() -> dict[str, dict[str, tuple]]:
    """Every section a study file may have: the common ones, each kind's [grid] keys and its own sections
    (every study has them all, defaulted, so that a study's record does not depend on which kinds exist)."""
    out = {name: dict(section) for name, section in COMMON_SCHEMA.items()}
    out["study"]["kind"] = (_one_of(*KINDS), ...)
    for kind in KINDS.values():
        out["grid"].update(kind.grid_schema)
        for name, section in kind.sections.items():
            out[name] = dict(section)
    return out


def kind_sections() -> tuple[str, ...]:
    """The sections the kinds own (a study's ``sections``)."""
    return tuple(name for kind in KINDS.values() for name in kind.sections)
CONDITION_SCHEMA = {
    "name": (_string, ...),
    "fraction": (_number(positive=True, hi=1), ...),  # of the study's subset
    "augment": (_boolean, ...),
}


@dataclass(frozen=True)
class Condition:
    name: str
    fraction: float
    augment: bool


@dataclass(frozen=True)
class Study:
    name: str
    kind: str
    scale: str
    description: str
    train: dict
    grid: dict
    lr_find: dict
    sections: dict = field(default_factory=dict)  # the sections the kinds own ([probe]), by name
    conditions: tuple[Condition, ...] = field(default_factory=tuple)
    source: str = ""
    tensorboard: str | None = None  # a folder for TensorBoard's live curves; not part of what the study is

    @property
    def experiment(self):
        """The study's kind (`experiments.base.StudyKind`): its grid, stage after training and report."""
        return kind_named(self.kind)

    @property
    def probe(self) -> dict:
        return self.sections.get("probe", {})

    def with_overrides(self, **overrides) -> "Study":
        """Apply command-line overrides (None = keep), validating them like file values."""
        rules = schema()
        sections = {"train": dict(self.train), "grid": dict(self.grid)}
        sections |= {name: dict(self.sections.get(name, {})) for name in kind_sections()}
        changed = []
        for key, value in overrides.items():
            if value is None:
                continue
            section = next(name for name in sections if key in rules[name])
            msg = rules[section][key][0](value)
            if msg:
                raise StudyError(f"--{key.replace('_', '-')} {value!r} {msg}")
            if value != sections[section][key]:
                changed.append(key)
            sections[section][key] = value
        own = {name: sections.pop(name) for name in kind_sections()}
        study = replace(self, **sections, sections=own)
        if changed:
            _check_consistency(study, "command line")
            # The file's scale line describes the file's runs: a figure of other runs must not carry it.
            study = replace(study, scale=f"{resolved_scale(study)} (overridden: {', '.join(changed)})")
        return study

    def largest_subset(self) -> int:
        return self.experiment.largest_subset(self)


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def resolved_scale(study: Study) -> str:
    """A scale line read off the study's resolved settings, in the words of the study files' own lines."""
    t = study.train
    parts = [
        f"{t['net']} width {t['width']:g}",
        f"batch {t['batch_size']}",
        f"{_count(t['epochs'], 'epoch')} ({t['warmup']:g} warm-up then constant LR)",
    ]
    parts.append(study.experiment.scale_words(study))
    parts.append(_count(len(study.grid["seeds"]), "seed"))
    if t["precision"] != "auto":
        parts.append(t["precision"])
    return ", ".join(parts)


def _validate_section(name: str, table, schema: dict, where: str) -> dict:
    if not isinstance(table, dict):
        raise StudyError(f"{where}: [{name}] must be a table")
    unknown = sorted(set(table) - set(schema))
    if unknown:
        raise StudyError(f"{where}: unknown key '{name}.{unknown[0]}' (known: {', '.join(schema)})")
    out = {}
    for key, (check, default) in schema.items():
        if key in table:
            msg = check(table[key])
            if msg:
                raise StudyError(f"{where}: '{name}.{key}' = {table[key]!r} {msg}")
            out[key] = table[key]
        elif default is ...:
            raise StudyError(f"{where}: missing required key '{name}.{key}'")
        else:
            out[key] = default
    return out


def _check_consistency(study: Study, where: str) -> None:
    study.experiment.check(study, where)
    small = min(subset for subset, _, _ in study.experiment.cells(study))
    if study.train["batch_size"] > small:
        raise StudyError(
            f"{where}: batch size {study.train['batch_size']} is larger than the smallest subset ({small})"
        )
    if study.train["eval_last"] > study.train["epochs"]:
        raise StudyError(f"{where}: eval_last {study.train['eval_last']} is longer than epochs {study.train['epochs']}")
    if study.train["warmup"] > study.train["epochs"]:
        raise StudyError(f"{where}: warmup {study.train['warmup']} is longer than epochs {study.train['epochs']}")
    if study.lr_find["start_lr"] >= study.lr_find["end_lr"]:
        raise StudyError(f"{where}: 'lr_find.start_lr' must be below 'lr_find.end_lr'")


def parse_study(doc: dict, where: str) -> Study:
    rules = schema()
    sections = dict(rules, conditions=None)
    unknown = sorted(set(doc) - set(sections))
    if unknown:
        raise StudyError(f"{where}: unknown section [{unknown[0]}] (known: {', '.join(sections)})")
    parsed = {name: _validate_section(name, doc.get(name, {}), keys, where) for name, keys in rules.items()}
    conds = doc.get("conditions", [])
    if not isinstance(conds, list):
        raise StudyError(f"{where}: 'conditions' must be an array of tables ([[conditions]])")
    conditions = tuple(Condition(**_validate_section("conditions", c, CONDITION_SCHEMA, where)) for c in conds)
    if len({c.name for c in conditions}) != len(conditions):
        raise StudyError(f"{where}: condition names must be unique")
    sections = {name: parsed[name] for name in ("train", "grid", "lr_find")}
    own = {name: parsed[name] for name in kind_sections()}
    study = Study(**parsed["study"], **sections, sections=own, conditions=conditions, source=where)
    _check_consistency(study, where)
    return study


def study_path(name_or_path: str) -> Path:
    """A path to a .toml, or the name of a study in ./studies or the toolkit's studies/ folder."""
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists():
        if not p.is_file():
            raise StudyError(f"{p}: no such study file")
        return p
    for folder in (Path.cwd() / "studies", STUDIES_DIR):
        if (folder / f"{name_or_path}.toml").is_file():
            return folder / f"{name_or_path}.toml"
    known = sorted(q.stem for q in STUDIES_DIR.glob("*.toml"))
    raise StudyError(f"no study named {name_or_path!r} (known: {', '.join(known)})")


def load_study(name_or_path: str, kind: str | None = None) -> Study:
    path = study_path(name_or_path)
    try:
        doc = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise StudyError(f"{path}: not valid TOML ({e})") from None
    study = parse_study(doc, str(path))
    if kind is not None and study.kind != kind:
        raise StudyError(f"{path}: is a '{study.kind}' study, this command needs a '{kind}' study")
    return study
