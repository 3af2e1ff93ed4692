"""The command line's help speaks one language: every command's options say their defaults, no Python type
tags, -h as --help, --version."""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

from forgetting.cli import app
from forgetting.cli_options import package_version

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
    assert {"data", "train", "lr-find", "sweep-lr", "probe-epochs", "merge", "figures"} <= set(COMMANDS)


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
