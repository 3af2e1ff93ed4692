"""Find a data set's files and load it: an explicit path, ``$FORGETTING_DATA`` (CIFAR-10 only, as always),
the user cache where ``forgetting data NAME --download`` puts torchvision's download, in that order."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from forgetting.datasets import formats
from forgetting.datasets.dataset import DataError, DataIdentity, Dataset, check_arrays, make_dataset
from forgetting.datasets.registry import DatasetSpec, names, spec_for

ENV_VAR = "FORGETTING_DATA"  # CIFAR-10's file, when no other source is named
# A built-in data set's file of other sizes (a reduced copy, a test fixture) is accepted only when the user
# says so: a file with 10 training images must not pass as CIFAR-10.
SIZES_ENV_VAR = "FORGETTING_DATA_SIZES"
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "forgetting"


def _check_spec(spec: DatasetSpec, arrays: dict, source: str) -> None:
    """A built-in data set's file must have its images' shape and (unless the user says otherwise) sizes."""
    shape = tuple(arrays["train_x"].shape[1:]) + ((1,) if arrays["train_x"].ndim == 3 else ())
    if spec.image is not None and shape != spec.image:
        have, want = "x".join(map(str, shape)), "x".join(map(str, spec.image))
        raise DataError(f"{source}: its images are {have}, but {spec.label}'s are {want}")
    if spec.sizes is None or os.environ.get(SIZES_ENV_VAR, "").strip().lower() == "any":
        return
    n_train, n_test = (len(arrays[k]) for k in ("train_y", "test_y"))
    if (n_train, n_test) != spec.sizes:
        raise DataError(
            f"{source}: {n_train:,} training and {n_test:,} test images, but {spec.label} has {spec.sizes[0]:,} and "
            f"{spec.sizes[1]:,} (for a different data set in {spec.label}'s format set {SIZES_ENV_VAR}=any, "
            f"or give it a name of its own with --dataset)"
        )


def from_arrays(name: str, arrays: dict[str, np.ndarray], source: str) -> Dataset:
    """A data set named ``name`` from its arrays (an optional ``classes`` array names a user's classes),
    checked as the registry describes it."""
    spec = spec_for(name)
    classes = spec.classes
    if classes is None and "classes" in arrays:
        classes = tuple(str(c) for c in np.asarray(arrays["classes"]).tolist())
    check_arrays(arrays, source, len(classes) if classes else None)
    _check_spec(spec, arrays, source)
    return make_dataset(spec.name, arrays, source, classes, spec.mean, spec.std)


def _read(spec: DatasetSpec, path: Path) -> dict[str, np.ndarray]:
    if not path.is_dir():
        return formats.read_npz(path)
    if spec.read_folder is None:
        raise DataError(f"{path}: a folder, but {spec.label} is read from an .npz (no folder format is known for it)")
    return spec.read_folder(path)


def locate(name: str = "cifar10") -> tuple[Path, str] | None:
    """Where a command finds built-in data set ``name`` when no file is named: ``$FORGETTING_DATA``
    (CIFAR-10 only), else the user cache's folder if it is there; (path, what named it), or None."""
    spec = spec_for(name)
    if spec.name == "cifar10" and os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser(), ENV_VAR
    if spec.folder is not None and (CACHE_DIR / spec.folder).is_dir():
        return CACHE_DIR / spec.folder, "the download cache"
    return None


def load_dataset(name: str = "cifar10", path: str | os.PathLike | None = None, download: bool = False) -> Dataset:
    """Load and check data set ``name`` from ``path``, else (CIFAR-10) ``$FORGETTING_DATA``, else the user cache;
    with ``download``, fetch it there through torchvision first if it is not there."""
    spec = spec_for(name)
    given_by = "--data"
    if path in (None, "") and spec.name == "cifar10" and os.environ.get(ENV_VAR):
        path, given_by = os.environ[ENV_VAR], ENV_VAR
    if path not in (None, ""):
        p = Path(path).expanduser()
        if not p.exists():
            raise DataError(f"{p}: no such file or folder (given by {given_by})")
        return from_arrays(spec.name, _read(spec, p), str(p))
    if spec.folder is None:
        raise DataError(
            f"data set {spec.name!r} is not built in (built in: {', '.join(names())}): name its .npz with --data "
            f"or the study's [data] path"
        )
    cached = CACHE_DIR / spec.folder
    if not cached.is_dir():
        if not download:
            env = f"set {ENV_VAR} or " if spec.name == "cifar10" else ""
            raise DataError(
                f"no {spec.label} found: {env}pass --data to an .npz or a folder in torchvision's format, "
                f"or run `forgetting data {spec.name} --download` (needs internet)"
            )
        fetch(spec.name)
    return from_arrays(spec.name, _read(spec, cached), str(cached))


def fetch(name: str) -> Path:
    """Download a built-in data set with torchvision into the user cache; one clear error when offline."""
    spec = spec_for(name)
    if spec.download is None:
        raise DataError(f"data set {spec.name!r} cannot be downloaded (downloadable: {', '.join(names())})")
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    try:
        spec.download(CACHE_DIR)
    except Exception as e:
        raise DataError(
            f"could not download {spec.label} ({type(e).__name__}); offline, pass --data to a copy of it"
        ) from None
    return CACHE_DIR / spec.folder


@dataclass(frozen=True)
class DataFile:
    """A data set by the file it was read from: what a worker process loads for itself, checked to be
    the same data (rather than being sent its arrays)."""

    name: str
    path: str
    identity: DataIdentity

    def load(self) -> Dataset:
        data = load_dataset(self.name, self.path)
        if data.identity != self.identity:
            raise DataError(
                f"{self.path}: now holds data set {data.identity}, not {self.identity} as when the sweep began"
            )
        return data


def shippable(data: Dataset) -> Dataset | DataFile:
    """What to send a worker process for ``data``: its file when it came from one, else the arrays themselves."""
    return DataFile(data.name, data.source, data.identity) if Path(data.source).exists() else data
