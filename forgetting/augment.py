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

from forgetting.errors import UserError

CIFAR_IMAGE = (32, 32)  # (height, width) of the images the toolkit was written for


def pad_for(image: tuple[int, int]) -> int:
    """Reflect padding before the random crop: an eighth of the shorter side (Page's 4 pixels of 32)."""
    return max(1, min(image) // 8)


@dataclass(frozen=True)
class AugmentSpec:
    crop: bool = True  # random crop of the image's size from the reflect-padded image (32x32 of 40x40)
    flip: bool = True  # left-right flip with p = 0.5
    cutout: int = 0  # side of the Cutout square in pixels; 0 = no Cutout
    image: tuple[int, int] = CIFAR_IMAGE  # (height, width) of the images: the crop's size

    def __post_init__(self):
        if not 0 <= self.cutout <= min(self.image):
            raise UserError(f"cutout {self.cutout} is outside 0..{min(self.image)}")

    @property
    def pad(self) -> int:
        return pad_for(self.image)

    @classmethod
    def standard(cls, augment: bool, cutout: int = 0, flip: bool = True, image=CIFAR_IMAGE) -> "AugmentSpec":
        """crop+flip (+Cutout) when ``augment`` (flip only if ``flip``), else the plain centre image."""
        return cls(crop=augment, flip=augment and flip, cutout=cutout if augment else 0, image=tuple(image))

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
    crop: np.ndarray  # (n, 2) int64 top-left (y, x) of the crop in the padded image, 0..2 pad
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
    m, pad, (h, w) = len(order), spec.pad, spec.image
    if spec.crop:
        crop = np.random.default_rng(crop_ss).integers(0, 2 * pad + 1, size=(m, 2))
    else:
        crop = np.full((m, 2), pad, dtype=np.int64)
    flip = np.random.default_rng(flip_ss).random(m) < 0.5 if spec.flip else np.zeros(m, dtype=bool)
    if spec.cutout:
        # A square image draws both corners from one bound, as the committed runs did.
        high = h - spec.cutout + 1 if h == w else [h - spec.cutout + 1, w - spec.cutout + 1]
        cutout = np.random.default_rng(cut_ss).integers(0, high, size=(m, 2))
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

    def batch(self, padded: torch.Tensor, labels: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        sl, spec = self.plan.batch(step), self.plan.spec
        idx = self.indices[sl]
        x = apply_choices(padded[idx], self.crop[sl], self.flip[sl], self.cutout[sl], spec.cutout, spec.image)
        return x, labels[idx]


def apply_choices(
    images: torch.Tensor,  # (B, C, H + 2 pad, W + 2 pad) padded images
    crop: torch.Tensor,  # (B, 2)
    flip: torch.Tensor,  # (B,) bool
    cutout: torch.Tensor,  # (B, 2)
    cutout_size: int,
    image: tuple[int, int],  # (H, W): the crop's size
) -> torch.Tensor:
    """Crop, flip and Cutout a batch in one gather and one mask: no per-image Python loop."""
    b, c, hp, wp = images.shape
    h, w = image
    ar_h = torch.arange(h, device=images.device)
    ar_w = ar_h if w == h else torch.arange(w, device=images.device)
    rows = crop[:, :1] + ar_h  # (B, H)
    cols = crop[:, 1:] + torch.where(flip[:, None], w - 1 - ar_w, ar_w)  # a flip reads columns backwards
    flat = (rows[:, :, None] * wp + cols[:, None, :]).view(b, 1, h * w).expand(b, c, h * w)
    out = images.reshape(b, c, hp * wp).gather(2, flat).view(b, c, h, w)
    if cutout_size:
        # Zero after normalisation, i.e. the mean pixel (as in Page's code).
        in_rows = (ar_h >= cutout[:, :1]) & (ar_h < cutout[:, :1] + cutout_size)
        in_cols = (ar_w >= cutout[:, 1:]) & (ar_w < cutout[:, 1:] + cutout_size)
        out = out.masked_fill((in_rows[:, :, None] & in_cols[:, None, :])[:, None], 0)
    return out
