"""A tiny forgetting probe through the Python API: train 2 small runs, then re-evaluate their final
weights on every earlier epoch's batches (under a minute on CPU).

    FORGETTING_DATA=../shared/data/cifar10.npz .venv/bin/python examples/tiny_probe.py [STORE]
"""

import sys

import forgetting as fg

store = sys.argv[1] if len(sys.argv) > 1 else "store-examples"
study = fg.load_study(
    "cpu-probe",
    kind="probe",
    subset=400,
    multipliers=[1],
    seeds=[0],
    epochs=3,
    warmup=1,
    width=0.125,
    batch_size=50,
    base_lr=0.4,
)
outcome = fg.probe_study(study, store, device="cpu")
# loss of the frozen final weights on each epoch's batches, by how many epochs ago they were seen
print(outcome.epochs.to_string(index=False))
report = fg.summarise(outcome.sweep.store.dir)
print(report.text())
