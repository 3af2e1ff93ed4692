"""What tests share besides fixtures: the repository's root, the real data's path, a synthetic CIFAR-10
and a real `forgetting` process. Fixtures stay in conftest.py, which pytest loads by itself."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from forgetting import data as data_mod

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "cifar10.npz"


def real_data_path() -> Path:
    """$FORGETTING_DATA if set, else ../shared/data/cifar10.npz relative to the repository root."""
    return Path(os.environ.get(data_mod.ENV_VAR) or DEFAULT_DATA).expanduser()


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
