"""What a run is: `TrainConfig`, the blog's presets, a run's id, and each setting's choices.

Everything here is data about a run, decided before it trains; `forgetting.train` runs it. Units:
LR in the mean-loss convention, epochs, images.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass

from forgetting import augment, datasets, nets, optimizers
from forgetting.datasets import DataIdentity
from forgetting.errors import UserError
from forgetting.schedules import PiecewiseLinear, triangle

PRECISIONS = ("auto", "fp32", "bf16", "fp16")  # auto: bf16 or fp16 on CUDA, fp32 on CPU
BN_INITS = ("default", *nets.BN_INITS)  # default: each net's faithful choice
BN_MODES = ("eval", "batch")  # the probe's BN: running statistics, or each batch's own
# The data every run committed under results/ trained on: CIFAR-10 as released (torchvision's download).
REFERENCE_DATA: DataIdentity = datasets.reference("cifar10")
# Settings added after results were committed -> the value at which a run is the same as before.
# Runs before drop_last dropped the partial batch, so True names them; False (the default) only
# enters the identity when the subset leaves a partial batch. Runs before data sets had identities
# all trained on the reference CIFAR-10, with flips.
IDENTITY_NEUTRAL: dict = {
    **{"eval_last": 0, "precision": "auto", "drop_last": True, "eval_train": False, "flip": True},
    **{"dataset": REFERENCE_DATA.name, "data_fingerprint": REFERENCE_DATA.fingerprint, "net_source": ""},
    **{"optimizer": "sgd", "indices": ()},
}
# How a run is executed, not what it computes (compiled kernels round differently, as thread counts
# do): recorded in result.json, left out of the run's id so a compiled run counts as the same run.
EXECUTION_SETTINGS = ("compile",)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a run. Units: LR in the mean-loss convention, epochs, images."""

    net: str = "dawn18"  # a registered network (`forgetting.nets`) or a user's "package.module:factory"
    width: float = 1.0  # channel multiplier
    shortcut: str = "page"  # dawn18 only: "page" adds relu(bn(x)), "johnson" adds x
    bn_init: str = "default"  # one of BN_INITS
    subset: int = 50_000  # class-balanced training images (with indices: their number)
    # The training images by index (torch.utils.data.Subset's indices), sorted: a run trains on exactly
    # these. Empty: a class-balanced subset of `subset` images, drawn by the seed. Its id names them by hash.
    indices: tuple[int, ...] = ()
    epochs: int = 30
    batch_size: int = 512
    lr_knots: tuple[tuple[float, float], ...] = ((0, 0), (8, 0.4), (30, 0))  # (epoch, LR)
    augment: bool = True  # random crop of the padded image + flip
    flip: bool = True  # with augment: the left-right flip too (off for data sets where a mirror changes the class)
    cutout: int = 0  # Cutout square side in pixels (with augment only)
    seed: int = 0  # initial weights, subset and every epoch's batch plan
    optimizer: str = "sgd"  # one of forgetting.optimizers: "sgd" (Page's Nesterov SGD) or "adamw"
    momentum: float = 0.9  # sgd
    weight_decay: float = 5e-4  # sgd: L2 in the mean-loss convention; adamw: decoupled
    betas: tuple[float, float] = (0.9, 0.999)  # adamw
    eps: float = 1e-8  # adamw
    eval_every: int = 0  # test-set evaluation every N epochs; 0 = final epoch only
    eval_last: int = 0  # also evaluate on each of the last N epochs (a constant-LR tail is noisy)
    # On every test epoch also evaluate the clean (unaugmented) training subset: whether a run fits
    # its data, epoch by epoch, not only at the end (result.json's clean_train_loss).
    eval_train: bool = False
    label: str = ""  # free text carried into tables (e.g. the preset)
    precision: str = "auto"  # one of PRECISIONS
    drop_last: bool = False  # False = Page's loader: an epoch ends with the partial batch
    # torch.compile the training step; None = on for CUDA, off on CPU. An execution setting like the
    # device and the thread count: never part of the run's identity (see identity()).
    compile: bool | None = None
    # The data set the run trains on: its name and the fingerprint of its arrays. "" = not yet bound:
    # `bind_data` (what `train.train` and a study's grid call) sets them from the data set itself.
    dataset: str = ""
    data_fingerprint: str = ""
    # A user's network: a hash of its source (its module's file), so that editing it renames its runs.
    # Set from the network itself when left empty; "" for the built-ins.
    net_source: str = ""

    def __post_init__(self):
        nets.check_known(self.net)
        nets.check_options(
            self.net, shortcut=self.shortcut, bn_init=None if self.bn_init == "default" else self.bn_init
        )
        if not self.net_source and self.net not in nets.BUILT_IN:
            object.__setattr__(self, "net_source", nets.source_hash(self.net))
        checks = [
            (0 < self.width < float("inf"), f"width must be finite and positive, not {self.width}"),
            (self.subset >= 1, f"subset must be at least 1, not {self.subset}"),
            (self.epochs >= 1, f"epochs must be at least 1, not {self.epochs}"),
            (self.batch_size >= 1, f"batch size must be at least 1, not {self.batch_size}"),
            (self.batch_size <= self.subset, f"batch size {self.batch_size} is larger than the subset ({self.subset})"),
            (all(lr >= 0 for _, lr in self.lr_knots), "learning rates must not be negative"),
            (self.bn_init in BN_INITS, f"bn_init must be one of {', '.join(BN_INITS)}, not {self.bn_init!r}"),
            (self.eval_every >= 0, "eval_every must not be negative"),
            (self.eval_last >= 0, "eval_last must not be negative"),
            (self.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}"),
            (self.cutout >= 0, f"cutout must not be negative, not {self.cutout}"),
            *_index_checks(self.indices, self.subset),
        ]
        for ok, msg in checks:
            if not ok:
                raise UserError(msg)
        PiecewiseLinear(self.lr_knots)  # validates the knots
        optimizers.spec(self.optimizer)
        optimizers.check(self.momentum, self.weight_decay, self.betas, self.eps)

    @property
    def schedule(self) -> PiecewiseLinear:
        return PiecewiseLinear(self.lr_knots)

    @property
    def data(self) -> DataIdentity | None:
        """The data set the run is bound to; None before `bind_data`."""
        return DataIdentity(self.dataset, self.data_fingerprint) if self.data_fingerprint else None

    def augment_for(self, image: tuple[int, int]) -> augment.AugmentSpec:
        """The augmentation of this run on images of ``image`` = (height, width)."""
        return augment.AugmentSpec.standard(self.augment, self.cutout, self.flip, image)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["lr_knots"] = [list(k) for k in self.lr_knots]
        d["betas"] = list(self.betas)  # as config.json holds it
        d["indices"] = list(self.indices)
        return d

    def identity(self) -> dict:
        """What names a run (its id hashes this): to_dict without settings added after runs were
        committed, while they are at the value that reproduces those runs, so old run ids stay."""
        d = self.to_dict()
        for key in EXECUTION_SETTINGS:
            d.pop(key)
        if self.subset % self.batch_size == 0:
            d["drop_last"] = IDENTITY_NEUTRAL["drop_last"]  # no partial batch: both settings are the same run
        if not self.augment:
            d["flip"] = IDENTITY_NEUTRAL["flip"]  # nothing is flipped without augmentation
        d["indices"] = indices_hash(self.indices) if self.indices else ()  # the set, not thousands of numbers
        for key in set(optimizers.HYPERPARAMETERS) - set(optimizers.spec(self.optimizer).reads):
            d.pop(key)  # what the optimizer does not read does not name the run (sgd: betas, eps)
        for key, neutral in IDENTITY_NEUTRAL.items():
            if d.get(key) == neutral:
                d.pop(key)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """A config as config.json (or a checkpoint) holds it. One written before data sets had identities
        was a run on the reference CIFAR-10: it is read as bound to it."""
        d = {"dataset": REFERENCE_DATA.name, "data_fingerprint": REFERENCE_DATA.fingerprint, **d}
        d["lr_knots"] = tuple(tuple(float(v) for v in k) for k in d["lr_knots"])
        if "betas" in d:
            d["betas"] = tuple(float(b) for b in d["betas"])
        d["indices"] = tuple(int(i) for i in d.get("indices") or ())
        return cls(**d)


def _index_checks(indices: tuple[int, ...], subset: int) -> list[tuple[bool, str]]:
    if not indices:
        return []
    ordered = all(a < b for a, b in zip(indices, indices[1:]))
    return [
        (ordered and indices[0] >= 0, "indices must be distinct, sorted and not negative"),
        (len(indices) == subset, f"subset {subset} is not the number of indices ({len(indices)})"),
    ]


def indices_hash(indices) -> str:
    """A set of training images by name: the hash of its sorted indices, as a run's id names them."""
    blob = ",".join(str(int(i)) for i in sorted(indices)).encode()
    return "sha256:" + hashlib.sha256(blob).hexdigest()[:16]


def check_fits(cfg: TrainConfig, data: datasets.Dataset) -> None:
    """Refuse, before anything is trained or written, a run that asks more of ``data`` than it has."""
    if cfg.subset > data.train_size:
        raise UserError(f"subset size {cfg.subset} is outside 1..{data.train_size} (the images of {data.name})")
    if cfg.indices and cfg.indices[-1] >= data.train_size:
        raise UserError(f"index {cfg.indices[-1]} is outside 0..{data.train_size - 1} (the images of {data.name})")
    cfg.augment_for(data.image_size)  # a Cutout square no larger than the images


def with_all_images(cfg: TrainConfig, data: datasets.Dataset) -> TrainConfig:
    """``cfg`` on every training image of ``data`` (a command's default subset)."""
    return dataclasses.replace(cfg, subset=data.train_size)


def recorded_data(record: dict) -> DataIdentity:
    """The data set a study.json's runs trained on (none named: the reference CIFAR-10, as before data
    sets had identities)."""
    data = record.get("data")
    return DataIdentity(data["name"], data["fingerprint"]) if data else REFERENCE_DATA


class DataMismatch(UserError):
    """A run (or its checkpoint) belongs to one data set and was handed another."""


def bind_data(cfg: TrainConfig, data: DataIdentity, what: str = "the run") -> TrainConfig:
    """``cfg`` on ``data``: a config not yet bound takes its identity; one bound to other data is refused,
    in one line that names both data sets (weights are never trained on, resumed or probed with other data)."""
    if cfg.data is None:
        return dataclasses.replace(cfg, dataset=data.name, data_fingerprint=data.fingerprint)
    if cfg.data != data:
        raise DataMismatch(f"{what} belongs to data set {cfg.data}, not to {data}: another data set is another run")
    return cfg


def run_id(cfg: TrainConfig) -> str:
    """A run's name in the store: a hash of its identity, so any setting that changes the run renames it."""
    blob = json.dumps(cfg.identity(), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def is_test_epoch(cfg: TrainConfig, epoch: int) -> bool:
    """Whether the run evaluates on the test set after ``epoch`` (0-based): the final epoch, every
    ``eval_every``-th and the last ``eval_last``. A run that diverges stops there, unevaluated."""
    periodic = cfg.eval_every > 0 and (epoch + 1) % cfg.eval_every == 0
    return epoch == cfg.epochs - 1 or periodic or epoch >= cfg.epochs - cfg.eval_last


# The blog's stages (docs/protocol.md, section 3). LR knots are (epoch, LR) in the mean-loss convention.
PRESETS: dict[str, dict] = {
    "part1": dict(net="dawn18", batch_size=128, epochs=35, lr_knots=((0, 0), (15, 0.1), (30, 0.005), (35, 0))),
    "part2": dict(net="dawn18", batch_size=512, epochs=35, lr_knots=((0, 0), (15, 0.44), (30, 0.005), (35, 0))),
    "part3": dict(net="dawn18", batch_size=768, epochs=30, cutout=8, lr_knots=((0, 0), (8, 0.6), (30, 0))),
    "part4": dict(net="resnet9", batch_size=512, epochs=24, lr_knots=((0, 0), (5, 0.4), (24, 0))),
}
DEFAULT_PEAK_LR = 0.4


def make_config(preset: str | None = None, lr: float | None = None, **overrides) -> TrainConfig:
    """A preset's config with overrides; without a preset, Part 3's shape stretched to ``epochs``.

    ``lr`` rescales a preset's knots so that their peak equals ``lr``.
    """
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if preset is not None:
        if preset not in PRESETS:
            raise UserError(f"unknown preset {preset!r} (choose from {', '.join(PRESETS)})")
        base = dict(PRESETS[preset], label=preset)
        if "epochs" in overrides and overrides["epochs"] != base["epochs"]:
            stretch = overrides["epochs"] / base["epochs"]
            base["lr_knots"] = tuple((e * stretch, v) for e, v in base["lr_knots"])
        if lr is not None:
            peak = max(v for _, v in base["lr_knots"])
            base["lr_knots"] = tuple((e, v * lr / peak) for e, v in base["lr_knots"])
        base.update(overrides)
        return TrainConfig(**base)
    epochs = overrides.pop("epochs", 30)
    knots = triangle(DEFAULT_PEAK_LR if lr is None else lr, epochs).knots
    return TrainConfig(**{"epochs": epochs, "batch_size": 512, "lr_knots": knots, **overrides})
