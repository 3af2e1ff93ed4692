"""The data sets known by name: what each one is (classes, image shape, sizes, normalisation, flip) and
how its files are read and downloaded. A user's data set joins with `register`, as the built-ins do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from forgetting.datasets import formats
from forgetting.datasets.dataset import DataIdentity
from forgetting.errors import UserError

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR100_CLASSES = tuple(
    """apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel can
    castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur dolphin
    elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster
    man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck
    pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk
    skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television tiger
    tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm""".split()
)
DIGITS = tuple(str(d) for d in range(10))
FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
# CIFAR-10's published per-channel statistics of the training pixels / 255 (docs/protocol.md, section 3).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2471, 0.2435, 0.2616)
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # a data set's name: no ':' or '/', it appears in tables


@dataclass(frozen=True)
class DatasetSpec:
    """A data set by name. ``None`` in a field means "whatever the file holds"."""

    name: str
    title: str = ""  # how people write it ("CIFAR-10"); default: the name
    classes: tuple[str, ...] | None = None  # class names by label; None: from the file, else "0", "1", ...
    image: tuple[int, int, int] | None = None  # (height, width, channels) its images must have
    sizes: tuple[int, int] | None = None  # (train, test) images of the full data set
    mean: tuple[float, ...] | None = None  # published normalisation; None: computed from the training split
    std: tuple[float, ...] | None = None
    flip: bool = True  # the flip augmentation's default: off where a mirror image changes the class (digits)
    folder: str | None = None  # its folder under the user cache (as torchvision's download leaves it)
    read_folder: Callable[[Path], dict] | None = None  # a folder in torchvision's format -> arrays
    download: Callable[[Path], None] | None = None  # torchvision's download into a root folder
    # The fingerprint of the official release (every faithful copy has it), where it is known.
    fingerprint: str | None = None

    @property
    def label(self) -> str:
        return self.title or self.name


def _torchvision_download(cls_name: str, split_arg: bool = False, into: str = "") -> Callable[[Path], None]:
    """torchvision's own download of both splits into ``root`` (``root/into`` for SVHN, which has no folder of
    its own)."""

    def download(root: Path) -> None:
        import torchvision

        cls = getattr(torchvision.datasets, cls_name)
        for split in ("train", "test"):
            kwargs = {"split": split} if split_arg else {"train": split == "train"}
            cls(str(Path(root) / into), download=True, **kwargs)

    return download


REGISTRY: dict[str, DatasetSpec] = {}


def register(spec: DatasetSpec, replace: bool = False) -> DatasetSpec:
    """Add a data set by name (the built-ins are added the same way); a name is registered once unless ``replace``."""
    if not NAME.fullmatch(spec.name):
        raise UserError(f"data set name {spec.name!r}: use letters, digits, '-', '_' and '.'")
    if spec.name in REGISTRY and not replace:
        raise UserError(f"a data set named {spec.name!r} is already registered")
    REGISTRY[spec.name] = spec
    return spec


def spec_for(name: str) -> DatasetSpec:
    """The registered data set ``name``, or a user's data set of that name, known by its file alone."""
    if name in REGISTRY:
        return REGISTRY[name]
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise UserError(f"data set name {name!r}: use letters, digits, '-', '_' and '.'")
    return DatasetSpec(name)


def names() -> list[str]:
    return list(REGISTRY)


def reference(name: str) -> DataIdentity | None:
    """The identity of data set ``name``'s official release, or None where its fingerprint is not known."""
    spec = spec_for(name)
    return DataIdentity(spec.name, spec.fingerprint) if spec.fingerprint else None


for _spec in (
    DatasetSpec(
        "cifar10",
        "CIFAR-10",
        CIFAR10_CLASSES,
        (32, 32, 3),
        (50_000, 10_000),
        CIFAR10_MEAN,
        CIFAR10_STD,
        folder="cifar-10-batches-py",
        read_folder=formats.read_cifar10_folder,
        download=_torchvision_download("CIFAR10"),
        fingerprint="37b03a38ced799bd",  # the python batches' arrays, as every run committed under results/ read them
    ),
    DatasetSpec(
        "cifar100",
        "CIFAR-100",
        CIFAR100_CLASSES,
        (32, 32, 3),
        (50_000, 10_000),
        folder="cifar-100-python",
        read_folder=formats.read_cifar100_folder,
        download=_torchvision_download("CIFAR100"),
    ),
    DatasetSpec(
        "svhn",
        "SVHN",
        DIGITS,
        (32, 32, 3),
        (73_257, 26_032),
        flip=False,
        folder="svhn",
        read_folder=formats.read_svhn_folder,
        download=_torchvision_download("SVHN", split_arg=True, into="svhn"),
    ),
    DatasetSpec(
        "mnist",
        "MNIST",
        DIGITS,
        (28, 28, 1),
        (60_000, 10_000),
        flip=False,
        folder="MNIST",
        read_folder=formats._idx_folder_reader("MNIST"),
        download=_torchvision_download("MNIST"),
    ),
    DatasetSpec(
        "fashion-mnist",
        "Fashion-MNIST",
        FASHION_CLASSES,
        (28, 28, 1),
        (60_000, 10_000),
        folder="FashionMNIST",
        read_folder=formats._idx_folder_reader("FashionMNIST"),
        download=_torchvision_download("FashionMNIST"),
    ),
):
    register(_spec)
