"""The store's layout is written once: .gitignore and the README name the light run record it names."""

from __future__ import annotations

import re

from forgetting import store
from forgetting.store import RunFolder, StudyFolder
from helpers import REPO_ROOT


def test_gitignore_lets_through_exactly_the_light_run_record():
    rules = (REPO_ROOT / ".gitignore").read_text().splitlines()
    assert "/results/*/runs/*/*" in rules, "everything under a committed run folder is ignored but the record"
    kept = {r.removeprefix("!/results/*/runs/*/") for r in rules if r.startswith("!/results/*/runs/*/")}
    assert kept == set(RunFolder.LIGHT)
    assert not kept & set(RunFolder.HEAVY + RunFolder.UNFINISHED)


def test_readme_describes_the_light_run_record():
    readme = (REPO_ROOT / "README.md").read_text()
    found = re.search(r"A finished run is described by (\w+) small files \(([^:]*):", readme)
    assert found, "README's paragraph on run records that travel in git"
    assert found.group(1) == "four" and len(RunFolder.LIGHT) == 4
    assert set(re.findall(r"`([^`]+)`", found.group(2))) == set(RunFolder.LIGHT)


def test_folders_name_their_files(tmp_path):
    run = StudyFolder(tmp_path).run("abc")
    assert run.dir == tmp_path / "runs" / "abc" and run.result == run.dir / "result.json"
    assert RunFolder.result.name == "result.json" and StudyFolder.lock_file.name == "sweep.lock"
    for folder in (RunFolder, StudyFolder):
        names = [f.name for f in vars(folder).values() if isinstance(f, type(RunFolder.result))]
        assert len(names) == len(set(names)), "one name per file"
    assert set(StudyFolder.PROBE_TABLES) <= set(StudyFolder.TABLES) and len(set(StudyFolder.TABLES)) == 9


def test_a_run_s_result_is_written_last_and_a_damaged_one_set_aside(tmp_path, monkeypatch):
    run, written, real = RunFolder(tmp_path), [], store.atomic_write_bytes
    monkeypatch.setattr(store, "atomic_write_bytes", lambda path, data: (written.append(path.name), real(path, data)))
    run.write({RunFolder.result.name: b"{}", RunFolder.config.name: b"{}", RunFolder.meta.name: b"{}"})
    assert written == ["config.json", "meta.json", "result.json"] and run.read_result() == {}
    run.result.write_text("{trunc")
    assert run.read_result() is None and run.set_aside_damaged()
    assert not run.result.exists() and run.damaged.read_text() == "{trunc"
    assert not run.set_aside_damaged(), "nothing left to set aside"
