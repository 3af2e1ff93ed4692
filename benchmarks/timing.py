"""Timing helpers the benchmarks share: device sync, a clock over a window of training steps that
stops the run after its last timed step, the FLOP/s of a large matmul, and the machine's load."""

from __future__ import annotations

import math
import os
import time

import numpy as np
import torch

from forgetting import data as data_mod, train as train_mod
from forgetting.config import TrainConfig


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def loadavg() -> str:
    """The 1-, 5- and 15-minute load averages, "1.02/0.98/0.75": on a shared machine they move the numbers."""
    return "/".join(f"{v:.2f}" for v in os.getloadavg())


class StepClock(train_mod.Callbacks):
    """Timestamps the steps of one loop; the timed window is the steps after the first ``skip``, up to
    ``total``. The device is synchronised only at the window's two ends, so a GPU keeps its asynchronous
    pipelining. As train()'s callbacks it stops the run after the last timed step, so the end-of-run
    evaluation never enters a figure; another loop calls `tick` after each of its steps."""

    def __init__(self, device: torch.device, skip: int, total: int):
        self.device, self.skip, self.total = device, skip, total
        self.count = 0
        self.t_begin = time.perf_counter()  # when the first step began: train() resets it at its epoch's start
        self.t_start = self.t_end = None
        self.step_times: list[float] = []

    def tick(self) -> bool:
        """Call after each step; True once the last timed step is done."""
        self.count += 1
        if self.count in (self.skip, self.total):
            sync(self.device)
        now = time.perf_counter()
        self.step_times.append(now)
        if self.count == self.skip:
            self.t_start = now
        if self.count == self.total:
            self.t_end = now
        return self.count >= self.total

    def start_epoch(self, epoch: int, steps: int) -> None:
        if not self.step_times:
            self.t_begin = time.perf_counter()

    def step(self, epoch: int, step: int) -> bool:
        return self.tick()

    def images_per_second(self, batch: int) -> float:
        """Images per second over the timed window (``batch`` images a step)."""
        return (self.total - self.skip) * batch / (self.t_end - self.t_start)

    @property
    def step_seconds(self) -> np.ndarray:
        """Each step's duration, the first from ``t_begin`` (meaningful on CPU only, where every step is
        synchronous)."""
        return np.diff([self.t_begin, *self.step_times])


def train_until_stopped(cfg: TrainConfig, cifar: data_mod.Cifar10, device, callbacks, cache: dict) -> None:
    """train() until ``callbacks`` stop it; an error if the run ended first (too few steps for the window)."""
    if not train_mod.train(cfg, cifar, device, callbacks=callbacks, cache=cache).stopped:
        raise RuntimeError("the run ended before its last timed step")


def best_seconds(fn, device: torch.device, reps: int) -> float:
    """Best-of-``reps`` seconds per call of ``fn`` after two warm-up calls."""
    inner = 1 if device.type == "cpu" else 20  # one GPU kernel is too short to time alone
    for _ in range(2):
        fn()
    sync(device)
    best = math.inf
    for _ in range(reps):
        t = time.perf_counter()
        for _ in range(inner):
            fn()
        sync(device)
        best = min(best, (time.perf_counter() - t) / inner)
    return best


def matmul_flops(device: torch.device, n: int, reps: int, dtype: torch.dtype) -> float:
    """FLOP/s of an n x n matmul in ``dtype``: the peak a training throughput is a share of."""
    gen = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, device=device, dtype=dtype, generator=gen)
    b = torch.randn(n, n, device=device, dtype=dtype, generator=gen)
    return 2 * n**3 / best_seconds(lambda: torch.mm(a, b), device, reps)
