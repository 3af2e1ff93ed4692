"""A study's grid: its runs (RunSpec), their ids and what each costs (the work the ETA and shards weigh).

A run's id is a hash of its fully resolved TrainConfig, so changing any setting makes a new run, and a
study is the union of its runs wherever they ran.
"""

from __future__ import annotations

from dataclasses import dataclass

from forgetting import datasets
from forgetting.datasets import DataIdentity
from forgetting.schedules import warmup_constant
from forgetting.config import TrainConfig, bind_data, is_test_epoch, run_id


# A test-set or clean-training-set image costs about half a training image (forward only, no
# augmentation): the fit that makes seconds / work most nearly constant across the committed
# cpu-lr-sweep runs (0.00079-0.00084 s per unit from 1,280 to 10,240 images; 1/3 gives 0.00085-0.00093).
EVAL_COST = 0.5


def run_work(cfg: TrainConfig, test_size: int = 10_000) -> float:
    """subset x epochs, plus each test-set evaluation (with eval_train, a clean pass over the subset
    too) and the final clean pass over the subset."""
    evaluations = sum(is_test_epoch(cfg, e) for e in range(cfg.epochs))
    per_evaluation = test_size + (cfg.subset if cfg.eval_train else 0)
    return cfg.subset * cfg.epochs + EVAL_COST * (evaluations * per_evaluation + cfg.subset)


@dataclass(frozen=True)
class RunSpec:
    config: TrainConfig
    meta: dict  # study, condition, multiplier, base_lr, lr, warmup: what the grid says about this run

    @property
    def id(self) -> str:
        return run_id(self.config)

    @property
    def work(self) -> float:
        """What the run costs, in training-image equivalents: what the sweep's ETA weighs runs by."""
        return run_work(self.config)

    def describe(self) -> str:
        cond = f"{self.meta['condition']} " if self.meta.get("condition") else ""
        return f"{cond}n={self.config.subset} x{self.meta['multiplier']:g} seed {self.config.seed}"


# The [train] keys that every run of a study shares as they are (the grid sets the others per run).
SHARED_TRAIN_KEYS = (
    *("net", "width", "shortcut", "bn_init", "epochs", "batch_size", "precision", "drop_last", "compile"),
    *("optimizer", "momentum", "weight_decay", "eps"),
)


def study_config(study, data: DataIdentity | None = None, **run) -> TrainConfig:
    """A TrainConfig with the network and recipe of the study's [train] section, plus ``run``'s own
    settings (subset, seed, LR schedule, ...), bound to ``data`` (default: the study's own data set, as
    `Study.data_identity` knows it): the one place a new [train] key reaches every run."""
    data = data if data is not None else study.data_identity()
    t = study.train
    shared = {key: t[key] for key in SHARED_TRAIN_KEYS} | {"width": float(t["width"]), "betas": tuple(t["betas"])}
    flip = t.get("flip")  # left out: the data set's own default (off where a mirror changes the class)
    shared["flip"] = datasets.spec_for(data.name).flip if flip is None else flip
    return bind_data(TrainConfig(**shared, **run), data)


def expand(study, base_lr: float, data: DataIdentity | None = None) -> list[RunSpec]:
    """Every run of the study (a `studies.Study`) on ``data`` (default: `Study.data_identity`), smallest
    subsets first (so results arrive early): the cells its kind gives (subset, augmentation, condition),
    each at every LR multiplier and seed."""
    data = data if data is not None else study.data_identity()
    t = study.train
    specs = []
    for subset, augment, condition in sorted(study.experiment.cells(study)):
        for m in study.grid["multipliers"]:
            for seed in study.grid["seeds"]:
                lr = m * base_lr
                cfg = study_config(
                    study,
                    data,
                    subset=subset,
                    lr_knots=warmup_constant(lr, t["warmup"], t["epochs"]).knots,
                    augment=augment,
                    cutout=t["cutout"] if augment else 0,
                    seed=seed,
                    eval_every=t["eval_every"],
                    eval_last=t["eval_last"],
                    eval_train=t["eval_train"],
                    **study.experiment.run_settings(study, condition, seed),
                )
                meta = dict(
                    study=study.name, condition=condition, multiplier=m, base_lr=base_lr, lr=lr, warmup=t["warmup"]
                )
                specs.append(RunSpec(cfg, meta))
    return specs
