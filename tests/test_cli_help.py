"""The command line's help speaks one language: every command's options say their defaults, no Python type
tags, -h as --help, --version, and `forgetting show` (a study's settings, runs and an estimated time)."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from forgetting.cli import app
from forgetting.cli_options import package_version
from helpers import REPO_ROOT, make_synthetic

runner = CliRunner()
WIDE = {"COLUMNS": "400"}  # one row per option: its default on the same line as its name
COMMANDS = sorted(typer.main.get_command(app).commands)
# What typer 0.2x writes beside a parameter from its Python annotation (<str>, <list[Path]>, <bool>).
TYPE_TAG = re.compile(r"<(?:str|int|float|bool|path|Path|list\[[^>]*\]|tuple|datetime|\w+ range)>")


def help_text(*args: str) -> str:
    result = runner.invoke(app, [*args, "--help"], env=WIDE)
    assert result.exit_code == 0, result.output
    return result.output


def params(name: str):
    """The command's options and arguments, but --help (and the group's --version): actions, not settings."""
    group = typer.main.get_command(app)
    command = group.commands[name]
    return [p for p in command.params if p.name not in ("help", "version")]


def row(text: str, param) -> str:
    """The help line that names ``param`` (an option by its long name, an argument by its metavar)."""
    label = next((o for o in param.opts if o.startswith("--")), None) or param.name.upper()
    found = [line for line in text.splitlines() if re.search(rf"(^|[\s│*]){re.escape(label)}(\s|$)", line)]
    assert found, (label, text)
    return found[0]


def test_show_is_a_command_beside_the_others():
    assert {"data", "train", "lr-find", "sweep-lr", "probe-epochs", "merge", "figures", "show"} <= set(COMMANDS)


@pytest.mark.parametrize("name", COMMANDS)
def test_every_option_shows_its_default_or_that_it_is_required(name):
    text = help_text(name)
    assert params(name), name
    for param in params(name):
        line = row(text, param)
        assert "[default:" in line or "[required]" in line, (name, param.name, line)


@pytest.mark.parametrize("args", [[], *([name] for name in COMMANDS)])
def test_help_has_no_python_type_tags(args):
    text = help_text(*args)
    assert not TYPE_TAG.search(text), TYPE_TAG.search(text).group(0)
    assert "<bool>" not in text and "<str>" not in text


def test_study_options_say_they_come_from_the_study_file():
    text = help_text("sweep-lr")
    for option in ("--epochs", "--sizes", "--base-lr", "--seeds", "--net", "--precision"):
        line = next(line for line in text.splitlines() if re.search(rf"{option}\s", line))
        assert "from the study file" in line, line


@pytest.mark.parametrize("args", [[], *([name] for name in COMMANDS)])
def test_dash_h_is_help(args):
    short = runner.invoke(app, [*args, "-h"], env=WIDE)
    assert short.exit_code == 0, short.output
    assert short.output == help_text(*args)
    assert "Usage:" in short.output


def test_version_prints_the_package_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"forgetting {package_version()}"
    assert re.fullmatch(r"\d+\.\d+.*", package_version())


def test_probe_epochs_has_every_executor_option_sweep_lr_has():
    """The probe runs on the sweep's executor: Ray's (and every backend's) options are both commands'."""
    from forgetting.execution.settings import backend_options

    def options(name):
        return {o for p in params(name) for o in p.opts}

    backends = {f"--{name.replace('_', '-')}" for name in backend_options()}
    assert {"--address", "--gpus-per-run", "--cpus-per-run"} <= backends
    assert backends <= options("sweep-lr") and backends <= options("probe-epochs")
    assert options("sweep-lr") - {"--sizes"} == options("probe-epochs") - {"--subset", "--last-epochs", "--bn"}


TINY_STUDY = """
[study]
name = "tiny-show"
kind = "lr-sweep"
scale = "test scale"

[train]
net = "dawn18"
width = 0.125
batch_size = 50
epochs = 1
warmup = 0

[grid]
multipliers = [1, 2, 4]
sizes = [100, 200]
seeds = [0]
base_lr = 0.1
"""


def test_show_prints_settings_run_count_and_an_estimate(tmp_path, any_size_data, one_thread):
    data = make_synthetic(300, 100)
    path = tmp_path / "small.npz"
    np.savez(path, train_x=data.train_x, train_y=data.train_y, test_x=data.test_x, test_y=data.test_y)
    study = tmp_path / "tiny-show.toml"
    study.write_text(TINY_STUDY)
    args = ["show", str(study), "--data", str(path), "--store", str(tmp_path / "store"), "--steps", "2"]
    result = runner.invoke(app, [*args, "--device", "cpu"], env=WIDE)
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    out = result.output
    assert "runs: 6" in out  # 3 multipliers x 2 sizes x 1 seed
    assert "estimate" in out and re.search(r"estimated time on this machine: \d+ s", out), out
    assert "2 training steps of dawn18 width 0.125 at batch 50" in out
    assert "  sizes = [100, 200]" in out and "  eval_every = 0" in out  # a default the file leaves out
    assert "[probe]" not in out  # another kind's section
    assert not (tmp_path / "store").exists()  # showing writes nothing


@pytest.mark.parametrize(
    "args, words", [(["no-such-study"], "no study named"), (["cpu-probe", "--steps", "0"], "--steps must be")]
)
def test_show_refuses_bad_input_in_one_line(tmp_path, args, words):
    proc = subprocess.run(
        [sys.executable, "-m", "forgetting.cli", "show", *args, "--store", str(tmp_path / "store")],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=300,
    )
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and words in lines[0], proc.stderr
