"""Command line: parse options, call one library function, print. Nothing else lives here."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Optional

import typer

from forgetting.cli_options import (
    CompileOpt,
    DataOpt,
    DatasetOpt,
    DeviceOpt,
    DropLastOpt,
    OptimizerOpt,
    PrecisionOpt,
    StoreOpt,
    StudyOptions,
    parse_ints,
    study_options,
)
from forgetting import lr_settings
from forgetting.errors import UserError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Study catastrophic forgetting in fast training (Page, 'How to Train Your ResNet', Part 2): CIFAR-10 "
    "or your own data and network.",
)


@app.command()
def data(
    name: str = typer.Argument(
        "cifar10", help="cifar10, cifar100, svhn, mnist, fashion-mnist, or your own with --data"
    ),
    data: Optional[str] = DataOpt,
    download: bool = typer.Option(
        False, "--download", help="fetch the data set with torchvision into the user cache (needs internet)"
    ),
):
    """Find, verify and describe a data set: source, fingerprint, image shape, normalisation, per-class counts."""
    from forgetting import datasets
    from forgetting.console import console

    d = datasets.load_dataset(name, data, download=download).describe()
    reference = datasets.reference(name)
    official = (
        " (the copy the committed results trained on)"
        if reference and reference.fingerprint == d["fingerprint"]
        else ""
    )
    console.print(f"data set: {d['name']}   fingerprint: {d['fingerprint']}{official}")
    console.print(f"source: {d['source']}")
    console.print(f"train: {d['train']:,} images   test: {d['test']:,} images   image: {d['image']}")
    stats = ", ".join(f"{m:.4f} / {s:.4f}" for m, s in zip(d["mean"], d["std"]))
    console.print(f"normalisation per channel (mean / std of pixels / 255): {stats}")
    console.print(f"per class (train / test), {len(d['classes'])} classes:")
    width = max(11, max(len(c) for c in d["classes"]) + 2)
    for cls, a, b in zip(d["classes"], d["train_per_class"], d["test_per_class"]):
        console.print(f"  {cls:<{width}}{a:>6,} / {b:,}", markup=False, highlight=False)


@app.command()
def train(
    net: Optional[str] = typer.Option(
        None, help="dawn18, resnet9, airbench94 or 'package.module:factory' (default: the preset's, else dawn18)"
    ),
    width: float = typer.Option(1.0, help="channel multiplier (0.25 = a quarter of the channels)"),
    preset: Optional[str] = typer.Option(None, help="part1, part2, part3 or part4 (the blog's stages)"),
    subset: Optional[int] = typer.Option(None, help="class-balanced training images (default: all of them)"),
    epochs: Optional[int] = typer.Option(None, help="epochs (a preset's schedule is stretched to fit)"),
    batch_size: Optional[int] = typer.Option(None, help="images per step (default: the preset's, else 512)"),
    lr: Optional[float] = typer.Option(None, help="peak LR, mean-loss convention (default: the preset's, else 0.4)"),
    augment: Optional[bool] = typer.Option(None, "--augment/--no-augment", help="random crop + flip (default on)"),
    cutout: Optional[int] = typer.Option(None, help="Cutout square side in pixels (0 = off)"),
    seed: int = typer.Option(0, help="seed for weights, subset and batch plans"),
    optimizer: Optional[str] = OptimizerOpt,
    eval_every: Optional[int] = typer.Option(
        None, help="evaluate on the test set every N epochs (0 = final epoch only; default: TrainConfig's)"
    ),
    precision: Optional[str] = PrecisionOpt,
    compile: Optional[bool] = CompileOpt,
    drop_last: Optional[bool] = DropLastOpt,
    device: str = DeviceOpt,
    dataset: Optional[str] = DatasetOpt,
    data: Optional[str] = DataOpt,
    out: Path = typer.Option(..., "--out", help="output folder (resumes from its checkpoint if interrupted)"),
):
    """Train one network; write config.json, history.csv, model.pt and result.json (last) into OUT."""
    from forgetting import config, datasets, device as device_mod, train as train_mod
    from forgetting.console import EpochTable, console, progress_bar

    shape = dict(net=net, width=width, subset=subset, batch_size=batch_size, augment=augment, cutout=cutout)
    recipe = dict(lr=lr, epochs=epochs, seed=seed, eval_every=eval_every, drop_last=drop_last, optimizer=optimizer)
    cfg = config.make_config(preset, precision=precision, compile=compile, **shape, **recipe)
    dev = device_mod.resolve_device(device)
    source = datasets.load_dataset(dataset or "cifar10", data)
    cfg = cfg if subset is not None else config.with_all_images(cfg, source)
    with progress_bar(transient=True) as bar:
        result = train_mod.train_to_dir(cfg, source, out, dev, callbacks=EpochTable(bar))
    state = "diverged" if result["diverged"] else "finished"
    compiled = f" (+{result['compile_seconds']:.1f} s compiling)" if result["compiled"] else ""
    console.print(
        f"{state}: test loss {result['test_loss']:.4f}, test acc {result['test_acc']:.4f}, "
        f"{result['seconds']:.1f} s{compiled} on {result['device']} in {result['precision']} -> {out}"
    )


@app.command("lr-find")
def lr_find(
    study: Optional[str] = typer.Argument(
        None, help="a study: run its LR finder into STORE/<study>/ (what shards 2..N need); else the options below"
    ),
    store: Path = StoreOpt,
    net: str = typer.Option("dawn18", help="dawn18, resnet9, airbench94 or 'package.module:factory'"),
    width: float = typer.Option(1.0, help="channel multiplier (0.25 = a quarter of the channels)"),
    subset: Optional[int] = typer.Option(None, help="class-balanced training images (default: all of them)"),
    batch_size: int = typer.Option(512, help="images per step"),
    augment: bool = typer.Option(True, "--augment/--no-augment", help="random crop + flip, as in training"),
    method: str = typer.Option(
        lr_settings.DEFAULT_METHOD, help=f"{', '.join(lr_settings.METHODS)} (min10: LR of the minimum / 10)"
    ),
    seeds: str = typer.Option("0", help="comma-separated seeds, e.g. 0,1,2 (median and spread reported)"),
    start_lr: float = typer.Option(lr_settings.START_LR, help="first LR of the geometric ramp (mean-loss convention)"),
    end_lr: float = typer.Option(
        lr_settings.END_LR, help="last LR of the ramp (the test stops early when the loss explodes)"
    ),
    steps: int = typer.Option(lr_settings.NUM_STEPS, help="steps of the ramp, one batch each"),
    optimizer: str = typer.Option("sgd", "--optimizer", help="sgd (Page's Nesterov SGD) or adamw"),
    precision: str = typer.Option("auto", help="auto (bf16/fp16 on CUDA, fp32 on CPU), fp32, bf16 or fp16"),
    compile: Optional[bool] = CompileOpt,
    device: str = DeviceOpt,
    dataset: Optional[str] = DatasetOpt,
    data: Optional[str] = DataOpt,
    out: Optional[Path] = typer.Option(
        None, "--out", help="output folder: lr_find.csv, lr_find.json, lr_find.png/.svg"
    ),
):
    """LR range test on a config's model and batches: suggest a base LR; write the curve, JSON and a plot into OUT."""
    from forgetting import config, datasets, device as device_mod, lr_finder
    from forgetting.console import LRFindProgress, SweepProgress, console, progress_bar

    if study is not None:
        from forgetting import studies, sweep

        s = studies.load_study(study).with_overrides(dataset=dataset, data=data)
        with progress_bar(transient=True) as bar:
            base_lr = sweep.find_base_lr(s, store, s.load_data(), device, SweepProgress(bar))
        return console.print(f"{s.name}: base LR {base_lr:.4g} -> {sweep.StudyStore(store, s.name).lr_find_json}")
    if out is None:
        raise UserError("lr-find needs a study (e.g. `forgetting lr-find cpu-lr-sweep`) or --out FOLDER")

    seed_list = tuple(parse_ints(seeds, "seeds") or ())
    shape = dict(net=net, width=width, batch_size=batch_size, augment=augment, optimizer=optimizer)
    cfg = config.TrainConfig(
        **shape, **({} if subset is None else {"subset": subset}), precision=precision, compile=compile
    )
    dev = device_mod.resolve_device(device)
    source = datasets.load_dataset(dataset or "cifar10", data)
    cfg = cfg if subset is not None else config.with_all_images(cfg, source)
    ramp = dict(method=method, seeds=seed_list, num_steps=steps, start_lr=start_lr, end_lr=end_lr)
    with progress_bar(transient=True) as bar:
        res = lr_finder.find_lr_into(out, cfg, source, dev, callbacks=LRFindProgress(bar), **ramp)
    spread = f" (median of {len(res.seeds)} seeds, spread {res.spread[0]:.4g} .. {res.spread[1]:.4g})"
    console.print(f"suggested LR ({method}): {res.suggestion:.4g}{spread if len(res.seeds) > 1 else ''} -> {out}")
    others = ", ".join(f"{m} {v['suggestion']:.4g}" for m, v in res.all_methods().items() if m != method)
    stops = ", ".join(f"seed {s} {c.stopped} after {len(c)} steps" for s, c in res.curves.items())
    console.print(f"other rules: {others}; {stops}")


def _print_plan(study, store: Path, shard) -> None:
    from forgetting import sweep
    from forgetting.console import console, plan_table

    console.print(plan_table(sweep.plan_sweep(study, store, shard, study.load_data().identity)))


def _print_report(folder: Path, table, lines: list[str], written: Path) -> None:
    """A study's table, its report (fits and verdicts), ``lines``, and the files written."""
    from forgetting import report
    from forgetting.console import console
    from forgetting.store import StudyFolder

    console.print(table)
    rep = report.study_report(folder)
    console.print(rep.text(), markup=False, soft_wrap=True, highlight=False)
    for line in lines:
        console.print(line)
    console.print(f"wrote {written}, {StudyFolder.summary.name} and {', '.join(str(p) for p in rep.figures)}")


# The order of each command's overrides: an overridden study's scale line names them so.
SWEEP_OVERRIDES = (
    *("multipliers", "sizes", "epochs", "warmup", "batch_size", "seeds", "base_lr", "width"),
    *("precision", "compile", "drop_last", "net", "optimizer", "dataset", "data"),
)
PROBE_OVERRIDES = (
    *("epochs", "warmup", "width", "subset", "batch_size", "multipliers", "base_lr", "seeds", "last_epochs", "bn"),
    *("precision", "compile", "drop_last", "net", "optimizer", "dataset", "data"),
)


@app.command("sweep-lr")
@study_options
def sweep_lr(
    study: str = typer.Argument("cpu-lr-sweep", help="study name in studies/ or a .toml path"),
    sizes: Optional[str] = typer.Option(None, help="subset sizes, comma-separated"),
    *,
    opts: StudyOptions,
    backend: dict,
):
    """Train the study's network across LR multipliers x subset sizes; resumable; writes results.csv and the figure."""
    from forgetting.console import SweepProgress, lr_sweep_table, progress_bar
    from forgetting.experiments.run import run_study

    s = opts.load(study, "lr-sweep", SWEEP_OVERRIDES, sizes=sizes)
    piece = opts.piece()
    if opts.dry_run:
        return _print_plan(s, opts.store, piece)
    executor = opts.executor_settings(backend)
    data = s.load_data()
    with progress_bar() as bar:
        events = SweepProgress(bar, inner_bars=executor.in_process)
        outcome = run_study(s, opts.store, data, executor, events, shard=piece, tensorboard=opts.tensorboard)
    piece_text = f" (shard {piece}: {len(outcome.mine)} of them)" if piece else ""
    table = lr_sweep_table(outcome.table, f"{s.name}: test loss by LR multiplier x subset ({s.scale})")
    done = f"base LR {outcome.base_lr:.4g}; {len(outcome.specs)} runs{piece_text} in {outcome.seconds:.0f} s"
    _print_report(outcome.store.dir, table, [done], outcome.store.results)
    if events.failed:
        raise typer.Exit(1)


@app.command("probe-epochs")
@study_options
def probe_epochs(
    study: str = typer.Argument("cpu-probe", help="probe study name in studies/ or a .toml path"),
    last_epochs: Optional[int] = typer.Option(None, help="probe only the last K epochs (0 = all)"),
    bn: Optional[str] = typer.Option(None, help="eval (running statistics) or batch (each batch's statistics)"),
    subset: Optional[int] = typer.Option(None, help="size of the full condition (half-noaug gets half)"),
    *,
    opts: StudyOptions,
    backend: dict,
):
    """Train the probe study's runs if missing, then re-evaluate the frozen final weights on every earlier epoch's batches."""
    from forgetting.console import ProbeProgress, SweepProgress, probe_table, progress_bar
    from forgetting.experiments.run import run_study

    s = opts.load(study, "probe", PROBE_OVERRIDES, subset=subset, last_epochs=last_epochs, bn=bn)
    piece = opts.piece()
    if opts.dry_run:
        return _print_plan(s, opts.store, piece)
    executor = opts.executor_settings(backend)
    data = s.load_data()
    with progress_bar() as bar:
        events = SweepProgress(bar, inner_bars=executor.in_process)
        probing = ProbeProgress(bar)
        outcome = run_study(s, opts.store, data, executor, events, piece, probing, tensorboard=opts.tensorboard)
    table = probe_table(outcome.epochs, outcome.runs, f"{s.name}: frozen-model loss by epoch age ({s.scale})")
    times = [
        f"run {run}: training {train_s:.1f} s, probe {probe_s:.1f} s ({probe_s / train_s:.2f}x)"
        for run, (train_s, probe_s) in outcome.seconds.items()
    ]
    _print_report(outcome.sweep.store.dir, table, times, outcome.sweep.store.probe)


@app.command()
def merge(
    sources: list[Path] = typer.Argument(..., help="stores (or study folders) to take finished runs from"),
    into: Path = typer.Option(..., "--into", help="the store to merge into (created if missing)"),
    light: bool = typer.Option(
        False, "--light", help="copy each run's record only (config, meta, result, history: a few kB), not weights"
    ),
):
    """Union of the finished runs of several stores, study by study; refuses mismatched studies or runs."""
    from forgetting import merge as merge_mod
    from forgetting.console import console

    for m in merge_mod.merge_stores(sources, into, light=light):
        news = f"{len(m.new_runs)} runs added" if m.changed else "nothing new"
        console.print(f"{m.name}: {news}; {len(m.runs)} finished runs in {m.dst}")


@app.command()
def figures(
    store: Path = typer.Option(
        Path("store"), "--store", help="a run store, or a folder of study tables such as results/"
    ),
    out: Optional[Path] = typer.Option(None, "--out", help="where to write (default: beside the tables)"),
):
    """Regenerate every figure and summary.json from stored tables alone (no training, no weights)."""
    from forgetting import report
    from forgetting.console import console

    for rep in report.regenerate(store, out):
        console.print(f"[bold]{rep.name}[/bold] -> {rep.folder}")
        console.print(rep.text(), markup=False, soft_wrap=True, highlight=False)  # tables: no wrapping, no markup
        for p in rep.figures:
            console.print(f"  {p}")


@app.command()
def scores(
    store: Path = typer.Argument(..., help="a store, or one study's folder such as results/cpu-probe-5seeds"),
    study: Optional[str] = typer.Argument(None, help="the study in STORE (needed where STORE holds several)"),
    condition: Optional[str] = typer.Option(None, help="the condition to pool, where the study has several"),
    multiplier: Optional[float] = typer.Option(None, help="the LR multiplier to pool, where the study has several"),
    subset: Optional[int] = typer.Option(None, help="the subset size to pool, where the study has several"),
    data: Optional[str] = DataOpt,
    out: Optional[Path] = typer.Option(None, "--out", help="where to write (default: the study folder's scores/)"),
):
    """Per-example forgetting scores pooled over a study's seeds: a table (one row per example) and three figures."""
    from forgetting import scoring
    from forgetting.console import console

    choices = dict(condition=condition, multiplier=multiplier, subset=subset, data=data)
    for line in scoring.write_scores(store, study, out, **choices).lines():
        console.print(line, markup=False, highlight=False, soft_wrap=True)


_TERMINATED: list[int] = []  # the signal that ended the command, if one did


def _terminate(signum, frame) -> None:
    """SIGTERM (what SLURM sends at a time limit or preemption) stops the command as Ctrl-C does: the
    run in flight keeps its last epoch checkpoint. A second SIGTERM kills at once."""
    _TERMINATED.append(signum)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise KeyboardInterrupt


def _interrupted() -> None:
    if _TERMINATED:
        print("terminated: run the same command again to resume", file=sys.stderr)
        sys.exit(128 + signal.SIGTERM)  # the status a shell reports for a process SIGTERM ended
    print("interrupted: run the same command again to resume", file=sys.stderr)
    sys.exit(130)


def main() -> None:
    """Entry point: a UserError is one line on stderr and exit code 2, never a traceback."""
    from forgetting.errors import Stopped
    from forgetting.store import DISK_FULL, disk_full_error

    _TERMINATED.clear()
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        app()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except Stopped as e:  # the time limit: what was done is kept, the same command again continues
        print(e, file=sys.stderr)
        sys.exit(0)
    except OSError as e:  # a write that went around the store's own (a library's): still one line
        if e.errno not in DISK_FULL:
            raise
        print(f"error: {disk_full_error(e.filename)}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:  # one that came before or after typer's own handling
        _interrupted()
    except SystemExit as e:
        if e.code == 130:  # typer turns Ctrl-C into exit code 130 itself
            _interrupted()
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    main()
