"""A study's per-example forgetting scores from its stored records: what `forgetting scores` and
`forgetting.scores` do (the scores themselves: `analysis.scores`).

The runs pooled are one group of a study's finished runs, one run per seed: one condition, LR multiplier and
subset size. Each run's statistics come from the study's probe_examples.csv where the study was probed (a
probe study's, committed under results/), else from each run's examples.npz (a store's heavy files), with
the labels of the data set the runs trained on.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from forgetting.analysis import scores as fs
from forgetting.analysis import tables
from forgetting.errors import UserError
from forgetting.store import RunFolder, StudyFolder, atomic_write_bytes, check_zip, json_bytes, read_back
from forgetting.store import read_json_object, read_table_text, study_folders

GROUP = ("condition", "multiplier", "subset")  # what one pool of runs shares; its runs differ by seed
OPTIONS = {"condition": "--condition", "multiplier": "--multiplier", "subset": "--subset"}
SCORES_FOLDER = "scores"  # inside the study folder, where `forgetting scores` writes by default


@dataclass
class Pool:
    """One group of a study's runs and each run's per-example statistics (`analysis.scores.RUN_COLUMNS`)."""

    study: dict  # its study.json
    folder: Path
    group: dict  # condition, multiplier, subset
    runs: pd.DataFrame  # run, seed, ...: one row per run pooled
    per_run: pd.DataFrame  # one row per run and example presented
    source: str  # the files the statistics came from
    classes: list[str] = field(default_factory=list)  # class names by label, where the data set names them

    @property
    def tag(self) -> str:
        """The group in a file name: full-aug_x4_5120."""
        c, m, s = (self.group[k] for k in GROUP)
        parts = [c] if c else []
        parts.append(f"x{m:g}")
        if s is not None and np.isfinite(s):
            parts.append(f"{int(s)}")
        return "_".join(parts)

    def describe(self) -> str:
        c, m, s = (self.group[k] for k in GROUP)
        size = f", {int(s):,} images" if s is not None and np.isfinite(s) else ""
        seeds = len(self.runs)
        return f"{c + ' ' if c else ''}LR x{m:g}{size}, {seeds} seed{'s' if seeds != 1 else ''}"


def _table(path: Path) -> pd.DataFrame:
    return read_back(path, lambda p: pd.read_csv(io.StringIO(read_table_text(p)), dtype={"run": str}))


def find_study(store: Path, study: str | None) -> Path:
    """The study folder: ``store`` itself where it is one, else ``store/<study>``; without ``study`` the one
    study ``store`` holds (several: refused, naming them)."""
    folders = study_folders(Path(store))
    names = {p.name: p for p in folders}
    if study is None:
        if len(folders) == 1:
            return folders[0]
        raise UserError(f"{store} holds {len(folders)} studies: name one of {', '.join(names)}")
    if study in names:
        return names[study]
    if len(folders) == 1 and read_json_object(StudyFolder(folders[0]).study_json).get("name") == study:
        return folders[0]
    raise UserError(f"{store} has no study {study!r}; it holds {', '.join(names)}")


def _runs(folder: Path, probed: pd.DataFrame | None) -> pd.DataFrame:
    """The study's finished runs that did not blow up: run, seed and GROUP (subset NaN where unknown); only the
    probed ones where the study was probed."""
    sf = StudyFolder(folder)
    results = tables.sweep_runs(_table(sf.results)) if sf.results.exists() else None
    if probed is not None:
        runs = probed.drop_duplicates("run")[["run", "seed", "condition", "multiplier"]]
        runs = runs.assign(multiplier=tables.norm_multiplier(runs["multiplier"]))
        sizes = results.set_index("run")["subset"] if results is not None else pd.Series(dtype=float)
        runs = runs.assign(subset=runs["run"].map(sizes).astype(float))
    elif results is not None:
        runs = results[~results["blew_up"]][["run", "seed", *GROUP]].astype({"subset": float})
    else:
        raise UserError(f"{folder}: neither {sf.results.name} nor {sf.probe_examples.name}: not a study's tables")
    condition = runs["condition"].astype(object)
    return runs.assign(condition=condition.where(condition.notna(), "")).reset_index(drop=True)


def _label(row, columns) -> str:
    words = {"condition": row["condition"] or "(none)", "multiplier": f"x{row['multiplier']:g}"}
    words["subset"] = f"{int(row['subset'])} images" if np.isfinite(row["subset"]) else "subset unknown"
    return " ".join(words[c] for c in columns)


def _deciding(groups: pd.DataFrame) -> list[str]:
    """The fewest GROUP columns (in order) that tell ``groups`` apart."""
    columns = [c for c in GROUP if groups[c].nunique(dropna=False) > 1]
    for c in reversed(list(columns)):
        rest = [k for k in columns if k != c]
        if rest and not groups.duplicated(rest).any():
            columns = rest
    return columns


def choose(runs: pd.DataFrame, name: str, condition=None, multiplier=None, subset=None) -> pd.DataFrame:
    """The runs of the one group the choices leave; none or several: refused in one line naming the groups."""
    chosen = runs
    if condition is not None:
        chosen = chosen[chosen["condition"] == condition]
    if multiplier is not None:
        chosen = chosen[np.isclose(chosen["multiplier"], float(multiplier), rtol=1e-6)]
    if subset is not None:
        chosen = chosen[chosen["subset"] == subset]
    groups = runs.drop_duplicates(list(GROUP)).sort_values(list(GROUP))
    shown = _deciding(groups) or list(GROUP[:2])
    listed = ", ".join(_label(r, shown) for _, r in groups.iterrows())
    if chosen.empty:
        raise UserError(f"{name}: no finished run of {_given(condition, multiplier, subset)}; its groups: {listed}")
    left = chosen.drop_duplicates(list(GROUP))
    if len(left) > 1:
        opts = " and ".join(OPTIONS[c] for c in _deciding(left))
        these = ", ".join(_label(r, _deciding(left)) for _, r in left.sort_values(list(GROUP)).iterrows())
        raise UserError(f"{name} pools one group of runs at a time: choose one with {opts}: {these}")
    return chosen


def _given(condition, multiplier, subset) -> str:
    parts = [f"condition {condition!r}"] if condition is not None else []
    parts += [f"LR x{multiplier:g}"] if multiplier is not None else []
    parts += [f"subset {subset}"] if subset is not None else []
    return ", ".join(parts) or "any group"


def _read_examples(path: Path) -> dict:
    with np.load(check_zip(path)) as f:
        if not {"order", "correct"} <= set(f.files):
            raise ValueError("no order and correctness arrays")
        return {k: f[k] for k in ("order", "correct")}


def _needs(study: dict, lacking: int, total: int) -> UserError:
    name = study["name"]
    command = "probe-epochs" if study.get("kind") == "probe" else "sweep-lr"
    return UserError(
        f"{name}: scores need the study's {StudyFolder.probe_examples.name} or each run's {RunFolder.examples.name} "
        f"({lacking} of {total} runs lack it; results/ keeps light records only): run `forgetting {command} "
        f"{name} --store STORE`, then `forgetting scores STORE {name}`"
    )


def _from_examples(folder: Path, study: dict, runs: pd.DataFrame, data) -> pd.DataFrame:
    """Each run's statistics from its examples.npz, labelled from ``data`` (checked to be the runs' data set)."""
    from forgetting.config import TrainConfig, bind_data

    paths = {r: StudyFolder(folder).run(r) for r in runs["run"]}
    lacking = sum(not p.examples.exists() for p in paths.values())
    if lacking:
        raise _needs(study, lacking, len(paths))
    data = _data(study, data)
    frames = []
    for run, seed in zip(runs["run"], runs["seed"]):
        cfg = TrainConfig.from_dict(read_back(paths[run].config, read_json_object))
        bind_data(cfg, data.identity, f"run {run}")  # labels of the data set it trained on, no other
        ex = read_back(paths[run].examples, _read_examples)
        stats = fs.count_forgetting(ex["order"], ex["correct"], data.train_size)
        frames.append(stats.assign(seed=seed, label=data.train_y[stats["index"].to_numpy()]))
    return pd.concat(frames, ignore_index=True)


def _data(study: dict, data):
    """The runs' data set: ``data`` (a `Dataset`), or the study's by name, from ``data`` as a path if given."""
    from forgetting import datasets
    from forgetting.config import recorded_data

    if not isinstance(data, datasets.Dataset):
        data = datasets.load_dataset(recorded_data(study).name, data)
    return data


def _class_names(study: dict) -> list[str]:
    from forgetting import datasets
    from forgetting.config import recorded_data

    classes = datasets.spec_for(recorded_data(study).name).classes
    return list(classes) if classes else []


def pool(store, study=None, condition=None, multiplier=None, subset=None, data=None) -> Pool:
    """One group of the study's runs (`choose`) and each run's per-example statistics."""
    folder = find_study(Path(store), study)
    sf = StudyFolder(folder)
    record = read_back(sf.study_json, read_json_object)
    probed = _table(sf.probe_examples) if sf.probe_examples.exists() else None
    runs = choose(_runs(folder, probed), record.get("name", folder.name), condition, multiplier, subset)
    if probed is not None:
        per_run = probed[probed["run"].isin(runs["run"])][list(fs.RUN_COLUMNS)].reset_index(drop=True)
        source = sf.probe_examples.name
    else:
        per_run, source = _from_examples(folder, record, runs, data), f"each run's {RunFolder.examples.name}"
    group = {k: runs[k].iloc[0] for k in GROUP}
    return Pool(record, folder, group, runs.reset_index(drop=True), per_run, source, _class_names(record))


def pooled_table(p: Pool, n_boot: int = fs.N_BOOT) -> pd.DataFrame:
    """`analysis.scores.pooled_scores` of the pool; attrs: agreement, and the group with the study's name."""
    table = fs.pooled_scores(p.per_run, n_boot=n_boot)
    table.attrs["group"] = dict(study=p.study.get("name"), **{k: tables.clean(v) for k, v in p.group.items()})
    return table


@dataclass
class Written:
    pool: Pool
    table: pd.DataFrame
    paths: list[Path]

    def lines(self) -> list[str]:
        """What `forgetting scores` prints."""
        a, t = self.table.attrs["agreement"], self.table
        seeds = t["n_seeds"]
        interval = f" [{a['rho_lo']:.2f}, {a['rho_hi']:.2f}]" if np.isfinite(a["rho_lo"]) else ""
        agreement = (
            f"Spearman rho {a['rho']:.3f}{interval} (mean of {a['n_pairs']} seed pairs, "
            f"{a['examples_per_pair']:.0f} examples in common per pair)"
            if a["n_pairs"]
            else "none to compare (it needs two seeds that presented 3 examples or more in common)"
        )
        return [
            f"{self.pool.study.get('name')}: {self.pool.describe()} ({self.pool.source})",
            f"{len(t):,} examples, presented in 1 to {seeds.max()} seeds (mean {seeds.mean():.2f}); "
            f"unforgettable in every seed that presented it: {(t['unforgettable'] == 1).mean():.1%}, "
            f"never learned in any: {(t['never_learned'] == 1).mean():.1%}",
            f"agreement of the seeds' rankings: {agreement}",
            *(f"wrote {p}" for p in self.paths),
        ]


def write_scores(store, study=None, out=None, n_boot: int = fs.N_BOOT, **choices) -> Written:
    """The pool's table (scores_TAG.csv), its summaries (scores_TAG.json) and three figures, into ``out``
    (default: the study folder's scores/)."""
    from forgetting import plots_scores

    p = pool(store, study, **choices)
    table = pooled_table(p, n_boot)
    out = Path(out) if out is not None else p.folder / SCORES_FOLDER
    hist, by_seeds = fs.events_histogram(p.per_run), fs.unforgettable_by_seeds(p.per_run)
    counts = fs.class_counts(p.per_run)
    summary = dict(
        group=table.attrs["group"],
        source=p.source,
        runs=p.runs["run"].tolist(),
        agreement=tables.clean(table.attrs["agreement"]),
        unforgettable_by_seeds=tables.records(by_seeds),
        events_histogram=tables.records(hist),
        class_counts=tables.records(counts),
    )
    stem = out / f"scores_{p.tag}"
    csv_path, json_path = stem.with_name(stem.name + ".csv"), stem.with_name(stem.name + ".json")
    atomic_write_bytes(csv_path, table.to_csv(index=False).encode())
    atomic_write_bytes(json_path, json_bytes(summary))
    title = f"{p.study.get('name')}: {p.describe()}"
    figures = plots_scores.plot_scores(hist, by_seeds, counts, stem, title, p.classes)
    return Written(p, table, [csv_path, json_path, *figures])
