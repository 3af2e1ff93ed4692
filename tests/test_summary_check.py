"""`forgetting figures --check`: committed summaries against ones regenerated from the same tables, numbers
within a relative tolerance, verdicts and strings exactly; and where `forgetting figures` writes."""

from __future__ import annotations

import copy
import json
import shutil
import sys
from pathlib import Path

import pytest

from forgetting import cli, report, summary_check
from forgetting.summary_check import REL_TOL, compare

RESULTS = Path(__file__).resolve().parent.parent / "results"
SMALLEST = "cpu-lr-sweep"  # the smallest committed study folder that regenerates alone (no runs/, one study)

SUMMARY = {
    "study": {"name": "s", "scale": "test scale"},
    "fits": [{"subset": 1280, "m_opt": 1.2345678, "loss": 0.87654321}, {"subset": 2560, "m_opt": None}],
    "verdicts": {"a_final": {"holds": True, "reason": "turn-up ratio 5.6 in [2, 8]", "ratio": 5.612345}},
}


def perturbed(path: tuple, factor: float) -> dict:
    new = copy.deepcopy(SUMMARY)
    *parents, last = path
    at = new
    for key in parents:
        at = at[key]
    at[last] *= factor
    return new


def test_a_number_changed_in_its_7th_digit_passes_and_the_largest_difference_is_named():
    out = compare(SUMMARY, perturbed(("fits", 0, "m_opt"), 1 + 8.3e-7))  # what another CPU type gives
    assert out.ok and out.numbers == 5
    assert out.largest.path == "fits[0].m_opt" and out.largest.relative == pytest.approx(8.3e-7, rel=1e-3)
    assert "fits[0].m_opt: committed 1.2345678" in out.lines()[-2]
    assert out.lines()[-1] == f"summary.json: within {REL_TOL:g} relative"


def test_a_number_beyond_the_tolerance_fails():
    out = compare(SUMMARY, perturbed(("verdicts", "a_final", "ratio"), 1 + 10 * REL_TOL))
    assert not out.ok
    (d,) = out.differences
    assert d.path == "verdicts.a_final.ratio" and d.relative > REL_TOL


def test_a_changed_verdict_or_string_fails_with_one_line_each():
    new = copy.deepcopy(SUMMARY)
    new["verdicts"]["a_final"]["holds"] = False
    new["verdicts"]["a_final"]["reason"] = "turn-up ratio 9.1 outside [2, 8]"
    out = compare(SUMMARY, new, "x/summary.json")
    lines = out.lines()
    assert [d.path for d in out.differences] == ["verdicts.a_final.holds", "verdicts.a_final.reason"]
    assert lines[0] == "x/summary.json: verdicts.a_final.holds: committed True, regenerated False"
    assert "'turn-up ratio 5.6 in [2, 8]'" in lines[1] and lines[-1] == "summary.json: 2 differences"


def test_a_missing_or_added_key_and_a_none_that_became_a_number_fail():
    new = copy.deepcopy(SUMMARY)
    del new["fits"][0]["loss"]
    new["fits"][1]["m_opt"] = 1.0
    new["verdicts"]["extra"] = {}
    out = compare(SUMMARY, new)
    assert [d.path for d in out.differences] == ["fits[0].loss", "fits[1].m_opt", "verdicts.extra"]
    assert out.differences[0].line().endswith("committed 0.87654321, regenerated (missing)")


def test_the_committed_smallest_study_regenerates_within_tolerance(tmp_path):
    folder = tmp_path / SMALLEST
    shutil.copytree(RESULTS / SMALLEST, folder)
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    out = summary_check.check_store(folder)
    assert out.ok, "\n".join(out.lines())
    assert out.numbers > 50
    assert before == {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}, "the check writes nothing"


def _figures(args, capsys, monkeypatch) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["forgetting", "figures", *map(str, args)])
    code = 0
    try:
        cli.main()
    except SystemExit as e:
        code = e.code or 0
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def tables(tmp_path):
    """A copy of the smallest committed study's tables, without its summary and figures."""
    folder = tmp_path / "tables" / SMALLEST
    ignore = shutil.ignore_patterns("figures", "summary.json")
    shutil.copytree(RESULTS / SMALLEST, folder, ignore=ignore)
    return folder.parent


def test_figures_writes_a_new_folder_here_unless_told_in_place(tables, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, _ = _figures(["--store", tables], capsys, monkeypatch)
    assert code == 0
    (made,) = (tmp_path / report.OUT_PARENT).iterdir()
    assert made.name.startswith("tables-") and out.rstrip().endswith(f"wrote into {report.OUT_PARENT / made.name}")
    assert (made / SMALLEST / "figures" / "lr_sweep.png").is_file() and (made / SMALLEST / "summary.json").is_file()
    assert not (tables / SMALLEST / "summary.json").exists(), "the store is not written by default"
    _figures(["--store", tables], capsys, monkeypatch)  # again: another new folder, the first one kept
    assert len(list((tmp_path / report.OUT_PARENT).iterdir())) == 2
    code, _, _ = _figures(["--store", tables, "--in-place"], capsys, monkeypatch)
    assert code == 0 and (tables / SMALLEST / "figures" / "lr_sweep.png").is_file()


def test_a_fresh_folder_is_never_one_that_exists(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = report.figures_target(Path("results"), None, False, now=0.0)
    first.mkdir(parents=True)
    second = report.figures_target(Path("results"), None, False, now=0.0)  # the same second
    assert first.parent == second.parent == report.OUT_PARENT and second != first and not second.exists()
    assert report.figures_target(Path("results"), None, True) is None  # in place
    assert report.figures_target(Path("results"), tmp_path / "x", False) == tmp_path / "x"


@pytest.mark.parametrize("args", [["--in-place", "--out", "x"], ["--check", "--in-place"], ["--check", "--out", "x"]])
def test_options_that_name_two_places_are_one_line(args, tables, capsys, monkeypatch):
    code, _, err = _figures(["--store", tables, *args], capsys, monkeypatch)
    assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("error: ")


def test_check_exits_1_naming_a_changed_verdict_and_0_when_all_agree(tables, capsys, monkeypatch):
    _figures(["--store", tables, "--in-place"], capsys, monkeypatch)
    code, out, _ = _figures(["--store", tables, "--check"], capsys, monkeypatch)
    assert code == 0 and out.splitlines()[-1] == f"summary.json: within {REL_TOL:g} relative"
    path = tables / SMALLEST / "summary.json"
    summary = json.loads(path.read_text())
    name = next(k for k, v in summary["verdicts"].items() if isinstance(v, dict) and "reason" in v)
    summary["verdicts"][name]["reason"] = "edited by hand"
    path.write_text(json.dumps(summary))
    code, out, _ = _figures(["--store", tables, "--check"], capsys, monkeypatch)
    lines = out.splitlines()
    assert code == 1 and lines[-1] == "summary.json: 1 difference"
    assert lines[0].startswith(f"{path}: verdicts.{name}.reason: committed 'edited by hand', regenerated ")
