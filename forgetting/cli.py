"""Command line: parse options, call one library function, print. Nothing else lives here."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Optional

import typer

from forgetting.cli_options import (
    COMPILE_DEFAULT,
    DATA_FOUND,
    KEEP_LAST,
    Command,
    DeviceOpt,
    Group,
    PROBE_OVERRIDES,
    RUN_OVERRIDES,
    STUDY_FILE,
    SWEEP_OVERRIDES,
    StoreOpt,
    StudyOptions,
    VersionOpt,
    batch_size_option,
    compile_option,
    data_option,
    dataset_option,
    drop_last_option,
    net_option,
    option,
    optimizer_option,
    parse_ints,
    precision_option,
    seeds_option,
    study_options,
    switch,
    width_option,
)
from forgetting import lr_settings
from forgetting.errors import UserError

app = typer.Typer(
    cls=Group,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},  # the subcommands' contexts inherit them
    help="Study catastrophic forgetting in fast training (Page, 'How to Train Your ResNet', Part 2): CIFAR-10 "
    "or your own data and network.",
)
command = functools.partial(app.command, cls=Command)


@app.callback()
def _root(version: bool = VersionOpt):
    pass


@command()
def data(
    name: str = typer.Argument(
        "cifar10", help="cifar10, cifar100, svhn, mnist, fashion-mnist, or your own with --data"
    ),
    data: Optional[str] = data_option(DATA_FOUND),
    download: bool = switch("--download", "fetch the data set with torchvision into the user cache (needs internet)"),
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


@command()
def train(
    net: Optional[str] = net_option(None, "the preset's, else dawn18"),
    width: float = width_option(1.0),
    preset: Optional[str] = option(
        None, help="part1, part2, part3 or part4 (the blog's stages)", shown="none: Part 3's shape", metavar="NAME"
    ),
    subset: Optional[int] = option(None, help="class-balanced training images", shown="all of them"),
    epochs: Optional[int] = option(
        None, help="epochs (a preset's schedule is stretched to fit)", shown="the preset's, else 30"
    ),
    batch_size: Optional[int] = batch_size_option(None, "the preset's, else 512"),
    lr: Optional[float] = option(None, help="this run's peak LR, mean-loss convention", shown="the preset's, else 0.4"),
    augment: Optional[bool] = option(None, "--augment/--no-augment", help="random crop + flip", shown="augment"),
    cutout: Optional[int] = option(None, help="Cutout square side in pixels (0 = off)", shown="the preset's, else 0"),
    seed: int = option(0, help="seed for weights, subset and batch plans"),
    optimizer: Optional[str] = optimizer_option(None, "sgd"),
    eval_every: Optional[int] = option(
        None, help="evaluate on the test set every N epochs (0 = final epoch only)", shown="TrainConfig's eval_every"
    ),
    precision: Optional[str] = precision_option(None, "auto"),
    compile: Optional[bool] = compile_option(COMPILE_DEFAULT),
    drop_last: Optional[bool] = drop_last_option(KEEP_LAST),
    device: str = DeviceOpt,
    dataset: Optional[str] = dataset_option("cifar10"),
    data: Optional[str] = data_option(DATA_FOUND),
    out: Path = option(..., "--out", help="output folder (resumes from its checkpoint if interrupted)"),
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


@command("lr-find")
def lr_find(
    study: Optional[str] = typer.Argument(
        None,
        help="a study: run its LR finder into STORE/<study>/ (what shards 2..N need); else the options below",
        show_default="none: one LR test as the options below say",
    ),
    store: Path = StoreOpt,
    net: str = net_option("dawn18"),
    width: float = width_option(1.0),
    subset: Optional[int] = option(None, help="class-balanced training images", shown="all of them"),
    batch_size: int = batch_size_option(512),
    augment: bool = option(True, "--augment/--no-augment", help="random crop + flip, as in training"),
    method: str = option(
        lr_settings.DEFAULT_METHOD, help=f"{', '.join(lr_settings.METHODS)} (min10: LR of the minimum / 10)"
    ),
    seeds: str = seeds_option("0"),
    start_lr: float = option(lr_settings.START_LR, help="first LR of the geometric ramp (mean-loss convention)"),
    end_lr: float = option(
        lr_settings.END_LR, help="last LR of the ramp (the test stops early when the loss explodes)"
    ),
    steps: int = option(lr_settings.NUM_STEPS, help="steps of the ramp, one batch each"),
    optimizer: str = optimizer_option("sgd"),
    precision: str = precision_option("auto"),
    compile: Optional[bool] = compile_option(COMPILE_DEFAULT),
    device: str = DeviceOpt,
    dataset: Optional[str] = dataset_option("cifar10"),
    data: Optional[str] = data_option(DATA_FOUND),
    out: Optional[Path] = option(
        None,
        "--out",
        help="output folder: lr_find.csv, lr_find.json, lr_find.png/.svg",
        shown="none: needed without a study",
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


@command("sweep-lr")
@study_options
def sweep_lr(
    study: str = typer.Argument("quick", help="study name in studies/ or a .toml path (quick: the demonstration of README)"),
    sizes: Optional[str] = option(None, help="subset sizes, comma-separated", shown=STUDY_FILE, metavar="N,N,..."),
    *,
    opts: StudyOptions,
    backend: dict,
):
    """Train the study's network across LR multipliers x subset sizes; resumable; writes results.csv and the figure."""
    from forgetting.cli_print import show_plan, show_report
    from forgetting.console import SweepProgress, lr_sweep_table, progress_bar
    from forgetting.experiments.run import run_study

    s = opts.load(study, "lr-sweep", SWEEP_OVERRIDES, sizes=sizes)
    piece = opts.piece()
    if opts.dry_run:
        return show_plan(s, opts.store, piece)
    executor = opts.executor_settings(backend)
    data = s.load_data()
    with progress_bar() as bar:
        events = SweepProgress(bar, inner_bars=executor.in_process)
        outcome = run_study(s, opts.store, data, executor, events, shard=piece, tensorboard=opts.tensorboard)
    piece_text = f" (shard {piece}: {len(outcome.mine)} of them)" if piece else ""
    table = lr_sweep_table(outcome.table, f"{s.name}: test loss by LR multiplier x subset ({s.scale})")
    done = f"base LR {outcome.base_lr:.4g}; {len(outcome.specs)} runs{piece_text} in {outcome.seconds:.0f} s"
    show_report(outcome.store.dir, table, [done], outcome.store.results)
    if events.failed:
        raise typer.Exit(1)


@command("probe-epochs")
@study_options
def probe_epochs(
    study: str = typer.Argument("cpu-probe", help="probe study name in studies/ or a .toml path"),
    last_epochs: Optional[int] = option(None, help="probe only the last K epochs (0 = all)", shown=STUDY_FILE),
    bn: Optional[str] = option(
        None, help="eval (running statistics) or batch (each batch's statistics)", shown=STUDY_FILE, metavar="MODE"
    ),
    subset: Optional[int] = option(None, help="size of the full condition (half-noaug gets half)", shown=STUDY_FILE),
    *,
    opts: StudyOptions,
    backend: dict,
):
    """Train the probe study's runs if missing, then re-evaluate the frozen final weights on every earlier epoch's batches."""
    from forgetting.cli_print import show_plan, show_report
    from forgetting.console import ProbeProgress, SweepProgress, probe_table, progress_bar
    from forgetting.experiments.run import run_study

    s = opts.load(study, "probe", PROBE_OVERRIDES, subset=subset, last_epochs=last_epochs, bn=bn)
    piece = opts.piece()
    if opts.dry_run:
        return show_plan(s, opts.store, piece)
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
    show_report(outcome.sweep.store.dir, table, times, outcome.sweep.store.probe)


@command("run")
@study_options
def run_any(
    study: str = typer.Argument(..., help="study name in studies/ or a .toml path, of any kind (lr-sweep, probe, prune, or one you registered)"),
    *,
    opts: StudyOptions,
    backend: dict,
):
    """Run a study of any kind: train its unfinished runs, then its kind's stage after training; resumable; writes its tables, summary.json and figures."""
    from forgetting.cli_print import show_plan, show_report
    from forgetting.console import ProbeProgress, SweepProgress, progress_bar
    from forgetting.experiments.run import run_study
    from forgetting.sweep import StudyStore

    s = opts.load(study, None, RUN_OVERRIDES)
    piece = opts.piece()
    if opts.dry_run:
        return show_plan(s, opts.store, piece)
    executor = opts.executor_settings(backend)
    with progress_bar() as bar:
        events = SweepProgress(bar, inner_bars=executor.in_process)
        run_study(s, opts.store, s.load_data(), executor, events, piece, ProbeProgress(bar), tensorboard=opts.tensorboard)
    store = StudyStore(opts.store, s.name)
    show_report(store.dir, None, [], store.results)
    if events.failed:
        raise typer.Exit(1)


@command()
def show(
    study: str = typer.Argument(..., help="study name in studies/ or a .toml path"),
    store: Path = StoreOpt,
    steps: int = option(10, help="training steps timed for the estimate (after 2 untimed ones)"),
    device: str = DeviceOpt,
    dataset: Optional[str] = dataset_option(STUDY_FILE),
    data: Optional[str] = data_option(f"{STUDY_FILE}, else {DATA_FOUND}"),
):
    """Print a study's resolved settings, its run count and an estimate of its time here (from a few timed steps)."""
    from forgetting import estimate, studies
    from forgetting.console import console

    s = studies.load_study(study).with_overrides(dataset=dataset, data=data)
    with console.status("loading the data and timing a few training steps"):
        found = estimate.estimate(s, store, device, steps)
    console.print("\n".join(found.lines()), markup=False, highlight=False, soft_wrap=True)


@command()
def merge(
    sources: list[Path] = typer.Argument(..., help="stores (or study folders) to take finished runs from"),
    into: Path = option(..., "--into", help="the store to merge into (created if missing)"),
    light: bool = switch(
        "--light", "copy each run's record only (config, meta, result, history: a few kB), not weights"
    ),
):
    """Union of the finished runs of several stores, study by study; refuses mismatched studies or runs."""
    from forgetting import merge as merge_mod
    from forgetting.console import console

    for m in merge_mod.merge_stores(sources, into, light=light):
        news = f"{len(m.new_runs)} runs added" if m.changed else "nothing new"
        console.print(f"{m.name}: {news}; {len(m.runs)} finished runs in {m.dst}")


@command()
def figures(
    store: Path = option(Path("store"), "--store", help="a run store, or a folder of study tables such as results/"),
    out: Optional[Path] = option(None, "--out", help="where to write", shown="a new folder figures-out/STORE-DATE-TIME here"),
    in_place: bool = switch("--in-place", "write into the store's own folders, over their summary.json and figures"),
    check: bool = switch(
        "--check",
        "regenerate into a temporary folder and compare with the store's summary.json files: exit 0 when they "
        "agree, 1 (one line per difference) when not; writes nothing",
    ),
):
    """Regenerate every figure and summary.json from stored tables alone (no training, no weights)."""
    from forgetting import report, summary_check
    from forgetting.console import console

    if check:
        if out is not None or in_place:
            raise UserError("--check writes nothing: not with --out or --in-place")
        compared = summary_check.check_store(store)
        for line in compared.lines():
            console.print(line, markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(0 if compared.ok else 1)
    target = report.figures_target(store, out, in_place)
    for rep in report.regenerate(store, target):
        console.print(f"[bold]{rep.name}[/bold] -> {rep.folder}")
        console.print(rep.text(), markup=False, soft_wrap=True, highlight=False)  # tables: no wrapping, no markup
        for p in rep.figures:
            console.print(f"  {p}")
    console.print(f"wrote into {store if target is None else target}")


@command()
def scores(
    store: Path = typer.Argument(..., help="a store, or one study's folder such as results/cpu-probe-5seeds"),
    study: Optional[str] = typer.Argument(None, help="the study in STORE (needed where STORE holds several)", show_default="the only study in STORE"),
    condition: Optional[str] = option(None, help="the condition to pool", shown="the study's only one"),
    multiplier: Optional[float] = option(None, help="the LR multiplier to pool", shown="the study's only one"),
    subset: Optional[int] = option(None, help="the subset size to pool", shown="the study's only one"),
    data: Optional[str] = data_option(shown="the data set the runs trained on, found as the commands find it"),
    out: Optional[Path] = option(None, "--out", help="where to write", shown="the study folder's scores/"),
):
    """Per-example forgetting scores pooled over a study's seeds: a table (one row per example) and three figures."""
    from forgetting import scoring
    from forgetting.console import console

    choices = dict(condition=condition, multiplier=multiplier, subset=subset, data=data)
    for line in scoring.write_scores(store, study, out, **choices).lines():
        console.print(line, markup=False, highlight=False, soft_wrap=True)


def main() -> None:
    """Entry point (`forgetting.exits`: one line and exit code 2 for bad input, never a traceback)."""
    from forgetting.exits import run

    run(app)


if __name__ == "__main__":
    main()
