"""The floor plan of docs/ARCHITECTURE.md holds: imports only run the way its table allows, no
module imports itself round a circle, and no file or function grows too big to read."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "salclass"
MAX_FILE_LINES = 450
MAX_FUNCTION_LINES = 80


def layer_table(text: str) -> dict[str, set[str]]:
    """The 'package | may import' table of docs/ARCHITECTURE.md as {package: allowed packages}."""
    rows = re.findall(r"^\| *([a-z]+) *\| *([a-z, ]+?) *\|$", text, flags=re.M)
    table = {pkg: {p.strip() for p in allowed.split(",")} for pkg, allowed in rows}
    if "floor" not in table or "cli" not in table:
        raise AssertionError("docs/ARCHITECTURE.md: no 'package | may import' table with floor and cli rows")
    return table


def modules(src: Path) -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its __init__)."""
    found = {}
    for path in sorted(src.rglob("*.py")):
        parts = list(path.relative_to(src.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def package_of(module: str) -> str:
    """The row of the table a module belongs to: its subpackage, 'cli', or 'floor'."""
    parts = module.split(".")
    if len(parts) == 1:
        return "floor"
    if parts[1] == "cli":
        return "cli"
    is_subpackage = (SRC / parts[1]).is_dir()
    return parts[1] if is_subpackage else "floor"


def imports(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The salclass modules `module` imports anywhere in its file, relative imports resolved;
    `from pkg import name` counts as importing pkg.name when that is a module, else pkg."""
    tree = ast.parse(path.read_text(), filename=str(path))
    here = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "salclass"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(here[: len(here) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base.split(".")[0] != "salclass":
                continue
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    found.discard(module)
    return found


def graph(src: Path = SRC) -> dict[str, set[str]]:
    known = modules(src)
    return {m: imports(m, p, known) for m, p in known.items()}


def against_table(edges: dict[str, set[str]], table: dict[str, set[str]]) -> list[str]:
    wrong = []
    for module, targets in sorted(edges.items()):
        mine = package_of(module)
        for target in sorted(targets):
            theirs = package_of(target)
            if theirs != mine and theirs not in table.get(mine, set()):
                wrong.append(f"{module} imports {target} ({mine} may import {', '.join(sorted(table[mine]))})")
    return wrong


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Import circles between modules. A package importing its own modules from __init__ is not one:
    the edge from a module to the package that contains it is left out (Python loads the package first)."""
    def parents(m):
        return {".".join(m.split(".")[:i]) for i in range(1, m.count(".") + 1)}

    graph_ = {m: {t for t in ts if t in edges and t not in parents(m)} for m, ts in edges.items()}
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph_[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph_):
        if v not in index:
            visit(v)
    return found


def too_big(src: Path = SRC) -> list[str]:
    big = []
    for path in sorted(src.rglob("*.py")):
        text = path.read_text()
        rel = path.relative_to(src.parent)
        if len(text.splitlines()) > MAX_FILE_LINES:
            big.append(f"{rel}: {len(text.splitlines())} lines (at most {MAX_FILE_LINES})")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    big.append(f"{rel}:{node.lineno} {node.name}: {length} lines (at most {MAX_FUNCTION_LINES})")
    return big


@pytest.fixture(scope="module")
def edges():
    return graph()


def test_imports_follow_the_table(edges):
    table = layer_table((ROOT / "docs" / "ARCHITECTURE.md").read_text())
    assert set(table) >= {package_of(m) for m in edges}, "a package of src/ has no row in the table"
    assert against_table(edges, table) == []


def test_no_import_cycles(edges):
    assert cycles(edges) == []


def test_no_room_too_big():
    assert too_big() == []


def test_the_checks_catch_what_they_guard(tmp_path):
    """Each rule fires on a planted case, so a passing run means the rules held, not that they went blind."""
    pkg = tmp_path / "salclass"
    for sub in ("models", "saliency"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "models" / "net.py").write_text("def f():\n    from salclass.saliency import maps\n")
    (pkg / "saliency" / "maps.py").write_text("from . import other\n")
    (pkg / "saliency" / "other.py").write_text("import salclass.saliency.maps\n" + "x = 1\n" * MAX_FILE_LINES)
    (pkg / "saliency" / "long.py").write_text("def g():\n" + "    pass\n" * MAX_FUNCTION_LINES)
    e = graph(pkg)
    table = {"floor": {"floor"}, "models": {"floor"}, "saliency": {"floor", "models"}}
    assert e["salclass.models.net"] == {"salclass.saliency.maps"}
    wrong = [w.split(" (")[0] for w in against_table(e, table)]
    assert wrong == ["salclass.models.net imports salclass.saliency.maps"]
    assert cycles(e) == [["salclass.saliency.maps", "salclass.saliency.other"]]
    assert [b.split(":")[0] for b in too_big(pkg)] == ["salclass/saliency/long.py", "salclass/saliency/other.py"]
