"""Sweep throughput of the local executor: the same tiny LR sweep with --workers 1 and --workers 2.

Runs, through the library, what this command line runs::

    forgetting sweep-lr cpu-lr-sweep --multipliers 0.5,1,2,4 --sizes 1000,2000 --epochs 2 --width 0.125 \\
        --base-lr 0.4 --seeds 0 --batch-size 100 --workers W --device cpu --store <fresh temp dir>

i.e. ``forgetting.sweep.run_sweep(studies.load_study('cpu-lr-sweep').with_overrides(...), ...)``, once
per worker count, each into a fresh temporary store (nothing is skipped as already done). It reports
the wall time of run_sweep (which includes starting the worker processes, their loading and
preprocessing CIFAR-10, every run's training and final evaluation, and writing the store), runs/hour,
the ratio, and checks that both stores' results.csv hold the same set of run ids, all finished. With
--repeats 2 the order is 1, 2, 2, 1 so that a drift in the machine's load hits both alike.

    .venv/bin/python benchmarks/sweep_workers.py --data ../shared/data/cifar10.npz
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from timing import loadavg

from forgetting import data as data_mod, studies, sweep
from forgetting.execution.settings import ExecutorSettings


def one_sweep(study, cifar, workers: int, device: str) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"sweep_w{workers}_") as tmp:
        load0, t0 = loadavg(), time.perf_counter()
        outcome = sweep.run_sweep(study, Path(tmp), cifar, ExecutorSettings(workers=workers, device=device))
        secs = time.perf_counter() - t0
        table = pd.read_csv(outcome.store.results)
    return dict(
        workers=workers, seconds=secs, runs=len(outcome.specs), table=table, load_before=load0, load_after=loadavg()
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--multipliers", default="0.5,1,2,4")
    p.add_argument("--sizes", default="1000,2000")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--width", type=float, default=0.125)
    p.add_argument("--base-lr", type=float, default=0.4)
    p.add_argument("--seeds", default="0")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--workers", default="1,2", help="worker counts to compare, comma-separated")
    p.add_argument("--repeats", type=int, default=1, help="sweeps per worker count (order 1,2,2,1,...)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--data", default=None, help="CIFAR-10 .npz (default $FORGETTING_DATA)")
    p.add_argument("--keep", default=None, help="copy each worker count's results.csv into this folder")
    a = p.parse_args()

    study = studies.load_study("cpu-lr-sweep", kind="lr-sweep").with_overrides(
        multipliers=[float(v) for v in a.multipliers.split(",")],
        sizes=[int(v) for v in a.sizes.split(",")],
        epochs=a.epochs,
        width=a.width,
        base_lr=a.base_lr,
        seeds=[int(v) for v in a.seeds.split(",")],
        batch_size=a.batch_size,
    )
    cifar = data_mod.load_cifar10(a.data)
    counts = [int(v) for v in a.workers.split(",")]
    order = []
    for r in range(a.repeats):
        order += counts if r % 2 == 0 else counts[::-1]
    print(
        f"{os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads in-process; "
        f"order {order}; load {loadavg()}",
        flush=True,
    )

    results = []
    for w in order:
        r = one_sweep(study, cifar, w, a.device)
        results.append(r)
        print(
            f"  workers={w}: {r['runs']} runs in {r['seconds']:.1f} s = {r['runs'] / r['seconds'] * 3600:.0f} runs/h; "
            f"load {r['load_before']} -> {r['load_after']}",
            flush=True,
        )

    best = {w: min((r for r in results if r["workers"] == w), key=lambda r: r["seconds"]) for w in counts}
    print_table(best, counts, a.repeats)
    if a.keep:
        Path(a.keep).mkdir(parents=True, exist_ok=True)
        for w in counts:
            best[w]["table"].to_csv(Path(a.keep) / f"results_workers{w}.csv", index=False)
    if not check_same_runs(best, counts):
        raise SystemExit(1)


def print_table(best: dict, counts: list[int], repeats: int) -> None:
    """Each worker count's best sweep, as a Markdown table."""
    base = best[counts[0]]
    print(
        f"\n| workers | runs | seconds (best of {repeats}) | runs/hour | vs workers={counts[0]} | load before -> after |"
    )
    print("|---|---|---|---|---|---|")
    for w in counts:
        r = best[w]
        print(
            f"| {w} | {r['runs']} | {r['seconds']:.1f} | {r['runs'] / r['seconds'] * 3600:.0f} | "
            f"{base['seconds'] / r['seconds']:.2f}x | {r['load_before']} -> {r['load_after']} |"
        )


def check_same_runs(best: dict, counts: list[int]) -> bool:
    """Whether every store holds the same runs, all finished; prints each run's results side by side."""
    ids = {w: set(best[w]["table"]["run"]) for w in counts}
    same = all(ids[w] == ids[counts[0]] for w in counts)
    finished = all((best[w]["table"]["status"] == "finished").all() for w in counts)
    print(f"\nsame run ids in every results.csv: {same} ({len(ids[counts[0]])} ids); all finished: {finished}")
    # Not required to match: a run's floating-point result can depend on the thread count it trained with
    # (workers=1 trains in-process with torch's threads, workers=W with cpu_count // W threads each).
    cols = ["subset", "multiplier", "lr"]
    cmp = best[counts[0]]["table"].set_index("run")[cols].copy()
    for w in counts:
        t = best[w]["table"].set_index("run")
        threads = torch.get_num_threads() if w == 1 else max(1, (os.cpu_count() or 1) // w)
        cmp[f"test_loss w{w} ({threads} thr)"] = t["test_loss"]
        cmp[f"diverged w{w}"] = t["diverged"]
    print(cmp.sort_values(cols).to_string(float_format=lambda v: f"{v:.6g}"))
    return same and finished


if __name__ == "__main__":
    main()
