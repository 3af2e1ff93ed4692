"""Studies in pieces: shards of equal work, `forgetting merge`, and run records that travel in git."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import REPO_ROOT, start_cli
from forgetting import cli, grid, merge, report, shards, studies, sweep
from forgetting.errors import UserError

# A tiny study with base_lr = "find", so that the finder-once rule is exercised too.
STUDY_TOML = """
[study]
name = "tiny-shards"
kind = "lr-sweep"
scale = "test scale: dawn18 width 0.125, 1 epoch"
[train]
net = "dawn18"
width = 0.125
batch_size = 100
epochs = 1
warmup = 0
[grid]
multipliers = [0.5, 2, 8]
sizes = [200, 400]
seeds = [0, 1]
base_lr = "find"
[lr_find]
method = "min10"
steps = 10
"""
SLICE = dict(train_x=1000, train_y=1000, test_x=500, test_y=500)
TIMING = sweep.MACHINE_FIELDS  # what differs between two runs of the same run id (load averages too)


def tree(root: Path) -> dict[str, tuple[str, int]]:
    """path -> (sha256, mtime_ns) of every file: 'unchanged' means neither bytes nor times moved."""
    return {
        str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def run_cli(*args: str, data: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", FORGETTING_DATA_SIZES="any")  # the slice below
    proc = start_cli(*args, data=data, env=env)
    out, err = proc.communicate(timeout=600)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def main_exit(args: list[str], capsys, monkeypatch) -> tuple[int, str]:
    """`forgetting ARGS` in this process: (exit code, stderr)."""
    monkeypatch.setattr(sys, "argv", ["forgetting", *args])
    try:
        cli.main()
        code = 0
    except SystemExit as e:
        code = e.code or 0
    return code, capsys.readouterr().err


# ------------------------------------------------------------------------------------------------
# The partition (no training)


def test_shard_text_is_parsed_and_checked():
    assert shards.Shard.parse("2/3") == shards.Shard(2, 3)
    for bad in ("0/3", "4/3", "3", "a/b", "1/0"):
        with pytest.raises(UserError, match="--shard"):
            shards.Shard.parse(bad)


@pytest.mark.parametrize("count", [1, 2, 3, 5, 8, 50])
def test_pieces_are_disjoint_cover_everything_and_balance_within_one_run(count):
    study = studies.load_study("cpu-lr-sweep-30")  # 42 runs of two sizes
    specs = grid.expand(study, base_lr=0.05)
    works = [s.work for s in specs]
    pieces = shards.partition(works, count)
    flat = sorted(itertools.chain.from_iterable(pieces))
    assert flat == list(range(len(specs)))  # every run once
    loads = [sum(works[i] for i in p) for p in pieces]
    assert max(loads) - min(loads) <= max(works)
    # the same pieces from another base LR (another machine's finder) and on every call
    again = [s.work for s in grid.expand(study, base_lr=0.07)]
    assert shards.partition(again, count) == pieces


def test_the_balance_rule_holds_for_arbitrary_works():
    rng = random.Random(0)
    for _ in range(200):
        works = [rng.choice([1, 2, 3, 50, 400]) * rng.random() for _ in range(rng.randint(1, 30))]
        count = rng.randint(1, 9)
        loads = [sum(works[i] for i in p) for p in shards.partition(works, count)]
        assert max(loads) - min(loads) <= max(works) + 1e-9


# ------------------------------------------------------------------------------------------------
# Shards, merge and committed records: real processes on the real data, tiny sizes


@pytest.fixture(scope="module")
def pieces(tmp_path_factory, cifar):
    """The study run at once into `whole`, and as shards 1/3, 2/3, 3/3 into three stores."""
    root = tmp_path_factory.mktemp("shards")
    data = root / "slice.npz"  # the real images, a slice: each process loads and tests on less
    np.savez(data, **{k: getattr(cifar, k)[:n] for k, n in SLICE.items()})
    study = root / "tiny-shards.toml"
    study.write_text(STUDY_TOML)
    common = ("--device", "cpu")
    refused = run_cli("sweep-lr", str(study), "--shard", "2/3", "--store", str(root / "s2"), *common, data=data)
    refused.left_store = (root / "s2").exists()
    finder = run_cli("lr-find", str(study), "--store", str(root / "finder"), *common, data=data)
    assert finder.returncode == 0, finder.stderr
    runs = {}
    for k in (1, 2, 3):
        store = root / f"s{k}"
        if k > 1:  # shards 2..N start from the finder's store
            merge.merge_stores([root / "finder"], store)
        runs[k] = run_cli("sweep-lr", str(study), "--shard", f"{k}/3", "--store", str(store), *common, data=data)
        assert runs[k].returncode == 0, runs[k].stderr
    whole = run_cli("sweep-lr", str(study), "--store", str(root / "whole"), *common, data=data)
    assert whole.returncode == 0, whole.stderr
    return dict(root=root, study=study, refused=refused, runs=runs, data=data)


def results(folder: Path) -> pd.DataFrame:
    return pd.read_csv(folder / "results.csv", dtype={"run": str})


@pytest.mark.integration
def test_a_shard_without_the_finder_result_is_refused(pieces):
    proc = pieces["refused"]
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "forgetting lr-find" in lines[0] and "Traceback" not in proc.stderr
    assert not proc.left_store  # refused before it wrote anything, the lock file included


@pytest.mark.integration
def test_three_shards_merged_equal_the_study_run_at_once(pieces, tmp_path):
    root = pieces["root"]
    ids = [set(results(root / f"s{k}" / "tiny-shards").query("status == 'finished'")["run"]) for k in (1, 2, 3)]
    assert all(ids) and not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])  # disjoint, none empty
    dst = tmp_path / "merged"
    merged = merge.merge_stores([root / "s1", root / "s2", root / "s3"], dst)
    assert [m.name for m in merged] == ["tiny-shards"] and len(merged[0].new_runs) == 12
    a, b = results(dst / "tiny-shards"), results(root / "whole" / "tiny-shards")
    assert set(a["run"]) == ids[0] | ids[1] | ids[2] == set(b["run"]) and (a["status"] == "finished").all()
    columns = [c for c in a.columns if c not in TIMING]
    pd.testing.assert_frame_equal(a[columns], b[columns])
    # the work of the shards differs by at most the largest run's
    trained_on = sweep.recorded_data(json.loads((dst / "tiny-shards" / "study.json").read_text()))  # the slice
    study = studies.load_study(str(pieces["study"]))
    specs = {s.id: s.work for s in grid.expand(study, float(a["base_lr"][0]), trained_on)}
    loads = [sum(specs[i] for i in s) for s in ids]
    assert max(loads) - min(loads) <= max(specs.values())
    # figures and summary.json from the merged store equal those of the store that ran it all
    figs = {}
    for name, folder in (("merged", dst), ("whole", root / "whole")):
        report.regenerate(folder, tmp_path / name)  # what `forgetting figures --store FOLDER --out` does
        figs[name] = json.loads((tmp_path / name / "tiny-shards" / "summary.json").read_text())
    assert figs["merged"] == figs["whole"]


@pytest.mark.integration
def test_merge_is_idempotent_and_refuses_mismatches_leaving_dst_untouched(pieces, tmp_path, capsys, monkeypatch):
    root = pieces["root"]
    dst = tmp_path / "dst"
    args = ["merge", str(root / "s1"), str(root / "s2"), "--into", str(dst)]
    assert main_exit(args, capsys, monkeypatch)[0] == 0
    before = tree(dst)
    assert (
        main_exit(args, capsys, monkeypatch)[0] == 0 and tree(dst) == before
    )  # twice: nothing changes, not even a time stamp

    # a study of the same name with another grid
    other = tmp_path / "other"
    shutil.copytree(root / "s3", other)
    record = json.loads((other / "tiny-shards" / "study.json").read_text())
    record["grid"]["seeds"] = [0, 1, 2]
    (other / "tiny-shards" / "study.json").write_text(json.dumps(record))
    # a run present in DST with another result.json
    conflict = tmp_path / "conflict"
    shutil.copytree(root / "whole", conflict)
    run = next(p for p in sorted((dst / "tiny-shards" / "runs").iterdir()))
    result = json.loads((conflict / "tiny-shards" / "runs" / run.name / "result.json").read_text())
    result["test_loss"] += 0.001
    (conflict / "tiny-shards" / "runs" / run.name / "result.json").write_text(json.dumps(result))
    for source, fragment in ((other, "'grid' differs"), (conflict, f"run {run.name}")):
        code, err = main_exit(["merge", str(source), "--into", str(dst)], capsys, monkeypatch)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and fragment in lines[0], err
        assert tree(dst) == before


@pytest.mark.integration
def test_a_committed_light_record_is_skipped_in_a_fresh_clone(pieces, tmp_path):
    root = pieces["root"]
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copyfile(REPO_ROOT / ".gitignore", repo / ".gitignore")
    merge.merge_stores([root / "whole"], repo / "results", light=True)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    # weights and per-step arrays in results/ are ignored, the records are not
    heavy = root / "whole" / "tiny-shards" / "runs"
    run = sorted(heavy.iterdir())[0].name
    shutil.copyfile(heavy / run / "model.pt", repo / "results" / "tiny-shards" / "runs" / run / "model.pt")
    subprocess.run([*git, str(repo), "add", "-A"], check=True)
    subprocess.run([*git, str(repo), "commit", "-qm", "records"], check=True)
    listed = subprocess.run([*git, str(repo), "ls-files"], capture_output=True, text=True, check=True).stdout
    assert f"results/tiny-shards/runs/{run}/result.json" in listed and "model.pt" not in listed
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
    proc = run_cli(
        "sweep-lr", str(pieces["study"]), "--store", str(clone / "results"), "--device", "cpu", data=pieces["data"]
    )
    assert proc.returncode == 0, proc.stderr
    assert "12 of 12 runs already finished" in proc.stdout
    assert not list((clone / "results" / "tiny-shards" / "runs").glob("*/model.pt"))  # nothing was trained
    a, b = results(clone / "results" / "tiny-shards"), results(root / "whole" / "tiny-shards")
    pd.testing.assert_frame_equal(a, b)


@pytest.mark.integration
def test_dry_run_lists_a_shard_and_writes_nothing(pieces, tmp_path):
    store = tmp_path / "empty"
    proc = subprocess.run(
        [sys.executable, "-m", "forgetting.cli", "sweep-lr", str(pieces["study"]), "--shard", "1/3", "--dry-run"]
        + ["--store", str(store)],
        capture_output=True,
        text=True,
        env=dict(os.environ, COLUMNS="200"),
    )
    assert proc.returncode == 0, proc.stderr
    assert "shard 1/3: 4 of 12 runs" in proc.stdout and "base LR not yet found" in proc.stdout
    assert not store.exists()


PROBE_TOML = """
[study]
name = "tiny-probe-shards"
kind = "probe"
scale = "test scale: dawn18 width 0.125, 2 epochs"
[train]
net = "dawn18"
width = 0.125
batch_size = 100
epochs = 2
warmup = 0
[grid]
multipliers = [1, 4]
subset = 400
seeds = [0]
base_lr = 0.05
[[conditions]]
name = "half-noaug"
fraction = 0.5
augment = false
[[conditions]]
name = "full-aug"
fraction = 1.0
augment = true
"""


@pytest.mark.integration
def test_probe_shards_merged_give_the_probe_tables_of_one_probe(pieces, tmp_path):
    study = tmp_path / "tiny-probe-shards.toml"
    study.write_text(PROBE_TOML)
    for store, extra in (("p1", ["--shard", "1/2"]), ("p2", ["--shard", "2/2"]), ("whole", [])):
        proc = run_cli(
            "probe-epochs", str(study), "--store", str(tmp_path / store), "--device", "cpu", *extra, data=pieces["data"]
        )
        assert proc.returncode == 0, proc.stderr
    merge.merge_stores([tmp_path / "p1", tmp_path / "p2"], tmp_path / "merged")
    merged, whole = tmp_path / "merged" / "tiny-probe-shards", tmp_path / "whole" / "tiny-probe-shards"
    for name in ("probe.csv", "probe_epochs.csv", "probe_recency.csv", "probe_examples.csv"):
        assert (merged / name).read_bytes() == (whole / name).read_bytes(), name
    a, b = pd.read_csv(merged / "probe_runs.csv"), pd.read_csv(whole / "probe_runs.csv")
    columns = [c for c in a.columns if "seconds" not in c]
    pd.testing.assert_frame_equal(a[columns], b[columns])
    assert len(a) == 4
