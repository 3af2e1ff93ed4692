"""The scripts in examples/ run as a notebook user would run them, each under a minute on an idle CPU."""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import REPO_ROOT


@pytest.mark.integration
@pytest.mark.parametrize("script", ["tiny_sweep.py", "tiny_probe.py", "own_network.py", "own_data.py"])
def test_example_runs_and_writes_its_summary(script, tmp_path, cifar_path):
    env = {**__import__("os").environ, "FORGETTING_DATA": str(cifar_path)}
    r = subprocess.run(
        [sys.executable, str(REPO_ROOT / "examples" / script), str(tmp_path / "store")],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    summaries = list((tmp_path / "store").glob("*/summary.json"))
    assert len(summaries) == 1 and summaries[0].stat().st_size > 100
    assert "(a)" in r.stdout or "(b)" in r.stdout  # the example prints the pre-registered verdicts


@pytest.mark.integration
def test_the_recorder_example_scores_and_replays_a_plain_loop(tmp_path, cifar_path):
    import pandas as pd

    env = {**__import__("os").environ, "FORGETTING_DATA": str(cifar_path)}
    script = REPO_ROOT / "examples" / "recorder_loop.py"
    r = subprocess.run(
        [sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, env=env, timeout=600
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Traceback" not in r.stderr and "unforgettable" in r.stdout
    scores = pd.read_csv(tmp_path / "scores.csv")
    assert len(scores) == 2000 and (scores["index"] % 25 == 0).all()  # every 25th image, by its index
    assert scores["forgetting_events"].max() >= 1 and scores["unforgettable"].between(0, 1).all()
    replay = pd.read_csv(tmp_path / "replay.csv")
    assert len(replay) == 4 * 20 and sorted(replay["epoch_age"].unique()) == [0, 1, 2, 3]  # 4 epochs of 20 steps
    assert replay["loss_now"].notna().all() and (replay["n"] == 100).all()
