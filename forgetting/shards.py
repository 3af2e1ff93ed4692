"""A study cut into N disjoint pieces of nearly equal work, for array jobs and machines without a shared disk.

The pieces depend only on the study's grid (each run's work and its place in the grid), never on the
machine, the base LR or the store, so every machine that computes shard K/N gets the same runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from forgetting.errors import UserError


@dataclass(frozen=True)
class Shard:
    index: int  # 1-based, as SLURM's array task ids usually are
    count: int

    @classmethod
    def parse(cls, text: str) -> "Shard":
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
        if not match:
            raise UserError(f"--shard must be K/N (e.g. 2/3), not {text!r}")
        index, count = int(match[1]), int(match[2])
        if not 1 <= index <= count:
            raise UserError(f"--shard {text}: K must be between 1 and N")
        return cls(index, count)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def partition(works: Sequence[float], count: int) -> list[list[int]]:
    """Indices of ``works`` in ``count`` pieces: heaviest run first (ties: grid order) to the lightest
    piece so far (ties: the lower piece). The heaviest and lightest pieces then differ by at most the
    largest single run's work: the last run given to the heaviest piece went to the then-lightest one."""
    loads = [0.0] * count
    pieces: list[list[int]] = [[] for _ in range(count)]
    for i in sorted(range(len(works)), key=lambda i: (-works[i], i)):
        k = min(range(count), key=lambda k: (loads[k], k))
        pieces[k].append(i)
        loads[k] += works[i]
    return [sorted(p) for p in pieces]


def select(items: Sequence, works: Sequence[float], shard: Shard | None) -> list:
    """The items of ``shard`` in their original order (all of them without a shard)."""
    if shard is None:
        return list(items)
    return [items[i] for i in partition(works, shard.count)[shard.index - 1]]
