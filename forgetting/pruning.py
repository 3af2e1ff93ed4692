"""Which examples a prune study removes (Toneva et al., ICLR 2019, section 5): its pool and removal orders.

The pool is the examples a table of forgetting scores covers (the table `forgetting scores` writes: one row
per example, keyed by its index in the data set's training arrays), those presented in at least
``min_seeds`` of the source's seeds. At CPU scale scores cover a subset of the data set, so a prune study
removes examples from that pool, never from the images outside it. Each selection puts the pool in a
removal order, once per seed; removing a fraction f takes the first `removed_count` of that order. So one
seed's kept sets are nested across fractions, and both selections remove as many examples at each fraction.

- ``forgetting``: the least forgotten first, Toneva's order: ascending by the share of its seeds in which
  the example was never learned (never learned counts as forgotten more than any learned example, as
  Toneva count it), then by its mean number of forgetting events over those seeds; ties in an order drawn
  from the seed. Unforgettable examples (learned, never forgotten) therefore go first.
- ``random``: an order drawn from the seed; the scores are not read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from forgetting.datasets import DataIdentity
from forgetting.errors import UserError

SELECTIONS = ("forgetting", "random")
STREAM = 0x9B0E5  # the removal draws' own random stream, apart from the subsets' and the epochs'
SCORE_COLUMNS = ("index", "label", "n_seeds", "forgetting_events", "never_learned")


def removed_count(fraction: float, pool_size: int) -> int:
    """How many of the pool a fraction removes: the nearest whole number."""
    return int(round(fraction * pool_size))


def removal_order(pool: pd.DataFrame, selection: str, seed: int) -> np.ndarray:
    """The pool's indices (``pool``: SCORE_COLUMNS, sorted by index) in the order ``selection`` removes them
    at ``seed`` (the module's docstring)."""
    if selection not in SELECTIONS:
        raise UserError(f"unknown selection {selection!r} (known: {', '.join(SELECTIONS)})")
    rng = np.random.default_rng([seed, STREAM, SELECTIONS.index(selection)])
    draw = rng.permutation(len(pool))
    index = pool["index"].to_numpy(dtype=np.int64)
    if selection == "random":
        return index[draw]
    events, never = (pool[c].to_numpy(dtype=float) for c in ("forgetting_events", "never_learned"))
    return index[np.lexsort((draw, events, never))]  # lexsort: the last key sorts first


def kept(order: np.ndarray, fraction: float) -> tuple[int, ...]:
    """The indices left when ``fraction`` of the pool goes in ``order``, sorted (`TrainConfig.indices`)."""
    return tuple(int(i) for i in np.sort(order[removed_count(fraction, len(order)) :]))


def check_scores(table: pd.DataFrame, where: str) -> pd.DataFrame:
    """A scores table with the columns a pool needs, one row per example; else one line naming ``where``."""
    missing = [c for c in SCORE_COLUMNS if c not in table.columns]
    if missing:
        raise UserError(f"{where}: not a scores table of `forgetting scores` (it lacks {', '.join(missing)})")
    if table["index"].duplicated().any() or (table["index"] < 0).any():
        raise UserError(f"{where}: an example's index appears twice or is negative: not a scores table")
    return table


def read_scores_csv(path: Path) -> pd.DataFrame:
    """A scores table written by `forgetting scores` (scores_GROUP.csv)."""
    if not path.is_file():
        raise UserError(f"{path}: no such scores table (write it with `forgetting scores STORE STUDY --out DIR`)")
    try:
        table = pd.read_csv(path)
    except (ValueError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not a table ({e})") from None
    return check_scores(table, str(path))


def pooled_from_store(store: Path, study: str | None, **group) -> tuple[pd.DataFrame, DataIdentity]:
    """The scores `forgetting scores` pools from a store's study (the group of ``group``: condition,
    multiplier, subset), means only (no bootstrap), with the data set its runs trained on."""
    from forgetting import scoring
    from forgetting.analysis import scores as fs
    from forgetting.config import recorded_data

    p = scoring.pool(store, study, **group)
    return check_scores(fs.pooled_scores(p.per_run, n_boot=0), str(p.folder)), recorded_data(p.study)


@dataclass(frozen=True)
class Pool:
    """The examples a prune study removes from (SCORE_COLUMNS, sorted by index), and where they came from."""

    scores: pd.DataFrame
    source: str  # in words
    data: DataIdentity | None  # the data set the scores were counted on, where the source records it

    def __len__(self) -> int:
        return len(self.scores)

    def order(self, selection: str, seed: int) -> np.ndarray:
        return removal_order(self.scores, selection, seed)

    def check_labels(self, train_y: np.ndarray, where: str) -> None:
        """Refuse a pool whose indices or classes are not those of the data set with labels ``train_y``."""
        index = self.scores["index"].to_numpy(dtype=np.int64)
        if len(index) and index.max() >= len(train_y):
            raise UserError(f"{where}: the scores name image {index.max()}, the data set has {len(train_y):,}")
        if (train_y[index] != self.scores["label"].to_numpy()).any():
            raise UserError(f"{where}: the scores' classes are not the data set's: scores of another data set")


def make_pool(scores: pd.DataFrame, min_seeds: int, source: str, data: DataIdentity | None) -> Pool:
    """The scored examples presented in at least ``min_seeds`` seeds; none: refused in one line."""
    chosen = scores[scores["n_seeds"] >= min_seeds].sort_values("index").reset_index(drop=True)
    if chosen.empty:
        raise UserError(f"{source}: no example was presented in {min_seeds} seeds or more (lower prune.min_seeds)")
    return Pool(chosen[list(SCORE_COLUMNS)], source, data)
