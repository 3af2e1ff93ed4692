"""A tiny LR sweep through the Python API: 2 subset sizes x 2 LR multipliers, 1 epoch each (under a minute on CPU).

FORGETTING_DATA=../shared/data/cifar10.npz .venv/bin/python examples/tiny_sweep.py [STORE]
"""

import sys

import forgetting as fg

store = sys.argv[1] if len(sys.argv) > 1 else "store-examples"
study = fg.load_study(
    "cpu-lr-sweep",
    sizes=[500, 1000],
    multipliers=[1, 4],
    seeds=[0],
    epochs=1,
    warmup=0.5,
    width=0.125,
    batch_size=100,
    base_lr=0.4,
)
outcome = fg.run_sweep(study, store, device="cpu")
print(outcome.table[["subset", "multiplier", "lr", "test_loss", "test_acc", "status"]].to_string(index=False))
report = fg.summarise(outcome.store.dir)
print(report.text())
print("figures:", *report.figures)
