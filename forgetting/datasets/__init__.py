"""Data sets: values with an identity (`Dataset`), a registry by name, sources, balanced subsets.

``load_dataset("cifar100")`` finds a built-in data set in the user cache (``forgetting data cifar100
--download`` puts torchvision's download there); ``load_dataset("my-set", "my.npz")`` reads a user's own.
Nothing here imports more of the toolkit than its errors.
"""

from forgetting.datasets.dataset import DataError, DataIdentity, Dataset, make_dataset
from forgetting.datasets.loading import ENV_VAR, SIZES_ENV_VAR, DataFile, fetch, from_arrays, load_dataset, shippable
from forgetting.datasets.registry import DatasetSpec, names, reference, register, spec_for
from forgetting.datasets.subsets import balanced_subset, class_quotas
from forgetting.datasets.tensors import normalise, prepare_train

__all__ = [
    "DataError",
    "DataIdentity",
    "Dataset",
    "make_dataset",
    "ENV_VAR",
    "SIZES_ENV_VAR",
    "DataFile",
    "fetch",
    "from_arrays",
    "load_dataset",
    "shippable",
    "DatasetSpec",
    "names",
    "reference",
    "register",
    "spec_for",
    "balanced_subset",
    "class_quotas",
    "normalise",
    "prepare_train",
]
