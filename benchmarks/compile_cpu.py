"""torch.compile on CPU: compile time, steady-state step time, and what a sweep worker pays per run.

In one process, three runs of the toolkit's training loop (`forgetting.train.train`) on the same
shape (net, width, batch): eager, compiled, and compiled again with a fresh model (what the next run
of a sweep worker does). Each run is one epoch of ``steps`` steps at a constant LR; a Callbacks
subclass timestamps every step (CPU steps are synchronous) and stops the run after the last step, so
the end-of-run evaluation is not timed. The first step of a compiled run includes compiling the
forward and backward graphs; "steady" is the median of the steps after the first ``skip``.

From these: the speed-up of a compiled step, and the break-even run length, the number of steps
after which the compile time is paid back (compile seconds / seconds saved per step).

    python benchmarks/compile_cpu.py --data ../shared/data/cifar10.npz --csv benchmarks/compile_cpu.csv
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import platform
import time

import numpy as np
import torch
from timing import StepClock, loadavg, train_until_stopped

from forgetting import data as data_mod
from forgetting.config import TrainConfig

LR = 0.1  # constant; its value does not change the cost of a step


def timed_run(cfg: TrainConfig, cifar, cache: dict) -> np.ndarray:
    """Seconds of each step of one run (the first includes compiling, if any)."""
    clock = StepClock(torch.device("cpu"), 0, cfg.subset // cfg.batch_size)
    train_until_stopped(cfg, cifar, "cpu", clock, cache)
    return clock.step_seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=None, help="CIFAR-10 .npz (default: $FORGETTING_DATA)")
    ap.add_argument("--net", default="dawn18")
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=20, help="steps per run")
    ap.add_argument("--skip", type=int, default=3, help="steps left out of the steady-state median")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--csv", default=None, help="write the rows here")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cifar = data_mod.load_cifar10(args.data)
    cache: dict = {}
    base = TrainConfig(
        net=args.net,
        width=args.width,
        subset=args.batch_size * args.steps,
        epochs=1,
        batch_size=args.batch_size,
        lr_knots=((0.0, LR), (1.0, LR)),
        eval_every=0,
        drop_last=True,
    )
    rows = []
    for label, compile_on in (("eager", False), ("compiled, first run", True), ("compiled, second run", True)):
        before = loadavg()
        t0 = time.perf_counter()
        steps = timed_run(dataclasses.replace(base, compile=compile_on), cifar, cache)
        rows.append(
            dict(
                net=args.net,
                width=args.width,
                batch=args.batch_size,
                run=label,
                first_step_s=round(steps[0], 3),
                steady_step_ms=round(1000 * float(np.median(steps[args.skip :])), 2),
                steady_img_s=round(args.batch_size / float(np.median(steps[args.skip :])), 1),
                steps=len(steps),
                wall_s=round(time.perf_counter() - t0, 2),
                load_before=before,
                load_after=loadavg(),
                threads=torch.get_num_threads(),
                torch=torch.__version__,
                cpu=platform.processor() or platform.machine(),
            )
        )
        print(rows[-1], flush=True)
    eager, first, second = rows
    saved = (eager["steady_step_ms"] - first["steady_step_ms"]) / 1000
    speedup = eager["steady_step_ms"] / first["steady_step_ms"]
    for r in rows:
        r["speedup_vs_eager"] = round(eager["steady_step_ms"] / r["steady_step_ms"], 3)
        # compile cost = the first step beyond an ordinary compiled step
        r["compile_s"] = round(max(r["first_step_s"] - first["steady_step_ms"] / 1000, 0), 2) if r is not eager else 0
    breakeven = first["compile_s"] / saved if saved > 0 else float("inf")
    for r in rows:
        r["breakeven_steps"] = round(breakeven, 0) if r is first else ""
    print(
        f"compiled step {speedup:.2f}x eager; compile {first['compile_s']:.1f} s in the first run, "
        f"{second['compile_s']:.2f} s in the second; break-even after {breakeven:.0f} steps"
    )
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
            w.writeheader()
            w.writerows(rows)


if __name__ == "__main__":
    main()
