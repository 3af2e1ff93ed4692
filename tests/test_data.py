"""forgetting.data: sources, verification, class-balanced nested subsets, preprocessing."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from forgetting import data as data_mod
from forgetting.datasets import loading
from forgetting.data import DataError, balanced_subset
from forgetting.errors import UserError

CPU = torch.device("cpu")
# The fake files here are tiny: tell the loader they are a different data set, as a user would.
pytestmark = pytest.mark.usefixtures("any_size_data")


def expected_per_class(size: int) -> list[int]:
    # size // 10 each, the remainder going to the lowest classes
    return [size // 10 + (1 if c < size % 10 else 0) for c in range(10)]


@pytest.fixture(scope="module")
def balanced_labels() -> np.ndarray:
    """50,000 labels, 5,000 per class, shuffled: the shape of CIFAR-10's training labels."""
    return np.random.default_rng(123).permutation(np.repeat(np.arange(10), 5000)).astype(np.int64)


def good_arrays(n_train: int = 20, n_test: int = 10, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "train_x": rng.integers(0, 256, (n_train, 32, 32, 3), dtype=np.uint8),
        "train_y": (np.arange(n_train) % 10).astype(np.uint8),
        "test_x": rng.integers(0, 256, (n_test, 32, 32, 3), dtype=np.uint8),
        "test_y": (np.arange(n_test) % 10).astype(np.uint8),
    }


def write_npz(path, arrays) -> str:
    np.savez(path, **arrays)
    return str(path)


# ---------------------------------------------------------------------------------------------
# balanced_subset


@pytest.mark.parametrize("size", [1, 9, 10, 500, 1003, 6250, 12500, 49_999, 50_000])
def test_subset_exact_per_class_counts(balanced_labels, size):
    idx = balanced_subset(balanced_labels, size, seed=0)
    assert len(idx) == size
    assert len(np.unique(idx)) == size, "indices repeat"
    assert np.all(np.diff(idx) > 0), "indices are not sorted"
    assert idx.min() >= 0 and idx.max() < len(balanced_labels)
    counts = np.bincount(balanced_labels[idx], minlength=10).tolist()
    assert counts == expected_per_class(size)


def test_subset_1003_remainder_to_lowest_classes(balanced_labels):
    counts = np.bincount(balanced_labels[balanced_subset(balanced_labels, 1003, seed=4)], minlength=10)
    assert counts.tolist() == [101, 101, 101, 100, 100, 100, 100, 100, 100, 100]


@pytest.mark.parametrize("seed", [0, 1, 17])
def test_subsets_nested_synthetic_labels(balanced_labels, seed):
    sizes = [500, 1003, 6250, 12500, 25000, 50000]
    sets = [set(balanced_subset(balanced_labels, s, seed).tolist()) for s in sizes]
    for small, big in zip(sets, sets[1:]):
        assert small < big
    assert sets[-1] == set(range(50000))


def test_different_seeds_give_different_subsets(balanced_labels):
    a = balanced_subset(balanced_labels, 6250, seed=0)
    b = balanced_subset(balanced_labels, 6250, seed=1)
    assert not np.array_equal(a, b)
    # but far from disjoint or identical: two independent 1/8 samples overlap by about 1/8
    overlap = len(np.intersect1d(a, b)) / 6250
    assert 0.08 < overlap < 0.17
    # same seed, same subset
    assert np.array_equal(a, balanced_subset(balanced_labels, 6250, seed=0))


@pytest.mark.parametrize("size", [0, -5, 50_001, 10**6])
def test_subset_size_out_of_range_raises(balanced_labels, size):
    with pytest.raises(UserError):
        balanced_subset(balanced_labels, size, seed=0)


def test_an_unbalanced_set_is_balanced_as_far_as_each_class_allows():
    labels = np.array([0] * 50 + [c for c in range(1, 10) for _ in range(5)])  # 50 zeros, 5 of every other class
    assert balanced_subset(labels, 50, seed=0).size == 50
    counts = np.bincount(labels[balanced_subset(labels, 60, seed=0)], minlength=10)
    assert counts.tolist() == [15] + [5] * 9  # classes 1..9 give all they have, class 0 the rest


@pytest.mark.integration
@pytest.mark.parametrize("seed", [0, 3])
def test_subsets_nested_and_balanced_real_labels(cifar, seed):
    sizes = [6250, 12500, 25000, 50000]
    subsets = [balanced_subset(cifar.train_y, s, seed) for s in sizes]
    for size, idx in zip(sizes, subsets):
        assert np.bincount(cifar.train_y[idx], minlength=10).tolist() == expected_per_class(size)
    for small, big in zip(subsets, subsets[1:]):
        assert np.isin(small, big).all(), "a smaller subset is not inside the larger one"
    assert np.array_equal(subsets[-1], np.arange(50000))


@pytest.mark.integration
def test_real_subsets_differ_across_seeds(cifar):
    assert not np.array_equal(balanced_subset(cifar.train_y, 6250, 0), balanced_subset(cifar.train_y, 6250, 1))


# ---------------------------------------------------------------------------------------------
# verification of .npz sources


def test_good_npz_loads(tmp_path):
    arrays = good_arrays()
    d = data_mod.load_cifar10(write_npz(tmp_path / "ok.npz", arrays))
    assert d.train_x.shape == (20, 32, 32, 3) and d.train_x.dtype == np.uint8
    assert d.test_x.shape == (10, 32, 32, 3)
    assert d.train_y.dtype == np.int64 and d.test_y.dtype == np.int64
    assert np.array_equal(d.train_x, arrays["train_x"]) and np.array_equal(d.train_y, arrays["train_y"])
    assert d.source == str(tmp_path / "ok.npz")


def _bad(key, value):
    def mutate(a):
        a = dict(a)
        if value is None:
            del a[key]
        else:
            a[key] = value(a[key]) if callable(value) else value
        return a

    return mutate


BAD_CASES = {
    "train_x NCHW": _bad("train_x", lambda x: np.ascontiguousarray(x.transpose(0, 3, 1, 2))),
    "train_x 28x28": _bad("train_x", lambda x: x[:, :28, :28, :].copy()),
    "test_x one channel": _bad("test_x", lambda x: x[..., :1].copy()),
    "train_x flat": _bad("train_x", lambda x: x.reshape(len(x), -1)),
    "train_y 2-d": _bad("train_y", lambda y: y[:, None]),
    "train_x float32": _bad("train_x", lambda x: x.astype(np.float32)),
    "test_x int64": _bad("test_x", lambda x: x.astype(np.int64)),
    "train_y float": _bad("train_y", lambda y: y.astype(np.float32)),
    "train_y label 10": _bad("train_y", lambda y: np.where(np.arange(len(y)) == 3, 10, y).astype(np.int64)),
    "test_y label -1": _bad("test_y", lambda y: np.where(np.arange(len(y)) == 0, -1, y).astype(np.int64)),
    "train lengths differ": _bad("train_y", lambda y: y[:-1]),
    "test lengths differ": _bad("test_x", lambda x: x[:-2]),
    "empty train": lambda a: {**a, "train_x": a["train_x"][:0], "train_y": a["train_y"][:0]},
    "missing test_y": _bad("test_y", None),
}


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_verify_rejects_bad_npz(tmp_path, case):
    path = write_npz(tmp_path / "bad.npz", BAD_CASES[case](good_arrays()))
    with pytest.raises(DataError) as err:
        data_mod.load_cifar10(path)
    assert str(tmp_path / "bad.npz") in str(err.value), "the message should name the file"
    assert "\n" not in str(err.value)


def test_verify_direct_messages():
    a = good_arrays()
    with pytest.raises(DataError, match="shape"):
        data_mod._verify({**a, "train_x": a["train_x"][:, :, :, :2]}, "src")
    with pytest.raises(DataError, match="dtype"):
        data_mod._verify({**a, "test_x": a["test_x"].astype(np.float64)}, "src")
    with pytest.raises(DataError, match="outside 0..9"):
        data_mod._verify({**a, "test_y": a["test_y"].astype(np.int64) + 1}, "src")
    with pytest.raises(DataError, match="labels"):
        data_mod._verify({**a, "train_y": a["train_y"][:5]}, "src")


@pytest.mark.parametrize("n_train,n_test", [(10, 10), (50_000, 20), (20, 10_000)])
def test_sizes_other_than_cifar10_are_refused_unless_the_user_says_so(tmp_path, monkeypatch, n_train, n_test):
    a = good_arrays(n_train=20, n_test=10)
    monkeypatch.delenv(data_mod.SIZES_ENV_VAR, raising=False)
    # only the lengths matter to the check: fake them with strides of zero instead of 150 MB of pixels
    size = {"train": n_train, "test": n_test}
    arrays = {k: np.broadcast_to(v[:1], (size[k.split("_")[0]],) + v.shape[1:]) for k, v in a.items()}
    with pytest.raises(DataError, match=f"{n_train:,} training and {n_test:,} test images") as err:
        data_mod._verify(arrays, "ten.npz")
    assert data_mod.SIZES_ENV_VAR in str(err.value) and "ten.npz" in str(err.value)
    monkeypatch.setenv(data_mod.SIZES_ENV_VAR, "any")
    assert len(data_mod._verify(a, "ten.npz").train_y) == 20


def test_data_error_is_user_error():
    assert issubclass(DataError, UserError)


def test_corrupt_file_raises_data_error(tmp_path):
    p = tmp_path / "corrupt.npz"
    p.write_bytes(b"this is not a zip file at all" * 10)
    with pytest.raises(DataError, match="not a readable"):
        data_mod.load_cifar10(p)


def test_pickled_npz_is_refused(tmp_path):
    # an object array needs pickle to load: refused, and reported as a DataError
    p = tmp_path / "obj.npz"
    np.savez(p, **{**good_arrays(), "train_y": np.array([object()] * 20, dtype=object)})
    with pytest.raises(DataError):
        data_mod.load_cifar10(p)


def test_missing_path_raises(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        data_mod.load_cifar10(tmp_path / "nope.npz")


# ---------------------------------------------------------------------------------------------
# sources: torchvision's pickle folder, the environment variable, the cache, no source


def write_batches_folder(folder, per_batch: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A fake cifar-10-batches-py: 5 train batches + test_batch; returns the NHWC images and labels written."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (6 * per_batch, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, 6 * per_batch)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for b, name in enumerate(names):
        sl = slice(b * per_batch, (b + 1) * per_batch)
        # row layout of the official batches: 1024 red (row-major 32x32), then 1024 green, then 1024 blue
        rows = np.concatenate([images[sl][..., ch].reshape(per_batch, 1024) for ch in range(3)], axis=1)
        assert rows.shape == (per_batch, 3072)
        with open(folder / name, "wb") as f:
            pickle.dump({"batch_label": name, "data": rows, "labels": labels[sl].tolist()}, f, protocol=2)
    return images, labels


@pytest.mark.parametrize("give_parent", [False, True])
def test_batches_folder_loads_nhwc(tmp_path, give_parent):
    folder = tmp_path / "cifar-10-batches-py"
    images, labels = write_batches_folder(folder, per_batch=6)
    d = data_mod.load_cifar10(tmp_path if give_parent else folder)
    assert d.train_x.shape == (30, 32, 32, 3) and d.test_x.shape == (6, 32, 32, 3)
    assert d.train_x.dtype == np.uint8 and d.train_y.dtype == np.int64
    assert np.array_equal(d.train_x, images[:30]) and np.array_equal(d.test_x, images[30:])
    assert np.array_equal(d.train_y, labels[:30]) and np.array_equal(d.test_y, labels[30:])


def test_batches_folder_pixel_mapping(tmp_path):
    """One pixel by hand: data[i, ch*1024 + r*32 + c] must land at x[i, r, c, ch]."""
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        rows = np.zeros((2, 3072), dtype=np.uint8)
        if name == "data_batch_2":
            rows[1, 0 * 1024 + 3 * 32 + 5] = 11  # red, row 3, column 5 of the 2nd image of batch 2
            rows[1, 1 * 1024 + 0 * 32 + 31] = 22  # green, row 0, column 31
            rows[1, 2 * 1024 + 31 * 32 + 0] = 33  # blue, row 31, column 0
        with open(folder / name, "wb") as f:
            pickle.dump({"data": rows, "labels": [0, 1]}, f)
    d = data_mod.load_cifar10(folder)
    x = d.train_x
    assert x.shape == (10, 32, 32, 3)
    i = 3  # batch 2 image 1 -> overall index 2 + 1
    assert x[i, 3, 5, 0] == 11 and x[i, 0, 31, 1] == 22 and x[i, 31, 0, 2] == 33
    assert int(x.sum()) == 11 + 22 + 33, "other pixels were disturbed"


def test_batches_folder_missing_batch_raises(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_batches_folder(folder)
    (folder / "data_batch_4").unlink()
    with pytest.raises(DataError, match="data_batch_4"):
        data_mod.load_cifar10(folder)


def test_env_var_is_used_and_explicit_source_wins(tmp_path, monkeypatch):
    env_file = write_npz(tmp_path / "env.npz", good_arrays(n_train=20, seed=1))
    arg_file = write_npz(tmp_path / "arg.npz", good_arrays(n_train=30, seed=2))
    monkeypatch.setenv(data_mod.ENV_VAR, env_file)
    assert data_mod.load_cifar10().source == env_file
    assert len(data_mod.load_cifar10(None).train_y) == 20
    assert data_mod.load_cifar10(arg_file).source == arg_file


def test_env_var_missing_path_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv(data_mod.ENV_VAR, str(tmp_path / "gone.npz"))
    with pytest.raises(DataError, match=data_mod.ENV_VAR):
        data_mod.load_cifar10()


def test_cache_folder_is_used(tmp_path, monkeypatch):
    monkeypatch.delenv(data_mod.ENV_VAR, raising=False)
    monkeypatch.setattr(loading, "CACHE_DIR", tmp_path)
    images, _ = write_batches_folder(tmp_path / "cifar-10-batches-py")
    d = data_mod.load_cifar10()
    assert np.array_equal(d.train_x, images[:30])


def test_no_source_raises_with_hint(tmp_path, monkeypatch):
    monkeypatch.delenv(data_mod.ENV_VAR, raising=False)
    monkeypatch.setattr(loading, "CACHE_DIR", tmp_path)
    with pytest.raises(DataError) as err:
        data_mod.load_cifar10()
    msg = str(err.value)
    assert "FORGETTING_DATA" in msg and "--data" in msg


# ---------------------------------------------------------------------------------------------
# preprocessing


def reference_normalise(x_nhwc: np.ndarray) -> np.ndarray:
    mean = np.array(data_mod.MEAN).reshape(1, 3, 1, 1)
    std = np.array(data_mod.STD).reshape(1, 3, 1, 1)
    return (x_nhwc.transpose(0, 3, 1, 2).astype(np.float64) / 255 - mean) / std


def test_normalise_shape_and_values():
    x = np.random.default_rng(0).integers(0, 256, (7, 32, 32, 3), dtype=np.uint8)
    t = data_mod.normalise(x, CPU)
    assert t.shape == (7, 3, 32, 32) and t.dtype == torch.float32
    np.testing.assert_allclose(t.numpy(), reference_normalise(x), rtol=0, atol=1e-5)
    assert data_mod.normalise(x, CPU, torch.float16).dtype == torch.float16


def test_prepare_train_reflect_pads():
    x = np.random.default_rng(1).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    p = data_mod.prepare_train(x, CPU)
    assert p.shape == (5, 3, 40, 40) and p.dtype == torch.float32 and p.is_contiguous()
    want = np.pad(reference_normalise(x), ((0, 0), (0, 0), (4, 4), (4, 4)), mode="reflect")
    np.testing.assert_allclose(p.numpy(), want, rtol=0, atol=1e-5)
    # reflect, not symmetric/edge: the padded column 3 mirrors column 5 (image column 1), not column 4
    assert torch.equal(p[:, :, :, 3], p[:, :, :, 5]) and torch.equal(p[:, :, 3, :], p[:, :, 5, :])
    assert not torch.equal(p[:, :, :, 3], p[:, :, :, 4])
    # the centre crop is the normalised image itself
    assert torch.equal(p[:, :, 4:36, 4:36], data_mod.normalise(x, CPU))


def test_describe_counts(synthetic_cifar):
    d = data_mod.describe(synthetic_cifar)
    assert d["train"] == 500 and d["test"] == 100
    assert d["train_per_class"] == [50] * 10 and d["test_per_class"] == [10] * 10


@pytest.mark.integration
def test_real_cifar_matches_readme(cifar):
    assert cifar.train_x.shape == (50000, 32, 32, 3) and cifar.test_x.shape == (10000, 32, 32, 3)
    d = data_mod.describe(cifar)
    assert d["train_per_class"] == [5000] * 10 and d["test_per_class"] == [1000] * 10
    assert cifar.train_y[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
    assert cifar.test_y[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    # exact per-channel mean/std of pixels/255 from value histograms (no float copy of 150M pixels)
    values = np.arange(256) / 255.0
    for ch in range(3):
        hist = np.bincount(cifar.train_x[..., ch].ravel(), minlength=256) / (50000 * 1024)
        mean = float(hist @ values)
        std = float(np.sqrt(hist @ (values - mean) ** 2))
        assert mean == pytest.approx(data_mod.MEAN[ch], abs=1e-4)
        assert std == pytest.approx(data_mod.STD[ch], abs=2e-4)


def test_the_cifar_fixture_holds_the_data_the_commands_find(cifar, cifar_path):
    """The integration tests read CIFAR-10 where `forgetting sweep-lr` does (the variable, then the cache)."""
    assert cifar.source == str(cifar_path) and loading.locate("cifar10")[0] == cifar_path
    assert len(cifar.train_y) == len(cifar.train_x) and len(cifar.test_y) == len(cifar.test_x) > 0


@pytest.mark.parametrize("cached", [True, False])
def test_the_tests_find_cifar10_in_the_download_cache_alone_or_say_in_one_line_why_not(tmp_path, cached):
    """README command 2 after command 1's download: no FORGETTING_DATA, the data in the user cache only."""
    from helpers import REPO_ROOT

    folder = tmp_path / "cache" / "forgetting" / "cifar-10-batches-py"
    if cached:
        write_batches_folder(folder)
    env = {k: v for k, v in os.environ.items() if k != data_mod.ENV_VAR}
    env |= {"XDG_CACHE_HOME": str(tmp_path / "cache"), data_mod.SIZES_ENV_VAR: "any", "COLUMNS": "200"}
    test = "tests/test_data.py::test_the_cifar_fixture_holds_the_data_the_commands_find"
    args = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", test]
    proc = subprocess.run(args, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    if cached:
        assert f"data: CIFAR-10 from {folder} (the download cache)" in proc.stdout
        assert "1 passed" in proc.stdout
    else:
        assert "data: no CIFAR-10 found: set FORGETTING_DATA" in proc.stdout
        skipped = [line for line in proc.stdout.splitlines() if line.startswith("SKIPPED")]
        assert len(skipped) == 1 and "forgetting data --download" in skipped[0] and "1 skipped" in proc.stdout
