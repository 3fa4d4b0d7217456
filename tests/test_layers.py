"""The package's shape: layers that only import downwards, no import circle, no private
Optuna or Ray module. Read from the source with ``ast`` (lazy imports inside functions count)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "placement_search"

#: the floors, lowest first; a module may import its own floor and the ones below it
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundation", ("_version", "errors", "fields", "limits", "devices", "progressbar", "pareto")),
    ("vocabulary", ("ops", "placement", "cost")),
    ("backbones", ("backbones",)),
    ("models and data", ("enumerate", "space", "catalog", "latency", "arch_json", "architecture", "train", "data")),
    ("ground-truth table as data", ("table",)),
    ("running studies", ("study",)),
    ("looking at studies", ("inspect",)),
    ("command line", ("cli", "__main__")),
]
#: import paths kept for scripts written against earlier releases; nothing inside imports them
COMPAT = ("search", "analysis", "export")


def _module(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every ``placement_search`` module ``path`` imports, resolved to absolute names."""
    mod = _module(path)
    pkg = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [f"{target}.{a.name}" for a in node.names]
            found.update([target, *names])
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


def _sources() -> dict[str, Path]:
    return {_module(p): p for p in sorted(ROOT.rglob("*.py"))}


def _internal(name: str, modules: set[str]) -> str | None:
    """The package module that ``name`` (a module or a name inside one) is, or None."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def _floor(module: str) -> int | None:
    parts = module.split(".")
    if len(parts) == 1:
        return None  # the package root re-exports the public API
    for i, (_, tops) in enumerate(LAYERS):
        if parts[1] in tops:
            return i
    return None


def _graph() -> dict[str, set[str]]:
    src = _sources()
    modules = set(src)
    graph: dict[str, set[str]] = {}
    for mod, path in src.items():
        deps = {_internal(n, modules) for n in _imports(path) if n.startswith("placement_search")}
        graph[mod] = {d for d in deps if d and d != mod and d != "placement_search"}
    return graph


def test_every_internal_import_names_a_module():
    """``from .x import y`` inside the package: ``.x`` is a module (catches a relative import
    left pointing at an old place, which would only fail when its function runs)."""
    src = _sources()
    bad = []
    for mod, path in src.items():
        pkg = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                if target not in src:
                    bad.append(f"{mod}:{node.lineno}: {'.' * node.level}{node.module or ''} ({target})")
    assert not bad, "imports of modules that do not exist:\n" + "\n".join(bad)


def test_every_module_has_a_floor():
    tops = {t for _, ts in LAYERS for t in ts} | set(COMPAT)
    unplaced = sorted(m for m in _sources() if m.count(".") >= 1 and m.split(".")[1] not in tops)
    assert not unplaced, f"modules on no floor (add them to LAYERS): {unplaced}"


def test_imports_only_point_down():
    bad = []
    for mod, deps in _graph().items():
        here = _floor(mod)
        if mod.split(".")[1:2] and mod.split(".")[1] in COMPAT:
            continue
        for dep in deps:
            if dep.split(".")[1] in COMPAT:
                bad.append(f"{mod} imports the compatibility path {dep}")
                continue
            there = _floor(dep)
            if here is not None and there is not None and there > here:
                bad.append(f"{mod} ({LAYERS[here][0]}) imports {dep} ({LAYERS[there][0]})")
    assert not bad, "\n".join(sorted(bad))


def test_no_import_circle():
    graph = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
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
            # a package and its own submodules (``pkg/__init__`` re-exporting) are not a circle
            if len(comp) > 1 and not all(c.startswith(min(comp, key=len)) for c in comp):
                cycles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, f"import circles: {cycles}"


@pytest.mark.parametrize("library", ["optuna", "ray"])
def test_no_private_optuna_or_ray_module(library):
    """Only public APIs: no ``optuna._hypervolume``, ``optuna.storages._rdb``, ``ray._private``."""
    users = []
    for mod, path in _sources().items():
        for name in _imports(path):
            parts = name.split(".")
            if parts[0] == library and any(p.startswith("_") for p in parts[1:]):
                users.append(f"{mod}: {name}")
    assert not users, f"private modules imported: {users}"


def test_architecture_needs_neither_optuna_nor_ray():
    """An exported folder rebuilds with torch alone: ``architecture`` and everything it imports
    stay clear of optuna and ray."""
    src = _sources()
    graph = _graph()
    seen, todo = set(), ["placement_search.architecture"]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        todo.extend(graph.get(m, ()))
    heavy = sorted(
        f"{m} imports {n}" for m in seen for n in _imports(src[m]) if n.split(".")[0] in ("optuna", "ray", "sqlalchemy")
    )
    assert not heavy, heavy


#: the house's room sizes (docs/architecture.md): a file a newcomer can read in one sitting, a
#: function that fits on a screen; a function's docstring does not count against it
MAX_FILE_LINES = 500
MAX_FUNCTION_LINES = 60


def _code_lines(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    total = (fn.end_lineno or fn.lineno) - fn.lineno + 1
    first = fn.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        total -= (first.end_lineno or first.lineno) - first.lineno + 1
    return total


def test_rooms_stay_small():
    too_long = []
    for name, path in sorted(_sources().items()):
        source = path.read_text()
        if len(source.splitlines()) > MAX_FILE_LINES:
            too_long.append(f"{name}: {len(source.splitlines())} lines (at most {MAX_FILE_LINES})")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _code_lines(node) > MAX_FUNCTION_LINES:
                too_long.append(
                    f"{name}:{node.lineno} {node.name}: {_code_lines(node)} lines without its docstring "
                    f"(at most {MAX_FUNCTION_LINES})"
                )
    assert not too_long, "split these:\n" + "\n".join(too_long)
