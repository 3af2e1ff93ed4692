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
