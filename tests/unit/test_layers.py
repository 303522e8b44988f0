"""The package layers, checked on the source: no upward import, no import cycle.

Layers, bottom up: ``errors``/``config``/``logs`` ← ``wire`` ← ``kafka`` ← the user modules
(``asyncresult`` ← ``workflows`` ← ``task`` ← ``app``) ← ``worker``, ``scheduler``, ``ops`` ←
``cli``. Every import is looked at, function-level ones included (a function-local import is
still a dependency); only the imports under ``if TYPE_CHECKING:`` are not, since they never run.
The cycle check is over module-level runtime imports between modules of the package.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamtasks import App, TaskFailure

ROOT = Path(__file__).resolve().parents[2] / "streamtasks"
PACKAGE = "streamtasks"

#: the leaf modules every layer may use (errors, settings, log configuration)
BASE = ("streamtasks.errors", "streamtasks.config", "streamtasks.logs")
#: what each lower layer may import from the package
ALLOWED_BELOW = {
    "streamtasks.wire": (*BASE, "streamtasks.wire"),
    "streamtasks.kafka": (*BASE, "streamtasks.wire", "streamtasks.kafka"),
}
#: what the worker must never import
WORKER_BANNED = ("streamtasks.workflows", "streamtasks.asyncresult", "streamtasks.cli")
#: imports the worker split removes (the integrator deletes these entries with it)
UNTIL_WORKER_SPLIT: set[tuple[str, str]] = set()


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _imports(module: str, path: Path, *, top_level_only: bool) -> Iterator[tuple[str, int]]:
    """(imported module, line) for every runtime import of ``module``."""
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    known = _modules()

    def visit(nodes: list[ast.stmt]) -> Iterator[tuple[str, int]]:
        for node in nodes:
            if isinstance(node, ast.If) and _is_type_checking(node.test):
                yield from visit(node.orelse)
                continue
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield alias.name, node.lineno
            elif isinstance(node, ast.ImportFrom):
                target = _resolve(module, is_package, node)
                yield target, node.lineno
                for alias in node.names:  # `from streamtasks.kafka import reader`
                    sub = f"{target}.{alias.name}"
                    if sub in known:
                        yield sub, node.lineno
            if top_level_only and isinstance(
                node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
            ):
                if isinstance(node, ast.ClassDef):
                    yield from visit(node.body)
                continue
            for field in ("body", "orelse", "finalbody", "handlers"):
                inner = getattr(node, field, None)
                if isinstance(inner, list) and inner and isinstance(inner[0], ast.stmt):
                    yield from visit(inner)
                elif field == "handlers" and isinstance(inner, list):
                    for handler in inner:
                        yield from visit(handler.body)

    yield from visit(tree.body)


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _upward_imports() -> list[str]:
    problems: list[str] = []
    for module, path in _modules().items():
        for target, line in _imports(module, path, top_level_only=False):
            if not _within(target, (PACKAGE,)):
                continue
            where = f"{path.relative_to(ROOT.parent)}:{line}: {module} imports {target}"
            for layer, allowed in ALLOWED_BELOW.items():
                if _within(module, (layer,)) and not _within(target, allowed):
                    problems.append(f"{where} (above {layer})")
            if (
                _within(module, ("streamtasks.worker",))
                and _within(target, WORKER_BANNED)
                and (module, target) not in UNTIL_WORKER_SPLIT
            ):
                problems.append(f"{where} (the worker must not depend on it)")
    return problems


def test_no_layer_imports_upward() -> None:
    assert _upward_imports() == []


def _graph(*, top_level_only: bool = True) -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        for target, _line in _imports(module, path, top_level_only=top_level_only):
            if target in modules and target != module:
                graph[module].add(target)
    return graph


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            # a package's __init__ importing its own submodules is not a cycle
            if nxt.startswith(node + "."):
                continue
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state:
                found = dfs(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = dfs(node)
            if found:
                return found
    return None


def test_no_import_cycle_at_runtime() -> None:
    cycle = _find_cycle(_graph())
    assert cycle is None, " -> ".join(cycle or [])


def test_no_import_cycle_hidden_behind_function_level_imports() -> None:
    graph = _graph(top_level_only=False)
    for module in [m for m in graph if _within(m, ("streamtasks.cli",))]:
        graph[module] = set()  # the CLI imports lazily on purpose (start-up time) and is on top
    cycle = _find_cycle(graph)
    assert cycle is None, " -> ".join(cycle or [])


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import x\n", {"x"}),
        ("if TYPE_CHECKING:\n    import y\n", set()),
        ("def f():\n    import z\n", {"z"}),
    ],
)
def test_the_walker_sees_function_level_imports_and_skips_type_checking(
    tmp_path: Path, source: str, expected: set[str]
) -> None:
    path = tmp_path / "m.py"
    path.write_text(source)
    assert {t for t, _ in _imports("m", path, top_level_only=False)} == expected


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _find_cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_a_moved_wire_record_keeps_its_avro_name() -> None:
    # Given TaskFailure, defined in wire/records.py since the layout change
    app = App("names", bootstrap_servers="127.0.0.1:1")

    @app.task(name="errback")
    def errback(failure: TaskFailure) -> None: ...

    # Then its Avro record name is the one events queued before the move carry
    schema = json.dumps(app.tasks["errback"].signature.record_schema)
    assert "streamtasks_workflows_TaskFailure" in schema
