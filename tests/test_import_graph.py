"""The package's import graph: no cycle, and the layers the design forbids stay apart.

Every module of ``src/medseg`` is parsed (``ast``), including imports inside functions and under
``TYPE_CHECKING``: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import medseg

ROOT = Path(medseg.__file__).parent

#: (importer prefix, imported prefix): edges that must never exist
FORBIDDEN = [
    ("medseg.inference", "medseg.training"),
    ("medseg.training", "medseg.inference"),
    ("medseg.model_folder", "medseg.training"),
    ("medseg.model_folder", "medseg.inference"),
    ("medseg.model_folder", "medseg.cli"),
    ("medseg.preprocessing", "medseg.training"),
    ("medseg.preprocessing", "medseg.inference"),
    ("medseg.tiling", "medseg.training"),
    ("medseg.tiling", "medseg.inference"),
    ("medseg.planning", "medseg.training"),
    ("medseg.planning", "medseg.inference"),
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path, name: str) -> set[str]:
    """Every ``medseg`` module ``path`` imports (absolute or relative, at any depth)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "medseg")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.split(".")[0] != "medseg":
                continue
            out.add(module)
            # `from medseg.x import y` may import the submodule medseg.x.y
            out.update(f"{module}.{a.name}" for a in node.names)
    return out


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in ROOT.rglob("*.py")}
    edges = {}
    for name, path in modules.items():
        targets = {t for t in imports_of(path, name) if t in modules and t != name}
        edges[name] = targets
    return edges


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """A cycle of modules (first == last), ignoring a package's imports of its own submodules and
    submodules' imports of their package's ``__init__`` (re-exports, not dependencies)."""
    def real(a: str, b: str) -> bool:
        return not (_within(b, a) or _within(a, b))

    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if not real(node, nxt):
                continue
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_graph_parses_function_level_imports():
    edges = graph()
    # training/data.py imports the memory check inside a function: the edge must be seen
    assert "medseg.planning.machine" in edges["medseg.training.data"]
    assert len(edges) > 100


def test_no_forbidden_edges():
    bad = [(a, b) for a, targets in graph().items() for b in targets
           for src, dst in FORBIDDEN if _within(a, src) and _within(b, dst)]
    assert not bad, "forbidden imports: " + ", ".join(f"{a} -> {b}" for a, b in bad)


def cycles(edges: dict[str, set[str]]) -> list[set[str]]:
    """Every set of modules that import each other (strongly connected components of more than one module),
    with the same exclusions as :func:`find_cycle`."""
    real = {a: {b for b in bs if not (_within(b, a) or _within(a, b))} for a, bs in edges.items()}
    out = []
    for start in sorted(real):
        if any(start in c for c in out):
            continue
        reach = _reachable(real, start)
        component = {m for m in reach if start in _reachable(real, m)}
        if len(component) > 1:
            out.append(component)
    return out


def _reachable(edges: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = {start}, [start]
    while todo:
        for nxt in edges.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_no_import_cycle():
    found = cycles(graph())
    assert not found, "import cycle(s): " + "; ".join(" <-> ".join(sorted(c)) for c in found)


def test_cycle_finder_finds_a_planted_cycle():
    edges = {"medseg.a": {"medseg.b"}, "medseg.b": {"medseg.c"}, "medseg.c": {"medseg.a"}}
    assert find_cycle(edges) == ["medseg.a", "medseg.b", "medseg.c", "medseg.a"]
    assert find_cycle({"medseg.a": {"medseg.b"}, "medseg.b": set()}) is None
    assert cycles({**edges, "medseg.d": {"medseg.a"}}) == [{"medseg.a", "medseg.b", "medseg.c"}]
