"""Training throughput and FLOP utilisation: the toolkit's loop against a plain PyTorch loop.

For each (net, width) this measures steady-state training images/s of

  (a) the toolkit: ``forgetting.train.train`` on a class-balanced real-data subset, one epoch of
      ``warmup + steps`` steps at a constant LR (so nothing is a warm-up artefact). A Callbacks
      subclass timestamps every step; the first ``warmup`` steps are not timed, and the run is
      stopped right after the last timed step, so train()'s end-of-run evaluation (test set, clean
      training subset) never enters the figure (nor the benchmark's wall time);
  (b) a baseline written the usual way: a torchvision-style Dataset over the same uint8 images (PIL
      image -> RandomCrop(32, padding=4, padding_mode='reflect'), RandomHorizontalFlip, ToTensor,
      Normalize), a shuffling DataLoader, and an eager SGD-Nesterov loop with mean cross-entropy;
      same net and initial weights, batch size, thread count, LR, momentum and weight decay.

Two ways to time them (--mode):

  interleaved (default on CPU with --loader-workers 0): the toolkit's step callback runs one
      baseline step between two toolkit steps, so the two loops alternate step by step and see the
      same machine; each side's clock runs only during its own steps. On a CPU shared with other
      jobs this is the fair comparison: one contended core can slow a 2-thread step 3-15x.
      img/s = timed images / the sum of that side's timed step times.
  sequential (default on CUDA, or with loader workers): toolkit run, then baseline run, repeated
      --repeats times; each side's best window. On CUDA the clock synchronises only at the two ends
      of the timed window, so the toolkit keeps its asynchronous pipelining.

FLOP utilisation = forward FLOPs per image (``forgetting.models.forward_flops``: convolutions and
linear layers) x 3 (forward + backward) x images/s / the FLOP/s of a large matmul measured in the
same process on the same device (best of several repetitions, at the start and the end of the run).
On CPU everything is fp32; on CUDA the toolkit uses its own AMP path, the baseline autocasts to the
same dtype (GradScaler for fp16; no channels-last, as usually written), and the peak is a bf16/fp16
matmul. A second reference, the FLOP/s of a large 3x3 convolution's forward pass, is reported too:
on this kind of CPU, MKL's fp32 matmul is far from the cores' peak while oneDNN's convolutions are
not, so utilisation against the matmul can exceed 100%. Load averages (os.getloadavg) are recorded
before and after every measurement.

    .venv/bin/python benchmarks/throughput.py --data ../shared/data/cifar10.npz --csv benchmarks/throughput_cpu.csv
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import platform
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from timing import StepClock, best_seconds, loadavg, matmul_flops, train_until_stopped

from forgetting import config, data as data_mod, models, train as train_mod
from forgetting.device import amp_dtype, resolve_device

LR = 0.1  # constant; its value does not change the cost of a step


def toolkit_config(net, width, batch, total) -> config.TrainConfig:
    return config.make_config(
        None,
        net=net,
        width=width,
        subset=batch * total,
        epochs=1,
        batch_size=batch,
        lr_knots=((0.0, LR), (1.0, LR)),
        augment=True,
        seed=0,
        eval_every=0,
    )


# ----------------------------------------------------------------------------------------------
# The baseline, written the way a torchvision CIFAR-10 example is.


class ArrayCifar(torch.utils.data.Dataset):
    """torchvision.datasets.CIFAR10's __getitem__ over in-memory uint8 NHWC arrays."""

    def __init__(self, x: np.ndarray, y: np.ndarray, transform=None):
        self.x, self.y, self.transform = x, y, transform

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i):
        from PIL import Image

        img = Image.fromarray(self.x[i])
        if self.transform is not None:
            img = self.transform(img)
        return img, int(self.y[i])


def baseline_loader(x, y, batch, workers, device) -> torch.utils.data.DataLoader:
    import torchvision.transforms as T

    transform = T.Compose(
        [
            T.RandomCrop(32, padding=4, padding_mode="reflect"),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(data_mod.MEAN, data_mod.STD),
        ]
    )
    return torch.utils.data.DataLoader(
        ArrayCifar(x, y, transform),
        batch_size=batch,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(0),
    )


class Baseline:
    """The usual eager loop, one step per call (the next batch's loading is part of the step)."""

    def __init__(self, net, width, batch, x, y, device, workers):
        torch.manual_seed(0)
        self.device = device
        self.model = models.build(net, width).to(device).train()
        self.opt = torch.optim.SGD(self.model.parameters(), lr=LR, momentum=0.9, nesterov=True, weight_decay=5e-4)
        self.dt = amp_dtype(device)  # None on CPU: fp32
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.dt == torch.float16)
        self.loader = baseline_loader(x, y, batch, workers, device)
        self.it = iter(self.loader)

    def step(self) -> None:
        try:
            xb, yb = next(self.it)
        except StopIteration:
            self.it = iter(self.loader)
            xb, yb = next(self.it)
        xb, yb = xb.to(self.device, non_blocking=True), yb.to(self.device, non_blocking=True)
        with torch.autocast(self.device.type, dtype=self.dt, enabled=self.dt is not None):
            loss = F.cross_entropy(self.model(xb), yb)
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.opt)
        self.scaler.update()


# ----------------------------------------------------------------------------------------------
# The two timing modes. Each returns (images/s, timed step durations in s or None) for each side.


def measure_sequential(cfg, cifar, device, cache, make_baseline, warmup, steps):
    total = warmup + steps
    tk = StepClock(device, warmup, total)
    train_until_stopped(cfg, cifar, device, tk, cache)
    bl = StepClock(device, warmup, total)
    base = make_baseline()
    while True:
        base.step()
        if bl.tick():
            return tk, bl


class Interleaved(train_mod.Callbacks):
    """Runs one baseline step inside each toolkit step callback; times each side's own steps only."""

    def __init__(self, baseline: Baseline, total: int):
        self.baseline, self.total = baseline, total
        self.tk: list[float] = []
        self.bl: list[float] = []
        self.resume = None

    def start_epoch(self, epoch: int, steps: int) -> None:
        self.resume = time.perf_counter()

    def step(self, epoch: int, step: int) -> bool:
        t = time.perf_counter()
        self.tk.append(t - self.resume)
        self.baseline.step()
        t2 = time.perf_counter()
        self.bl.append(t2 - t)
        self.resume = time.perf_counter()
        return len(self.tk) >= self.total  # stops the toolkit's run: its final evaluation is never timed


def measure_interleaved(cfg, cifar, device, cache, make_baseline, warmup, steps):
    cb = Interleaved(make_baseline(), warmup + steps)
    train_until_stopped(cfg, cifar, device, cb, cache)
    return np.array(cb.tk[warmup:]), np.array(cb.bl[warmup:])


# ----------------------------------------------------------------------------------------------


def conv_flops(device: torch.device, reps: int) -> float:
    """FLOP/s of a large 3x3 convolution's forward pass (the nets' own kind of op), same dtype as the matmul.

    A second reference: on CPU the matmul runs in BLAS (MKL) and the convolutions in oneDNN, whose
    kernels can be much faster on the same cores, so utilisation against the matmul can exceed 100%.
    """
    dtype = amp_dtype(device) or torch.float32
    b, c, hw = (512, 256, 16) if device.type == "cuda" else (128, 256, 8)
    x = torch.randn(b, c, hw, hw, device=device, dtype=dtype)
    w = torch.randn(c, c, 3, 3, device=device, dtype=dtype)
    if device.type == "cuda":
        x, w = x.contiguous(memory_format=torch.channels_last), w.contiguous(memory_format=torch.channels_last)
    return 2 * b * c * c * 9 * hw * hw / best_seconds(lambda: F.conv2d(x, w, padding=1), device, reps)


@dataclass
class Row:
    net: str
    width: float
    batch: int
    mode: str
    toolkit_img_s: float
    baseline_img_s: float
    ratio: float  # toolkit / baseline
    paired_ratio: float  # interleaved: median over step pairs of baseline step time / toolkit step time
    toolkit_fastest_step_img_s: float  # CPU: batch / the fastest timed step
    baseline_fastest_step_img_s: float
    toolkit_median_step_ms: float  # CPU: median timed step
    baseline_median_step_ms: float
    gflop_per_img: float  # forward
    matmul_gflop_s: float
    toolkit_util: float  # against the matmul
    baseline_util: float
    conv_gflop_s: float
    toolkit_util_conv: float  # against the 3x3 convolution
    baseline_util_conv: float
    warmup_steps: int
    timed_steps: int
    repeats: int
    load_before: str
    load_after: str
    seconds: float


def measure(net, width, batch, warmup, steps, repeats, mode, cifar, device, cache, workers) -> dict:
    """One (net, width): both loops, ``repeats`` times; the figures of the Row."""
    cfg = toolkit_config(net, width, batch, warmup + steps)
    subset = data_mod.balanced_subset(cifar.train_y, cfg.subset, cfg.seed)  # the toolkit's own subset
    bx, by = cifar.train_x[subset], cifar.train_y[subset]

    def make_baseline():
        return Baseline(net, width, batch, bx, by, device, workers)

    nan = float("nan")
    if mode == "interleaved":
        tk_t, bl_t = [], []
        for _ in range(repeats):
            a, b = measure_interleaved(cfg, cifar, device, cache, make_baseline, warmup, steps)
            tk_t.append(a)
            bl_t.append(b)
        tk_t, bl_t = np.concatenate(tk_t), np.concatenate(bl_t)
        tk, bl = batch * len(tk_t) / tk_t.sum(), batch * len(bl_t) / bl_t.sum()
        paired = float(np.median(bl_t / tk_t))
    else:
        clocks = [measure_sequential(cfg, cifar, device, cache, make_baseline, warmup, steps) for _ in range(repeats)]
        tk = max(c[0].images_per_second(batch) for c in clocks)  # each side's best window
        bl = max(c[1].images_per_second(batch) for c in clocks)
        tk_t = np.concatenate([c[0].step_seconds[warmup:] for c in clocks])
        bl_t = np.concatenate([c[1].step_seconds[warmup:] for c in clocks])
        paired = nan
    cpu = device.type == "cpu"  # per-step durations mean something only where steps are synchronous
    return dict(
        toolkit_img_s=tk,
        baseline_img_s=bl,
        ratio=tk / bl,
        paired_ratio=paired,
        toolkit_fastest_step_img_s=batch / tk_t.min() if cpu else nan,
        baseline_fastest_step_img_s=batch / bl_t.min() if cpu else nan,
        toolkit_median_step_ms=float(np.median(tk_t)) * 1e3 if cpu else nan,
        baseline_median_step_ms=float(np.median(bl_t)) * 1e3 if cpu else nan,
    )


def parse_args() -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--nets", default="dawn18,resnet9", help="comma-separated")
    p.add_argument("--widths", default="1,0.25", help="comma-separated channel multipliers")
    p.add_argument("--batch-size", type=int, default=None, help="default 512 on CUDA, 128 on CPU")
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help="timed steps per measurement (default CUDA 50; CPU 6 at width >= 0.5, 16 below)",
    )
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default CUDA 10, CPU 2)")
    p.add_argument(
        "--mode",
        choices=("auto", "interleaved", "sequential"),
        default="auto",
        help="auto = interleaved on CPU with --loader-workers 0, else sequential",
    )
    p.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="measurements per config (default: interleaved 1, sequential 3; sequential keeps each side's best)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    p.add_argument("--loader-workers", type=int, default=0, help="baseline DataLoader num_workers (0 = in-process)")
    p.add_argument(
        "--matmul-size", type=int, default=None, help="n of the n x n peak matmul (default CPU 2048, CUDA 8192)"
    )
    p.add_argument("--matmul-reps", type=int, default=5)
    p.add_argument("--data", default=None, help="CIFAR-10 .npz (default $FORGETTING_DATA)")
    p.add_argument("--csv", default=None, help="write the table here as CSV")
    return p, p.parse_args()


@dataclass
class Plan:
    """The options with their per-device defaults resolved."""

    device: torch.device
    batch: int
    warmup: int
    mode: str
    repeats: int
    nets: list[str]
    widths: list[float]
    matmul_n: int
    steps: int | None  # None: per width (see timed_steps)
    workers: int

    def timed_steps(self, width: float) -> int:
        return self.steps or (50 if self.device.type == "cuda" else (6 if width >= 0.5 else 16))


def make_plan(p: argparse.ArgumentParser, a: argparse.Namespace) -> Plan:
    device = resolve_device(a.device)
    gpu = device.type == "cuda"
    warmup = a.warmup if a.warmup is not None else (10 if gpu else 2)
    if warmup < 1:
        p.error("--warmup must be at least 1 (the timed window starts at the end of a step)")
    mode = a.mode if a.mode != "auto" else ("sequential" if gpu or a.loader_workers else "interleaved")
    if mode == "interleaved" and (gpu or a.loader_workers):
        p.error(
            "--mode interleaved needs a CPU device and --loader-workers 0 (loader workers would run during the "
            "toolkit's steps; a GPU would need a sync per step)"
        )
    return Plan(
        device=device,
        batch=a.batch_size or (512 if gpu else 128),
        warmup=warmup,
        mode=mode,
        repeats=a.repeats or (1 if mode == "interleaved" else 3),
        nets=[s.strip() for s in a.nets.split(",") if s.strip()],
        widths=[float(s) for s in a.widths.split(",") if s.strip()],
        matmul_n=a.matmul_size or (8192 if gpu else 2048),
        steps=a.steps,
        workers=a.loader_workers,
    )


def load_training_data(path: str | None) -> data_mod.Cifar10:
    """CIFAR-10 with its test set cut to a token size: evaluation is never reached (the toolkit run
    stops after its last timed step), but prepare() still normalises the test set, before any timing."""
    full = data_mod.load_cifar10(path)
    return data_mod.Cifar10(full.train_x, full.train_y, full.test_x[:100], full.test_y[:100], full.source)


def measure_all(plan: Plan, cifar: data_mod.Cifar10) -> list[tuple]:
    """(net, width, timed steps, forward FLOPs, figures, load before, load after, seconds) per config."""
    cache: dict = {}  # the toolkit's preprocessed data, shared across configs as a sweep shares it
    measured = []
    for net in plan.nets:
        for width in plan.widths:
            steps = plan.timed_steps(width)
            flops = models.forward_flops(models.build(net, width))
            t0, load0 = time.perf_counter(), loadavg()
            m = measure(
                net,
                width,
                plan.batch,
                plan.warmup,
                steps,
                plan.repeats,
                plan.mode,
                cifar,
                plan.device,
                cache,
                plan.workers,
            )
            load1, secs = loadavg(), time.perf_counter() - t0
            measured.append((net, width, steps, flops, m, load0, load1, secs))
            print(
                f"  {net} w{width:g}: toolkit {m['toolkit_img_s']:.1f} img/s, baseline {m['baseline_img_s']:.1f} "
                f"img/s (x{m['ratio']:.2f}, paired x{m['paired_ratio']:.2f}); median step "
                f"{m['toolkit_median_step_ms']:.0f} vs {m['baseline_median_step_ms']:.0f} ms; "
                f"load {load0} -> {load1}; {secs:.0f} s",
                flush=True,
            )
    return measured


def make_rows(plan: Plan, measured: list[tuple], peak: float, conv: float) -> list[Row]:
    return [
        Row(
            net=net,
            width=width,
            batch=plan.batch,
            mode=plan.mode,
            **m,
            gflop_per_img=flops / 1e9,
            matmul_gflop_s=peak / 1e9,
            toolkit_util=3 * flops * m["toolkit_img_s"] / peak,
            baseline_util=3 * flops * m["baseline_img_s"] / peak,
            conv_gflop_s=conv / 1e9,
            toolkit_util_conv=3 * flops * m["toolkit_img_s"] / conv,
            baseline_util_conv=3 * flops * m["baseline_img_s"] / conv,
            warmup_steps=plan.warmup,
            timed_steps=steps,
            repeats=plan.repeats,
            load_before=l0,
            load_after=l1,
            seconds=secs,
        )
        for net, width, steps, flops, m, l0, l1, secs in measured
    ]


TABLE_COLUMNS = (
    "net",
    "width",
    "batch",
    "toolkit img/s",
    "baseline img/s",
    "ratio",
    "paired ratio",
    "GFLOP/img (fwd)",
    "matmul GFLOP/s",
    "toolkit util",
    "baseline util",
    "conv GFLOP/s",
    "toolkit util (conv)",
    "load before -> after",
)


def print_table(rows: list[Row], title: str, caption: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, caption=caption)
    for col in TABLE_COLUMNS:
        table.add_column(col, justify="left" if col == "net" else "right")
    for r in rows:
        table.add_row(
            r.net,
            f"{r.width:g}",
            str(r.batch),
            f"{r.toolkit_img_s:.1f}",
            f"{r.baseline_img_s:.1f}",
            f"{r.ratio:.2f}",
            "-" if math.isnan(r.paired_ratio) else f"{r.paired_ratio:.2f}",
            f"{r.gflop_per_img:.3f}",
            f"{r.matmul_gflop_s:.1f}",
            f"{r.toolkit_util:.1%}",
            f"{r.baseline_util:.1%}",
            f"{r.conv_gflop_s:.1f}",
            f"{r.toolkit_util_conv:.1%}",
            f"{r.load_before} -> {r.load_after}",
        )
    Console(width=240).print(table)


def write_csv(path: str, rows: list[Row], run_fields: dict) -> None:
    """The rows, each with the fields that describe the whole run (device, threads, torch, ...)."""
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(Row.__dataclass_fields__) + list(run_fields))
        w.writeheader()
        for r in rows:
            d = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in vars(r).items()}
            w.writerow(dict(d, **run_fields))
    print(f"wrote {path}")


def main() -> None:
    p, a = parse_args()
    plan = make_plan(p, a)
    device, gpu = plan.device, plan.device.type == "cuda"
    if a.threads:
        torch.set_num_threads(a.threads)
    t_run = time.perf_counter()
    cifar = load_training_data(a.data)
    mm_dtype = amp_dtype(device) or torch.float32  # fp32 on CPU; bf16 (else fp16) on CUDA
    peak0, conv0 = matmul_flops(device, plan.matmul_n, a.matmul_reps, mm_dtype), conv_flops(device, a.matmul_reps)
    info = (
        f"device {device}{' (' + torch.cuda.get_device_name(device) + ')' if gpu else ''}, "
        f"{os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads, batch {plan.batch}, "
        f"{plan.mode} x{plan.repeats}, loader workers {plan.workers}, {platform.machine()}"
    )
    print(info, flush=True)
    measured = measure_all(plan, cifar)
    peak1, conv1 = matmul_flops(device, plan.matmul_n, a.matmul_reps, mm_dtype), conv_flops(device, a.matmul_reps)
    peak, conv = max(peak0, peak1), max(conv0, conv1)  # the best the device showed in this run
    rows = make_rows(plan, measured, peak, conv)
    elapsed = time.perf_counter() - t_run
    mm_name, n = str(mm_dtype).replace("torch.", ""), plan.matmul_n
    print_table(rows, f"training throughput ({mm_name} {n}x{n} matmul: {peak / 1e9:.1f} GFLOP/s)", info)
    print(
        f"total {elapsed:.0f} s; matmul {peak0 / 1e9:.1f} (start) / {peak1 / 1e9:.1f} (end) GFLOP/s; "
        f"conv {conv0 / 1e9:.1f} / {conv1 / 1e9:.1f} GFLOP/s; "
        f"load now {loadavg()}"
    )
    if a.csv:
        run_fields = dict(
            device=str(device),
            threads=torch.get_num_threads(),
            torch=torch.__version__,
            loader_workers=plan.workers,
            matmul_dtype=mm_name,
            matmul_n=n,
        )
        write_csv(a.csv, rows, run_fields)


if __name__ == "__main__":
    main()
