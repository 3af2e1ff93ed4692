"""CIFAR-10: find a source, verify it, take class-balanced nested subsets, preprocess once.

Sources, in order of precedence: an explicit path (``--data``), ``$FORGETTING_DATA``, then
torchvision's download into a user cache. A path may be an ``.npz`` (arrays ``train_x``,
``train_y``, ``test_x``, ``test_y``; NHWC uint8) or a folder holding torchvision's
``cifar-10-batches-py``.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from forgetting.errors import UserError

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
NUM_CLASSES = 10
TRAIN_SIZE = 50_000
TEST_SIZE = 10_000
# Per-channel statistics of the training pixels / 255 (docs/protocol.md, section 3).
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2471, 0.2435, 0.2616)
PAD = 4  # reflect padding before the random 32x32 crop
ENV_VAR = "FORGETTING_DATA"
# A data set in CIFAR-10's format but of other sizes (a reduced copy, a test fixture) is accepted only
# when the user says so: a file with 10 training images must not pass as CIFAR-10.
SIZES_ENV_VAR = "FORGETTING_DATA_SIZES"
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "forgetting"


class DataError(UserError):
    """The data source is missing, unreadable or not CIFAR-10."""


@dataclass(frozen=True)
class Cifar10:
    train_x: np.ndarray  # (50000, 32, 32, 3) uint8, NHWC
    train_y: np.ndarray  # (50000,) int64
    test_x: np.ndarray  # (10000, 32, 32, 3) uint8
    test_y: np.ndarray  # (10000,) int64
    source: str


def _verify(arrays: dict[str, np.ndarray], source: str) -> Cifar10:
    expected = {"train_x": (None, 32, 32, 3), "train_y": (None,), "test_x": (None, 32, 32, 3), "test_y": (None,)}
    for key, shape in expected.items():
        if key not in arrays:
            raise DataError(f"{source}: missing array '{key}' (need train_x, train_y, test_x, test_y)")
        a = arrays[key]
        if a.ndim != len(shape) or any(s is not None and s != d for s, d in zip(shape, a.shape)):
            raise DataError(f"{source}: '{key}' has shape {a.shape}, expected {tuple(s or 'N' for s in shape)}")
        if a.dtype != np.uint8 and key.endswith("_x"):
            raise DataError(f"{source}: '{key}' has dtype {a.dtype}, expected uint8")
        if key.endswith("_y") and not np.issubdtype(a.dtype, np.integer):
            raise DataError(f"{source}: '{key}' has dtype {a.dtype}, expected integer labels")
    for split in ("train", "test"):
        x, y = arrays[f"{split}_x"], arrays[f"{split}_y"]
        if len(x) != len(y) or len(x) == 0:
            raise DataError(f"{source}: {split}_x has {len(x)} images but {split}_y has {len(y)} labels")
        if y.min() < 0 or y.max() >= NUM_CLASSES:
            raise DataError(f"{source}: {split}_y holds labels outside 0..9 ({y.min()}..{y.max()})")
    _verify_sizes(len(arrays["train_y"]), len(arrays["test_y"]), source)
    return Cifar10(
        train_x=np.ascontiguousarray(arrays["train_x"]),
        train_y=arrays["train_y"].astype(np.int64),
        test_x=np.ascontiguousarray(arrays["test_x"]),
        test_y=arrays["test_y"].astype(np.int64),
        source=source,
    )


def _verify_sizes(n_train: int, n_test: int, source: str) -> None:
    if os.environ.get(SIZES_ENV_VAR, "").strip().lower() == "any":
        return
    if (n_train, n_test) != (TRAIN_SIZE, TEST_SIZE):
        raise DataError(
            f"{source}: {n_train:,} training and {n_test:,} test images, but CIFAR-10 has {TRAIN_SIZE:,} and "
            f"{TEST_SIZE:,} (for a different data set in CIFAR-10's format set {SIZES_ENV_VAR}=any)"
        )


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except Exception as e:  # zipfile, OSError, ValueError: all mean "not a readable npz"
        raise DataError(f"{path}: not a readable CIFAR-10 .npz ({type(e).__name__}: {e})") from None


def _load_batches_folder(path: Path) -> dict[str, np.ndarray]:
    folder = path / "cifar-10-batches-py" if (path / "cifar-10-batches-py").is_dir() else path

    def read(name: str) -> tuple[np.ndarray, np.ndarray]:
        try:
            with open(folder / name, "rb") as f:
                d = pickle.load(f, encoding="latin1")
            x = np.asarray(d["data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
            return x, np.asarray(d["labels"])
        except Exception as e:
            raise DataError(f"{folder / name}: not a readable CIFAR-10 batch ({type(e).__name__}: {e})") from None

    train = [read(f"data_batch_{i}") for i in range(1, 6)]
    test_x, test_y = read("test_batch")
    return {
        "train_x": np.concatenate([x for x, _ in train]),
        "train_y": np.concatenate([y for _, y in train]),
        "test_x": test_x,
        "test_y": test_y,
    }


def load_cifar10(source: str | os.PathLike | None = None, download: bool = False) -> Cifar10:
    """Load and verify CIFAR-10 from ``source``, ``$FORGETTING_DATA`` or torchvision's cache."""
    chosen = source if source not in (None, "") else os.environ.get(ENV_VAR) or None
    if chosen is not None:
        path = Path(chosen).expanduser()
        if not path.exists():
            raise DataError(f"{path}: no such file or folder (given by {'--data' if source else ENV_VAR})")
        arrays = _load_batches_folder(path) if path.is_dir() else _load_npz(path)
        return _verify(arrays, str(path))
    folder = CACHE_DIR / "cifar-10-batches-py"
    if folder.is_dir():
        return _verify(_load_batches_folder(folder), str(folder))
    if not download:
        raise DataError(
            f"no CIFAR-10 found: set {ENV_VAR} or pass --data to an .npz or cifar-10-batches-py folder, "
            f"or run `forgetting data --download` (needs internet)"
        )
    return _verify(_load_batches_folder(download_cifar10()), str(folder))


def download_cifar10() -> Path:
    """Fetch CIFAR-10 with torchvision into the user cache; one clear error when offline."""
    import torchvision

    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    try:
        torchvision.datasets.CIFAR10(str(CACHE_DIR), train=True, download=True)
        torchvision.datasets.CIFAR10(str(CACHE_DIR), train=False, download=True)
    except Exception as e:
        raise DataError(
            f"could not download CIFAR-10 ({type(e).__name__}); offline, set {ENV_VAR} or pass --data"
        ) from None
    return CACHE_DIR / "cifar-10-batches-py"


def balanced_subset(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Dataset indices of a class-balanced subset, nested across sizes for a fixed seed.

    Each class's images are put in one seeded order; a subset takes the first ``size // 10``
    of every class (the remainder goes to the lowest classes). A larger subset therefore
    contains every smaller one drawn with the same seed.
    """
    n = len(labels)
    if not 1 <= size <= n:
        raise UserError(f"subset size {size} is outside 1..{n}")
    counts = np.bincount(labels, minlength=NUM_CLASSES)
    per_class = np.full(NUM_CLASSES, size // NUM_CLASSES) + (np.arange(NUM_CLASSES) < size % NUM_CLASSES)
    if np.any(per_class > counts):
        raise UserError(f"subset size {size} needs more images of some class than the data holds")
    rng = np.random.default_rng([seed, 0x5EB5E7])  # a stream of its own, apart from the epochs'
    chosen = []
    for c in range(NUM_CLASSES):
        members = np.flatnonzero(labels == c)
        chosen.append(members[rng.permutation(len(members))[: per_class[c]]])
    return np.sort(np.concatenate(chosen))


def normalise(x_uint8_nhwc: np.ndarray | torch.Tensor, device: torch.device, dtype=torch.float32) -> torch.Tensor:
    """uint8 NHWC -> normalised float NCHW on ``device`` (channels-last memory on CUDA)."""
    x = torch.as_tensor(x_uint8_nhwc).to(device)
    mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1) * 255
    std = torch.tensor(STD, device=device).view(1, 3, 1, 1) * 255
    x = (x.permute(0, 3, 1, 2).float() - mean) / std
    return x.to(dtype)


def prepare_train(x_uint8_nhwc: np.ndarray, device: torch.device, dtype=torch.float32) -> torch.Tensor:
    """Normalise and reflect-pad once: (N, 3, 40, 40) on ``device``, ready for batched crops."""
    x = normalise(x_uint8_nhwc, device, torch.float32)
    x = torch.nn.functional.pad(x, (PAD, PAD, PAD, PAD), mode="reflect")
    return x.to(dtype).contiguous()


def describe(data: Cifar10) -> dict:
    """What `forgetting data` prints: source, sizes and per-class counts."""
    return {
        "source": data.source,
        "train": len(data.train_y),
        "test": len(data.test_y),
        "train_per_class": np.bincount(data.train_y, minlength=NUM_CLASSES).tolist(),
        "test_per_class": np.bincount(data.test_y, minlength=NUM_CLASSES).tolist(),
    }
