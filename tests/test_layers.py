"""The import contract: each package of sepzoo imports only from the layers below it, and no
module imports another that imports it back.

Read from the source with ``ast`` (imports inside functions count too), so the test needs
nothing installed and names the file and line of every breach.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "sepzoo"

# Bottom to top. A package may import its own modules, the core and any package of a lower
# layer; packages of one layer stay independent of each other.
LAYERS: list[set[str]] = [
    {"core"},  # sepzoo/__init__.py, errors.py, registry.py, schema.py
    {"io", "dsp"},
    {"deploy"},  # exported models' NumPy runtime: never imports torch
    {"models"},
    {"engine", "data", "export"},
    {"evaluation"},
    {"training"},
    {"experiments", "convert"},
    {"cli"},
]
RANK = {package: rank for rank, layer in enumerate(LAYERS) for package in layer}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _package_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in ("errors", "registry", "schema"):
        return "core"
    return parts[1]


def _imports(path: Path, top_level_only: bool = False) -> list[tuple[str, int]]:
    """``(module, line)`` for every sepzoo module that ``path`` imports."""
    tree = ast.parse(path.read_text(), str(path))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = []
    for node in nodes:
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names if alias.name.startswith("sepzoo")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sepzoo"):
            found.append((node.module, node.lineno))
            # ``from sepzoo.evaluation import bsseval`` imports the module sepzoo.evaluation.bsseval.
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                if _source_of(candidate) is not None:
                    found.append((candidate, node.lineno))
    return found


def _source_of(module: str) -> Path | None:
    base = PACKAGE.parent.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


SOURCES = sorted(PACKAGE.rglob("*.py"))


def test_every_package_is_placed_in_a_layer():
    packages = {_package_of(_module_name(path)) for path in SOURCES}
    assert packages <= set(RANK), f"packages without a layer: {sorted(packages - set(RANK))}"


def test_no_layer_imports_a_layer_above_it_or_beside_it():
    breaches = []
    for path in SOURCES:
        here = _package_of(_module_name(path))
        for module, line in _imports(path):
            there = _package_of(module)
            if there == here or there == "core":
                continue
            if RANK[there] >= RANK[here]:
                where = path.relative_to(PACKAGE.parent)
                breaches.append(f"{where}:{line} ({here}) imports {module} ({there})")
    assert not breaches, "imports against the layers:\n" + "\n".join(breaches)


def test_no_import_cycle_between_modules():
    graph = {
        _module_name(path): {m for m, _ in _imports(path, top_level_only=True) if _source_of(m) is not None}
        for path in SOURCES
    }
    state: dict[str, int] = {}  # 1: on the current path, 2: finished

    def visit(module: str, trail: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph.get(module, ())):
            if target == module or target == module.rsplit(".", 1)[0]:
                continue  # a module and its own package's __init__
            if state.get(target) == 1:
                cycle = trail[trail.index(target) :] + [target] if target in trail else [module, target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target, [*trail, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_the_contract_catches_an_upward_import(tmp_path):
    # The checker itself: a models module importing the engine is a breach.
    source = tmp_path / "bad.py"
    source.write_text("from sepzoo.engine.apply import apply_model\n")
    (module, _), *_ = _imports(source)
    assert RANK[_package_of(module)] > RANK["models"]
