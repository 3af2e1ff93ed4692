"""Class-balanced subsets, nested across sizes, for any number of classes."""

from __future__ import annotations

import numpy as np

from forgetting.errors import UserError


def class_quotas(counts: np.ndarray, size: int) -> np.ndarray:
    """How many images of each class a subset of ``size`` takes: balanced as far as each class allows.

    Every class gets the same number L, except that a class with fewer than L images gives all it has;
    L is the largest level the size affords, and the images left over (fewer than the classes still
    open) go one each to the lowest-numbered classes that have more. For a balanced data set that is
    ``size // K`` each, the remainder to the lowest classes. A quota never shrinks as the size grows,
    so subsets drawn in one seeded order are nested.
    """
    counts = np.asarray(counts, dtype=np.int64)
    quota = np.zeros_like(counts)
    left = int(size)
    while left > 0:
        open_ = np.flatnonzero(quota < counts)
        share = left // len(open_)
        if share == 0:
            quota[open_[:left]] += 1
            break
        add = np.minimum(share, counts[open_] - quota[open_])
        quota[open_] += add
        left -= int(add.sum())
    return quota


def balanced_subset(labels: np.ndarray, size: int, seed: int, num_classes: int | None = None) -> np.ndarray:
    """Dataset indices of a class-balanced subset (`class_quotas`), nested across sizes for a fixed seed.

    Each class's images are put in one seeded order; a subset takes the first quota of every class. A
    larger subset therefore contains every smaller one drawn with the same seed.
    """
    n = len(labels)
    if not 1 <= size <= n:
        raise UserError(f"subset size {size} is outside 1..{n}")
    k = int(labels.max()) + 1 if num_classes is None else num_classes
    per_class = class_quotas(np.bincount(labels, minlength=k), size)
    rng = np.random.default_rng([seed, 0x5EB5E7])  # a stream of its own, apart from the epochs'
    chosen = []
    for c in range(k):
        members = np.flatnonzero(labels == c)
        chosen.append(members[rng.permutation(len(members))[: per_class[c]]])
    return np.sort(np.concatenate(chosen))
