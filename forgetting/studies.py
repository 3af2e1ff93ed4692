"""Study files (TOML) -> validated, resolved studies. Studies are data, not code.

A study names its kind (``lr-sweep`` or ``probe``), the training settings shared by its runs, and a
grid (LR multipliers x subset sizes or conditions x seeds). Every key is checked: an unknown key or
a bad value is one line naming the file and the key.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

from forgetting import config, data as data_mod, lr_settings, models
from forgetting.errors import UserError

STUDIES_DIR = Path(__file__).resolve().parent.parent / "studies"
KINDS = ("lr-sweep", "probe")


class StudyError(UserError):
    pass


def _number(positive=False, integer=False, lo=None, hi=None):
    def check(v):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and not isinstance(v, int)):
            return f"must be {'an integer' if integer else 'a number'}"
        if not math.isfinite(v):  # TOML and the command line both accept inf and nan
            return "must be finite and positive" if positive else "must be finite"
        if positive and not v > 0:
            return "must be finite and positive"
        if lo is not None and v < lo:
            return f"must be at least {lo}"
        if hi is not None and v > hi:
            return f"must be at most {hi:,}"
        return None

    return check


def _list_of(item_check, nonempty=True):
    def check(v):
        if not isinstance(v, list) or (nonempty and not v):
            return "must be a non-empty list"
        for x in v:
            msg = item_check(x)
            if msg:
                return f"has an element {x!r} that {msg}"
        if len(set(map(repr, v))) != len(v):
            return "has repeated values"
        return None

    return check


def _one_of(*choices):
    return lambda v: None if v in choices else f"must be one of {', '.join(map(str, choices))}"


def _string(v):
    return None if isinstance(v, str) else "must be a string"


def _boolean(v):
    return None if isinstance(v, bool) else "must be true or false"


def _base_lr(v):
    if v == "find":
        return None
    msg = _number(positive=True)(v)
    return None if msg is None else 'must be "find" or a positive number'


SIZE = _number(integer=True, lo=1, hi=data_mod.TRAIN_SIZE)

# section -> key -> (check, default); a default of ... means required.
SCHEMA: dict[str, dict[str, tuple]] = {
    "study": {
        "name": (_string, ...),
        "kind": (_one_of(*KINDS), ...),
        "scale": (_string, ...),  # one line saying what scale this is, printed on every figure
        "description": (_string, ""),
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
        "sizes": (_list_of(SIZE), None),  # lr-sweep: subset sizes
        "subset": (SIZE, None),  # probe: size of the full condition
    },
    "lr_find": {
        "method": (_one_of(*lr_settings.METHODS), lr_settings.DEFAULT_METHOD),
        "steps": (_number(integer=True, lo=10), lr_settings.NUM_STEPS),
        "start_lr": (_number(positive=True), lr_settings.START_LR),
        "end_lr": (_number(positive=True), lr_settings.END_LR),
        "seeds": (_list_of(_number(integer=True, lo=0)), [0]),
        "subset": (SIZE, None),  # default: the study's largest subset
    },
    "probe": {
        "last_epochs": (_number(integer=True, lo=0), 0),  # 0 = every epoch
        "bn": (_one_of(*config.BN_MODES), "eval"),
    },
}
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
    probe: dict
    conditions: tuple[Condition, ...] = field(default_factory=tuple)
    source: str = ""

    def with_overrides(self, **overrides) -> "Study":
        """Apply command-line overrides (None = keep), validating them like file values."""
        sections = {"train": dict(self.train), "grid": dict(self.grid), "probe": dict(self.probe)}
        changed = []
        for key, value in overrides.items():
            if value is None:
                continue
            section = next(name for name in sections if key in SCHEMA[name])
            msg = SCHEMA[section][key][0](value)
            if msg:
                raise StudyError(f"--{key.replace('_', '-')} {value!r} {msg}")
            if value != sections[section][key]:
                changed.append(key)
            sections[section][key] = value
        study = replace(self, **sections)
        if changed:
            _check_consistency(study, "command line")
            # The file's scale line describes the file's runs: a figure of other runs must not carry it.
            study = replace(study, scale=f"{resolved_scale(study)} (overridden: {', '.join(changed)})")
        return study

    def largest_subset(self) -> int:
        return max(self.grid["sizes"]) if self.kind == "lr-sweep" else self.grid["subset"]


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
    if study.kind == "probe":
        parts.append(f"{study.grid['subset']:,} images")
    else:
        parts.append(
            ("crop+flip" + (f", cutout {t['cutout']}" if t["cutout"] else "")) if t["augment"] else "no augmentation"
        )
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
    if study.kind == "lr-sweep" and not study.grid.get("sizes"):
        raise StudyError(f"{where}: an lr-sweep study needs 'grid.sizes'")
    if study.kind == "probe":
        if not study.grid.get("subset"):
            raise StudyError(f"{where}: a probe study needs 'grid.subset'")
        if not study.conditions:
            raise StudyError(f"{where}: a probe study needs at least one [[conditions]] table")
    sizes = (
        study.grid["sizes"]
        if study.kind == "lr-sweep"
        else [max(1, round(c.fraction * study.grid["subset"])) for c in study.conditions]
    )
    small = min(sizes)
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
    sections = dict(SCHEMA, conditions=None)
    unknown = sorted(set(doc) - set(sections))
    if unknown:
        raise StudyError(f"{where}: unknown section [{unknown[0]}] (known: {', '.join(sections)})")
    parsed = {name: _validate_section(name, doc.get(name, {}), schema, where) for name, schema in SCHEMA.items()}
    conds = doc.get("conditions", [])
    if not isinstance(conds, list):
        raise StudyError(f"{where}: 'conditions' must be an array of tables ([[conditions]])")
    conditions = tuple(Condition(**_validate_section("conditions", c, CONDITION_SCHEMA, where)) for c in conds)
    if len({c.name for c in conditions}) != len(conditions):
        raise StudyError(f"{where}: condition names must be unique")
    sections = {name: parsed[name] for name in ("train", "grid", "lr_find", "probe")}
    study = Study(**parsed["study"], **sections, conditions=conditions, source=where)
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
