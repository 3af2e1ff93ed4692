"""What tests share besides fixtures: the repository's root, the real data's path, a synthetic CIFAR-10
and a real `forgetting` process. Fixtures stay in conftest.py, which pytest loads by itself."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from forgetting import data as data_mod

REPO_ROOT = Path(__file__).resolve().parent.parent
NO_DATA = (
    f"no CIFAR-10 found: set {data_mod.ENV_VAR} to a CIFAR-10 .npz or cifar-10-batches-py folder, "
    f"or run `forgetting data --download` (needs internet)"
)


def real_data_path() -> tuple[Path, str] | None:
    """CIFAR-10 where the commands find it: $FORGETTING_DATA, else the download cache; (path, what named
    it), or None."""
    from forgetting.datasets.loading import locate

    return locate("cifar10")


def make_synthetic(n_train: int = 500, n_test: int = 100, seed: int = 0) -> data_mod.Cifar10:
    """Random uint8 images with class-balanced labels in shuffled order (n divisible by 10)."""
    rng = np.random.default_rng(seed)
    train_y = rng.permutation(np.repeat(np.arange(10), n_train // 10)).astype(np.int64)
    test_y = rng.permutation(np.repeat(np.arange(10), n_test // 10)).astype(np.int64)
    return data_mod.Cifar10(
        train_x=rng.integers(0, 256, size=(n_train, 32, 32, 3), dtype=np.uint8),
        train_y=train_y,
        test_x=rng.integers(0, 256, size=(n_test, 32, 32, 3), dtype=np.uint8),
        test_y=test_y,
        source="synthetic",
    )


def start_cli(*args: str, data: Path | None = None, env: dict | None = None) -> subprocess.Popen:
    """`python -m forgetting.cli ARGS` as a real process in its own session (so a test can kill it whole),
    with text stdout/stderr pipes; ``data`` sets FORGETTING_DATA."""
    env = dict(os.environ if env is None else env, COLUMNS="200")
    if data is not None:
        env[data_mod.ENV_VAR] = str(Path(data).resolve())
    return subprocess.Popen(
        [sys.executable, "-m", "forgetting.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )


def image_arrays(
    n_train: int, n_test: int, shape=(32, 32, 3), classes: int = 10, seed: int = 0, counts=None
) -> dict[str, np.ndarray]:
    """Random uint8 images of ``shape`` (H, W) or (H, W, C) and labels: every class alike, shuffled, or
    ``counts[c]`` training images of class c (an unbalanced set)."""
    rng = np.random.default_rng(seed)
    per = counts if counts is not None else [n_train // classes + (c < n_train % classes) for c in range(classes)]
    train_y = rng.permutation(np.repeat(np.arange(classes), per))
    test_y = rng.permutation(np.arange(n_test) % classes)
    return dict(
        train_x=rng.integers(0, 256, (len(train_y), *shape), dtype=np.uint8),
        train_y=train_y,
        test_x=rng.integers(0, 256, (n_test, *shape), dtype=np.uint8),
        test_y=test_y,
    )


def write_cifar100_folder(root: Path, arrays: dict[str, np.ndarray]) -> Path:
    """``root/cifar-100-python`` as torchvision's download leaves it: pickled train and test (rows of 1024 red,
    1024 green, 1024 blue values; fine and coarse labels) and meta."""
    import pickle

    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        x, y = arrays[f"{split}_x"], arrays[f"{split}_y"]
        rows = x.transpose(0, 3, 1, 2).reshape(len(x), 3072)
        record = {"filenames": [f"{i}.png" for i in range(len(x))], "fine_labels": y.tolist()}
        record.update(coarse_labels=(y // 5).tolist(), data=rows)
        with open(folder / split, "wb") as f:
            pickle.dump(record, f, protocol=2)
    with open(folder / "meta", "wb") as f:
        pickle.dump({"fine_label_names": [f"c{i}" for i in range(100)]}, f, protocol=2)
    return folder


def write_idx_folder(root: Path, folder_name: str, arrays: dict[str, np.ndarray]) -> Path:
    """``root/<folder_name>/raw`` of big-endian idx files, as torchvision's MNIST download leaves it."""
    folder = Path(root) / folder_name / "raw"
    folder.mkdir(parents=True, exist_ok=True)
    for split, prefix in (("train", "train"), ("test", "t10k")):
        x, y = arrays[f"{split}_x"], arrays[f"{split}_y"].astype(np.uint8)
        x = x[..., 0] if x.ndim == 4 else x
        images = np.array([0x0803, len(x), *x.shape[1:]], dtype=">i4").tobytes() + x.tobytes()
        labels = np.array([0x0801, len(y)], dtype=">i4").tobytes() + y.tobytes()
        (folder / f"{prefix}-images-idx3-ubyte").write_bytes(images)
        (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(labels)
    return folder


def write_svhn_folder(root: Path, arrays: dict[str, np.ndarray]) -> Path:
    """SVHN's two .mat files as torchvision's download leaves them: X (H, W, C, N), y (N, 1) with 10 for the digit 0."""
    import scipy.io

    root.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        x, y = arrays[f"{split}_x"], arrays[f"{split}_y"]
        scipy.io.savemat(
            root / f"{split}_32x32.mat", {"X": x.transpose(1, 2, 3, 0), "y": np.where(y == 0, 10, y)[:, None]}
        )
    return root
