"""Validate the toolkit on a GPU in one command: throughput, the blog's four stages, both full-scale
studies end to end, and several runs sharing the GPU. Everything goes into one folder.

    python benchmarks/gpu_validate.py                       # on a CUDA machine: results/gpu-<gpu name>/
    python benchmarks/gpu_validate.py --only throughput,stages   # the first sections only
    python benchmarks/gpu_validate.py --smoke --device cpu  # tiny sizes on any device (CI runs this)

Sections, in the order they run (the order to spend scarce GPU time in):

- ``throughput``: dawn18 and resnet9 at width 1, batch 128 and 512, each precision (fp32, bf16, fp16)
  with and without torch.compile: training img/s of the toolkit's own loop (`forgetting.train.train`,
  timed between synchronised ends of a window of steps after warm-up steps that include compiling)
  and its share of the bf16 matmul peak measured in the same run (FLOPs from `models.forward_flops`
  x 3 for forward and backward).
- ``stages``: the blog's `--preset part1..part4` on the full data, evaluated every epoch: wall time
  (training, without the per-epoch evaluation), final test accuracy and the training time until the
  test accuracy first reached 94%, next to Page's V100 figures.
- ``probe`` and ``sweep``: `page2018-probe` and `page2018-lr-sweep` end to end (runs, tables,
  figures, summary.json with its verdicts) in ``<out>/store/``.
- ``workers``: the same 8 short runs with ``--workers 1``, 2 and 4: runs per hour.

Full mode needs CUDA and refuses to run without it (one line, exit code 2): a GPU figure must come
from a GPU. ``--smoke`` shrinks every section to seconds (width 0.125, a few hundred images, one
epoch) and writes to a temporary folder unless ``--out`` is given; it never writes to results/.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, NamedTuple

import pandas as pd
import torch
import torch._dynamo
from timing import StepClock, matmul_flops, sync, train_until_stopped

from forgetting import config, data as data_mod, models, report, studies, sweep, train as train_mod
from forgetting.console import console, progress_bar
from forgetting.device import resolve_device
from forgetting.errors import Stopped, UserError
from forgetting.execution.settings import ExecutorSettings
from forgetting.experiments.run import run_study as run_whole_study
from forgetting.store import StudyFolder, atomic_write_json
from forgetting.timelimit import parse_duration

REPO_ROOT = Path(__file__).resolve().parent.parent
PAGE_V100_SECONDS = {"part1": 297, "part2": 256, "part3": 154, "part4": 79}  # each reached 94% test accuracy
TARGET_ACC = 0.94
LR = 0.1  # throughput runs: a constant LR (its value does not change the cost of a step)


@dataclasses.dataclass(frozen=True)
class Scale:
    """How big each section is: full (a GPU) or smoke (any device, seconds)."""

    nets: tuple = ("dawn18", "resnet9")
    width: float = 1.0
    batches: tuple = (128, 512)
    precisions: tuple = ("fp32", "bf16", "fp16")
    compile: tuple = (False, True)
    warmup_steps: int = 5  # untimed: include compiling and autotuning
    timed_steps: int = 30
    matmul_n: int = 8192
    stage_overrides: dict = dataclasses.field(default_factory=dict)
    sweep_overrides: dict = dataclasses.field(default_factory=dict)
    probe_overrides: dict = dataclasses.field(default_factory=dict)
    workers: tuple = (1, 2, 4)
    worker_overrides: dict = dataclasses.field(
        default_factory=lambda: dict(
            multipliers=[0.5, 1.0, 2.0, 4.0], sizes=[6250, 12500], epochs=2, warmup=1, seeds=[0], base_lr=0.4
        )
    )


FULL = Scale()
# Compiling takes minutes per graph on a 2-core CPU (benchmarks/README.md): smoke compiles on CUDA only.
SMOKE = Scale(
    nets=("dawn18", "resnet9"),
    width=0.125,
    batches=(32,),
    precisions=("fp32", "bf16", "fp16"),
    compile=(False,),
    warmup_steps=1,
    timed_steps=2,
    matmul_n=256,
    stage_overrides=dict(subset=300, epochs=1, width=0.125, batch_size=100),
    sweep_overrides=dict(
        sizes=[200, 300],
        epochs=1,
        warmup=0.5,
        width=0.125,
        batch_size=100,
        multipliers=[1.0, 2.0],
        seeds=[0],
        base_lr=0.4,
    ),
    probe_overrides=dict(
        subset=400, epochs=2, warmup=1, width=0.125, batch_size=100, multipliers=[1.0], seeds=[0], base_lr=0.4
    ),
    workers=(1, 2),
    worker_overrides=dict(
        multipliers=[1.0], sizes=[200, 300], epochs=1, warmup=0.5, width=0.125, batch_size=100, seeds=[0], base_lr=0.4
    ),
)


@dataclasses.dataclass
class Job:
    """What every section runs with: its sizes, the data and device, the output folder, a progress tick
    per item done, and the seconds left of the time limit (None: no limit)."""

    scale: Scale
    cifar: data_mod.Cifar10
    device: torch.device
    out: Path
    tick: Callable[[str], None]
    remaining: Callable[[], float | None]


def environment(device: torch.device) -> dict:
    cuda = device.type == "cuda"
    return dict(
        device=str(device),
        gpu=torch.cuda.get_device_name(device) if cuda else None,
        torch=torch.__version__,
        cuda=torch.version.cuda if cuda else None,
        cudnn=torch.backends.cudnn.version() if cuda else None,
        python=platform.python_version(),
        cpu_count=os.cpu_count(),
        threads=torch.get_num_threads(),
        host_cpu=platform.processor() or platform.machine(),
    )


# ------------------------------------------------------------------------------------------------
# throughput


def throughput_row(net, batch, precision, compiled, scale: Scale, cifar, device, cache, peak) -> dict:
    steps = scale.warmup_steps + scale.timed_steps
    cfg = config.TrainConfig(
        net=net,
        width=scale.width,
        subset=batch * steps,
        epochs=1,
        batch_size=batch,
        lr_knots=((0, LR), (1, LR)),
        precision=precision,
        compile=compiled,
        drop_last=True,
    )
    clock = StepClock(device, scale.warmup_steps, steps)
    t0 = time.perf_counter()
    train_until_stopped(cfg, cifar, device, clock, cache)
    img_s = clock.images_per_second(batch)
    flops = 3 * models.forward_flops(models.build(net, scale.width)) * img_s
    return dict(
        net=net,
        width=scale.width,
        batch=batch,
        precision=precision,
        compile=compiled,
        img_s=round(img_s, 1),
        tflop_s=round(flops / 1e12, 4),
        pct_bf16_peak=round(100 * flops / peak, 2),
        warmup_steps=scale.warmup_steps,
        timed_steps=scale.timed_steps,
        wall_s=round(time.perf_counter() - t0, 2),
    )


def run_throughput(job: Job) -> dict:
    scale, device = job.scale, job.device
    # Every (net, batch, precision) is a graph of its own: past dynamo's default limit of 8 recompiles
    # the compiled rows would silently run eager.
    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(torch._dynamo.config, name):
            setattr(torch._dynamo.config, name, 64)
    peak = matmul_flops(device, scale.matmul_n, 5, torch.bfloat16)  # the peak the throughput is a share of
    rows, cache = [], {}
    for net in scale.nets:
        for batch in scale.batches:
            for precision in scale.precisions:
                for compiled in scale.compile:
                    rows.append(throughput_row(net, batch, precision, compiled, scale, job.cifar, device, cache, peak))
                    job.tick(f"throughput {net} b{batch} {precision}{' compiled' if compiled else ''}")
    pd.DataFrame(rows).to_csv(job.out / "throughput.csv", index=False)
    return dict(bf16_matmul_tflop_s=round(peak / 1e12, 3), matmul_n=scale.matmul_n, rows=rows)


def _throughput_items(scale: Scale) -> int:
    return len(scale.nets) * len(scale.batches) * len(scale.precisions) * len(scale.compile)


# ------------------------------------------------------------------------------------------------
# the blog's four stages


def time_to_target(history: list[dict], target: float = TARGET_ACC) -> float | None:
    """Training seconds (per-epoch evaluation excluded) until the test accuracy first reached ``target``."""
    spent = 0.0
    for row in history:
        spent += row["train_seconds"]
        if row["test_acc"] is not None and row["test_acc"] >= target:
            return round(spent, 2)
    return None


class EvalTimer(train_mod.Callbacks):
    """Splits each epoch's seconds into training (until the last step) and the evaluation after it."""

    def __init__(self, device: torch.device):
        self.device, self.train_seconds = device, []

    def start_epoch(self, epoch: int, steps: int) -> None:
        self.t0, self.steps = time.perf_counter(), steps

    def step(self, epoch: int, step: int) -> None:
        if step == self.steps - 1:
            sync(self.device)
            self.train_seconds.append(time.perf_counter() - self.t0)


def run_stages(job: Job) -> dict:
    rows, cache = [], {}
    for preset in PAGE_V100_SECONDS:
        cfg = config.make_config(preset, eval_every=1, **job.scale.stage_overrides)
        timer = EvalTimer(job.device)
        t0 = time.perf_counter()
        run = train_mod.train(cfg, job.cifar, job.device, cache=cache, callbacks=timer)
        wall = time.perf_counter() - t0
        r = run.result
        timer.train_seconds[0] -= r["compile_seconds"]  # compiling happens in the first epoch's steps
        history = [dict(h, train_seconds=s) for h, s in zip(run.history, timer.train_seconds)]
        rows.append(
            dict(
                preset=preset,
                net=cfg.net,
                batch=cfg.batch_size,
                epochs=cfg.epochs,
                subset=cfg.subset,
                width=cfg.width,
                precision=r["precision"],
                compiled=r["compiled"],
                train_seconds=round(sum(timer.train_seconds), 2),
                compile_seconds=r["compile_seconds"],
                wall_seconds=round(wall, 2),
                test_acc=r["test_acc"],
                test_loss=r["test_loss"],
                seconds_to_94=time_to_target(history),
                page_v100_seconds=PAGE_V100_SECONDS[preset],
                page_v100_test_acc=TARGET_ACC,
            )
        )
        job.tick(f"stage {preset}")
    pd.DataFrame(rows).to_csv(job.out / "stages.csv", index=False)
    return dict(rows=rows)


# ------------------------------------------------------------------------------------------------
# the full-scale studies and several runs sharing the device


def _verdicts(summary) -> dict:
    """Every 'verdict' entry of a summary.json, by its path in the JSON."""
    found = {}

    def walk(node, path):
        if isinstance(node, dict):
            for k, v in node.items():
                (found.__setitem__(f"{path}{k}", v) if "verdict" in str(k).lower() else walk(v, f"{path}{k}."))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}{i}.")

    walk(summary, "")
    return found


def run_study(name: str, overrides: dict, job: Job) -> dict:
    kind = "probe" if name.endswith("probe") else "lr-sweep"
    s = studies.load_study(name, kind=kind).with_overrides(**overrides)
    cifar, device, out, time_limit = job.cifar, job.device, job.out, job.remaining()
    store = out / "store"
    t0 = time.perf_counter()
    folder, stopped = store / s.name, None
    try:
        run_whole_study(s, store, cifar, ExecutorSettings(device=str(device), time_limit=time_limit))
    except Stopped as e:  # the time limit: results.csv holds the runs that finished
        stopped = str(e)
    rep = report.study_report(folder)
    job.tick(f"study {name}")
    results = pd.read_csv(StudyFolder(folder).results)
    return dict(
        study=name,
        folder=str(folder.relative_to(out)),
        seconds=round(time.perf_counter() - t0, 1),
        runs=len(results),
        finished=int((results["status"] == "finished").sum()),
        figures=[str(p.relative_to(out)) for p in rep.figures],
        verdicts=_verdicts(rep.summary),
        **({"stopped": stopped} if stopped else {}),
    )


def run_probe(job: Job) -> dict:
    return run_study("page2018-probe", job.scale.probe_overrides, job)


def run_sweep(job: Job) -> dict:
    return run_study("page2018-lr-sweep", job.scale.sweep_overrides, job)


def run_workers(job: Job) -> dict:
    """The same runs, once per worker count, each into its own store: runs per hour."""
    rows = []
    base = studies.load_study("page2018-lr-sweep").with_overrides(**job.scale.worker_overrides)
    for workers in job.scale.workers:
        t0 = time.perf_counter()
        store, stopped = job.out / "workers" / f"w{workers}", False
        try:
            settings = ExecutorSettings(workers=workers, device=str(job.device), time_limit=job.remaining())
            sweep.run_sweep(base, store, job.cifar, settings)
        except Stopped:
            stopped = True
        secs = time.perf_counter() - t0
        n = int((pd.read_csv(sweep.StudyStore(store, base.name).results)["status"] == "finished").sum())
        rows.append(dict(workers=workers, runs=n, seconds=round(secs, 2), runs_per_hour=round(3600 * n / secs, 1)))
        job.tick(f"workers {workers}")
        if stopped:  # the time limit: the worker counts not reached are not measured
            break
    for r in rows:
        r["vs_one_at_a_time"] = round(r["runs_per_hour"] / rows[0]["runs_per_hour"], 3)
    pd.DataFrame(rows).to_csv(job.out / "workers.csv", index=False)
    return dict(rows=rows, **({"stopped": f"time limit after --workers {rows[-1]['workers']}"} if stopped else {}))


# ------------------------------------------------------------------------------------------------


class Section(NamedTuple):
    run: Callable[[Job], dict]  # its record in validation.json
    items: Callable[[Scale], int]  # how many progress ticks it makes


# In the order they run: the order to spend scarce GPU time in.
SECTIONS = {
    "throughput": Section(run_throughput, _throughput_items),
    "stages": Section(run_stages, lambda scale: len(PAGE_V100_SECONDS)),
    "probe": Section(run_probe, lambda scale: 1),
    "sweep": Section(run_sweep, lambda scale: 1),
    "workers": Section(run_workers, lambda scale: len(scale.workers)),
}


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def resolve_out(out: str | None, smoke: bool, device: torch.device) -> Path:
    if out is not None:
        return Path(out)
    if smoke:
        return Path(tempfile.mkdtemp(prefix="gpu-validate-smoke-"))
    return REPO_ROOT / "results" / f"gpu-{slug(torch.cuda.get_device_name(device))}"


def validate(
    smoke: bool, device_name: str, out: str | None, data: str | None, only: list[str], time_limit: float | None = None
) -> Path:
    """Run the ``only`` sections into one folder. ``time_limit`` (seconds): start no section after it has
    passed (the first always starts), and let the study sections stop between runs; validation.json
    names the sections skipped."""
    t_start = time.monotonic()
    remaining = (lambda: None) if time_limit is None else (lambda: time_limit - (time.monotonic() - t_start))
    device = resolve_device(device_name)
    if not smoke and device.type != "cuda":
        raise UserError(
            "full validation needs a CUDA GPU (torch sees none here); --smoke checks the script on any device"
        )
    unknown = sorted(set(only) - set(SECTIONS))
    if unknown:
        raise UserError(f"--only: unknown section {unknown[0]!r} (choose from {', '.join(SECTIONS)})")
    scale = SMOKE if smoke else FULL
    folder = resolve_out(out, smoke, device)
    folder.mkdir(parents=True, exist_ok=True)
    cifar = data_mod.load_cifar10(data)
    record = dict(mode="smoke" if smoke else "full", environment=environment(device), sections={}, skipped=[])
    if time_limit is not None:
        record["time_limit_seconds"] = time_limit
    t0 = time.perf_counter()
    with progress_bar() as bar:
        task = bar.add_task("validating", total=sum(SECTIONS[s].items(scale) for s in only))

        def tick(what: str) -> None:
            bar.update(task, advance=1, description=what)

        job = Job(scale, cifar, device, folder, tick, remaining)
        for name, section in SECTIONS.items():
            if name not in only:
                continue
            if record["sections"] and time_limit is not None and remaining() <= 0:
                record["skipped"].append(name)
                continue
            record["sections"][name] = section.run(job)
            record["seconds"] = round(time.perf_counter() - t0, 1)
            atomic_write_json(folder / "validation.json", record)  # after every section: a cut-off run keeps them
        atomic_write_json(folder / "validation.json", record)  # with the sections the time limit skipped
    return folder


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="tiny sizes on any device (writes to a temporary folder)")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    ap.add_argument("--out", default=None, help="results folder (default: results/gpu-<gpu name>/, or a temp folder)")
    ap.add_argument("--data", default=None, help="CIFAR-10 .npz or folder (default: $FORGETTING_DATA)")
    ap.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections ({', '.join(SECTIONS)})")
    ap.add_argument("--time-limit", default=None, help="start no section after this (90m, 2h, 3600s or seconds)")
    a = ap.parse_args(argv)
    try:
        limit = None if a.time_limit is None else parse_duration(a.time_limit)
        only = [s.strip() for s in a.only.split(",") if s.strip()]
        folder = validate(a.smoke, a.device, a.out, a.data, only, limit)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    record = json.loads((folder / "validation.json").read_text())
    stopped = [name for name, sec in record["sections"].items() if "stopped" in sec]
    cut = f"; cut short by the time limit: {', '.join(stopped)}" if stopped else ""
    skipped = f"; skipped (time limit): {', '.join(record['skipped'])}" if record["skipped"] else ""
    console.print(
        f"{record['mode']} validation: {', '.join(record['sections'])} in {record['seconds']:.0f} s{cut}{skipped}"
        f" -> {folder}",
        soft_wrap=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
