"""Study files: every shipped study parses; bad files are one line, exit code 2, store untouched."""

from __future__ import annotations

import subprocess
import sys

import pytest

from forgetting import studies
from forgetting.errors import UserError

from helpers import REPO_ROOT

GOOD = """
[study]
name = "t"
kind = "lr-sweep"
scale = "tiny"
[train]
width = 0.125
batch_size = 50
epochs = 1
warmup = 1
[grid]
multipliers = [1, 2]
sizes = [100, 200]
base_lr = 0.4
"""


@pytest.mark.parametrize("path", sorted((REPO_ROOT / "studies").glob("*.toml")), ids=lambda p: p.stem)
def test_shipped_studies_parse(path):
    s = studies.load_study(str(path))
    assert s.name == path.stem
    assert s.scale


def test_full_scale_studies_match_the_paper():
    s = studies.load_study("page2018-lr-sweep")
    assert s.grid["multipliers"] == [0.125, 0.25, 0.5, 1, 2, 4, 8, 16]
    assert s.grid["sizes"] == [6250, 12500, 25000, 50000]
    assert (s.train["batch_size"], s.train["epochs"], s.train["warmup"], s.train["width"]) == (512, 30, 5, 1.0)
    assert s.grid["base_lr"] == "find"
    assert studies.load_study("page2018-lr-sweep-b128").train["batch_size"] == 128
    p = studies.load_study("page2018-probe")
    assert {c.name: (c.fraction, c.augment) for c in p.conditions} == {
        "half-noaug": (0.5, False),
        "full-aug": (1.0, True),
    }
    assert sorted(p.grid["multipliers"]) == [0.25, 1]


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda t: t.replace("[train]", "[train]\nfoo = 1"), "train.foo"),
        (lambda t: t.replace("multipliers = [1, 2]", "multipliers = [-1, 2]"), "grid.multipliers"),
        (lambda t: t.replace("sizes = [100, 200]", "sizes = [100, 60000]"), "grid.sizes"),
        (lambda t: t.replace("[grid]", "[gird]"), "gird"),
        (lambda t: t.replace('kind = "lr-sweep"', 'kind = "nope"'), "study.kind"),
        (lambda t: t.replace("batch_size = 50", "batch_size = 500"), "batch size"),
        (lambda t: t.replace("base_lr = 0.4", 'base_lr = "lots"'), "grid.base_lr"),
        (lambda t: t + "\n[[[", "TOML"),
        (lambda t: t.replace("[train]", '[train]\nprecision = "fp8"'), "train.precision"),
        (lambda t: t.replace("[train]", '[train]\ncompile = "yes"'), "train.compile"),
        (lambda t: t.replace("[train]", "[train]\ndrop_last = 1"), "train.drop_last"),
    ],
)
def test_bad_study_names_the_problem(tmp_path, edit, words):
    f = tmp_path / "bad.toml"
    f.write_text(edit(GOOD))
    with pytest.raises(UserError, match=words.replace(".", r"\.")):
        studies.load_study(str(f))


def test_overrides_are_validated():
    s = studies.parse_study(__import__("tomllib").loads(GOOD), "x")
    assert s.with_overrides(multipliers=[4.0], epochs=3).grid["multipliers"] == [4.0]
    with pytest.raises(UserError, match="--multipliers"):
        s.with_overrides(multipliers=[-1.0])
    with pytest.raises(UserError, match="--sizes"):
        s.with_overrides(sizes=[50001])


def test_execution_settings_reach_the_runs():
    """[train] precision, drop_last and compile become each run's TrainConfig; compile keeps the run id."""
    from forgetting import grid

    s = studies.parse_study(__import__("tomllib").loads(GOOD), "x")
    assert (s.train["precision"], s.train["drop_last"], s.train["compile"]) == ("auto", False, None)
    t = s.with_overrides(precision="bf16", drop_last=True, compile=True)
    cfg = grid.expand(t, base_lr=0.4)[0].config
    assert (cfg.precision, cfg.drop_last, cfg.compile) == ("bf16", True, True)
    plain = grid.expand(s.with_overrides(precision="bf16", drop_last=True), base_lr=0.4)
    assert [sp.id for sp in grid.expand(t, base_lr=0.4)] == [sp.id for sp in plain]
    with pytest.raises(UserError, match="--precision"):
        s.with_overrides(precision="half")


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "forgetting.cli", *args], capture_output=True, text=True, cwd=cwd)


@pytest.mark.parametrize(
    "args",
    [
        ["{bad}"],
        ["{unknown}"],
        ["cpu-lr-sweep", "--multipliers", "-1,2"],
        ["cpu-lr-sweep", "--sizes", "100,50001"],
        ["cpu-lr-sweep", "--multipliers", "one,two"],
        ["no-such-study"],
    ],
    ids=["invalid-toml", "unknown-key", "negative-multiplier", "subset-too-big", "not-numbers", "missing"],
)
def test_sweep_cli_rejects_bad_input_with_one_line_and_untouched_store(tmp_path, args):
    bad = tmp_path / "bad.toml"
    bad.write_text(GOOD + "\n[[[")
    unknown = tmp_path / "unknown.toml"
    unknown.write_text(GOOD.replace("[train]", "[train]\nlearning_rate = 3"))
    store = tmp_path / "store"
    store.mkdir()
    (store / "keep.txt").write_text("x")
    args = [a.format(bad=bad, unknown=unknown) for a in args]
    r = _cli("sweep-lr", *args, "--store", str(store))
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), r.stderr
    assert "Traceback" not in r.stderr
    assert sorted(p.name for p in store.rglob("*")) == ["keep.txt"]


def test_overridden_studies_get_a_scale_line_of_their_own_runs():
    file_scale = studies.load_study("cpu-lr-sweep").scale
    assert "width 0.25" in file_scale
    same = studies.load_study("cpu-lr-sweep").with_overrides(width=0.25, epochs=6, seeds=[0, 1, 2])
    assert same.scale == file_scale  # the file's own values: the file's own line
    small = studies.load_study("cpu-lr-sweep").with_overrides(width=0.125, epochs=1, seeds=[0])
    assert small.scale == (
        "dawn18 width 0.125, batch 128, 1 epoch (1 warm-up then constant LR), crop+flip, 1 seed"
        " (overridden: width, epochs, seeds)"
    )
    assert "0.25" not in small.scale
    probe = studies.load_study("cpu-probe").with_overrides(subset=400, precision="bf16")
    assert "400 images" in probe.scale and "bf16" in probe.scale and "subset, precision" in probe.scale
