"""Study files (TOML) -> validated, resolved studies. Studies are data, not code.

A study names its kind (``lr-sweep`` or ``probe``), the training settings shared by its runs, and a
grid (LR multipliers x subset sizes or conditions x seeds). Every key is checked: an unknown key or
a bad value is one line naming the file and the key.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

from forgetting import config, datasets, lr_settings, nets, optimizers
from forgetting.checks import SIZE
from forgetting.checks import base_lr as _base_lr, boolean as _boolean, list_of as _list_of
from forgetting.checks import number as _number, one_of as _one_of, string as _string
from forgetting.datasets import DataIdentity
from forgetting.errors import UserError
from forgetting.experiments.base import StudyError
from forgetting.experiments.registry import KINDS, kind_named

STUDIES_DIR = Path(__file__).resolve().parent.parent / "studies"


def _net(v):
    try:
        nets.check_known(v)
    except UserError:
        return f"must be one of {', '.join(nets.registry.REGISTRY)} or 'package.module:factory'"
    return None


def _optimizer(v):
    return None if v in optimizers.REGISTRY else f"must be one of {', '.join(optimizers.REGISTRY)}"


def _betas(v):
    ok = isinstance(v, list) and len(v) == 2 and all(_number(lo=0, hi=0.999999)(b) is None for b in v)
    return None if ok else "must be two numbers in [0, 1), e.g. [0.9, 0.999]"


def _dataset_name(v):
    return None if isinstance(v, str) and datasets.registry.NAME.fullmatch(v) else "must be a data set's name"


# section -> key -> (check, default); a default of ... means required. The kinds add theirs (`schema`).
COMMON_SCHEMA: dict[str, dict[str, tuple]] = {
    "study": {
        "name": (_string, ...),
        "kind": (_string, ...),  # a registered kind (`schema` names them)
        "scale": (_string, ...),  # one line saying what scale this is, printed on every figure
        "description": (_string, ""),
        "tensorboard": (_string, None),  # a folder for TensorBoard's live curves (--tensorboard)
        # an LR sweep's forgetting prediction: the probe study (in the same store) whose tau law it reads;
        # left out, the one trained like it over the most learning rates (experiments/lr_sweep.py)
        "tau_law_from": (_string, None),
    },
    "train": {
        "net": (_net, "dawn18"),  # a built-in network, or a user's "package.module:factory"
        "width": (_number(positive=True), 1.0),
        "batch_size": (_number(integer=True, lo=1), 512),
        "epochs": (_number(integer=True, lo=1), 30),
        "warmup": (_number(lo=0), 5),  # epochs of linear warm-up, then constant LR
        "augment": (_boolean, True),
        "flip": (_boolean, None),  # with augment: flip too; left out = the data set's default (off for digits)
        "cutout": (_number(integer=True, lo=0), 0),  # at most the images' side: checked with the data set
        "eval_every": (_number(integer=True, lo=0), 0),
        "eval_last": (_number(integer=True, lo=0), 0),  # also evaluate on each of the last N epochs
        "eval_train": (_boolean, False),  # also the clean training subset on each evaluated epoch
        "bn_init": (_one_of(*config.BN_INITS), "default"),
        "shortcut": (_one_of(*nets.SHORTCUTS), "page"),
        "precision": (_one_of(*config.PRECISIONS), "auto"),  # auto: AMP on CUDA, fp32 on CPU
        "drop_last": (_boolean, False),  # false = Page's loader: each epoch ends with the partial batch
        "compile": (_boolean, None),  # torch.compile; left out = on for CUDA, off on CPU
        "optimizer": (_optimizer, "sgd"),  # sgd (Page's Nesterov SGD) or adamw
        "momentum": (_number(lo=0, hi=0.999999), 0.9),  # sgd
        "weight_decay": (_number(lo=0), 5e-4),  # sgd: L2 in the mean-loss convention; adamw: decoupled
        "betas": (_betas, [0.9, 0.999]),  # adamw
        "eps": (_number(positive=True), 1e-8),  # adamw
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
    "data": {
        "name": (_dataset_name, "cifar10"),  # a built-in data set (`forgetting data`) or the name of the user's own
        "path": (_string, None),  # its .npz or folder, relative to the study file; default: as `forgetting data`
    },
}
# [train] keys added after studies were recorded (study.json): left out of a record at their default, so
# that a study recorded before them and one recorded since are the same study (`forgetting merge`).
ADDED_TRAIN_KEYS = ("flip", "optimizer", "momentum", "weight_decay", "betas", "eps")
# Command-line overrides of the [data] section, by the options' names.
DATA_OVERRIDES = {"dataset": "name", "data": "path"}


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
    tau_law_from: str | None = None  # the probe study an LR sweep's forgetting prediction reads (report only)
    data: dict = field(default_factory=lambda: {"name": "cifar10", "path": None})  # the [data] section

    @property
    def experiment(self):
        """The study's kind (`experiments.base.StudyKind`): its grid, stage after training and report."""
        return kind_named(self.kind)

    @property
    def probe(self) -> dict:
        return self.sections.get("probe", {})

    def with_overrides(self, **overrides) -> "Study":
        """Apply command-line overrides (None = keep), validating them like file values."""
        overrides = self._data_overrides(overrides)
        data = overrides.pop("_data")
        rules = schema()
        sections = {"train": dict(self.train), "grid": dict(self.grid)}
        sections |= {name: dict(self.sections.get(name, {})) for name in kind_sections()}
        changed = [] if overrides.pop("_same_data") else ["dataset"]
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
        study = replace(self, **sections, sections=own, data=data)
        if changed:
            _check_consistency(study, "command line")
            # The file's scale line describes the file's runs: a figure of other runs must not carry it.
            study = replace(study, scale=f"{resolved_scale(study)} (overridden: {', '.join(changed)})")
        return study

    def _data_overrides(self, overrides: dict) -> dict:
        """``dataset`` and ``data`` (its file) as the [data] section they make; another data set drops the
        file the study names for its own."""
        overrides = dict(overrides)
        name, path = (overrides.pop(key, None) for key in DATA_OVERRIDES)
        data = dict(self.data)
        if name is not None:
            msg = _dataset_name(name)
            if msg:
                raise StudyError(f"--dataset {name!r} {msg}")
            data = {"name": name, "path": None} if name != self.data["name"] else data
        if path is not None:
            data["path"] = str(path)
        return dict(overrides, _data=data, _same_data=data["name"] == self.data["name"])

    def largest_subset(self) -> int:
        return self.experiment.largest_subset(self)

    def data_identity(self) -> DataIdentity:
        """The identity of the study's data set without loading it: the one a study.json recorded, or the
        official release of a built-in data set whose fingerprint is known (CIFAR-10)."""
        if self.data.get("fingerprint"):
            return DataIdentity(self.data["name"], self.data["fingerprint"])
        known = datasets.reference(self.data["name"])
        if known is None:
            raise StudyError(f"{self.name}: the ids of its runs name data set {self.data['name']!r}: load it first")
        return known

    def load_data(self) -> datasets.Dataset:
        """The study's data set, loaded as its [data] section (or `--dataset`/`--data`) says."""
        return datasets.load_dataset(self.data["name"], self.data["path"])

    def check_data(self, data: datasets.Dataset) -> None:
        """Refuse, before training, a grid that asks more of ``data`` than it has."""
        largest = self.largest_subset()
        if largest > data.train_size:
            raise StudyError(f"{self.name}: subset {largest:,} is larger than {data.name}'s {data.train_size:,} images")
        if self.train["cutout"] > min(data.image_size):
            raise StudyError(f"{self.name}: cutout {self.train['cutout']} is larger than {data.name}'s images")
        self.experiment.check_data(self, data)


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def resolved_scale(study: Study) -> str:
    """A scale line read off the study's resolved settings, in the words of the study files' own lines."""
    t = study.train
    parts = [] if study.data["name"] == "cifar10" else [study.data["name"]]
    parts += [
        f"{t['net']} width {t['width']:g}",
        f"batch {t['batch_size']}",
        f"{_count(t['epochs'], 'epoch')} ({t['warmup']:g} warm-up then constant LR)",
    ]
    parts.append(study.experiment.scale_words(study))
    parts.append(_count(len(study.grid["seeds"]), "seed"))
    if t["precision"] != "auto":
        parts.append(t["precision"])
    if t.get("optimizer", "sgd") != "sgd":
        parts.append(t["optimizer"])
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
    sizes = [subset for subset, _, _ in study.experiment.cells(study)]
    spec = datasets.spec_for(study.data["name"])
    if spec.sizes is not None and max(sizes) > spec.sizes[0]:  # another data set's size is checked once it loads
        key = next(iter(study.experiment.grid_schema))  # the kind's own size key (sizes, subset)
        key = f"--{key}" if where == "command line" else f"'grid.{key}'"
        raise StudyError(f"{where}: {key} asks for {max(sizes):,} images, {spec.label} has {spec.sizes[0]:,}")
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


def _data_section(data: dict, where: str) -> dict:
    """[data] with its path relative to the study file's folder made absolute (it is read from anywhere)."""
    if data["path"] is not None and where and not Path(data["path"]).expanduser().is_absolute():
        return dict(data, path=str(Path(where).resolve().parent / data["path"]))
    return data


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
    data = _data_section(parsed["data"], where)
    study = Study(**parsed["study"], **sections, sections=own, conditions=conditions, source=where, data=data)
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
