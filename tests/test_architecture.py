"""The shape of the code: no import cycle among bench/'s modules, and no module of bench/,
defenses/ or baselines/ over 300 lines.

The import graph is read from the source (ast), not by importing: every `import` and
`from ... import` of a bench module counts, at module level or inside a function (a late
import hides a cycle from Python, not from the design), except those under
`if TYPE_CHECKING:`, which never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 300


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((ROOT / "bench").rglob("*.py"))}


def _type_checking_only(tree: ast.AST) -> set[int]:
    """ids of the import nodes under `if TYPE_CHECKING:` (never executed)."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            out |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return out


def import_graph() -> dict[str, set[str]]:
    """Each bench module and the bench modules it imports."""
    mods = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        tree = ast.parse(path.read_text(), str(path))
        skip = _type_checking_only(tree)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name in mods}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the package, up level - 1
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                for a in node.names:  # `from pkg import submodule` imports the submodule
                    target = f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base
                    if target in mods:
                        deps.add(target)
        deps.discard(name)
        graph[name] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def test_the_graph_sees_the_imports_that_matter():
    """What the cycle test relies on: module-level, function-level and relative imports
    are edges; TYPE_CHECKING ones are not."""
    g = import_graph()
    assert "bench.executor" in g["bench.scheduler"]  # module level
    assert "bench.executor" in g["bench.parallel"]  # inside the worker function
    assert "bench.parallel" in g["bench.scheduler"]  # inside Scheduler.run
    assert "bench.leaderboard.render" in g["bench.leaderboard"]  # from a package's __init__
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_executor_depends_on_no_scheduler():
    g = import_graph()
    for mod in ("bench.executor", "bench.examples", "bench.record", "bench.store"):
        assert not g[mod] & {"bench.scheduler", "bench.parallel", "bench.runner"}, mod


def test_no_import_cycle_among_bench_modules():
    found = cycles(import_graph())
    assert not found, "import cycles among bench modules: " + "; ".join(" <-> ".join(c) for c in found)


def _long_modules() -> list[str]:
    out = []
    for top in ("bench", "defenses", "baselines"):
        for p in sorted((ROOT / top).rglob("*.py")):
            n = len(p.read_text().splitlines())
            if n > MAX_LINES:
                out.append(f"{p.relative_to(ROOT)} ({n} lines)")
    return out


def test_no_module_over_300_lines():
    long = _long_modules()
    assert not long, f"modules over {MAX_LINES} lines: " + ", ".join(long)
