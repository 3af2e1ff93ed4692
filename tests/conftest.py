"""Shared fixtures: the real CIFAR-10 file (integration tests) and a small synthetic stand-in (unit tests)."""

from __future__ import annotations

from pathlib import Path

import pytest

from forgetting import data as data_mod
from helpers import NO_DATA, make_synthetic, real_data_path


def pytest_terminal_summary(terminalreporter):
    """One line at the end, -q or not: where the integration tests' CIFAR-10 came from, or that they were skipped."""
    found = real_data_path()
    if found is None:
        terminalreporter.write_line(f"data: {NO_DATA}; the tests that need it were skipped")
    else:
        terminalreporter.write_line(f"data: CIFAR-10 from {found[0]} ({found[1]})")


@pytest.fixture(scope="session")
def cifar_path() -> Path:
    found = real_data_path()
    if found is None:
        pytest.skip(NO_DATA)  # one reason for every such test: pytest -ra prints it once, with their count
    path, named_by = found
    if not path.exists():
        pytest.skip(f"{path} (named by {named_by}) does not exist: {NO_DATA}")
    return path


@pytest.fixture(scope="session")
def cifar(cifar_path) -> data_mod.Cifar10:
    """The real CIFAR-10 (50,000 / 10,000), loaded and verified once per session."""
    return data_mod.load_cifar10(cifar_path)


@pytest.fixture(scope="session")
def synthetic_cifar() -> data_mod.Cifar10:
    """500 train / 100 test random images, 50 / 10 per class. Do not mutate its arrays."""
    return make_synthetic(500, 100, seed=0)


# The real images, a slice: a process that loads and tests on 500 test images instead of 10,000 spends
# its time on what the test checks (read it with FORGETTING_DATA_SIZES=any).
SLICE = dict(train_x=1000, train_y=1000, test_x=500, test_y=500)


@pytest.fixture(scope="session")
def cifar_slice_path(tmp_path_factory, cifar) -> Path:
    import numpy as np

    path = tmp_path_factory.mktemp("slice") / "cifar10-slice.npz"
    np.savez(path, **{k: getattr(cifar, k)[:n] for k, n in SLICE.items()})
    return path


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
