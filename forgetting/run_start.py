"""What a run starts from: its data prepared on the device, its seeded network and its optimizer."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from forgetting import augment, datasets, nets, optimizers
from forgetting.config import TrainConfig
from forgetting.datasets import Dataset
from forgetting.device import data_dtype

INIT_IMAGES = 5_000  # the images a network's init_from_data sees (airbench whitens with its first 5,000)


@dataclass
class Prepared:
    """The data of one run, on the device, prepared once."""

    subset: np.ndarray  # dataset indices of the training subset
    train_padded: torch.Tensor  # (N, C, H + 2 pad, W + 2 pad) normalised, reflect-padded (CIFAR-10: 40x40)
    train_labels: torch.Tensor  # (N,)
    test_x: torch.Tensor  # (M, C, H, W) normalised
    test_y: torch.Tensor
    augment: augment.AugmentSpec  # the run's augmentation on these images
    num_classes: int = 10

    def clean(self, indices: torch.Tensor) -> torch.Tensor:
        """Training images without augmentation: the padded images' centres."""
        p, (h, w) = self.augment.pad, self.augment.image
        return self.train_padded[indices][:, :, p : p + h, p : p + w]


def prepare(cfg: TrainConfig, data: Dataset, device: torch.device, cache: dict | None = None) -> Prepared:
    """Preprocess once per device (``cache`` lets a sweep reuse it across runs)."""
    dtype = data_dtype(device, cfg.precision)
    spec = cfg.augment_for(data.image_size)
    key = (data.identity, str(device), dtype)
    if cache is not None and key in cache:
        padded, labels, tx, ty = cache[key]
    else:
        padded = datasets.prepare_train(data.train_x, data.mean, data.std, spec.pad, device, dtype)
        labels = torch.as_tensor(data.train_y, device=device)
        tx = datasets.normalise(data.test_x, data.mean, data.std, device, dtype)
        ty = torch.as_tensor(data.test_y, device=device)
        if cache is not None:
            cache[key] = (padded, labels, tx, ty)
    if cfg.indices:  # the images a study chose (a pruned pool), as they are
        subset = np.asarray(cfg.indices, dtype=np.int64)
    else:
        subset = datasets.balanced_subset(data.train_y, cfg.subset, cfg.seed, data.num_classes)
    return Prepared(subset, padded, labels, tx, ty, spec, data.num_classes)


def build_model(cfg: TrainConfig, device: torch.device, prep: Prepared | None = None) -> torch.nn.Module:
    """The run's network, seeded, for ``prep``'s classes and channels (CIFAR-10's without it); a network that
    learns something from the data before training (`init_from_data`) sees up to 5,000 of the run's images."""
    torch.manual_seed(cfg.seed)
    bn_init = None if cfg.bn_init == "default" else cfg.bn_init
    classes, channels = (prep.num_classes, prep.test_x.shape[1]) if prep is not None else (10, 3)
    options = dict(shortcut=cfg.shortcut, bn_init=bn_init)
    model = nets.build(cfg.net, classes, channels, cfg.width, source=cfg.net_source, **options).to(device)
    if prep is not None and hasattr(model, "init_from_data"):
        subset = torch.as_tensor(prep.subset[:INIT_IMAGES], device=device)
        model.init_from_data(prep.clean(subset))
    # Channels-last on every device: tensor cores want it on CUDA, and oneDNN's CPU convolutions
    # ran 1.1-1.4x faster with it here (benchmarks/README.md).
    model = model.to(memory_format=torch.channels_last)
    return model


def make_optimizer(cfg: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    """The run's optimizer (`forgetting.optimizers`) over the model's parameters; the schedule sets its LR."""
    hyper = {key: getattr(cfg, key) for key in optimizers.HYPERPARAMETERS}
    return optimizers.make(cfg.optimizer, model.parameters(), **hyper)
