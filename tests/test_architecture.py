"""seqcli's imports go one way, read from the source (imports inside functions included).

`ORDER` lists seqcli's modules and packages, lowest first: each imports only from those
before it (and within itself). The kernels sit low because they take plain arrays and know
nothing of layers; the layers call them in their forward and backward passes.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "seqcli"

ORDER = [
    "seqcli.errors", "seqcli.forkserver", "seqcli.shapes", "seqcli.activations", "seqcli.io",
    "seqcli.kernels",
    "seqcli.layers",
    "seqcli.config",
    "seqcli.build", "seqcli.summary",
    "seqcli.runtime",
    "seqcli.training", "seqcli.interop", "seqcli.benchmark", "seqcli.visual", "seqcli.api",
    "seqcli.dask",
    "seqcli.warmup", "seqcli.cli", "seqcli.__main__",
]
"""seqcli's modules and packages in import order, lowest first."""
API = "seqcli"
"""The package itself: the Python API's façade, which imports on use from anywhere; others take
only `__version__` from it."""


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _imports(path: Path):
    """(imported module, imported names, line) of every seqcli import in the file."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "seqcli":
                    yield alias.name, [], node.lineno
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and node.module.split(".")[0] == "seqcli":
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                if _is_module(full):  # `from seqcli import layers`: the module itself
                    yield full, [], node.lineno
                else:
                    yield node.module, [alias.name], node.lineno


def _graph():
    graph: dict[str, list] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        graph[_module_name(path)] = list(_imports(path))
    return graph


GRAPH = _graph()


def _rank(module: str) -> int | None:
    """The module's place in ORDER (that of its package, for a module inside one)."""
    return next((index for index, entry in enumerate(ORDER)
                 if module == entry or module.startswith(entry + ".")), None)


def test_every_module_has_a_place_in_the_order():
    assert [m for m in GRAPH if m != API and _rank(m) is None] == []


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if m != API))
def test_imports_go_one_way(module):
    rank = _rank(module)
    wrong = []
    for target, names, line in GRAPH[module]:
        if target == API:
            if names != ["__version__"]:
                wrong.append(f"line {line}: {target} {names} (only __version__ comes from it)")
        elif _rank(target) is None or _rank(target) > rank:
            wrong.append(f"line {line}: {target}")
    assert wrong == [], f"{module} imports from modules above it: {wrong}"


def test_no_private_name_is_imported_from_another_package():
    def package(module: str) -> str:
        return module if (PACKAGE.parent / module.replace(".", "/") / "__init__.py").is_file() \
            else module.rpartition(".")[0]

    wrong = [f"{module}: {name} from {target}"
             for module, imports in GRAPH.items() for target, names, _ in imports
             for name in names
             if name.startswith("_") and not name.startswith("__")
             and package(target) != package(module)]
    assert wrong == []


def test_no_import_cycle():
    edges = {module: {target for target, names, _ in imports
                      if target in GRAPH and not (target == API and names == ["__version__"])}
             for module, imports in GRAPH.items()}
    # a package's __init__ is imported with each of its modules: no edge needed for that
    state: dict[str, int] = {}
    cycles = []

    def visit(module, trail):
        state[module] = 1
        for target in sorted(edges[module]):
            if state.get(target) == 1:
                cycles.append(trail[trail.index(target):] + [target])
            elif target not in state:
                visit(target, trail + [target])
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert cycles == []
