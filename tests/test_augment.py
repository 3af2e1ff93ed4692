"""forgetting.augment: epoch plans are pure, replayable, uniform, and applied correctly."""

from __future__ import annotations

import re

import numpy as np
import pytest
import scipy.stats
import torch

from forgetting import data as data_mod
from forgetting.augment import AugmentSpec, DevicePlan, EpochPlan, apply_choices, plan_epoch
from forgetting.errors import UserError

CPU = torch.device("cpu")
FULL = AugmentSpec(crop=True, flip=True, cutout=8)
CROP_FLIP = AugmentSpec(crop=True, flip=True, cutout=0)
NONE = AugmentSpec.standard(False)


def assert_plans_equal(a: EpochPlan, b: EpochPlan) -> None:
    for field in ("indices", "crop", "flip", "cutout"):
        x, y = getattr(a, field), getattr(b, field)
        assert x.dtype == y.dtype and np.array_equal(x, y), field
    assert a.digests() == b.digests()


@pytest.fixture(scope="module")
def padded(synthetic_cifar) -> torch.Tensor:
    return data_mod.prepare_train(synthetic_cifar.train_x, CPU)


@pytest.fixture(scope="module")
def labels(synthetic_cifar) -> torch.Tensor:
    return torch.as_tensor(synthetic_cifar.train_y)


# ---------------------------------------------------------------------------------------------
# replay


@pytest.mark.parametrize("spec", [FULL, CROP_FLIP, NONE, AugmentSpec(crop=False, flip=True, cutout=4)])
def test_plan_replays_identically(spec):
    subset = np.arange(0, 1000, 3)
    a = plan_epoch(subset, seed=5, epoch=2, spec=spec, batch_size=32)
    b = plan_epoch(subset.copy(), seed=5, epoch=2, spec=spec, batch_size=32)
    assert_plans_equal(a, b)
    assert a.steps == len(subset) // 32


def test_device_plan_batches_replay_bit_identically(padded, labels):
    subset = np.arange(500)
    for spec in (FULL, CROP_FLIP, NONE):
        a = DevicePlan(plan_epoch(subset, 1, 3, spec, 64), CPU)
        b = DevicePlan(plan_epoch(subset, 1, 3, spec, 64), CPU)
        assert a.plan.steps == 7
        for s in range(a.plan.steps):
            xa, ya = a.batch(padded, labels, s)
            xb, yb = b.batch(padded, labels, s)
            assert xa.shape == (64, 3, 32, 32) and ya.shape == (64,)
            assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_digests_format_and_distinct():
    plan = plan_epoch(np.arange(1000), 0, 0, FULL, 100)
    d = plan.digests()
    assert len(d) == plan.steps == 10
    assert all(re.fullmatch(r"[0-9a-f]{16}", x) for x in d)
    assert len(set(d)) == len(d)


def test_digests_change_with_epoch_seed_spec_subset_and_batch():
    subset = np.arange(2000)
    base = plan_epoch(subset, 0, 0, FULL, 100).digests()
    variants = {
        "epoch": plan_epoch(subset, 0, 1, FULL, 100),
        "seed": plan_epoch(subset, 1, 0, FULL, 100),
        "cutout size": plan_epoch(subset, 0, 0, AugmentSpec(True, True, 6), 100),
        "no cutout": plan_epoch(subset, 0, 0, CROP_FLIP, 100),
        "no flip": plan_epoch(subset, 0, 0, AugmentSpec(True, False, 8), 100),
        "no crop": plan_epoch(subset, 0, 0, AugmentSpec(False, True, 8), 100),
        "none": plan_epoch(subset, 0, 0, NONE, 100),
        "subset": plan_epoch(subset + 1, 0, 0, FULL, 100),
    }
    for name, plan in variants.items():
        d = plan.digests()
        assert len(d) == len(base)
        assert not set(d) & set(base), f"changing the {name} left some batch digest unchanged"
    # a different batch size changes the batches too
    assert not set(plan_epoch(subset, 0, 0, FULL, 50).digests()) & set(base)


def test_switching_one_choice_off_keeps_the_others():
    """Each kind of draw has its own stream: toggling flip keeps the order and the crops."""
    subset = np.arange(777)
    full = plan_epoch(subset, 9, 4, FULL, 50)
    no_flip = plan_epoch(subset, 9, 4, AugmentSpec(True, False, 8), 50)
    no_crop = plan_epoch(subset, 9, 4, AugmentSpec(False, True, 8), 50)
    assert np.array_equal(full.indices, no_flip.indices) and np.array_equal(full.crop, no_flip.crop)
    assert np.array_equal(full.cutout, no_flip.cutout) and not no_flip.flip.any()
    assert np.array_equal(full.flip, no_crop.flip) and (no_crop.crop == 4).all()


def test_epochs_shuffle_differently():
    subset = np.arange(1000)
    a, b = plan_epoch(subset, 0, 0, NONE, 100), plan_epoch(subset, 0, 1, NONE, 100)
    assert not np.array_equal(a.indices, b.indices)
    assert np.array_equal(np.sort(a.indices), subset) and np.array_equal(np.sort(b.indices), subset)


# ---------------------------------------------------------------------------------------------
# distributions


@pytest.fixture(scope="module")
def big_plan() -> EpochPlan:
    return plan_epoch(np.arange(50_000), seed=2024, epoch=0, spec=FULL, batch_size=1000)


def test_crop_offsets_uniform(big_plan):
    assert big_plan.crop.shape == (50_000, 2)
    for axis in (0, 1):
        counts = np.bincount(big_plan.crop[:, axis], minlength=9)
        assert len(counts) == 9, "offsets outside 0..8"
        assert (counts > 0).all(), "an offset in 0..8 never drawn"
        assert scipy.stats.chisquare(counts).pvalue > 1e-3
    # y and x are drawn independently: the 81 (y, x) pairs are uniform too
    pairs = np.bincount(big_plan.crop[:, 0] * 9 + big_plan.crop[:, 1], minlength=81)
    assert len(pairs) == 81 and scipy.stats.chisquare(pairs).pvalue > 1e-3


def test_flip_probability_half(big_plan):
    assert big_plan.flip.dtype == bool
    assert abs(big_plan.flip.mean() - 0.5) < 0.01
    assert scipy.stats.binomtest(int(big_plan.flip.sum()), len(big_plan.flip), 0.5).pvalue > 1e-3


def test_cutout_positions_uniform(big_plan):
    for axis in (0, 1):
        counts = np.bincount(big_plan.cutout[:, axis], minlength=25)
        assert len(counts) == 25 and (counts > 0).all(), "Cutout corners must cover exactly 0..24 for size 8"
        assert scipy.stats.chisquare(counts).pvalue > 1e-3


def test_disabled_choices_are_constant():
    plan = plan_epoch(np.arange(300), 0, 0, NONE, 100)
    assert (plan.crop == 4).all() and not plan.flip.any() and (plan.cutout == -1).all()


# ---------------------------------------------------------------------------------------------
# application


@pytest.mark.parametrize("size", [1, 8, 13, 32])
def test_cutout_square_fully_inside(size):
    n = 300
    ones = torch.ones(n, 3, 40, 40)  # no zero anywhere, so every zero is Cutout's
    plan = plan_epoch(np.arange(n), 3, 0, AugmentSpec(True, True, size), 100)
    dp = DevicePlan(plan, CPU)
    for s in range(plan.steps):
        x, _ = dp.batch(ones, torch.zeros(n, dtype=torch.long), s)
        zero = (x == 0).numpy()
        assert (zero == zero[:, :1]).all(), "Cutout must cover all channels alike"
        assert set(np.unique(x.numpy())) <= {0.0, 1.0}
        for i, m in enumerate(zero[:, 0]):
            rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
            assert len(rows) == size and len(cols) == size
            assert rows[-1] - rows[0] == size - 1 and cols[-1] - cols[0] == size - 1  # contiguous
            assert m.sum() == size * size  # a full square, no holes
            assert 0 <= rows[0] and rows[-1] <= 31 and 0 <= cols[0] and cols[-1] <= 31
            assert (rows[0], cols[0]) == tuple(plan.cutout[plan.batch(s)][i])


def reference_augment(padded: np.ndarray, plan: EpochPlan) -> np.ndarray:
    """Naive per-image loop: index, crop by slicing, flip by [:, :, ::-1], then Cutout."""
    out = []
    for j, i in enumerate(plan.indices):
        y, x = plan.crop[j]
        img = padded[i][:, y : y + 32, x : x + 32]
        if plan.flip[j]:
            img = img[:, :, ::-1]
        img = img.copy()
        if plan.spec.cutout:
            cy, cx = plan.cutout[j]
            img[:, cy : cy + plan.spec.cutout, cx : cx + plan.spec.cutout] = 0
        out.append(img)
    return np.stack(out)


@pytest.mark.parametrize("spec", [CROP_FLIP, FULL, AugmentSpec(True, False, 0), AugmentSpec(False, True, 0)])
def test_apply_matches_naive_reference(spec):
    rng = np.random.default_rng(0)
    padded = rng.standard_normal((40, 3, 40, 40)).astype(np.float32)
    labels = torch.arange(40) % 10
    plan = plan_epoch(np.arange(5, 37), 11, 2, spec, 8)  # 32 of the 40 images, 4 batches
    dp = DevicePlan(plan, CPU)
    got = torch.cat([dp.batch(torch.from_numpy(padded), labels, s)[0] for s in range(plan.steps)])
    assert torch.equal(got, torch.from_numpy(reference_augment(padded, plan)))
    ys = torch.cat([dp.batch(torch.from_numpy(padded), labels, s)[1] for s in range(plan.steps)])
    assert torch.equal(ys, labels[torch.from_numpy(plan.indices)])


def test_apply_choices_corner_cases():
    imgs = torch.arange(2 * 3 * 40 * 40, dtype=torch.float32).view(2, 3, 40, 40)
    crop = torch.tensor([[0, 8], [8, 0]])
    flip = torch.tensor([True, False])
    out = apply_choices(imgs, crop, flip, torch.full((2, 2), -1), 0, (32, 32))
    assert torch.equal(out[0], imgs[0, :, 0:32, 8:40].flip(-1))
    assert torch.equal(out[1], imgs[1, :, 8:40, 0:32])


def test_no_augment_is_the_centre_crop(synthetic_cifar, padded, labels):
    for spec in (NONE, AugmentSpec.standard(False, cutout=8)):
        assert spec == AugmentSpec(False, False, 0)
        plan = plan_epoch(np.arange(500), 0, 0, spec, 100)
        dp = DevicePlan(plan, CPU)
        for s in range(plan.steps):
            x, _ = dp.batch(padded, labels, s)
            idx = torch.from_numpy(plan.indices[plan.batch(s)])
            assert torch.equal(x, padded[idx][:, :, 4:36, 4:36])
            assert torch.equal(x, data_mod.normalise(synthetic_cifar.train_x[idx.numpy()], CPU))


def test_batch_larger_than_subset_raises():
    with pytest.raises(UserError):
        plan_epoch(np.arange(99), 0, 0, FULL, 100)
    assert plan_epoch(np.arange(100), 0, 0, FULL, 100).steps == 1


@pytest.mark.parametrize("n,batch", [(105, 10), (500, 128), (999, 1000 - 1), (64, 7)])
def test_last_partial_batch_dropped(n, batch):
    subset = np.arange(1000, 1000 + n)
    plan = plan_epoch(subset, 0, 0, FULL, batch)
    steps = n // batch
    assert plan.steps == steps and len(plan.digests()) == steps
    for arr in (plan.indices, plan.crop, plan.flip, plan.cutout):
        assert len(arr) == steps * batch
    assert len(np.unique(plan.indices)) == steps * batch and np.isin(plan.indices, subset).all()


def test_spec_validation_and_labels():
    with pytest.raises(UserError):
        AugmentSpec(cutout=33)
    with pytest.raises(UserError):
        AugmentSpec(cutout=-1)
    assert AugmentSpec.standard(True, 8).label() == "crop+flip+cutout8"
    assert AugmentSpec.standard(True).label() == "crop+flip"
    assert NONE.label() == "none"
