"""The prune study (Toneva et al., ICLR 2019, section 5): retrain on a pool of scored examples with a fraction
removed, chosen by forgetting score (the least forgotten first) or at random, at several fractions and seeds.

Its [prune] section names the scores, either a table `forgetting scores` wrote (``scores``) or a store's study
whose group of runs it pools the same way (``store``, ``study``, ``condition``, ``multiplier``, ``subset``), and
``min_seeds``; paths are relative to the study file. The pool, the removal orders and the kept sets are
forgetting/pruning.py's; the reading and its pre-registered rule forgetting/analysis/prune.py's.

Its cells are named by what they remove: "pool" (fraction 0, the whole pool: one run per seed that every
selection's line starts from) and "<selection>-<fraction>". Each run trains on its kept images exactly
(`TrainConfig.indices`), so its id names that set: two runs with other images are two runs.
"""

from __future__ import annotations

import functools
from pathlib import Path

from forgetting import pruning
from forgetting.checks import SIZE, list_of, number, one_of, string
from forgetting.experiments.base import ReportContext, StudyKind, StudyError

POOL = "pool"  # the cell of fraction 0
GROUP_KEYS = ("study", "condition", "multiplier", "subset")  # the store's group, as `forgetting scores` chooses it
TOOLKIT = Path(__file__).resolve().parents[2]  # a study.json names its study file relative to the toolkit or cwd


_GROUP_WITHOUT_STORE = "chooses a group of runs (study, condition, multiplier, subset) only with 'prune.store'"


def _fraction(v):
    return number(lo=0)(v) or (None if v < 1 else "must be below 1")


def condition_name(selection: str, fraction: float) -> str:
    return POOL if fraction == 0 else f"{selection}-{fraction:g}"


def conditions(grid: dict) -> dict[str, list[tuple[str, float]]]:
    """Each cell's name -> the (selection, fraction) lines it belongs to (the pool: every selection's)."""
    out: dict[str, list] = {}
    for fraction in sorted(grid["fractions"]):
        for selection in grid["selections"]:
            out.setdefault(condition_name(selection, fraction), []).append((selection, float(fraction)))
    return out


class PruneStudy(StudyKind):
    name = "prune"
    grid_schema = {
        "fractions": (list_of(_fraction), None),  # of the pool, removed; 0: the whole pool
        "selections": (list_of(one_of(*pruning.SELECTIONS)), list(pruning.SELECTIONS)),
    }
    sections = {
        "prune": {
            "scores": (string, None),  # a scores table (scores_GROUP.csv of `forgetting scores`)
            "store": (string, None),  # or a store (or study folder) whose runs' scores are pooled here
            "study": (string, None),  # its study, where the store holds several
            "condition": (string, None),
            "multiplier": (number(positive=True), None),
            "subset": (SIZE, None),
            "min_seeds": (number(integer=True, lo=1), 1),  # the pool: examples presented in this many seeds
        }
    }
    report_rank = 2

    def check(self, study, where: str) -> None:
        p, g = study.sections["prune"], study.grid
        problems = [
            (not g.get("fractions"), "needs 'grid.fractions' (of the pool, removed)"),
            ((p["scores"] is None) == (p["store"] is None), "needs one of 'prune.scores' and 'prune.store'"),
            (p["scores"] is not None and any(p[k] is not None for k in GROUP_KEYS), _GROUP_WITHOUT_STORE),
            (g["base_lr"] == "find", "needs a number for 'grid.base_lr' (the finder trains on no pool)"),
            (len(g["multipliers"]) != 1, "trains at one LR: 'grid.multipliers' must have one value"),
        ]
        for bad, words in problems:
            if bad:
                raise StudyError(f"{where}: a prune study {words}")
        pool = self.pool(study)
        counts = [pruning.removed_count(f, len(pool)) for f in sorted(g["fractions"])]
        if any(a == b for a, b in zip(counts, counts[1:])) or (counts[0] == 0 and sorted(g["fractions"])[0] > 0):
            raise StudyError(f"{where}: 'grid.fractions' must each remove another number of the {len(pool):,} pooled")

    def pool(self, study) -> pruning.Pool:
        """The study's pool (read once per source in a process: its files' times name the version read)."""
        p = study.sections["prune"]
        if p["scores"] is not None:
            path = _resolve(study.source, p["scores"])
            return _csv_pool(path, p["min_seeds"], _stamp([path]))
        store = _resolve(study.source, p["store"])
        group = tuple(p[k] for k in GROUP_KEYS)
        return _store_pool(store, group, p["min_seeds"], _stamp([store, *store.glob("*"), *store.glob("*/*.csv")]))

    def cells(self, study) -> list[tuple[int, bool, str]]:
        n = len(self.pool(study))
        augment = study.train["augment"]
        cells = conditions(study.grid).items()
        return [(n - pruning.removed_count(lines[0][1], n), augment, name) for name, lines in cells]

    def largest_subset(self, study) -> int:
        return len(self.pool(study))

    def run_settings(self, study, condition: str, seed: int) -> dict:
        selection, fraction = conditions(study.grid)[condition][0]
        return dict(indices=pruning.kept(self.pool(study).order(selection, seed), fraction))

    def check_data(self, study, data) -> None:
        pool = self.pool(study)
        if pool.data is not None and pool.data != data.identity:
            raise StudyError(f"{study.name}: its scores were counted on {pool.data}, it trains on {data.identity}")
        pool.check_labels(data.train_y, f"{study.name}: {pool.source}")

    def scale_words(self, study) -> str:
        shares = ", ".join(f"{f:.0%}" for f in sorted(study.grid["fractions"]))
        return f"{shares} removed from a pool of {len(self.pool(study)):,} scored images"

    def figures(self, ctx: ReportContext) -> list[Path]:
        """Test accuracy and loss against the fraction removed, and the pre-registered verdict (summary
        ``prune`` and ``verdicts.prune``)."""
        from forgetting import plots_prune
        from forgetting.analysis import prune, tables

        results = ctx.tables.get("results")
        if results is None or not len(results):
            return []
        runs = selection_rows(results, ctx.study["grid"])
        missing = int((results["status"] != "finished").sum()) if "status" in results else 0
        table = prune.curves(runs)
        ctx.summary["prune"] = tables.records(table)
        ctx.summary["verdicts"]["prune"] = verdict = prune.prune_verdict(runs, missing)
        return plots_prune.plot_prune(table, verdict, ctx.fig_dir / "prune", ctx.caption)


def selection_rows(results, grid: dict):
    """The finished runs as the analysis reads them: selection, fraction, seed, test accuracy and loss, the
    whole-pool runs once per selection; a diverged run's numbers NaN."""
    import pandas as pd

    from forgetting.analysis import tables

    done = tables.sweep_runs(results)
    lines = conditions(grid)
    columns = ["seed", "test_acc", "test_loss", "blew_up"]
    rows = [
        dict(selection=s, fraction=f, **{c: r[c] for c in columns})
        for _, r in done.iterrows()
        for s, f in lines.get(r["condition"], [])
    ]
    runs = pd.DataFrame(rows, columns=["selection", "fraction", *columns])
    for metric in ("test_acc", "test_loss"):
        runs[metric] = pd.to_numeric(runs[metric], errors="coerce").where(~runs["blew_up"].astype(bool))
    return runs.drop(columns="blew_up")


def _resolve(source: str, value: str) -> Path:
    """A path of the [prune] section: as given when absolute, else relative to the study file's folder (a
    study.json's source: relative to the working folder or the toolkit)."""
    path = Path(value).expanduser()
    if path.is_absolute():
        return path
    base = Path(source).parent
    found = [base / path, TOOLKIT / base / path]
    return next((p for p in found if p.exists()), found[0])


def _stamp(paths) -> tuple:
    return tuple(sorted((str(p), p.stat().st_mtime_ns) for p in paths if p.exists()))


@functools.lru_cache(maxsize=8)
def _csv_pool(path: Path, min_seeds: int, stamp: tuple) -> pruning.Pool:
    return pruning.make_pool(pruning.read_scores_csv(path), min_seeds, f"the scores in {path.name}", None)


@functools.lru_cache(maxsize=8)
def _store_pool(store: Path, group: tuple, min_seeds: int, stamp: tuple) -> pruning.Pool:
    study, condition, multiplier, subset = group
    scores, data = pruning.pooled_from_store(store, study, condition=condition, multiplier=multiplier, subset=subset)
    named = " ".join(str(v) for v in (study, condition, f"LR x{multiplier:g}" if multiplier else None) if v)
    return pruning.make_pool(scores, min_seeds, f"the scores of {named or store.name}", data)
