"""Optimizers by name, each with the hyperparameters it reads (what names a run, besides the LR schedule).

``sgd`` is Page's: Nesterov SGD, momentum 0.9, weight decay 5e-4 in the mean-loss convention
(docs/protocol.md, section 3). ``adamw`` is `torch.optim.AdamW` (decoupled weight decay: each step
multiplies the weights by 1 - lr x weight_decay). The LR is set at every step by the schedule, so each
starts at 0. A user's optimizer joins with `register`, as these do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import torch

from forgetting.errors import UserError

HYPERPARAMETERS = ("momentum", "weight_decay", "betas", "eps")  # the TrainConfig fields an optimizer may read


@dataclass(frozen=True)
class OptimizerSpec:
    name: str
    make: Callable[..., torch.optim.Optimizer]  # make(params, **the hyperparameters it reads)
    reads: tuple[str, ...]  # which of HYPERPARAMETERS


REGISTRY: dict[str, OptimizerSpec] = {}


def register(name: str, make: Callable[..., torch.optim.Optimizer], reads: tuple[str, ...]) -> OptimizerSpec:
    unknown = set(reads) - set(HYPERPARAMETERS)
    if unknown:
        raise UserError(f"optimizer {name!r} reads unknown settings {sorted(unknown)} (known: {HYPERPARAMETERS})")
    REGISTRY[name] = OptimizerSpec(name, make, tuple(reads))
    return REGISTRY[name]


def spec(name: str) -> OptimizerSpec:
    if name not in REGISTRY:
        raise UserError(f"optimizer must be one of {', '.join(REGISTRY)}, not {name!r}")
    return REGISTRY[name]


def make(name: str, params: Iterable, **hyperparameters) -> torch.optim.Optimizer:
    """Optimizer ``name`` over ``params`` with the hyperparameters it reads (the others are ignored)."""
    s = spec(name)
    return s.make(params, **{k: hyperparameters[k] for k in s.reads})


def check(momentum: float, weight_decay: float, betas, eps: float) -> None:
    """Refuse hyperparameters no optimizer can take (one line each)."""
    if not 0 <= momentum < 1:
        raise UserError(f"momentum must be in [0, 1), not {momentum}")
    if not 0 <= weight_decay < float("inf"):
        raise UserError(f"weight_decay must be finite and not negative, not {weight_decay}")
    if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
        raise UserError(f"betas must be two numbers in [0, 1), not {list(betas)}")
    if not 0 < eps < float("inf"):
        raise UserError(f"eps must be finite and positive, not {eps}")


register(
    "sgd",
    lambda params, momentum, weight_decay: torch.optim.SGD(
        params, lr=0.0, momentum=momentum, nesterov=True, weight_decay=weight_decay
    ),
    ("momentum", "weight_decay"),
)
register(
    "adamw",
    lambda params, betas, eps, weight_decay: torch.optim.AdamW(
        params, lr=0.0, betas=tuple(betas), eps=eps, weight_decay=weight_decay
    ),
    ("betas", "eps", "weight_decay"),
)
