"""Per-example forgetting scores (Toneva et al., ICLR 2019): of one run, and pooled over seeds.

A forgetting event is a presentation at which an example is misclassified right after one at which it was
classified correctly (the example's own presentations, in training order); an example is learned at its first
correct presentation, never learned without one, and unforgettable when learned and never forgotten. Every
table keys an example by ``index``: its position in the data set's training arrays as loaded (train_x and
train_y, from 0), whatever subset a run trained on; ``label`` is its class, train_y[index].

Pooled over seeds, an example's score is the mean over the seeds whose runs presented it, with a 95%
bootstrap interval over those seeds (expanded for few seeds, `intervals.tail_level`; none from one seed).
The seeds' rankings agree by Spearman's rho, the mean over seed pairs, with a bootstrap interval over seeds
and examples. numpy, scipy and pandas only.
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pandas as pd
from scipy import stats

from forgetting.analysis import intervals
from forgetting.analysis.verdicts import N_BOOT, RNG_SEED

SEED_SCORES = ("forgetting_events", "first_learned_epoch", "never_learned", "unforgettable")
RUN_COLUMNS = ("seed", "index", "label", "forgetting_events", "first_learned_epoch", "never_learned")
NEVER_LEARNED = -1  # events_histogram's bin of the examples never learned; first_learned_epoch's value for them
CHUNK = 4096  # examples per matrix product of the bootstrap: bounds its memory


def presentation_stats(index, epoch, step, correct) -> pd.DataFrame:
    """Toneva's statistics of one run from its presentations (flat arrays, any order): ``index`` the example,
    ``epoch`` and ``step`` when it was presented (``step`` orders them in time), ``correct`` whether it was
    classified correctly then. One row per example presented, by index: presentations, forgetting_events,
    first_learned_epoch (the epoch of its first correct presentation, from 0; -1 if none), never_learned."""
    index, epoch, step = (np.asarray(a, dtype=np.int64).ravel() for a in (index, epoch, step))
    correct = np.asarray(correct, dtype=bool).ravel()
    by_time = np.lexsort((step, index))  # each example's presentations together, in training order
    index, epoch, correct = index[by_time], epoch[by_time], correct[by_time]
    first = np.r_[True, index[1:] != index[:-1]][: len(index)]
    starts = np.flatnonzero(first)
    forgotten = ~first & np.r_[False, correct[:-1]][: len(index)] & ~correct
    learned_at = np.full(len(starts), NEVER_LEARNED, dtype=np.int64)
    hits = np.flatnonzero(correct)
    owner = np.searchsorted(starts, hits, side="right") - 1  # the example each correct presentation belongs to
    owners, first_hit = np.unique(owner, return_index=True)
    learned_at[owners] = epoch[hits[first_hit]]
    events = np.add.reduceat(forgotten.astype(np.int64), starts) if len(starts) else starts
    return pd.DataFrame(
        dict(
            index=index[starts],
            presentations=np.diff(np.r_[starts, len(index)]).astype(np.int64),
            forgetting_events=events.astype(np.int64),
            first_learned_epoch=learned_at,
            never_learned=learned_at == NEVER_LEARNED,
        )
    )


def count_forgetting(order: np.ndarray, correct: np.ndarray, n_index: int) -> pd.DataFrame:
    """`presentation_stats` of a run's examples.npz: ``order[e]`` lists the data set indices presented in epoch
    ``e`` (each below ``n_index``) and ``correct[e]`` whether each was classified correctly at that presentation."""
    order = np.asarray(order)
    if order.size and (order.min() < 0 or order.max() >= n_index):
        raise ValueError(f"indices outside 0..{n_index - 1}")
    epochs = np.repeat(np.arange(order.shape[0]), order.shape[1] if order.ndim == 2 else 0)
    return presentation_stats(order.ravel(), epochs, np.arange(order.size), correct)


def with_unforgettable(per_run: pd.DataFrame) -> pd.DataFrame:
    """``per_run`` (one row per seed and example: RUN_COLUMNS) with ``unforgettable``: learned, never forgotten."""
    missing = [c for c in RUN_COLUMNS if c not in per_run]
    if missing:
        raise ValueError(f"per-run statistics lack {', '.join(missing)}")
    if per_run.duplicated(["seed", "index"]).any():
        raise ValueError("more than one row for a seed and an example: pool one condition's runs at a time")
    learned = ~per_run["never_learned"].astype(bool)
    return per_run.assign(unforgettable=learned & (per_run["forgetting_events"] == 0))


def seed_matrix(per_run: pd.DataFrame, column: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indices, seeds, examples x seeds values of ``column``), NaN where a seed's run did not present the
    example or (first_learned_epoch) never learned it."""
    values = per_run[column].astype(float)
    if column == "first_learned_epoch":
        values = values.where(~per_run["never_learned"].astype(bool))
    table = per_run.assign(_v=values).pivot(index="index", columns="seed", values="_v")
    return table.index.to_numpy(), table.columns.to_numpy(), table.to_numpy(dtype=float)


def seed_bootstrap(values: np.ndarray, n_boot: int, rng: np.random.Generator):
    """Per row of ``values`` (examples x seeds, NaN where absent): the mean over its seeds and the percentile
    interval of the means of ``n_boot`` resamples of them (`intervals.tail_level` for that many seeds)."""
    finite = np.isfinite(values)
    k = finite.sum(1)
    mean = np.where(k > 0, np.where(finite, values, 0).sum(1) / np.maximum(k, 1), np.nan)
    lo, hi = np.full(len(values), np.nan), np.full(len(values), np.nan)
    for n in np.unique(k[k >= 2]) if n_boot > 0 else ():
        rows = np.flatnonzero(k == n)
        packed = np.sort(values[rows], axis=1)[:, :n]  # each row's values first: NaN sorts last
        draws = rng.integers(0, n, size=(n_boot, n))
        weights = (draws[:, :, None] == np.arange(n)).sum(1) / n  # a resample as each seed's share of it
        tail = intervals.tail_level(int(n))
        for start in range(0, len(rows), CHUNK):
            means = packed[start : start + CHUNK] @ weights.T
            part = rows[start : start + CHUNK]
            lo[part], hi[part] = np.percentile(means, [100 * tail, 100 * (1 - tail)], axis=1)
    return mean, lo, hi


def pooled_scores(per_run: pd.DataFrame, n_boot: int = N_BOOT, rng_seed: int = RNG_SEED) -> pd.DataFrame:
    """One row per example of ``per_run`` (one row per seed and example: RUN_COLUMNS), by index: its label,
    the seeds that presented it (n_seeds), and per score of SEED_SCORES the mean over them with ``_lo`` and
    ``_hi`` (never_learned and unforgettable as the share of its seeds). ``attrs["agreement"]``:
    `rank_agreement`."""
    runs = with_unforgettable(per_run)
    rng = np.random.default_rng(rng_seed)
    labels = runs.groupby("index", sort=True)["label"].first()
    out = pd.DataFrame(dict(index=labels.index.to_numpy(), label=labels.to_numpy()))
    for column in SEED_SCORES:
        _, _, values = seed_matrix(runs, column)
        if column == SEED_SCORES[0]:
            out["n_seeds"] = np.isfinite(values).sum(1)
        out[column], out[f"{column}_lo"], out[f"{column}_hi"] = seed_bootstrap(values, n_boot, rng)
    out.attrs["agreement"] = rank_agreement(runs, n_boot, rng_seed)
    return out


def ranking_score(per_run: pd.DataFrame) -> pd.Series:
    """What the seeds' rankings rank: forgetting events, an example never learned above every learned one
    (Toneva et al. sort the never learned as the most forgotten)."""
    events = per_run["forgetting_events"].astype(float)
    return events.where(~per_run["never_learned"].astype(bool), events.max() + 1 if len(events) else 0)


def _corr(w: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson's r of ``a`` and ``b`` weighted by each row of ``w`` (draws x examples)."""
    a, b = a - a.mean(), b - b.mean()  # centred once: the weighted moments below stay well conditioned
    sw = w.sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):  # a draw that ranks all alike: NaN
        ma, mb = w @ a / sw, w @ b / sw
        cov = w @ (a * b) / sw - ma * mb
        return cov / np.sqrt((w @ (a * a) / sw - ma**2) * (w @ (b * b) / sw - mb**2))


def _pair_ranks(score: np.ndarray) -> dict:
    """Per seed pair (i, j): the examples both presented and each seed's midranks over them."""
    pairs = {}
    for i, j in itertools.combinations(range(score.shape[1]), 2):
        rows = np.flatnonzero(np.isfinite(score[:, i]) & np.isfinite(score[:, j]))
        if len(rows) >= 3:
            pairs[(i, j)] = rows, stats.rankdata(score[rows, i]), stats.rankdata(score[rows, j])
    return pairs


def _agreement_draws(n_examples: int, n_seeds: int, pairs: dict, n_boot: int, rng) -> np.ndarray:
    """Each draw resamples the examples and the seeds, and takes the mean rho over the pairs of distinct seeds
    drawn (rho of the pair's ranks weighted by how often the draw took each example)."""
    out = np.full(n_boot, np.nan)
    first, second = np.triu_indices(n_seeds, 1)
    for start in range(0, n_boot, 64):
        c = min(64, n_boot - start)
        draws = (rng.integers(0, n_examples, n_examples) for _ in range(c))
        counts = np.stack([np.bincount(d, minlength=n_examples) for d in draws])  # how often each example is drawn
        rho = np.full((c, n_seeds, n_seeds), np.nan)
        for (i, j), (rows, a, b) in pairs.items():
            rho[:, i, j] = rho[:, j, i] = _corr(counts[:, rows].astype(float), a, b)
        seeds = rng.integers(0, n_seeds, size=(c, n_seeds))
        si, sj = seeds[:, first], seeds[:, second]
        vals = np.where(si != sj, rho[np.arange(c)[:, None], si, sj], np.nan)
        with warnings.catch_warnings():  # a draw of one seed only has no pair: NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            out[start : start + c] = np.nanmean(vals, axis=1)
    return out


def rank_agreement(per_run: pd.DataFrame, n_boot: int = N_BOOT, rng_seed: int = RNG_SEED) -> dict:
    """How alike the seeds rank the examples (`ranking_score`): Spearman's rho of each pair of seeds over the
    examples both presented, its mean over the pairs (rho), and the percentile interval (rho_lo, rho_hi) of
    that mean over ``n_boot`` draws that resample the seeds and the examples (expanded for few seeds, as
    `intervals.percentile_interval`); n_pairs counts the pairs with 3 or more examples in common."""
    runs = per_run.assign(_rank=ranking_score(per_run))
    _, seeds, score = seed_matrix(runs, "_rank")
    pairs = _pair_ranks(score)
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # a seed that ranks all alike: rho is NaN
        rhos = [float(np.corrcoef(a, b)[0, 1]) for _, a, b in pairs.values()]
        rho = float(np.nanmean(rhos)) if rhos else np.nan
    lo = hi = np.nan
    if pairs and n_boot > 0:
        draws = _agreement_draws(len(score), len(seeds), pairs, n_boot, np.random.default_rng(rng_seed))
        lo, hi = intervals.percentile_interval(draws, n_units=len(seeds))
    common = float(np.mean([len(rows) for rows, _, _ in pairs.values()])) if pairs else 0.0
    return dict(rho=rho, rho_lo=lo, rho_hi=hi, n_seeds=len(seeds), n_pairs=len(pairs), examples_per_pair=common)


def unforgettable_by_seeds(per_run: pd.DataFrame) -> pd.DataFrame:
    """Per number of seeds pooled, k: over every k of the seeds, the examples all k presented and the share of
    them unforgettable in all k (share; share_min and share_max over the k-seed sets), the examples per set."""
    _, seeds, values = seed_matrix(with_unforgettable(per_run), "unforgettable")
    rows = []
    for k in range(1, len(seeds) + 1):
        shares, present, kept = [], 0, 0
        for chosen in itertools.combinations(range(len(seeds)), k):
            block = values[:, chosen]
            seen = np.isfinite(block).all(1)
            n, u = int(seen.sum()), int((block[seen] == 1).all(1).sum())
            present, kept = present + n, kept + u
            shares.append(u / n if n else np.nan)
        n_sets = len(shares)
        finite = [s for s in shares if np.isfinite(s)]
        rows.append(
            dict(
                seeds=k,
                share=kept / present if present else np.nan,
                share_min=min(finite) if finite else np.nan,
                share_max=max(finite) if finite else np.nan,
                examples=present / n_sets,
                seed_sets=n_sets,
            )
        )
    return pd.DataFrame(rows)


def events_histogram(per_run: pd.DataFrame) -> pd.DataFrame:
    """Toneva's histogram: per number of forgetting events (NEVER_LEARNED: never learned), the share of a run's
    examples with it, mean over seeds with its t interval (share_lo, share_hi) and n (seeds)."""
    runs = with_unforgettable(per_run)
    bins = np.where(runs["never_learned"].astype(bool), NEVER_LEARNED, runs["forgetting_events"])
    top = int(bins.max()) if len(bins) else 0
    counts = pd.crosstab(runs["seed"], bins).reindex(columns=range(NEVER_LEARNED, top + 1), fill_value=0)
    shares = counts.div(counts.sum(axis=1), axis=0).stack().rename("share").reset_index()
    shares.columns = ["seed", "forgetting_events", "share"]
    return intervals.mean_ci(shares, ["forgetting_events"], "share")


def class_counts(per_run: pd.DataFrame) -> pd.DataFrame:
    """Per class (label) and kind (unforgettable, forgotten: one event or more, never learned): the number of a
    run's examples, mean over seeds with its t interval (count_lo, count_hi) and n (seeds)."""
    runs = with_unforgettable(per_run)
    kinds = dict(
        unforgettable=runs["unforgettable"],
        forgotten=runs["forgetting_events"] > 0,
        never_learned=runs["never_learned"].astype(bool),
    )
    per_seed = pd.DataFrame(dict(seed=runs["seed"], label=runs["label"], **kinds)).groupby(["seed", "label"]).sum()
    long = per_seed.reset_index().melt(["seed", "label"], var_name="kind", value_name="count")
    return intervals.mean_ci(long.astype({"count": float}), ["label", "kind"], "count")
