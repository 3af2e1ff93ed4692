"""A data set as a value: its arrays and what identifies them.

A `Dataset` holds the training and test images (uint8, NHWC, 1 or 3 channels) and labels (int64) with
its name, class names, per-channel normalisation and a fingerprint of the arrays' content. A run names
its data by (name, fingerprint): two files that differ in one pixel are two data sets.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from forgetting.errors import UserError

ARRAYS = ("train_x", "train_y", "test_x", "test_y")
MIN_SIDE = 8  # the built-in nets halve the image three times


class DataError(UserError):
    """The data source is missing, unreadable or not the data set it is named as."""


@dataclass(frozen=True)
class DataIdentity:
    """What names a data set in a run's identity: its name and the fingerprint of its arrays."""

    name: str
    fingerprint: str

    def __str__(self) -> str:
        return f"{self.name} (fingerprint {self.fingerprint})"


@dataclass(frozen=True, eq=False)
class Dataset:
    name: str
    train_x: np.ndarray  # (N, H, W, C) uint8
    train_y: np.ndarray  # (N,) int64
    test_x: np.ndarray  # (M, H, W, C) uint8
    test_y: np.ndarray  # (M,) int64
    classes: tuple[str, ...]  # class names, by label
    mean: tuple[float, ...]  # per channel, of pixels / 255
    std: tuple[float, ...]
    source: str  # where it was read from
    fingerprint: str  # of the four arrays' content (`fingerprint`)

    @property
    def identity(self) -> DataIdentity:
        return DataIdentity(self.name, self.fingerprint)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width) of every image."""
        return tuple(int(s) for s in self.train_x.shape[1:3])

    @property
    def channels(self) -> int:
        return int(self.train_x.shape[3])

    @property
    def train_size(self) -> int:
        return len(self.train_y)

    @property
    def test_size(self) -> int:
        return len(self.test_y)

    def describe(self) -> dict:
        """What `forgetting data` prints: name, source, fingerprint, shape, normalisation, per-class counts."""
        h, w = self.image_size
        return {
            "name": self.name,
            "source": self.source,
            "fingerprint": self.fingerprint,
            "image": f"{h}x{w}x{self.channels}",
            "classes": list(self.classes),
            "mean": list(self.mean),
            "std": list(self.std),
            "train": self.train_size,
            "test": self.test_size,
            "train_per_class": np.bincount(self.train_y, minlength=self.num_classes).tolist(),
            "test_per_class": np.bincount(self.test_y, minlength=self.num_classes).tolist(),
        }

    def __repr__(self) -> str:
        h, w = self.image_size
        return (
            f"Dataset({self.name!r}, {self.train_size:,} train / {self.test_size:,} test, {h}x{w}x{self.channels}, "
            f"{self.num_classes} classes, fingerprint {self.fingerprint})"
        )


def _check_images(key: str, a: np.ndarray, source: str) -> None:
    if a.dtype != np.uint8:
        raise DataError(f"{source}: '{key}' has dtype {a.dtype}, expected uint8")
    if a.ndim not in (3, 4) or (a.ndim == 4 and a.shape[3] not in (1, 3)):
        raise DataError(
            f"{source}: '{key}' has shape {a.shape}, expected (N, H, W, C) with 1 or 3 channels last, or (N, H, W)"
        )
    if min(a.shape[1:3]) < MIN_SIDE:
        raise DataError(
            f"{source}: '{key}' has {a.shape[1]}x{a.shape[2]} images, expected at least {MIN_SIDE}x{MIN_SIDE}"
        )


def check_arrays(arrays: dict[str, np.ndarray], source: str, num_classes: int | None) -> int:
    """Refuse arrays that are not a data set (one line naming ``source``); the class count."""
    for key in ARRAYS:
        if key not in arrays:
            raise DataError(f"{source}: missing array '{key}' (need train_x, train_y, test_x, test_y)")
    for split in ("train", "test"):
        x, y = arrays[f"{split}_x"], arrays[f"{split}_y"]
        _check_images(f"{split}_x", x, source)
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise DataError(
                f"{source}: '{split}_y' has shape {y.shape} and dtype {y.dtype}, expected integer labels (N,)"
            )
        if len(x) != len(y) or len(x) == 0:
            raise DataError(f"{source}: {split}_x has {len(x)} images but {split}_y has {len(y)} labels")
    shapes = {split: tuple(arrays[f"{split}_x"].shape[1:]) for split in ("train", "test")}
    if shapes["train"] != shapes["test"]:
        raise DataError(f"{source}: training images are {shapes['train']} but test images are {shapes['test']}")
    top = max(int(arrays["train_y"].max()), int(arrays["test_y"].max()))
    k = num_classes if num_classes is not None else top + 1
    for split in ("train", "test"):
        y = arrays[f"{split}_y"]
        if y.min() < 0 or y.max() >= k:
            raise DataError(f"{source}: {split}_y holds labels outside 0..{k - 1} ({y.min()}..{y.max()})")
    return k


def canonical(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """NHWC uint8 images (a channel axis added to NHW), int64 labels, C-contiguous: what is fingerprinted."""
    out = {}
    for key in ARRAYS:
        a = arrays[key]
        if key.endswith("_x"):
            out[key] = np.ascontiguousarray(a[..., None] if a.ndim == 3 else a)
        else:
            out[key] = np.ascontiguousarray(a, dtype=np.int64)
    return out


def fingerprint(arrays: dict[str, np.ndarray]) -> str:
    """16 hex digits of BLAKE2b over the canonical arrays' names, dtypes, shapes and bytes."""
    h = hashlib.blake2b(digest_size=8)
    for key in ARRAYS:
        a = arrays[key]
        h.update(f"{key}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.data)
    return h.hexdigest()


def channel_stats(x_nhwc: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of pixels / 255, exact (from value histograms), to 4 places."""
    values = np.arange(256) / 255.0
    means, stds = [], []
    for ch in range(x_nhwc.shape[3]):
        hist = np.bincount(x_nhwc[..., ch].ravel(), minlength=256) / (x_nhwc[..., ch].size)
        mean = float(hist @ values)
        std = float(np.sqrt(hist @ (values - mean) ** 2))
        means.append(round(mean, 4))
        stds.append(round(std, 4) if std > 0 else 1.0)  # a constant channel: centre it, do not divide by 0
    return tuple(means), tuple(stds)


def make_dataset(
    name: str,
    arrays: dict[str, np.ndarray],
    source: str,
    classes: tuple[str, ...] | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
) -> Dataset:
    """A checked `Dataset` from four arrays; ``mean``/``std`` default to the training split's own statistics,
    ``classes`` to the labels' numbers ("0", "1", ...)."""
    k = check_arrays(arrays, source, len(classes) if classes is not None else None)
    a = canonical(arrays)
    if mean is None or std is None:
        mean, std = channel_stats(a["train_x"])
    if len(mean) != a["train_x"].shape[3] or len(std) != a["train_x"].shape[3]:
        raise DataError(
            f"{source}: normalisation for {len(mean)} channels, but the images have {a['train_x'].shape[3]}"
        )
    return Dataset(
        name=name,
        **a,
        classes=tuple(classes) if classes is not None else tuple(str(c) for c in range(k)),
        mean=tuple(float(m) for m in mean),
        std=tuple(float(s) for s in std),
        source=source,
        fingerprint=fingerprint(a),
    )
