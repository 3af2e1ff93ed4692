"""Repository hygiene: documentation and code name no path of one machine."""

from __future__ import annotations

import re
from pathlib import Path
from helpers import REPO_ROOT

MACHINE_PATHS = ["/" + "work/", "/" + "home/"]  # spelt in two pieces so this file does not match itself


def test_no_machine_paths_in_code_docs_or_studies():
    hits = []
    for path in sorted(REPO_ROOT.rglob("*")):
        parts = path.relative_to(REPO_ROOT).parts
        if path.suffix not in (".py", ".md", ".toml") or any(p.startswith(".") for p in parts):
            continue
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if any(m in line for m in MACHINE_PATHS):
                hits.append(f"{path.relative_to(REPO_ROOT)}:{n}: {line.strip()}")
    assert not hits, "machine paths (use ../shared/data/cifar10.npz and .venv/bin/python):\n" + "\n".join(hits)


# The documents a reader of a clone follows; every file they name must be in the clone.
DOCUMENTS = [REPO_ROOT / "README.md", REPO_ROOT / "results" / "README.md", REPO_ROOT / "benchmarks" / "README.md"]
DOCUMENTS += sorted((REPO_ROOT / "docs").glob("*.md")) + sorted((REPO_ROOT / "studies").glob("*.toml"))
TEST_DATA = "../shared/data/cifar10.npz"  # the offline CIFAR-10 the tests and CI read: the one path outside
REPO_DIRS = "docs|studies|tests|forgetting|benchmarks|examples|results"


def _inside(path: Path) -> bool:
    return path.resolve().is_relative_to(REPO_ROOT) and path.exists()


def _named_files(doc: Path) -> list[tuple[str, bool]]:
    """(name, resolves inside the repository) for each file the document names: relative links, paths
    that climb out with ../, any *calibration.md / *protocol.md, and paths under the top-level folders."""
    text = doc.read_text()
    names = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if not re.match(r"[a-z]+:|#", target):
            names.append((target, _inside(doc.parent / target.split("#")[0])))
    for token in re.findall(r"(?:\.\./)+[\w./-]*", text):
        names.append((token, token == TEST_DATA or _inside(doc.parent / token)))
    for token in re.findall(r"[\w./-]*(?:calibration|protocol)\.md", text):
        names.append((token, _inside(REPO_ROOT / token) or _inside(doc.parent / token)))
    for token in re.findall(rf"(?<![\w./-])(?:{REPO_DIRS})/[\w./-]*\.(?:md|toml|py|csv|json|png|svg)\b", text):
        names.append((token, _inside(REPO_ROOT / token)))
    return names


def test_documents_name_no_file_outside_the_repository():
    assert len(DOCUMENTS) >= 10 and all(d.exists() for d in DOCUMENTS)
    missing = [f"{d.relative_to(REPO_ROOT)}: {name}" for d in DOCUMENTS for name, ok in _named_files(d) if not ok]
    assert not missing, "names a file that a clone does not have:\n" + "\n".join(missing)


def test_the_reference_check_catches_what_it_should(tmp_path, monkeypatch):
    doc = tmp_path / "x.md"
    doc.write_text(
        "see calibration.md, [p](../../protocol.md), ../shared/docs/notes.txt, studies/nope.toml;"
        " fine: docs/protocol.md, [r](README.md), ../shared/data/cifar10.npz"
    )
    monkeypatch.setattr(__import__(__name__), "REPO_ROOT", tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "protocol.md").write_text("")
    (tmp_path / "README.md").write_text("")
    bad = {name for name, ok in _named_files(doc) if not ok}
    assert bad == {"../../protocol.md", "../shared/docs/notes.txt", "calibration.md", "studies/nope.toml"}


def test_documents_do_not_refer_to_how_the_work_was_organised():
    """No issue numbers, sessions or agents: a reader of the repository has none of them."""
    files = (
        DOCUMENTS + sorted((REPO_ROOT / "forgetting").rglob("*.py")) + sorted((REPO_ROOT / "benchmarks").glob("*.py"))
    )
    pattern = re.compile(r"\bissue ?#?\d+|\bsessions?\b|\bagents?\b", re.IGNORECASE)
    hits = [f"{f.relative_to(REPO_ROOT)}: {m.group(0)}" for f in files for m in pattern.finditer(f.read_text())]
    assert not hits, "\n".join(hits)


def test_readme_opens_with_the_install_and_test_commands_ci_runs():
    """.ci/run installs as README's command 1 does (without its torch index and download) and runs its
    command 2, the tests, verbatim."""
    first_block = (REPO_ROOT / "README.md").read_text().split("```bash\n", 1)[1].split("```", 1)[0]
    commands = [line for line in first_block.splitlines() if line and not line.startswith("#")]
    ci = [
        line
        for line in (REPO_ROOT / ".ci" / "run").read_text().splitlines()
        if line and not line.startswith(("#", "set ", "cd ", "export "))
    ]
    assert len(commands) == 2 and len(ci) == 3 and ci[2].endswith("forgetting figures --check --store results")
    assert commands[0].startswith("git clone ") and commands[0].endswith("forgetting sweep-lr quick")
    for step in ci[0].split(" && "):  # CI's install: command 1's steps, in its order
        assert f" {step} " in f" {commands[0]} ", step
    assert "--index-url https://download.pytorch.org/whl/cpu" in commands[0]  # no CUDA wheels on a CPU machine
    assert commands[1] == ci[1]


def test_readme_fits_one_screen_and_links_only_what_exists():
    readme = (REPO_ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 80
    links = re.findall(r"\]\(([^)\s]+)\)", readme)
    assert len(links) >= 8 and all((REPO_ROOT / link.split("#")[0]).exists() for link in links), links


# The terms of the findings' statistics and designs: each must be used in the findings and defined in
# the glossary (a term added to the findings joins this list and the glossary together).
FINDINGS_TERMS = [
    "claim (a)", "probe", "epoch age", "`full-aug`", "cell", "design", "gap", "tau", "alpha",
    "half-rise age", "clock", "noise scale", "turn-up", "m\\*", "final snapshot", "last-5 mean",
    "fit check", "degenerate", "interval", "resample", "pre-registered", "amendment",
]


def glossary_terms(text: str) -> list[str]:
    """The terms a glossary defines: each '**term**:' at the start of an item or after its '; '."""
    glossary = text.split("\n## Glossary\n", 1)[1]
    return re.findall(r"(?:^- |; )\*\*(.+?)\*\*:", glossary, re.M)


def test_the_glossary_defines_every_term_of_the_findings_once():
    text = (REPO_ROOT / "docs" / "findings.md").read_text()
    terms = glossary_terms(text)
    assert len(terms) == len(set(terms)), [t for t in terms if terms.count(t) > 1]
    findings = text.split("\n## Glossary\n", 1)[0].lower()
    for term in FINDINGS_TERMS:
        assert term in terms, f"{term!r} is not defined in the glossary"
        word = term.strip("`").replace("\\*", "*").lower()
        assert word in findings or word in (REPO_ROOT / "results" / "README.md").read_text().lower(), word


def test_the_glossary_check_sees_a_term_defined_twice():
    text = "x\n## Glossary\n\n- **tau**: one.\n- **alpha**: two; **tau**: again.\n"
    assert glossary_terms(text) == ["tau", "alpha", "tau"]
