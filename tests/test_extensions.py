"""The two registries of this layer, joined by a user's own entry the way the built-ins join them: an
executor (`execution.base.register`) and a study kind (`experiments.registry.register`)."""

from __future__ import annotations

import pytest

from forgetting import grid, studies
from forgetting.execution import base as execution
from forgetting.execution.inprocess import InProcessExecutor
from forgetting.execution.settings import ExecutorSettings
from forgetting.experiments import registry
from forgetting.experiments.base import StudyKind
from forgetting.experiments.run import run_study
from forgetting.checks import SIZE, boolean


class Recording(InProcessExecutor):
    """A user's executor: the in-process one, keeping the ids of the jobs it ran."""

    name = "recording"
    ran: list = []

    def run(self, jobs, sink, budget=None):
        Recording.ran += [job.spec.id for job in jobs]
        super().run(jobs, sink, budget)


def test_a_user_s_executor_joins_the_registry_and_runs_the_study_s_jobs(tmp_path, synthetic_cifar, monkeypatch):
    monkeypatch.setitem(execution.BACKENDS, "recording", Recording)
    study = studies.load_study("cpu-probe").with_overrides(
        epochs=1, warmup=0, width=0.125, subset=100, batch_size=50, multipliers=[1.0], base_lr=0.4, seeds=[0]
    )
    out = run_study(study, tmp_path, synthetic_cifar, ExecutorSettings("recording", device="cpu"))
    ids = [spec.id for spec in out.sweep.specs]
    assert Recording.ran == ids + ids  # each run's training, then each run's probe
    assert (out.sweep.table["status"] == "finished").all() and len(out.runs) == 2


class Halves(StudyKind):
    """A user's kind: every subset trained whole and halved, one [halves] section of its own."""

    name = "halves"
    grid_schema = {"whole": (SIZE, None)}
    sections = {"halves": {"augment_half": (boolean, False)}}

    def check(self, study, where):
        if not study.grid.get("whole"):
            raise studies.StudyError(f"{where}: a halves study needs 'grid.whole'")

    def cells(self, study):
        whole = study.grid["whole"]
        half = study.sections["halves"]["augment_half"]
        return [(whole, study.train["augment"], "whole"), (whole // 2, half, "half")]

    def scale_words(self, study):
        return f"{study.grid['whole']:,} and half as many images"


def test_a_user_s_study_kind_is_one_class_and_a_registry_entry(monkeypatch):
    monkeypatch.setitem(registry.KINDS, "halves", Halves())
    doc = dict(
        study=dict(name="halves", kind="halves", scale="tiny"),
        train=dict(batch_size=100),
        grid=dict(multipliers=[1.0], whole=400, base_lr=0.4),
        halves=dict(augment_half=True),
    )
    study = studies.parse_study(doc, "halves.toml")
    specs = grid.expand(study, 0.4)
    assert [(s.config.subset, s.config.augment, s.meta["condition"]) for s in specs] == [
        (200, True, "half"),
        (400, True, "whole"),
    ]
    assert study.largest_subset() == 400
    assert "400 and half as many images" in studies.resolved_scale(study)
    with pytest.raises(studies.StudyError, match="halves.toml: a halves study needs 'grid.whole'"):
        studies.parse_study({**doc, "grid": dict(multipliers=[1.0])}, "halves.toml")
