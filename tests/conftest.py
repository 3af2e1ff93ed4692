"""Shared fixtures: the real CIFAR-10 file (integration tests) and a small synthetic stand-in (unit tests)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from forgetting import data as data_mod

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "cifar10.npz"


def real_data_path() -> Path:
    """$FORGETTING_DATA if set, else ../shared/data/cifar10.npz relative to the repository root."""
    return Path(os.environ.get(data_mod.ENV_VAR) or DEFAULT_DATA).expanduser()


@pytest.fixture(scope="session")
def cifar_path() -> Path:
    path = real_data_path()
    if not path.exists():
        pytest.skip(
            f"real CIFAR-10 not found at {path}: set {data_mod.ENV_VAR} to a CIFAR-10 .npz or "
            f"cifar-10-batches-py folder to run the integration tests"
        )
    return path


@pytest.fixture(scope="session")
def cifar(cifar_path) -> data_mod.Cifar10:
    """The real CIFAR-10 (50,000 / 10,000), loaded and verified once per session."""
    return data_mod.load_cifar10(cifar_path)


def make_synthetic(n_train: int = 500, n_test: int = 100, seed: int = 0) -> data_mod.Cifar10:
    """Random uint8 images with class-balanced labels in shuffled order (n divisible by 10)."""
    rng = np.random.default_rng(seed)
    train_y = rng.permutation(np.repeat(np.arange(10), n_train // 10)).astype(np.int64)
    test_y = rng.permutation(np.repeat(np.arange(10), n_test // 10)).astype(np.int64)
    return data_mod.Cifar10(
        train_x=rng.integers(0, 256, size=(n_train, 32, 32, 3), dtype=np.uint8),
        train_y=train_y,
        test_x=rng.integers(0, 256, size=(n_test, 32, 32, 3), dtype=np.uint8),
        test_y=test_y,
        source="synthetic",
    )


@pytest.fixture(scope="session")
def synthetic_cifar() -> data_mod.Cifar10:
    """500 train / 100 test random images, 50 / 10 per class. Do not mutate its arrays."""
    return make_synthetic(500, 100, seed=0)


@pytest.fixture
def any_size_data(monkeypatch):
    """Accept data files in CIFAR-10's format but of any size (the small fakes the tests write)."""
    monkeypatch.setenv(data_mod.SIZES_ENV_VAR, "any")


@pytest.fixture(scope="module")
def one_thread():
    """Train on one CPU thread: on a shared 2-core machine, 2 threads that contend run several times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def start_cli(*args: str, data: Path | None = None, env: dict | None = None) -> subprocess.Popen:
    """`python -m forgetting.cli ARGS` as a real process in its own session (so a test can kill it whole),
    with text stdout/stderr pipes; ``data`` sets FORGETTING_DATA."""
    env = dict(os.environ if env is None else env, COLUMNS="200")
    if data is not None:
        env[data_mod.ENV_VAR] = str(Path(data).resolve())
    return subprocess.Popen(
        [sys.executable, "-m", "forgetting.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
