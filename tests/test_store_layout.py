"""The store's layout is written once: .gitignore and the README name the light run record it names."""

from __future__ import annotations

import re

import pytest

from forgetting import store
from forgetting.store import RunFolder, StudyFolder
from helpers import REPO_ROOT


def test_gitignore_lets_through_exactly_the_light_run_record():
    rules = (REPO_ROOT / ".gitignore").read_text().splitlines()
    assert "/results/*/runs/*/*" in rules, "everything under a committed run folder is ignored but the record"
    kept = {r.removeprefix("!/results/*/runs/*/") for r in rules if r.startswith("!/results/*/runs/*/")}
    assert kept == set(RunFolder.LIGHT)
    assert not kept & set(RunFolder.HEAVY + RunFolder.UNFINISHED)


def test_the_docs_describe_the_light_run_record():
    readme = (REPO_ROOT / "docs" / "clusters.md").read_text()
    found = re.search(r"A finished run is described by (\w+) small files \(([^:]*):", readme)
    assert found, "docs/clusters.md's paragraph on run records that travel in git"
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
    files = {RunFolder.result.name: b"{}", RunFolder.config.name: b"{}", RunFolder.meta.name: b"{}"}
    run.write({**files, RunFolder.history.name: b"epoch\n1\n"})
    assert written == ["config.json", "meta.json", "history.csv", "result.json"] and run.read_result() == {}
    assert run.finished()
    run.result.write_text("{trunc")
    notices = []
    assert run.read_result() is None and run.set_aside_damaged(notices.append)
    assert not run.result.exists() and (tmp_path / "result.json.damaged").read_text() == "{trunc"
    (line,) = notices
    assert line.startswith(f"{run.result} is damaged (JSONDecodeError") and "result.json.damaged" in line
    assert not run.set_aside_damaged(notices.append) and len(notices) == 1, "nothing left to set aside"


def test_a_finished_run_whose_record_is_damaged_is_unfinished_until_redone(tmp_path):
    run = RunFolder(tmp_path)
    run.write({"config.json": b"{}", "meta.json": b"{}", "history.csv": b"epoch\n1\n", "result.json": b"{}"})
    run.history.write_bytes(b"epoch\n1")  # cut off in its last line
    notices = []
    assert run.set_aside_damaged(notices.append) and not run.finished()
    assert "history.csv is damaged" in notices[0] and "the run is redone" in notices[0]
    assert run.result.exists(), "what is intact stays, until the run is written again"
    run.write({"config.json": b"{}", "meta.json": b"{}", "history.csv": b"epoch\n1\n", "result.json": b"{}"})
    assert run.finished()


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_read_back_redoes_with_a_notice_or_refuses_and_moves_nothing(tmp_path, damage):
    path = tmp_path / "lr_find.json"
    whole = store.json_bytes(dict(suggestion=0.1, method="min10"))
    path.write_bytes(whole[: len(whole) // 2] if damage == "truncated" else bytes(range(256)) * 2)
    before = path.read_bytes()
    with pytest.raises(store.DamagedFile) as refused:
        store.read_back(path, store.read_json_object)
    assert str(refused.value).startswith(f"{path} is damaged (") and "forgetting lr-find" in str(refused.value)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["lr_find.json"]
    notices = []
    assert store.read_back(path, store.read_json_object, notices.append) is None
    assert (tmp_path / "lr_find.json.damaged").read_bytes() == before and not path.exists()
    assert len(notices) == 1 and "set aside as lr_find.json.damaged; the LR finder is redone" in notices[0]


def test_every_file_read_back_has_a_remedy_and_the_docs_a_row():
    readme = (REPO_ROOT / "docs" / "clusters.md").read_text()
    table = readme.split("## Long jobs", 1)[1].split("\n## ", 1)[0]
    rows = [line.strip() for line in table.splitlines() if line.strip().startswith("| `")]
    named = {name for row in rows for name in re.findall(r"`([\w.]+)`", row.split("|")[1])}
    assert set(store.REMEDIES) <= named, set(store.REMEDIES) - named
    for name, remedy in store.REMEDIES.items():
        assert remedy.fix and (remedy.redo is None or "redone" in remedy.redo), name
