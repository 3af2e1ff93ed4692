"""Repository hygiene: documentation and code name no path of one machine."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
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
