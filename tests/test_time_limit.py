"""--time-limit and the progress a log file gets: durations, the budget's arithmetic on a fake clock,
plain progress lines on a fake clock, and a real sweep with its output in a file, stopped by the limit
and finished by the same command again."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys

import pandas as pd
import pytest
from rich.console import Console
from rich.progress import Progress

from helpers import REPO_ROOT
from forgetting import cli, console as console_mod, data as data_mod, grid, studies
from forgetting.console import PlainProgress, ProbeProgress, SweepProgress
from forgetting.errors import UserError
from forgetting.timelimit import TimeBudget, parse_duration


class FakeClock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    "text, seconds", [("90m", 5400), ("2h", 7200), ("3600s", 3600), ("3600", 3600), ("1.5h", 5400), ("1d", 86400)]
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["soon", "", "0", "-5m", "inf", "5x", "1h30m", "nan"])
def test_bad_durations_are_one_line_naming_them(text):
    with pytest.raises(UserError, match="--time-limit must be a duration") as e:
        parse_duration(text)
    assert repr(text) in str(e.value)


def test_the_budget_starts_the_first_run_then_only_runs_that_end_in_time():
    clock = FakeClock(0.0)
    budget = TimeBudget(100, clock)
    assert budget.allows(1e9)  # nothing measured yet: the first run starts, however large
    clock.now = 20.0
    budget.finished(10, 20)  # 2 s per unit of work
    assert budget.allows(40)  # 20 + 80 = 100: ends at the limit
    assert not budget.allows(41)  # 20 + 82 > 100: not started ...
    assert not budget.allows(1)  # ... and no later run either: the sweep stops between runs
    assert budget.stopped


def test_plain_progress_writes_at_most_every_interval_unless_forced():
    lines, clock = [], FakeClock()
    plain = PlainProgress(lines.append, clock)
    plain.line("0/3", None, "lr-find step 2/100")  # the first line is always written
    clock.now += console_mod.PROGRESS_SECONDS - 1
    plain.line("0/3", 50.0, "lr-find step 60/100")  # too soon
    plain.line("1/3", 40.0, "finished n=100", force=True)  # a finished run always gets one
    clock.now += console_mod.PROGRESS_SECONDS
    plain.line("1/3", 20.0, "run n=200 epoch 2 step 3/4")
    assert len(lines) == 3, lines
    assert "0/3 runs done, eta unknown, lr-find step 2/100" in lines[0]
    assert "1/3 runs done, eta 0:00:40, finished n=100" in lines[1]
    assert "eta 0:00:20, run n=200 epoch 2 step 3/4" in lines[2]


def test_sweep_progress_writes_plain_lines_when_the_output_is_not_a_terminal():
    s = studies.load_study("cpu-lr-sweep").with_overrides(sizes=[200, 400], multipliers=[1.0], seeds=[0])
    specs = grid.expand(s, 0.4)
    out = io.StringIO()
    events = SweepProgress(Progress(console=Console(file=out, width=80)), inner_bars=False)
    assert events.plain is not None and events.heartbeat_seconds == console_mod.PROGRESS_SECONDS
    events.start(2, 0, specs)
    events.run_started(specs[0])
    events.run_finished(specs[0], dict(diverged=False, test_loss=2.0, seconds=1.0))
    progress = [line for line in out.getvalue().splitlines() if "progress:" in line]
    assert len(progress) == 2 and "0/2 runs done" in progress[0] and "1/2 runs done" in progress[1], progress
    assert Progress(console=Console(file=io.StringIO(), force_terminal=True)).console.is_terminal
    assert SweepProgress(Progress(console=Console(file=io.StringIO(), force_terminal=True))).plain is None


def test_during_the_lr_finder_the_eta_is_the_finder_s_pace_applied_to_the_sweep_s_work():
    lines, clock = [], FakeClock(0.0)
    events = SweepProgress(Progress(console=Console(file=io.StringIO())), plain=PlainProgress(lines.append, clock))
    events.planned(runs=4, work=1000, batch_size=50)
    finder = events.lr_find_callbacks()
    finder.step(1, 10)  # the first step also prepared the data: no pace yet, no line
    assert lines == []
    clock.now = 10.0
    finder.step(2, 10)  # 10 s a step of 50 images: 8 steps left (80 s) + 1000 units at 0.2 s (200 s)
    assert len(lines) == 1 and "0/4 runs done, eta 0:04:40, lr-find step 2/10" in lines[0], lines


TINY = "--multipliers 1 --sizes 100,200 --batch-size 50 --epochs 1 --warmup 0 --width 0.125 --seeds 0 --device cpu"


def limit(store) -> list[str]:
    return ["--store", str(store), "--time-limit", "0.001s"]


def sweep_to_log(study, store, log, cifar_path) -> subprocess.CompletedProcess:
    """`forgetting sweep-lr ... > log` as a user would start it under nohup or sbatch."""
    env = dict(os.environ, OMP_NUM_THREADS="1", COLUMNS="200", **{data_mod.ENV_VAR: str(cifar_path.resolve())})
    with open(log, "w") as out:
        return subprocess.run(
            [sys.executable, "-m", "forgetting.cli", "sweep-lr", str(study), *TINY.split(), *limit(store)],
            stdout=out,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            timeout=600,
        )


PROGRESS = re.compile(r"^\[[\d-]+ [\d:]+\] progress: (\d+)/(\d+) runs done, eta (\d+:\d\d:\d\d|unknown), (.*)$")


def progress_lines(log) -> list[tuple[int, int, str, str]]:
    found = [PROGRESS.match(line) for line in log.read_text().splitlines()]
    return [(int(m[1]), int(m[2]), m[3], m[4]) for m in found if m]


@pytest.mark.integration
def test_a_sweep_past_its_time_limit_stops_between_runs_and_the_same_command_finishes_it(
    tmp_path, cifar_path, one_thread, monkeypatch, capsys
):
    # The study with a short LR range test (10 steps), so that the finder runs and is seen in the log.
    study = tmp_path / "short-finder.toml"
    study.write_text((REPO_ROOT / "studies" / "cpu-lr-sweep.toml").read_text().replace("steps = 100", "steps = 10"))
    store, log = tmp_path / "store", tmp_path / "log.txt"
    # 1 ms: the first run starts (nothing is measured before it), and at its measured pace no other fits.
    first = sweep_to_log(study, store, log, cifar_path)
    assert first.returncode == 0, first.stderr
    assert first.stderr.strip().splitlines() == ["time limit: 1 of 2 runs done; run the same command again to continue"]
    lines = progress_lines(log)
    finder = [line for line in lines if line[3].startswith("lr-find step")]
    assert finder and finder[0][:2] == (0, 2) and finder[0][2] != "unknown", lines  # ETA from the finder's pace
    assert [line for line in lines if line[:2] == (1, 2) and line[3].startswith("finished") and line[2] != "unknown"]
    table = pd.read_csv(store / "cpu-lr-sweep" / "results.csv")
    assert table["status"].tolist() == ["finished", "missing"]
    scale = json.loads((store / "cpu-lr-sweep" / "study.json").read_text())["scale"]
    assert "width 0.125" in scale and "1 epoch " in scale and "1 seed" in scale and "overridden" in scale, scale

    # The same command again, in this process (its output, captured, is not a terminal either).
    monkeypatch.setenv(data_mod.ENV_VAR, str(cifar_path.resolve()))
    monkeypatch.setattr(sys, "argv", ["forgetting", "sweep-lr", str(study), *TINY.split(), *limit(store)])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    out, err = capsys.readouterr()
    assert exit_.value.code == 0 and err == "", err
    assert "1 of 2 runs already finished" in out
    log.write_text(out)
    assert [line for line in progress_lines(log) if line[:2] == (2, 2) and line[3].startswith("finished")]
    assert (pd.read_csv(store / "cpu-lr-sweep" / "results.csv")["status"] == "finished").all()


@pytest.mark.integration
def test_probe_epochs_past_its_time_limit_trains_what_fits_and_probes_nothing_yet(tmp_path, cifar, one_thread):
    from forgetting import probe
    from forgetting.errors import Stopped
    from forgetting.execution.settings import ExecutorSettings
    from forgetting.experiments.run import run_study

    study = studies.load_study("cpu-probe").with_overrides(
        epochs=1, warmup=0, width=0.125, subset=200, batch_size=50, multipliers=[1.0], base_lr=0.4, seeds=[0]
    )
    with pytest.raises(Stopped, match="time limit: 1 of 2 runs done"):
        run_study(study, tmp_path, cifar, ExecutorSettings(device="cpu", time_limit=1e-9))
    folder = tmp_path / study.name
    assert pd.read_csv(folder / "results.csv")["status"].tolist() == ["finished", "missing"]
    assert not list(folder.glob("probe*.csv")), "probe tables of half the runs would look like the study's"


def test_probe_progress_writes_a_plain_line_per_probed_run_with_the_pace_so_far():
    lines, clock = [], FakeClock(0.0)
    events = ProbeProgress(Progress(console=Console(file=io.StringIO())), plain=PlainProgress(lines.append, clock))
    specs = grid.expand(studies.load_study("cpu-tau-lr"), 0.4)[:3]
    events.start_run(specs[0], 10, done=0, total=3)
    events.step(2, 12)  # too soon after the run's line: none
    clock.now = 60.0
    events.start_run(specs[1], 10, done=1, total=3)  # 60 s for one run: 2 left, 120 s
    assert len(lines) == 2, lines
    assert "0/3 runs done, eta unknown, probing " in lines[0] and specs[0].describe() in lines[0]
    assert "1/3 runs done, eta 0:02:00, probing " in lines[1]
    clock.now += console_mod.PROGRESS_SECONDS
    events.step(3, 12)
    assert len(lines) == 3 and lines[2].endswith("epoch 4/12"), lines
    assert ProbeProgress(Progress(console=Console(file=io.StringIO(), force_terminal=True))).plain is None
