"""CIFAR-10 by the names the toolkit used before data sets were open (`forgetting.datasets` is the general
form): ``load_cifar10``, a ``Cifar10`` built from four arrays, and CIFAR-10's constants.

Sources, in order of precedence: an explicit path (``--data``), ``$FORGETTING_DATA``, then torchvision's
download into a user cache. A path may be an ``.npz`` (arrays ``train_x``, ``train_y``, ``test_x``,
``test_y``; NHWC uint8) or a folder holding torchvision's ``cifar-10-batches-py``.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from forgetting import datasets
from forgetting.datasets import DataError, Dataset, balanced_subset  # noqa: F401  (the names callers import from here)
from forgetting.datasets.loading import ENV_VAR, SIZES_ENV_VAR  # noqa: F401
from forgetting.datasets.registry import CIFAR10_CLASSES as CLASSES, CIFAR10_MEAN as MEAN, CIFAR10_STD as STD

NAME = "cifar10"
NUM_CLASSES = len(CLASSES)
TRAIN_SIZE, TEST_SIZE = datasets.spec_for(NAME).sizes
PAD = 4  # CIFAR-10's reflect padding before the random 32x32 crop (`augment.pad_for`)


def Cifar10(train_x, train_y, test_x, test_y, source: str = "arrays") -> Dataset:  # noqa: N802 (its old class name)
    """A `Dataset` named cifar10 (CIFAR-10's classes and published normalisation) from four arrays of any size."""
    arrays = dict(train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y)
    spec = datasets.spec_for(NAME)
    return datasets.make_dataset(NAME, arrays, source, spec.classes, spec.mean, spec.std)


def _verify(arrays: dict[str, np.ndarray], source: str) -> Dataset:
    return datasets.from_arrays(NAME, arrays, source)


def load_cifar10(source: str | os.PathLike | None = None, download: bool = False) -> Dataset:
    """Load and verify CIFAR-10 from ``source``, ``$FORGETTING_DATA`` or torchvision's cache."""
    return datasets.load_dataset(NAME, source, download=download)


def normalise(x_uint8_nhwc, device: torch.device, dtype=torch.float32) -> torch.Tensor:
    return datasets.normalise(x_uint8_nhwc, MEAN, STD, device, dtype)


def prepare_train(x_uint8_nhwc: np.ndarray, device: torch.device, dtype=torch.float32) -> torch.Tensor:
    return datasets.prepare_train(x_uint8_nhwc, MEAN, STD, PAD, device, dtype)


def describe(data: Dataset) -> dict:
    return data.describe()
