"""Reading a data set's arrays from disk: an ``.npz``, or a folder in torchvision's own format for it.

Each reader returns the four arrays (``train_x``, ``train_y``, ``test_x``, ``test_y``) as the files hold
them; `dataset.make_dataset` checks and canonicalises them. A folder may be given as torchvision's
``root`` or as the data set's own folder inside it (``cifar-10-batches-py``, ``MNIST/raw``, ...).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from forgetting.datasets.dataset import DataError


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` (no pickled objects); an optional ``classes`` array names the classes."""
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except Exception as e:  # zipfile, OSError, ValueError: all mean "not a readable npz"
        raise DataError(f"{path}: not a readable .npz ({type(e).__name__}: {e})") from None


def _folder(path: Path, inside: tuple[str, ...], first_file: str) -> Path:
    """``path`` itself or the first of its subfolders ``inside`` that holds ``first_file``."""
    for sub in inside:
        if (path / sub / first_file).exists():
            return path / sub
    return path


def _unpickle(path: Path, what: str) -> dict:
    try:
        with open(path, "rb") as f:
            return pickle.load(f, encoding="latin1")
    except Exception as e:
        raise DataError(f"{path}: not a readable {what} ({type(e).__name__}: {e})") from None


def _cifar_rows(d: dict, labels_key: str, path: Path, what: str) -> tuple[np.ndarray, np.ndarray]:
    """A CIFAR pickle's rows (1024 red, 1024 green, 1024 blue values per image) as NHWC, and its labels."""
    try:
        x = np.asarray(d["data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        return x, np.asarray(d[labels_key])
    except Exception as e:
        raise DataError(f"{path}: not a readable {what} ({type(e).__name__}: {e})") from None


def read_cifar10_folder(path: Path) -> dict[str, np.ndarray]:
    """torchvision's ``cifar-10-batches-py``: data_batch_1..5 and test_batch."""
    folder = _folder(path, ("cifar-10-batches-py",), "data_batch_1")

    def read(name: str) -> tuple[np.ndarray, np.ndarray]:
        return _cifar_rows(_unpickle(folder / name, "CIFAR-10 batch"), "labels", folder / name, "CIFAR-10 batch")

    train = [read(f"data_batch_{i}") for i in range(1, 6)]
    test_x, test_y = read("test_batch")
    return {
        "train_x": np.concatenate([x for x, _ in train]),
        "train_y": np.concatenate([y for _, y in train]),
        "test_x": test_x,
        "test_y": test_y,
    }


def read_cifar100_folder(path: Path) -> dict[str, np.ndarray]:
    """torchvision's ``cifar-100-python``: train and test, with the 100 fine labels."""
    folder = _folder(path, ("cifar-100-python",), "train")
    out = {}
    for split in ("train", "test"):
        file = folder / split
        x, y = _cifar_rows(_unpickle(file, "CIFAR-100 file"), "fine_labels", file, "CIFAR-100 file")
        out[f"{split}_x"], out[f"{split}_y"] = x, y
    return out


def read_svhn_folder(path: Path) -> dict[str, np.ndarray]:
    """torchvision's SVHN root: train_32x32.mat and test_32x32.mat (label 10 is the digit 0, as torchvision
    reads it)."""
    import scipy.io

    folder = _folder(path, ("svhn",), "train_32x32.mat")
    out = {}
    for split in ("train", "test"):
        file = folder / f"{split}_32x32.mat"
        try:
            mat = scipy.io.loadmat(file)
            x = np.transpose(mat["X"], (3, 0, 1, 2))  # (H, W, C, N) -> NHWC
            y = mat["y"].astype(np.int64).reshape(-1)
        except Exception as e:
            raise DataError(f"{file}: not a readable SVHN file ({type(e).__name__}: {e})") from None
        out[f"{split}_x"], out[f"{split}_y"] = x, np.where(y == 10, 0, y)
    return out


def _idx_folder_reader(folder_name: str):
    """torchvision's MNIST-style ``<root>/<folder_name>/raw`` of idx files, read with torchvision's own reader."""

    def read(path: Path) -> dict[str, np.ndarray]:
        from torchvision.datasets.mnist import read_image_file, read_label_file

        folder = _folder(path, (f"{folder_name}/raw", "raw"), "train-images-idx3-ubyte")
        out = {}
        for split, prefix in (("train", "train"), ("test", "t10k")):
            for key, name, reader in (("x", "images-idx3", read_image_file), ("y", "labels-idx1", read_label_file)):
                file = folder / f"{prefix}-{name}-ubyte"
                try:
                    out[f"{split}_{key}"] = reader(str(file)).numpy()
                except Exception as e:
                    raise DataError(f"{file}: not a readable idx file ({type(e).__name__}: {e})") from None
        return out

    return read
