"""Your own network, named in a study file (examples/own_network.toml -> examples/my_networks.py), in a tiny
LR sweep through the Python API, its runs in two worker processes (under a minute on CPU).

    FORGETTING_DATA=../shared/data/cifar10.npz .venv/bin/python examples/own_network.py [STORE]

Python puts this script's folder (examples/) on sys.path, so `my_networks` imports here and in the workers.
A script that starts worker processes keeps its work under `if __name__ == "__main__":`: each worker
imports the script again, and must not run the sweep itself.
"""

import sys
from pathlib import Path

import forgetting as fg


def main(store: str) -> None:
    study = fg.load_study(Path(__file__).with_name("own_network.toml"))
    outcome = fg.run_sweep(study, store, executor=fg.ExecutorSettings(workers=2, device="cpu"))
    columns = ["net", "subset", "multiplier", "lr", "test_loss", "test_acc", "status"]
    print(outcome.table[columns].to_string(index=False))
    print(fg.summarise(outcome.store.dir).text())


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "store-examples")
