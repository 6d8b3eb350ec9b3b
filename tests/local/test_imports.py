"""The local tooling (``local/sirlocal``) has no import cycles, type-only imports included.

Why: a cycle hides which module is the core and which builds on it (issue 17:
the emulator's core and its HTTP handler imported each other, one side under
``TYPE_CHECKING``). The graph is read from the source with :mod:`ast`, so an
import under ``if TYPE_CHECKING:`` counts like any other module-level one; an
import inside a function (deferred on purpose, e.g. of the built artifact's
package) does not.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parent.parent.parent / "local"
PACKAGE = "sirlocal"


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _top_level_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Imports at module level and in module-level ``if`` blocks (``TYPE_CHECKING``)."""
    found: list[ast.Import | ast.ImportFrom] = []
    pending: list[ast.stmt] = list(tree.body)
    while pending:
        node = pending.pop(0)
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        elif isinstance(node, ast.If | ast.Try):
            pending += [*node.body, *node.orelse]
            pending += [s for h in getattr(node, "handlers", []) for s in h.body]
    return found


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    return ".".join([*base, *([node.module] if node.module else [])])


def import_graph(root: Path = ROOT, package: str = PACKAGE) -> dict[str, set[str]]:
    """Each module of ``package`` under ``root`` and the package's modules it imports."""
    paths = {_module_name(root, p): p for p in (root / package).rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in paths}
    for name, path in paths.items():
        is_package = path.name == "__init__.py"
        for node in _top_level_imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                source = _resolve(node, name, is_package)
                # ``from pkg import sub`` imports the submodule ``pkg.sub``.
                targets = [
                    f"{source}.{a.name}" if f"{source}.{a.name}" in paths else source
                    for a in node.names
                ]
            graph[name] |= {t for t in targets if t in paths and t != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One cycle of ``graph`` (its modules, the first repeated last), or [] when acyclic."""
    done: set[str] = set()
    for start in sorted(graph):
        path: list[str] = []
        on_path: set[str] = set()
        stack: list[tuple[str, list[str]]] = [(start, sorted(graph[start]))]
        path.append(start)
        on_path.add(start)
        while stack:
            node, rest = stack[-1]
            if not rest:
                stack.pop()
                path.pop()
                on_path.discard(node)
                done.add(node)
                continue
            nxt = rest.pop(0)
            if nxt in on_path:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in done:
                stack.append((nxt, sorted(graph[nxt])))
                path.append(nxt)
                on_path.add(nxt)
    return []


def test_the_graph_sees_the_package_and_type_only_imports(tmp_path: Path) -> None:
    """The check can fail: a cycle closed only under ``TYPE_CHECKING`` is found."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "core.py").write_text("from pkg.handler import Handler\n")
    (package / "handler.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from pkg.core import Core\n"
        "def later() -> None:\n"
        "    from pkg import core  # deferred: not an edge\n"
    )
    graph = import_graph(tmp_path, "pkg")
    assert graph == {"pkg": set(), "pkg.core": {"pkg.handler"}, "pkg.handler": {"pkg.core"}}
    assert find_cycle(graph) == ["pkg.core", "pkg.handler", "pkg.core"]
    assert find_cycle({"a": {"b"}, "b": set()}) == []


def test_the_local_tooling_has_no_import_cycle() -> None:
    graph = import_graph()
    assert {"sirlocal.emulator.core", "sirlocal.emulator.httpapi", "sirlocal.driver"} <= set(graph)
    assert "sirlocal.emulator.httpapi" in graph["sirlocal.emulator.core"]
    assert find_cycle(graph) == []
