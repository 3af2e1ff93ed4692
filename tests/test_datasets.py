"""forgetting.datasets: data sets of any shape and class count, in every accepted format, with an identity."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from forgetting import augment, config, datasets
from forgetting.datasets import DataError, balanced_subset, class_quotas, loading
from forgetting.errors import UserError
from helpers import image_arrays, write_cifar100_folder, write_idx_folder, write_svhn_folder

CPU = torch.device("cpu")


@pytest.fixture
def any_size(monkeypatch):
    monkeypatch.setenv(datasets.SIZES_ENV_VAR, "any")  # small fakes of the built-in data sets


def save(path, arrays, **extra) -> str:
    np.savez(path, **arrays, **extra)
    return str(path)


# ---------------------------------------------------------------------------------------------
# formats


def test_an_npz_of_nhw_images_is_one_channel(tmp_path):
    arrays = image_arrays(60, 20, shape=(28, 28))
    d = datasets.load_dataset("my-digits", save(tmp_path / "d.npz", arrays))
    assert d.train_x.shape == (60, 28, 28, 1) and d.test_x.shape == (20, 28, 28, 1)
    assert (d.image_size, d.channels, d.num_classes) == ((28, 28), 1, 10)
    assert d.classes == tuple(str(c) for c in range(10))
    assert np.array_equal(d.train_x[..., 0], arrays["train_x"]) and d.train_y.dtype == np.int64
    # the normalisation of a data set without published constants: the training split's own statistics
    pixels = arrays["train_x"].astype(np.float64) / 255
    assert d.mean == pytest.approx((pixels.mean(),), abs=6e-5) and d.std == pytest.approx((pixels.std(),), abs=6e-5)


def test_an_npz_with_100_classes_and_class_names(tmp_path):
    arrays = image_arrays(300, 100, classes=100)
    names = np.array([f"kind-{c}" for c in range(100)])
    d = datasets.load_dataset("hundred", save(tmp_path / "h.npz", arrays, classes=names))
    assert d.num_classes == 100 and d.classes[:2] == ("kind-0", "kind-1")
    assert d.describe()["train_per_class"] == [3] * 100


def test_a_fabricated_cifar100_folder_reads_through_the_loader(tmp_path, any_size):
    arrays = image_arrays(200, 100, classes=100, seed=3)
    write_cifar100_folder(tmp_path / "root", arrays)
    for given in (tmp_path / "root", tmp_path / "root" / "cifar-100-python"):  # torchvision's root or its folder
        d = datasets.load_dataset("cifar100", given)
        assert np.array_equal(d.train_x, arrays["train_x"]) and np.array_equal(d.test_y, arrays["test_y"])
        assert d.num_classes == 100 and d.classes[:2] == ("apple", "aquarium_fish")
        assert d.fingerprint == datasets.make_dataset("x", arrays, "arrays").fingerprint  # the content, not the file


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_fabricated_mnist_folders_read_through_torchvision_s_reader(tmp_path, any_size, name, folder):
    arrays = image_arrays(50, 20, shape=(28, 28), seed=4)
    write_idx_folder(tmp_path, folder, arrays)
    d = datasets.load_dataset(name, tmp_path)
    assert d.train_x.shape == (50, 28, 28, 1) and np.array_equal(d.train_x[..., 0], arrays["train_x"])
    assert np.array_equal(d.test_y, arrays["test_y"])
    assert datasets.spec_for(name).flip is (name == "fashion-mnist")  # a mirrored digit is another digit


def test_a_fabricated_svhn_folder_maps_label_10_to_the_digit_0(tmp_path, any_size):
    arrays = image_arrays(40, 20, seed=5)
    write_svhn_folder(tmp_path / "svhn", arrays)
    d = datasets.load_dataset("svhn", tmp_path)
    assert np.array_equal(d.train_x, arrays["train_x"]) and np.array_equal(d.train_y, arrays["train_y"])
    assert not datasets.spec_for("svhn").flip


def test_a_built_in_name_refuses_a_file_of_another_shape(tmp_path, any_size):
    path = save(tmp_path / "d.npz", image_arrays(60, 20, shape=(28, 28)))
    with pytest.raises(DataError, match="28x28x1.*CIFAR-10's are 32x32x3"):
        datasets.load_dataset("cifar10", path)


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda a: {**a, "train_x": a["train_x"][..., :2]}, "1 or 3 channels"),
        (lambda a: {**a, "test_x": a["test_x"][:, :16]}, "test images"),
        (lambda a: {**a, "train_x": a["train_x"][:, :4, :4]}, "at least 8x8"),
        (lambda a: {**a, "train_y": a["train_y"].astype(np.float32)}, "integer labels"),
    ],
)
def test_arrays_that_are_not_a_data_set_are_one_line(tmp_path, edit, words):
    path = save(tmp_path / "bad.npz", edit(image_arrays(30, 10)))
    with pytest.raises(DataError, match=words) as err:
        datasets.load_dataset("mine", path)
    assert path in str(err.value) and "\n" not in str(err.value)


def test_a_data_set_of_its_own_needs_a_file(monkeypatch, tmp_path):
    monkeypatch.setattr(loading, "CACHE_DIR", tmp_path)
    with pytest.raises(DataError, match="not built in.*--data"):
        datasets.load_dataset("my-own")
    with pytest.raises(DataError, match="forgetting data cifar100 --download"):
        datasets.load_dataset("cifar100")
    with pytest.raises(UserError, match="data set name"):
        datasets.load_dataset("no/slashes", tmp_path / "x.npz")


def test_a_user_data_set_registers_like_the_built_ins(tmp_path):
    spec = datasets.register(datasets.DatasetSpec("tiny-shapes", classes=("round", "square"), flip=False))
    try:
        d = datasets.load_dataset("tiny-shapes", save(tmp_path / "s.npz", image_arrays(20, 10, classes=2)))
        assert d.classes == ("round", "square") and datasets.spec_for("tiny-shapes") is spec
        with pytest.raises(UserError, match="already registered"):
            datasets.register(datasets.DatasetSpec("tiny-shapes"))
    finally:
        datasets.registry.REGISTRY.pop("tiny-shapes")


# ---------------------------------------------------------------------------------------------
# identity


def test_the_fingerprint_follows_the_content():
    a = image_arrays(40, 10)
    b = {k: v.copy() for k, v in a.items()}
    b["train_x"][7, 3, 3, 0] ^= 1  # one pixel
    fa, fb = (datasets.make_dataset("x", arrays, "s").fingerprint for arrays in (a, b))
    assert fa != fb and len(fa) == 16
    assert datasets.make_dataset("y", a, "elsewhere").fingerprint == fa  # the name and source are not the content
    nhw = image_arrays(40, 10, shape=(28, 28))
    nhwc = {k: (v[..., None] if k.endswith("_x") else v) for k, v in nhw.items()}
    assert datasets.make_dataset("x", nhw, "s").fingerprint == datasets.make_dataset("x", nhwc, "s").fingerprint


def test_a_run_names_its_data_set_and_old_runs_keep_their_ids():
    cfg = config.TrainConfig(subset=100, batch_size=50)
    reference = config.bind_data(cfg, config.REFERENCE_DATA)
    assert not {"dataset", "data_fingerprint", "flip"} & set(reference.identity())
    other = config.bind_data(cfg, datasets.DataIdentity("cifar10", "0123456789abcdef"))
    assert other.identity()["data_fingerprint"] == "0123456789abcdef"
    assert config.run_id(other) != config.run_id(reference)
    # a config.json written before data sets had identities is a run on the reference CIFAR-10
    old = {k: v for k, v in reference.to_dict().items() if k not in ("dataset", "data_fingerprint", "flip")}
    assert config.TrainConfig.from_dict(old) == reference
    with pytest.raises(
        config.DataMismatch, match="0123456789abcdef.*37b03a38ced799bd|37b03a38ced799bd.*0123456789abcdef"
    ):
        config.bind_data(reference, other.data)


def test_flip_names_a_run_only_where_it_flips():
    cfg = config.bind_data(config.TrainConfig(subset=100, batch_size=50), config.REFERENCE_DATA)
    import dataclasses

    assert dataclasses.replace(cfg, flip=False).identity()["flip"] is False
    plain = dataclasses.replace(cfg, augment=False)
    assert dataclasses.replace(plain, flip=False).identity() == plain.identity()


# ---------------------------------------------------------------------------------------------
# balanced subsets for any class count


@pytest.mark.parametrize("counts", [[5000] * 10, [500] * 100, [300, 5, 40, 40, 0, 1000, 7, 7, 7, 100]])
def test_quotas_are_balanced_as_far_as_each_class_allows_and_grow_with_the_size(counts):
    counts = np.array(counts)
    previous = np.zeros_like(counts)
    for size in range(1, counts.sum() + 1, max(1, counts.sum() // 97)):
        q = class_quotas(counts, size)
        assert q.sum() == size and (q <= counts).all() and (q >= previous).all()
        open_ = q < counts  # a class below its count is at the common level (the remainder: +1, lowest first)
        if open_.any():
            level = q[open_].min()
            assert q[open_].max() - level <= 1 and (q[~open_] <= level + 1).all()
            extra = np.flatnonzero(open_ & (q == level + 1))
            assert (extra < np.flatnonzero(open_ & (q == level)).min(initial=len(q))).all()
        previous = q


def test_subsets_of_an_unbalanced_100_class_set_are_nested():
    counts = np.random.default_rng(0).integers(1, 30, size=100)
    labels = np.random.default_rng(1).permutation(np.repeat(np.arange(100), counts))
    sets = [set(balanced_subset(labels, n, seed=2, num_classes=100).tolist()) for n in (50, 300, 700, len(labels))]
    for small, big in zip(sets, sets[1:]):
        assert small < big
    assert len(sets[-1]) == len(labels)


# ---------------------------------------------------------------------------------------------
# augmentation follows the image shape


@pytest.mark.parametrize("image, pad", [((32, 32), 4), ((28, 28), 3), ((64, 48), 6)])
def test_padding_and_crop_follow_the_image_size(image, pad):
    spec = augment.AugmentSpec.standard(True, cutout=5, image=image)
    assert spec.pad == pad == augment.pad_for(image)
    plan = augment.plan_epoch(np.arange(400), 0, 0, spec, 100)
    assert plan.crop.min() == 0 and plan.crop.max() == 2 * pad
    assert plan.cutout[:, 0].max() <= image[0] - 5 and plan.cutout[:, 1].max() <= image[1] - 5
    x = datasets.prepare_train(image_arrays(400, 1, shape=(*image, 1))["train_x"], (0.5,), (0.25,), pad, CPU)
    assert x.shape == (400, 1, image[0] + 2 * pad, image[1] + 2 * pad)
    out, _ = augment.DevicePlan(plan, CPU).batch(x, torch.zeros(400, dtype=torch.long), 0)
    assert out.shape == (100, 1, *image)


def test_flip_off_is_a_plan_without_flips():
    spec = augment.AugmentSpec.standard(True, flip=False, image=(28, 28))
    assert spec.crop and not spec.flip
    assert not augment.plan_epoch(np.arange(300), 0, 0, spec, 100).flip.any()


def test_forgetting_data_download_name_fetches_into_the_cache_and_describes_it(tmp_path, monkeypatch, any_size):
    """`forgetting data --download mnist`: torchvision's download (here a stand-in writing what it would)."""
    import dataclasses

    from typer.testing import CliRunner

    from forgetting.cli import app

    arrays = image_arrays(50, 20, shape=(28, 28), seed=9)
    fetched = []

    def download(root):
        fetched.append(root)
        write_idx_folder(root, "MNIST", arrays)

    real = datasets.spec_for("mnist")
    monkeypatch.setattr(loading, "CACHE_DIR", tmp_path / "cache")
    datasets.register(dataclasses.replace(real, download=download), replace=True)
    try:
        result = CliRunner().invoke(app, ["data", "--download", "mnist"])
        again = CliRunner().invoke(app, ["data", "mnist"])  # found in the cache: no second download
    finally:
        datasets.register(real, replace=True)
    assert result.exit_code == 0 and again.exit_code == 0, result.output
    assert fetched == [tmp_path / "cache"]
    fingerprint = datasets.make_dataset("mnist", arrays, "x").fingerprint
    assert f"data set: mnist   fingerprint: {fingerprint}" in result.output and "image: 28x28x1" in result.output
    assert "train: 50 images" in again.output
