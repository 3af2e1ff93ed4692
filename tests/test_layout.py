"""The package's shape rules: files under 400 lines, functions under 80, and imports that only run
downward (the import graph has no cycle, and the ground floor imports nothing of ours but errors)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from helpers import REPO_ROOT

PACKAGE = REPO_ROOT / "forgetting"
MAX_FILE_LINES, MAX_FUNCTION_LINES = 400, 80
GROUND_FLOOR = {"errors", "lr_settings", "schedules", "shards", "store", "timelimit"}
# The data sets and networks import nothing of ours but errors and each other's own modules.
GROUND_PACKAGES = ("datasets", "nets")


def _modules() -> dict[str, Path]:
    return {".".join(p.relative_to(PACKAGE).with_suffix("").parts): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path, known: set[str]) -> set[str]:
    """The package's modules that ``path`` imports, at module level or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "forgetting":
            base = node.module.removeprefix("forgetting").lstrip(".")
            found |= {f"{base}.{a.name}".lstrip(".") for a in node.names} | {base}
        elif isinstance(node, ast.Import):
            found |= {a.name.removeprefix("forgetting.") for a in node.names if a.name.startswith("forgetting.")}
    return {m for m in found if m in known}


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    known = set(mods) - {"__init__"}
    return {m: _imports(p, known) - {m} for m, p in mods.items() if not m.endswith("__init__")}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as the modules along it, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(m: str, path: list[str]) -> list[str] | None:
        state[m] = 1
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                return path[path.index(d) :] + [d] if d in path else [m, d]
            if d not in state and (found := visit(d, path + [d])):
                return found
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m, [m])):
            return found
    return None


def test_files_stay_under_400_lines():
    long = {m: n for m, p in _modules().items() if (n := len(p.read_text().splitlines())) > MAX_FILE_LINES}
    assert not long, f"modules over {MAX_FILE_LINES} lines: {long}"


def test_functions_stay_under_80_lines():
    long = []
    for m, p in _modules().items():
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{m}.{node.name} ({n} lines)")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_imports_only_run_downward():
    graph = _graph()
    assert GROUND_FLOOR <= set(graph), "a ground-floor module was renamed: update GROUND_FLOOR"
    assert _cycle(graph) is None, f"import cycle: {' -> '.join(_cycle(graph))}"
    upward = {m: sorted(graph[m] - {"errors"}) for m in GROUND_FLOOR if graph[m] - {"errors"}}
    assert not upward, f"the ground floor imports more of ours than errors: {upward}"
    for package in GROUND_PACKAGES:
        members = {m for m in graph if m.startswith(f"{package}.")}
        assert members, f"no modules in {package}/: update GROUND_PACKAGES"
        outside = {
            m: sorted(graph[m] - members - {"errors", package})
            for m in members
            if graph[m] - members - {"errors", package}
        }
        assert not outside, f"{package}/ imports more of ours than errors: {outside}"


@pytest.mark.parametrize(
    "graph, cycle",
    [({"a": {"b"}, "b": {"c"}, "c": set()}, None), ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"])],
)
def test_the_cycle_check_finds_a_cycle_and_only_one(graph, cycle):
    assert _cycle(graph) == cycle
