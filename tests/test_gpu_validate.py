"""benchmarks/gpu_validate.py: the smoke mode runs every section on CPU (so the script cannot rot), and
full mode refuses to run without CUDA (a GPU figure must come from a GPU)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import torch

from helpers import REPO_ROOT

SCRIPT = REPO_ROOT / "benchmarks" / "gpu_validate.py"


def _run(*args):
    cmd = [sys.executable, str(SCRIPT), *args]
    env = dict(os.environ, FORGETTING_DATA_SIZES="any")  # the smoke reads the real images' slice
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT, timeout=600, env=env)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_full_mode_refuses_without_cuda(tmp_path):
    r = _run("--device", "cpu", "--out", str(tmp_path / "out"))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "CUDA" in lines[0], r.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.integration
def test_smoke_runs_every_section_on_cpu(tmp_path, cifar_slice_path):
    out = tmp_path / "smoke"
    r = _run("--smoke", "--device", "cpu", "--data", str(cifar_slice_path), "--out", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    record = json.loads((out / "validation.json").read_text())
    assert record["mode"] == "smoke" and record["environment"]["device"] == "cpu"
    assert set(record["sections"]) == {"throughput", "stages", "probe", "sweep", "workers"}  # stored with sorted keys
    tp = pd.read_csv(out / "throughput.csv")
    assert set(tp["precision"]) == {"fp32", "bf16", "fp16"} and set(tp["net"]) == {"dawn18", "resnet9"}
    assert (tp["img_s"] > 0).all() and (tp["pct_bf16_peak"] > 0).all()
    stages = pd.read_csv(out / "stages.csv")
    assert stages["preset"].tolist() == ["part1", "part2", "part3", "part4"]
    assert stages["page_v100_seconds"].tolist() == [297, 256, 154, 79]
    assert stages["test_acc"].between(0, 1).all()
    for section in ("probe", "sweep"):
        s = record["sections"][section]
        assert s["finished"] == s["runs"] > 0, section
        assert (out / s["folder"] / "summary.json").is_file() and s["figures"], section
    workers = pd.read_csv(out / "workers.csv")
    assert workers["workers"].tolist() == [1, 2] and (workers["runs_per_hour"] > 0).all()
    assert not any((REPO_ROOT / "results").glob("gpu-*")), "smoke mode must never write under results/"


def load_script():
    """The script as a module, to call in this process (a process more costs a torch import)."""
    if "gpu_validate" not in sys.modules:
        if str(SCRIPT.parent) not in sys.path:  # its shared helpers (timing.py), as `python SCRIPT` finds them
            sys.path.insert(0, str(SCRIPT.parent))
        spec = importlib.util.spec_from_file_location("gpu_validate", SCRIPT)
        sys.modules["gpu_validate"] = importlib.util.module_from_spec(spec)  # its dataclasses look it up
        spec.loader.exec_module(sys.modules["gpu_validate"])
    return sys.modules["gpu_validate"]


def test_a_bad_time_limit_is_one_line(capsys):
    assert load_script().main(["--smoke", "--time-limit", "soon"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "'soon'" in lines[0], lines


@pytest.mark.integration
def test_smoke_past_its_time_limit_keeps_the_first_section_and_names_the_skipped(
    tmp_path, cifar_slice_path, any_size_data, capsys
):
    out = tmp_path / "smoke"
    args = ["--smoke", "--device", "cpu", "--data", str(cifar_slice_path), "--out", str(out)]
    args += ["--only", "throughput,stages"]
    assert load_script().main([*args, "--time-limit", "0.001s"]) == 0  # the first section always starts
    record = json.loads((out / "validation.json").read_text())
    assert set(record["sections"]) == {"throughput"} and record["skipped"] == ["stages"]
    assert record["time_limit_seconds"] == 0.001 and (out / "throughput.csv").is_file()
    assert not (out / "stages.csv").exists()
    assert "skipped (time limit): stages" in capsys.readouterr().out
