"""One training run: batch plans -> steps -> history, records, weights, result.

Recipe (docs/protocol.md, section 3): Nesterov SGD, momentum 0.9, weight decay 5e-4, LR in the mean-loss
convention, a piecewise-linear schedule evaluated at every step. Each epoch ends with its partial
batch, as Page's loader does (``drop_last=False``); that step's loss is summed over its images and
divided by the nominal batch size (Page's summed loss with LR / batch size), so it moves the weights
in proportion to the images it holds. Channels-last, data resident on the device, no host sync per
step. ``precision="auto"``: on CUDA AMP (bf16 where supported, else fp16 with loss scaling;
parameters and BN in fp32, data in fp16), on CPU fp32 and bit-for-bit repeatable at a fixed torch
thread count (recorded in result.json; the sweep's local executor keeps it fixed per worker count).
``bf16``/``fp16`` take the same AMP code on any device, so CPU tests exercise the CUDA path.
``compile`` (default: CUDA only) runs the training step through torch.compile; the first step of each
batch shape compiles, and its time is recorded as ``compile_seconds``, apart from ``seconds``.

Besides the per-epoch history, a run records what the forgetting probe needs: each batch's digest and
its loss as seen at the time, and every example's loss and correctness at each presentation.
"""

from __future__ import annotations

import dataclasses
import io
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from forgetting import augment, data as data_mod, models
from forgetting.errors import UserError
from forgetting.schedules import PiecewiseLinear, triangle
from forgetting.store import atomic_write_bytes, csv_bytes, ensure_folder, json_bytes

HISTORY_COLUMNS = ["epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "seconds"]
STEP_COLUMNS = ["epoch", "step", "lr", "digest", "loss", "acc", "n"]
# Images per forward pass when evaluating. On CPU, 256 ran 1.4x faster than 1,000 (activations that
# fit in cache); on a GPU larger batches keep it busy.
EVAL_BATCH = {"cpu": 256, "cuda": 1024}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a run. Units: LR in the mean-loss convention, epochs, images."""

    net: str = "dawn18"
    width: float = 1.0  # channel multiplier
    shortcut: str = "page"  # dawn18 only: "page" adds relu(bn(x)), "johnson" adds x
    bn_init: str = "default"  # "default" = each net's faithful choice, or "uniform" / "ones"
    subset: int = data_mod.TRAIN_SIZE  # class-balanced training images
    epochs: int = 30
    batch_size: int = 512
    lr_knots: tuple[tuple[float, float], ...] = ((0, 0), (8, 0.4), (30, 0))  # (epoch, LR)
    augment: bool = True  # random crop of the padded image + flip
    cutout: int = 0  # Cutout square side in pixels (with augment only)
    seed: int = 0  # initial weights, subset and every epoch's batch plan
    momentum: float = 0.9
    weight_decay: float = 5e-4
    eval_every: int = 0  # test-set evaluation every N epochs; 0 = final epoch only
    eval_last: int = 0  # also evaluate on each of the last N epochs (a constant-LR tail is noisy)
    label: str = ""  # free text carried into tables (e.g. the preset)
    precision: str = "auto"  # auto (bf16 or fp16 on CUDA, fp32 on CPU), fp32, bf16 or fp16
    drop_last: bool = False  # False = Page's loader: an epoch ends with the partial batch
    # torch.compile the training step; None = on for CUDA, off on CPU. An execution setting like the
    # device and the thread count: never part of the run's identity (see identity()).
    compile: bool | None = None

    def __post_init__(self):
        checks = [
            (self.net in models.NETS, f"net must be one of {', '.join(models.NETS)}, not {self.net!r}"),
            (0 < self.width < float("inf"), f"width must be finite and positive, not {self.width}"),
            (1 <= self.subset <= data_mod.TRAIN_SIZE, f"subset {self.subset} is outside 1..{data_mod.TRAIN_SIZE}"),
            (self.epochs >= 1, f"epochs must be at least 1, not {self.epochs}"),
            (self.batch_size >= 1, f"batch size must be at least 1, not {self.batch_size}"),
            (self.batch_size <= self.subset, f"batch size {self.batch_size} is larger than the subset ({self.subset})"),
            (all(lr >= 0 for _, lr in self.lr_knots), "learning rates must not be negative"),
            (
                self.bn_init in ("default", "uniform", "ones"),
                f"bn_init must be default, uniform or ones, not {self.bn_init!r}",
            ),
            (self.eval_every >= 0, "eval_every must not be negative"),
            (self.eval_last >= 0, "eval_last must not be negative"),
            (self.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise UserError(msg)
        PiecewiseLinear(self.lr_knots)  # validates the knots
        augment.AugmentSpec.standard(self.augment, self.cutout)

    @property
    def schedule(self) -> PiecewiseLinear:
        return PiecewiseLinear(self.lr_knots)

    @property
    def augment_spec(self) -> augment.AugmentSpec:
        return augment.AugmentSpec.standard(self.augment, self.cutout)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["lr_knots"] = [list(k) for k in self.lr_knots]
        return d

    def identity(self) -> dict:
        """What names a run (its id hashes this): to_dict without settings added after runs were
        committed, while they are at the value that reproduces those runs, so old run ids stay."""
        d = self.to_dict()
        for key in EXECUTION_SETTINGS:
            d.pop(key)
        if self.subset % self.batch_size == 0:
            d["drop_last"] = IDENTITY_NEUTRAL["drop_last"]  # no partial batch: both settings are the same run
        for key, neutral in IDENTITY_NEUTRAL.items():
            if d.get(key) == neutral:
                d.pop(key)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        d = dict(d)
        d["lr_knots"] = tuple(tuple(float(v) for v in k) for k in d["lr_knots"])
        return cls(**d)


# Settings added after results were committed -> the value at which a run is the same as before.
# Runs before drop_last dropped the partial batch, so True names them; False (the default) only
# enters the identity when the subset leaves a partial batch.
IDENTITY_NEUTRAL: dict = {"eval_last": 0, "precision": "auto", "drop_last": True}
# How a run is executed, not what it computes (compiled kernels round differently, as thread counts
# do): recorded in result.json, left out of the run's id so a compiled run counts as the same run.
EXECUTION_SETTINGS = ("compile",)
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


# The blog's stages (docs/protocol.md, section 3). LR knots are (epoch, LR) in the mean-loss convention.
PRESETS: dict[str, dict] = {
    "part1": dict(net="dawn18", batch_size=128, epochs=35, lr_knots=((0, 0), (15, 0.1), (30, 0.005), (35, 0))),
    "part2": dict(net="dawn18", batch_size=512, epochs=35, lr_knots=((0, 0), (15, 0.44), (30, 0.005), (35, 0))),
    "part3": dict(net="dawn18", batch_size=768, epochs=30, cutout=8, lr_knots=((0, 0), (8, 0.6), (30, 0))),
    "part4": dict(net="resnet9", batch_size=512, epochs=24, lr_knots=((0, 0), (5, 0.4), (24, 0))),
}
DEFAULT_PEAK_LR = 0.4


def make_config(preset: str | None = None, lr: float | None = None, **overrides) -> TrainConfig:
    """A preset's config with overrides; without a preset, Part 3's shape stretched to ``epochs``.

    ``lr`` rescales a preset's knots so that their peak equals ``lr``.
    """
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if preset is not None:
        if preset not in PRESETS:
            raise UserError(f"unknown preset {preset!r} (choose from {', '.join(PRESETS)})")
        base = dict(PRESETS[preset], label=preset)
        if "epochs" in overrides and overrides["epochs"] != base["epochs"]:
            stretch = overrides["epochs"] / base["epochs"]
            base["lr_knots"] = tuple((e * stretch, v) for e, v in base["lr_knots"])
        if lr is not None:
            peak = max(v for _, v in base["lr_knots"])
            base["lr_knots"] = tuple((e, v * lr / peak) for e, v in base["lr_knots"])
        base.update(overrides)
        return TrainConfig(**base)
    epochs = overrides.pop("epochs", 30)
    knots = triangle(DEFAULT_PEAK_LR if lr is None else lr, epochs).knots
    return TrainConfig(**{"epochs": epochs, "batch_size": 512, "lr_knots": knots, **overrides})


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda"):
        raise UserError(f"device must be auto, cpu or cuda, not {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda asked for, but torch sees no CUDA device")
    return torch.device(name)


def processor_name(device: torch.device) -> str:
    """The chip that trains on ``device``: the GPU's name, else the CPU model. Recorded with every run
    because the same run id gives other digits on another CPU model (Intel vs AMD, 2 threads each)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine() or "unknown"


def amp_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype; None = fp32. auto: bf16 where the GPU supports it, else fp16 (with loss
    scaling); fp32 on CPU. bf16 and fp16 autocast on any device, CPU included, through the same code."""
    if precision == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def data_dtype(device: torch.device, precision: str = "auto") -> torch.dtype:
    """Half-precision data under AMP (halves device memory; the first layer autocasts it), else fp32."""
    return torch.float32 if amp_dtype(device, precision) is None else torch.float16


def precision_name(dt: torch.dtype | None) -> str:
    """The precision a run used, as result.json records it (float32, bfloat16 or float16)."""
    return str(dt).replace("torch.", "") if dt else "float32"


def use_compile(cfg: TrainConfig, device: torch.device) -> bool:
    return device.type == "cuda" if cfg.compile is None else bool(cfg.compile)


@dataclass
class Prepared:
    """The data of one run, on the device, prepared once."""

    subset: np.ndarray  # dataset indices of the training subset
    train_padded: torch.Tensor  # (50000, 3, 40, 40) normalised, reflect-padded
    train_labels: torch.Tensor  # (50000,)
    test_x: torch.Tensor  # (10000, 3, 32, 32) normalised
    test_y: torch.Tensor


def prepare(cfg: TrainConfig, cifar: data_mod.Cifar10, device: torch.device, cache: dict | None = None) -> Prepared:
    """Preprocess once per device (``cache`` lets a sweep reuse it across runs)."""
    dtype = data_dtype(device, cfg.precision)
    key = (id(cifar), str(device), dtype)
    if cache is not None and key in cache:
        padded, labels, tx, ty = cache[key]
    else:
        padded = data_mod.prepare_train(cifar.train_x, device, dtype)
        labels = torch.as_tensor(cifar.train_y, device=device)
        tx = data_mod.normalise(cifar.test_x, device, dtype)
        ty = torch.as_tensor(cifar.test_y, device=device)
        if cache is not None:
            cache[key] = (padded, labels, tx, ty)
    subset = data_mod.balanced_subset(cifar.train_y, cfg.subset, cfg.seed)
    return Prepared(subset, padded, labels, tx, ty)


def build_model(cfg: TrainConfig, device: torch.device) -> torch.nn.Module:
    torch.manual_seed(cfg.seed)
    bn_init = None if cfg.bn_init == "default" else cfg.bn_init
    model = models.build(cfg.net, cfg.width, cfg.shortcut, bn_init).to(device)
    # Channels-last on every device: tensor cores want it on CUDA, and oneDNN's CPU convolutions
    # ran 1.1-1.4x faster with it here (benchmarks/README.md).
    model = model.to(memory_format=torch.channels_last)
    return model


def make_optimizer(cfg: TrainConfig, model: torch.nn.Module) -> torch.optim.SGD:
    return torch.optim.SGD(
        model.parameters(), lr=0.0, momentum=cfg.momentum, nesterov=True, weight_decay=cfg.weight_decay
    )


def _to_device_batch(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last)


@torch.inference_mode()
def per_example(
    model, x: torch.Tensor, y: torch.Tensor, batch: int | None = None, precision: str = "auto"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example loss (fp32) and correctness on the device, in whatever mode ``model`` is in."""
    device = x.device
    batch = batch or EVAL_BATCH.get(device.type, 256)
    dt = amp_dtype(device, precision)
    losses, correct = [], []
    for i in range(0, len(x), batch):
        xb = _to_device_batch(x[i : i + batch], device)
        with torch.autocast(device.type, dtype=dt, enabled=dt is not None):
            logits = model(xb)
        losses.append(F.cross_entropy(logits.float(), y[i : i + batch], reduction="none"))
        correct.append(logits.argmax(1) == y[i : i + batch])
    return torch.cat(losses), torch.cat(correct)


def evaluate(model, x: torch.Tensor, y: torch.Tensor, precision: str = "auto") -> tuple[float, float]:
    """Mean loss and accuracy in eval mode (BN running statistics)."""
    was = model.training
    model.eval()
    loss, correct = per_example(model, x, y, precision=precision)
    model.train(was)
    return float(loss.mean()), float(correct.float().mean())


@dataclass
class RunOutput:
    """What a finished run produces; `write_run` puts it on disk (result.json last)."""

    config: dict
    history: list[dict]
    steps: list[dict]
    examples: dict[str, np.ndarray]  # order/loss/correct: (epochs, n) each
    state_dict: dict
    result: dict = field(default_factory=dict)

    def files(self) -> dict[str, bytes]:
        """The run's files as bytes, in the order they must be written (result.json last)."""
        buf_model, buf_ex = io.BytesIO(), io.BytesIO()
        torch.save(self.state_dict, buf_model)
        np.savez_compressed(buf_ex, **self.examples)
        return {
            "config.json": json_bytes(self.config),
            "history.csv": csv_bytes(self.history, HISTORY_COLUMNS),
            "steps.csv": csv_bytes(self.steps, STEP_COLUMNS),
            "examples.npz": buf_ex.getvalue(),
            "model.pt": buf_model.getvalue(),
            "result.json": json_bytes(self.result),
        }


def write_run(out_dir: Path, files: dict[str, bytes]) -> None:
    """Write a run's files atomically, result.json last: its presence means the run is complete."""
    out_dir = Path(out_dir)
    (out_dir / "result.json").unlink(missing_ok=True)
    for name, blob in files.items():
        if name != "result.json":
            atomic_write_bytes(out_dir / name, blob)
    atomic_write_bytes(out_dir / "result.json", files["result.json"])


class Callbacks:
    """Progress hooks; the command line passes one that draws bars. All optional."""

    def start_epoch(self, epoch: int, steps: int) -> None: ...
    def step(self, epoch: int, step: int) -> None: ...
    def end_epoch(self, row: dict) -> None: ...


def machine_load() -> float | None:
    """The 1-minute load average: recorded at a run's start and end, since a run that shared its cores
    with another job ran several times slower (README: sharing one machine). None where unknown."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):  # not on every platform
        return None


def _finite(x: float) -> bool:
    return bool(np.isfinite(x))


def per_step_mean(values: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Mean of each step's slice of per-example ``values`` (steps of ``sizes`` examples, in order)."""
    if (sizes == sizes[0]).all():
        return values.reshape(len(sizes), -1).mean(1)  # the committed runs' arithmetic, kept bit for bit
    return np.add.reduceat(values.astype(np.float64), np.r_[0, np.cumsum(sizes)[:-1]]) / sizes


def epoch_mean(step_values: np.ndarray, sizes: np.ndarray) -> float:
    """An epoch's mean over examples from per-step means (a partial batch weighs what it holds)."""
    if (sizes == sizes[0]).all():
        return float(step_values.mean())
    return float((step_values * sizes).sum() / sizes.sum())


def train(
    cfg: TrainConfig,
    cifar: data_mod.Cifar10,
    device: torch.device | str = "auto",
    checkpoint: Path | None = None,
    callbacks: Callbacks | None = None,
    cache: dict | None = None,
) -> RunOutput:
    """Train one run. With ``checkpoint``, save after every epoch and resume from it if present.

    A non-finite loss ends the run early with ``diverged = True``; it is not raised.
    """
    load_start = machine_load()
    device = resolve_device(device) if isinstance(device, str) else device
    cb = callbacks or Callbacks()
    dt = amp_dtype(device, cfg.precision)
    prep = prepare(cfg, cifar, device, cache)
    model = build_model(cfg, device)
    compiled = use_compile(cfg, device)
    # dynamic=False: one static graph per batch shape (a partial last batch is a second one).
    step_model = torch.compile(model, dynamic=False) if compiled else model
    opt = make_optimizer(cfg, model)
    scaler = torch.amp.GradScaler(device.type, enabled=dt == torch.float16)
    sched = cfg.schedule
    spec = cfg.augment_spec

    history: list[dict] = []
    steps_rec: list[dict] = []
    ex_order, ex_loss, ex_correct = [], [], []
    start_epoch, elapsed, diverged, compile_secs, shapes_seen = 0, 0.0, False, 0.0, set()
    if checkpoint is not None and Path(checkpoint).exists():
        state = torch.load(checkpoint, map_location=device, weights_only=False)
        if TrainConfig.from_dict(state["config"]).identity() == cfg.identity():  # compiled or not: the same run
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            scaler.load_state_dict(state["scaler"])
            history, steps_rec = state["history"], state["steps"]
            ex_order, ex_loss, ex_correct = state["ex_order"], state["ex_loss"], state["ex_correct"]
            start_epoch, elapsed = state["epoch"], state["elapsed"]
            compile_secs = state.get("compile_secs", 0.0)
    resumed_from = start_epoch

    model.train()
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        plan = augment.plan_epoch(prep.subset, cfg.seed, epoch, spec, cfg.batch_size, cfg.drop_last)
        dplan = augment.DevicePlan(plan, device)
        n_steps = plan.steps
        sizes = plan.sizes()
        epoch_compile = 0.0
        cb.start_epoch(epoch, n_steps)
        # Per-step records stay on the device until the epoch ends: no host sync per step.
        step_loss = torch.zeros(n_steps, device=device)
        step_lr = np.empty(n_steps)
        ex_l = torch.empty(len(plan.indices), device=device)
        ex_c = torch.empty(len(plan.indices), dtype=torch.bool, device=device)
        for s in range(n_steps):
            lr = sched(epoch + (s + 1) / n_steps)
            step_lr[s] = lr
            for g in opt.param_groups:
                g["lr"] = lr
            x, y = dplan.batch(prep.train_padded, prep.train_labels, s)
            x = _to_device_batch(x, device)
            compiles = compiled and len(y) not in shapes_seen
            tc = time.perf_counter()
            with torch.autocast(device.type, dtype=dt, enabled=dt is not None):
                logits = step_model(x)
            losses = F.cross_entropy(logits.float(), y, reduction="none")
            loss = losses.mean()
            # Page sums the loss and divides the LR by the nominal batch size: a partial batch moves
            # the weights in proportion to the images it holds.
            grad_loss = loss if len(y) == cfg.batch_size else losses.sum() / cfg.batch_size
            opt.zero_grad(set_to_none=True)
            scaler.scale(grad_loss).backward()
            scaler.step(opt)
            scaler.update()
            if compiles:  # the first step of a batch shape compiles it: timed apart from training
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                shapes_seen.add(len(y))
                epoch_compile += time.perf_counter() - tc
            sl = plan.batch(s)
            ex_l[sl] = losses.detach()
            ex_c[sl] = logits.detach().argmax(1) == y
            step_loss[s] = loss.detach()
            cb.step(epoch, s)
        step_loss_h = step_loss.cpu().numpy()
        ex_c_h = ex_c.cpu().numpy()
        ex_order.append(plan.indices.astype(np.int32))
        ex_loss.append(ex_l.cpu().numpy().astype(np.float32))
        ex_correct.append(ex_c_h)
        step_acc = per_step_mean(ex_c_h, sizes)
        for s, d in enumerate(plan.digests()):
            steps_rec.append(
                dict(
                    epoch=epoch,
                    step=epoch * n_steps + s,
                    lr=step_lr[s],
                    digest=d,
                    loss=float(step_loss_h[s]),
                    acc=float(step_acc[s]),
                    n=int(sizes[s]),
                )
            )
        train_loss = epoch_mean(step_loss_h, sizes)
        diverged = not _finite(train_loss)
        last = epoch == cfg.epochs - 1 or diverged
        test_loss = test_acc = float("nan")
        scheduled = (cfg.eval_every and (epoch + 1) % cfg.eval_every == 0) or epoch >= cfg.epochs - cfg.eval_last
        if not diverged and (last or scheduled):
            test_loss, test_acc = evaluate(model, prep.test_x, prep.test_y, cfg.precision)
            diverged = not _finite(test_loss)  # weights can blow up on an epoch's final steps
        secs = time.perf_counter() - t0 - epoch_compile
        elapsed += secs
        compile_secs += epoch_compile
        row = dict(
            epoch=epoch + 1,
            lr=float(step_lr[-1]),
            train_loss=train_loss,
            train_acc=epoch_mean(step_acc, sizes),
            test_loss=test_loss,
            test_acc=test_acc,
            seconds=round(secs, 3),
        )
        history.append(row)
        if diverged:
            cb.end_epoch(row)
            break
        if checkpoint is not None and not last:
            buf = io.BytesIO()
            torch.save(
                dict(
                    config=cfg.to_dict(),
                    model=model.state_dict(),
                    optimizer=opt.state_dict(),
                    scaler=scaler.state_dict(),
                    history=history,
                    steps=steps_rec,
                    ex_order=ex_order,
                    ex_loss=ex_loss,
                    ex_correct=ex_correct,
                    epoch=epoch + 1,
                    elapsed=elapsed,
                    compile_secs=compile_secs,
                ),
                buf,
            )
            atomic_write_bytes(Path(checkpoint), buf.getvalue())
        cb.end_epoch(row)  # after the checkpoint: an interrupt while printing loses no finished epoch

    final = history[-1]
    clean_loss = clean_acc = float("nan")
    if not diverged:
        clean = prep.train_padded[torch.as_tensor(prep.subset, device=device)][:, :, 4:36, 4:36]
        labels = prep.train_labels[torch.as_tensor(prep.subset, device=device)]
        clean_loss, clean_acc = evaluate(model, clean, labels, cfg.precision)
    images = sum(len(o) for o in ex_order)
    # Mean over the evaluated last epochs: at a constant LR the final snapshot alone is noisy.
    tail = [r["test_loss"] for r in history[-max(cfg.eval_last, 1) :]]
    tail_acc = [r["test_acc"] for r in history[-max(cfg.eval_last, 1) :]]
    test_loss_tail = float("nan") if diverged else float(np.nanmean(tail))
    test_acc_tail = float("nan") if diverged else float(np.nanmean(tail_acc))
    result = dict(
        train_loss=final["train_loss"],
        train_acc=final["train_acc"],
        test_loss=final["test_loss"],
        test_acc=final["test_acc"],
        test_loss_tail=test_loss_tail,
        test_acc_tail=test_acc_tail,
        tail_epochs=int(np.isfinite(tail).sum()) if not diverged else 0,
        clean_train_loss=clean_loss,
        clean_train_acc=clean_acc,
        diverged=diverged,
        epochs_completed=len(history),
        seconds=round(elapsed, 3),
        train_images_per_second=round(images / max(elapsed, 1e-9), 2),
        device=str(device),
        gpu=torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        processor=processor_name(device),
        precision=precision_name(dt),
        torch=torch.__version__,
        threads=torch.get_num_threads(),
        compiled=compiled,
        compile_seconds=round(compile_secs, 3),
        resumed_from_epoch=resumed_from,  # 0: trained from the start in one go
        load_start=load_start,  # of this process's part of the run, when it resumed from a checkpoint
        load_end=machine_load(),
    )
    return RunOutput(
        config=cfg.to_dict(),
        history=history,
        steps=steps_rec,
        examples=dict(order=np.stack(ex_order), loss=np.stack(ex_loss), correct=np.stack(ex_correct)),
        state_dict={k: v.detach().cpu() for k, v in model.state_dict().items()},
        result=result,
    )


CHECKPOINT = "checkpoint.pt"


def train_to_dir(
    cfg: TrainConfig, cifar: data_mod.Cifar10, out_dir: Path, device="auto", callbacks=None, cache=None
) -> dict:
    """Train into ``out_dir``: resumable from its epoch checkpoint, result.json written last."""
    out_dir = ensure_folder(out_dir, "--out folder")
    output = train(cfg, cifar, device, checkpoint=out_dir / CHECKPOINT, callbacks=callbacks, cache=cache)
    write_run(out_dir, output.files())
    (out_dir / CHECKPOINT).unlink(missing_ok=True)
    return output.result
