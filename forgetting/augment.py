"""Batch plans: every random choice of an epoch drawn at once, then applied as tensor ops.

A plan is a pure function of (subset, seed, epoch, augmentation settings, batch size). Training
draws it and records one short digest per batch; the probe draws it again and checks the digests,
which proves it replays the same images with the same crops, flips and Cutout squares.

The draws are made with numpy on the host (cheap: a few integers per image) so that a plan is the
same on every device; applying it (gather, flip, mask) runs on the device with no per-image loop.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch

from forgetting.data import PAD
from forgetting.errors import UserError

SIZE = 32  # output image side


@dataclass(frozen=True)
class AugmentSpec:
    crop: bool = True  # random 32x32 crop of the reflect-padded 40x40 image
    flip: bool = True  # left-right flip with p = 0.5
    cutout: int = 0  # side of the Cutout square in pixels; 0 = no Cutout

    def __post_init__(self):
        if not 0 <= self.cutout <= SIZE:
            raise UserError(f"cutout {self.cutout} is outside 0..{SIZE}")

    @classmethod
    def standard(cls, augment: bool, cutout: int = 0) -> "AugmentSpec":
        """crop+flip (+Cutout) when ``augment``, else the plain centre image."""
        return cls(crop=augment, flip=augment, cutout=cutout if augment else 0)

    def label(self) -> str:
        parts = [p for p, on in (("crop", self.crop), ("flip", self.flip)) if on]
        if self.cutout:
            parts.append(f"cutout{self.cutout}")
        return "+".join(parts) or "none"


@dataclass(frozen=True)
class EpochPlan:
    """One epoch's presentation order and augmentation draws, batch by batch (the last one may be partial)."""

    epoch: int
    batch_size: int
    spec: AugmentSpec
    indices: np.ndarray  # (n,) int64 dataset indices in presentation order
    crop: np.ndarray  # (n, 2) int64 top-left (y, x) of the crop in the padded image, 0..8
    flip: np.ndarray  # (n,) bool
    cutout: np.ndarray  # (n, 2) int64 top-left (y, x) of the Cutout square, or -1 when off

    @property
    def steps(self) -> int:
        return -(-len(self.indices) // self.batch_size)  # a partial last batch is a step

    def sizes(self) -> np.ndarray:
        """Images in each step: batch_size, except a partial last batch."""
        return np.diff(np.minimum(np.arange(self.steps + 1) * self.batch_size, len(self.indices)))

    def batch(self, step: int) -> slice:
        return slice(step * self.batch_size, (step + 1) * self.batch_size)

    def digests(self) -> list[str]:
        """16-hex-digit digest of each batch: its indices and every random choice."""
        out = []
        tag = self.spec.label().encode()
        for s in range(self.steps):
            sl = self.batch(s)
            h = hashlib.blake2b(tag, digest_size=8)
            for a in (self.indices[sl], self.crop[sl], self.flip[sl], self.cutout[sl]):
                h.update(np.ascontiguousarray(a).tobytes())
            out.append(h.hexdigest())
        return out


def plan_epoch(
    subset: np.ndarray, seed: int, epoch: int, spec: AugmentSpec, batch_size: int, drop_last: bool = True
) -> EpochPlan:
    """Draw the whole epoch's randomness from a generator seeded by (seed, epoch).

    ``drop_last=False`` keeps the partial last batch (Page's loader); the full batches and their
    digests are the same either way.

    Each kind of choice has its own child stream, so switching one augmentation off leaves the
    order and the other draws unchanged (a disabled choice is a constant, which changes the digest).
    """
    n = len(subset)
    if batch_size < 1:
        raise UserError(f"batch size must be at least 1, not {batch_size}")
    steps = n // batch_size
    if steps == 0:
        raise UserError(f"batch size {batch_size} is larger than the subset ({n} images)")
    order_ss, crop_ss, flip_ss, cut_ss = np.random.SeedSequence([seed, epoch]).spawn(4)
    order = np.random.default_rng(order_ss).permutation(n)
    if drop_last:
        order = order[: steps * batch_size]
    m = len(order)
    if spec.crop:
        crop = np.random.default_rng(crop_ss).integers(0, 2 * PAD + 1, size=(m, 2))
    else:
        crop = np.full((m, 2), PAD, dtype=np.int64)
    flip = np.random.default_rng(flip_ss).random(m) < 0.5 if spec.flip else np.zeros(m, dtype=bool)
    if spec.cutout:
        cutout = np.random.default_rng(cut_ss).integers(0, SIZE - spec.cutout + 1, size=(m, 2))
    else:
        cutout = np.full((m, 2), -1, dtype=np.int64)
    return EpochPlan(
        epoch=epoch,
        batch_size=batch_size,
        spec=spec,
        indices=np.asarray(subset, dtype=np.int64)[order],
        crop=crop.astype(np.int64),
        flip=flip,
        cutout=cutout.astype(np.int64),
    )


class DevicePlan:
    """An epoch plan moved to the device once, yielding augmented batches by tensor ops."""

    def __init__(self, plan: EpochPlan, device: torch.device):
        self.plan = plan
        self.indices = torch.as_tensor(plan.indices, device=device)
        self.crop = torch.as_tensor(plan.crop, device=device)
        self.flip = torch.as_tensor(plan.flip, device=device)
        self.cutout = torch.as_tensor(plan.cutout, device=device)
        self.arange = torch.arange(SIZE, device=device)

    def batch(self, padded: torch.Tensor, labels: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        sl = self.plan.batch(step)
        idx = self.indices[sl]
        x = apply_choices(
            padded[idx], self.crop[sl], self.flip[sl], self.cutout[sl], self.plan.spec.cutout, self.arange
        )
        return x, labels[idx]


def apply_choices(
    images: torch.Tensor,  # (B, C, 40, 40) padded images
    crop: torch.Tensor,  # (B, 2)
    flip: torch.Tensor,  # (B,) bool
    cutout: torch.Tensor,  # (B, 2)
    cutout_size: int,
    arange: torch.Tensor | None = None,
) -> torch.Tensor:
    """Crop, flip and Cutout a batch in one gather and one mask: no per-image Python loop."""
    b, c, hp, wp = images.shape
    ar = torch.arange(SIZE, device=images.device) if arange is None else arange
    rows = crop[:, :1] + ar  # (B, 32)
    cols = crop[:, 1:] + torch.where(flip[:, None], SIZE - 1 - ar, ar)  # a flip reads columns backwards
    flat = (rows[:, :, None] * wp + cols[:, None, :]).view(b, 1, SIZE * SIZE).expand(b, c, SIZE * SIZE)
    out = images.reshape(b, c, hp * wp).gather(2, flat).view(b, c, SIZE, SIZE)
    if cutout_size:
        # Zero after normalisation, i.e. the mean pixel (as in Page's code).
        in_rows = (ar >= cutout[:, :1]) & (ar < cutout[:, :1] + cutout_size)
        in_cols = (ar >= cutout[:, 1:]) & (ar < cutout[:, 1:] + cutout_size)
        out = out.masked_fill((in_rows[:, :, None] & in_cols[:, None, :])[:, None], 0)
    return out
