"""`forgetting show`: a study's resolved settings, its runs, and an estimate of its time on this machine.

The estimate is a measurement times a count: a few training steps of the study's own network, at its
batch size and precision, on its data and this device (forgetting's own training loop, `train.train`),
give seconds per training image; the study's work in training-image equivalents (`grid.run_work`: subset x
epochs, evaluation at half an image each) plus its LR finder's steps and its kind's stage after training
(the probe's replay) is multiplied by it. It assumes one run at a time and a machine as busy as during
the timing; what it leaves out (compiling, loading, writing) makes it low rather than high.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from forgetting import train as train_mod
from forgetting.datasets import Dataset
from forgetting.device import resolve_device
from forgetting.errors import UserError
from forgetting.studies import COMMON_SCHEMA, Study
from forgetting.sweep import plan_sweep

WARMUP_STEPS = 2  # untimed: the first steps allocate and (where compiled) compile


class _StepTimer(train_mod.Callbacks):
    """Times the steps after the first ``skip``, up to ``skip + steps``; then stops the run. The device
    is synchronised at the window's two ends only, so a GPU keeps its asynchronous pipelining."""

    def __init__(self, device: torch.device, skip: int, steps: int):
        self.device, self.skip, self.end = device, skip, skip + steps
        self.count, self.start, self.seconds = 0, None, None

    def _now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def step(self, epoch: int, step: int) -> bool:
        self.count += 1
        if self.count == self.skip:
            self.start = self._now()
        if self.count == self.end:
            self.seconds = self._now() - self.start
        return self.count >= self.end


@dataclass(frozen=True)
class Timing:
    steps: int
    batch_size: int
    seconds: float
    device: str

    @property
    def per_image(self) -> float:
        return self.seconds / (self.steps * self.batch_size)


def time_steps(config, data: Dataset, device: torch.device, steps: int) -> Timing:
    """``steps`` training steps of ``config`` on ``data``, after `WARMUP_STEPS` untimed ones."""
    # A first epoch long enough for the window, so that no epoch's end falls inside it.
    needed = (WARMUP_STEPS + steps) * config.batch_size
    if needed > data.train_size:
        raise UserError(f"--steps {steps}: {data.name} has too few images for {WARMUP_STEPS + steps} batches")
    timer = _StepTimer(device, WARMUP_STEPS, steps)
    train_mod.train(replace(config, subset=max(config.subset, needed)), data, device, callbacks=timer)
    return Timing(steps, config.batch_size, timer.seconds, str(device))


@dataclass(frozen=True)
class StudyEstimate:
    study: Study
    data: Dataset
    runs: int
    finished: int
    train_work: float  # the runs not yet finished in the store
    finder_work: float  # the LR finder, where its result is not stored yet
    after_work: float  # the kind's stage after training (the probe's replay) of those runs
    timing: Timing

    @property
    def seconds(self) -> float:
        return (self.train_work + self.finder_work + self.after_work) * self.timing.per_image

    def lines(self) -> list[str]:
        """The study's settings, its runs and the estimate, and how the estimate was made."""
        t, s = self.timing, self.study
        done = f" ({self.finished} finished in the store)" if self.finished else ""
        stages = ["training"] + ["the LR finder"] * bool(self.finder_work) + ["the probe"] * bool(self.after_work)
        work = self.train_work + self.finder_work + self.after_work
        return [
            *settings_lines(self.study, self.data),
            f"runs: {self.runs}{done}",
            f"estimated time on this machine: {_duration(self.seconds)} ({_listed(stages)}, one run at a time)",
            f"  an estimate: {t.steps} training steps of {s.train['net']} width {s.train['width']:g} at batch "
            f"{t.batch_size} on {t.device} took {t.seconds:.2f} s ({1e3 * t.per_image:.3f} ms per image), times "
            f"the work left: {work:,.0f} training-image equivalents (subset x epochs, an evaluated image as half)",
        ]


def finder_work(study: Study) -> float:
    """The LR finder's steps, one batch each, for each of its seeds (it may stop early: at most this)."""
    f = study.lr_find
    return float(f["steps"] * len(f["seeds"]) * study.train["batch_size"])


def estimate(study: Study, store: Path, device: str = "auto", steps: int = 10) -> StudyEstimate:
    """The study's runs on its data set, what of them ``store`` holds, and the time the rest would take
    on ``device``."""
    if steps < 1:
        raise UserError(f"--steps must be at least 1, not {steps}")
    data = study.load_data()
    study.check_data(data)
    plan = plan_sweep(study, store, None, data.identity)
    todo = [spec for spec in plan.specs if spec.id not in plan.finished]
    after = sum(study.experiment.after_training_work(study, spec.config) for spec in todo)
    finder = finder_work(study) if plan.base_lr is None else 0.0
    largest = max(plan.specs, key=lambda spec: spec.config.subset)
    timing = time_steps(largest.config, data, resolve_device(device), steps)
    train_work = sum(spec.work for spec in todo)
    return StudyEstimate(study, data, len(plan.specs), len(plan.finished), train_work, finder, after, timing)


def settings_lines(study: Study, data: Dataset) -> list[str]:
    """Every setting of the study after the defaults, by section, as a study file would write it."""
    lines = [f"{study.name} ({study.kind}): {study.source}", f"scale: {study.scale}"]
    lines.append(f"data: {data.name} from {data.source}, fingerprint {data.fingerprint}")
    kind = study.experiment  # its own [grid] keys and sections only: every study has every kind's, defaulted
    common = set(COMMON_SCHEMA["grid"]) | set(kind.grid_schema)
    grid = {key: value for key, value in study.grid.items() if key in common}
    sections = {"train": study.train, "grid": grid, "data": study.data, "lr_find": study.lr_find}
    for name, values in {**sections, **{name: study.sections[name] for name in kind.sections}}.items():
        lines.append(f"[{name}]")
        lines += [f"  {key} = {_value(value)}" for key, value in values.items()]
    for c in study.conditions:
        values = f"name = {_value(c.name)}, fraction = {c.fraction:g}, augment = {_value(c.augment)}"
        lines.append(f"[[conditions]] {values}")
    return lines


def _value(value) -> str:
    if value is None:
        return "(left out)"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return f"[{', '.join(_value(v) for v in value)}]"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _listed(words: list[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
