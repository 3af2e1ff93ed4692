"""Your own data set: an .npz of 28x28 one-channel images in 4 classes (not CIFAR-10's 32x32x3 and 10), made
here, then a tiny forgetting probe on it through the Python API (under a minute on CPU).

    .venv/bin/python examples/own_data.py [STORE]

Any .npz with arrays train_x, train_y, test_x, test_y (uint8 images, NHW or NHWC with 1 or 3 channels;
integer labels 0..K-1; optionally `classes`, their names) is a data set: name it with `dataset` (a name of
your own) and `data` (the file), or in a study file's [data] section. Its normalisation is computed from
its training images; run ids name its fingerprint, so a changed file makes new runs.
"""

import sys
from pathlib import Path

import numpy as np

import forgetting as fg

CLASSES = ("horizontal", "vertical", "diagonal", "anti-diagonal")


def strokes(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n noisy 28x28 images of a bar in one of 4 directions at a random place (a mirror image turns a
    diagonal into an anti-diagonal: flipping would change the class, so the study below turns flips off)."""
    labels = rng.integers(0, 4, n)
    images = rng.normal(40, 20, (n, 28, 28))
    i = np.arange(16)
    for k, (label, y, x) in enumerate(zip(labels, rng.integers(2, 10, n), rng.integers(2, 10, n))):
        rows, cols = [(y + 8 + 0 * i, x + i), (y + i, x + 8 + 0 * i), (y + i, x + i), (y + i, x + 15 - i)][label]
        images[k, rows, cols] += 180
    return np.clip(images, 0, 255).astype(np.uint8), labels


store = Path(sys.argv[1] if len(sys.argv) > 1 else "store-examples")
store.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)
(train_x, train_y), (test_x, test_y) = strokes(1200, rng), strokes(400, rng)
npz = store / "strokes.npz"
np.savez(npz, train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y, classes=np.array(CLASSES))

data = fg.load_data(npz, dataset="strokes")
print(data, "normalisation", data.mean, data.std)
study = fg.load_study(
    "cpu-probe",
    kind="probe",
    dataset="strokes",
    data=str(npz),
    flip=False,
    subset=800,
    multipliers=[1],
    seeds=[0],
    epochs=3,
    warmup=1,
    width=0.125,
    batch_size=50,
    base_lr=0.05,
)
outcome = fg.probe_study(study, store, data=data, device="cpu")
print(outcome.epochs.to_string(index=False))
print(fg.summarise(outcome.sweep.store.dir).text())
