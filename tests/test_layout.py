"""House rules a review can miss: the import graph of `vizneuron` has no cycle, imports inside
functions are only for optional (or heavy, rarely used) dependencies and say why, and every module
imports on its own."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import vizneuron

from helpers import fresh_python

PACKAGE = Path(vizneuron.__file__).resolve().parent
#: third-party modules a function may import late, each with a comment on the line saying why
LATE_IMPORTS = ("timm", "lucent", "ray", "torchvision", "transformers", "open_clip", "pyarrow")
#: the package's own modules a module may import late, so that it stays torch-free (the CLI's parser)
LATE_OWN_IMPORTS = {"vizneuron.cli": {"vizneuron.commands"}, "vizneuron.optim.config": {"vizneuron.imageio"}}


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _module_level(tree: ast.Module):
    """Statements that run when the module is imported: not function bodies, not TYPE_CHECKING."""
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        yield node
        stack.extend(child for child in ast.iter_child_nodes(node) if isinstance(child, ast.stmt))


def import_graph() -> dict[str, set[str]]:
    """module -> the vizneuron modules importing it runs (packages' __init__ included)."""
    known = modules()
    graph = {}
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in _module_level(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                targets.add(base)
                targets.update(f"{base}.{alias.name}" for alias in node.names)
        # importing a.b.c also runs the packages a and a.b, unless they are this module's own
        # ancestors (those are initialised first anyway); a module named outright always counts
        ancestors = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        edges = {target for target in targets if target in known}
        for target in targets:
            parts = target.split(".")
            edges.update(prefix for prefix in (".".join(parts[:i]) for i in range(1, len(parts)))
                         if prefix in known and prefix not in ancestors)
        graph[name] = edges - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_the_import_graph_has_no_cycle():
    graph = import_graph()
    assert len(graph) > 30 and "vizneuron.units" in graph["vizneuron.optim.render"]
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle)
    assert "vizneuron" not in set().union(*(edges for name, edges in graph.items() if name != "vizneuron")), \
        "nothing inside the package may import the package root"


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_imports_inside_functions_are_optional_dependencies_with_a_reason():
    for name, path in modules().items():
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for inner in ast.walk(node):
                if isinstance(inner, (ast.Import, ast.ImportFrom)):
                    target = inner.module if isinstance(inner, ast.ImportFrom) else inner.names[0].name
                    where = f"{path.name}:{inner.lineno}"
                    if getattr(inner, "level", 0):
                        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
                        anchor = ".".join(package.split(".")[: package.count(".") + 2 - inner.level])
                        own = {f"{anchor}.{inner.module or alias.name}" for alias in inner.names}
                        assert own <= LATE_OWN_IMPORTS.get(name, set()), \
                            f"{where}: import {', '.join(own)} inside a function (move it to the top)"
                    else:
                        assert (target or "").split(".")[0] in LATE_IMPORTS, \
                            f"{where}: import {target} inside a function (move it to the top)"
                    assert "#" in lines[inner.lineno - 1] or "#" in lines[inner.lineno - 2], \
                        f"{where}: say why {target} is imported late"


@pytest.mark.parametrize("name", sorted(modules()))
def test_every_module_imports(name):
    importlib.import_module(name)


def test_the_package_loads_its_members_on_first_use():
    """`vizneuron` and `vizneuron.sae` import their members lazily (so the CLI's parser needs no
    torch), yet read like eager packages: a function named like its submodule stays the function,
    even after the submodule is imported directly, and `dir` lists every member."""
    code = ("import sys\nimport vizneuron as vz\nassert 'torch' not in sys.modules\n"
            "import vizneuron.mine.run, vizneuron.capture\n"
            "assert callable(vz.mine) and callable(vz.capture) and callable(vz.circuit) and callable(vz.shift)\n"
            "assert vz.objectives.__name__ == 'vizneuron.optim.objectives' and vz.sae.SAE.__name__ == 'SAE'\n"
            "assert set(vz.__all__) <= set(dir(vz)) and 'train_sae' in dir(vz.sae)\n"
            "try:\n    vz.nothing_here\nexcept AttributeError as err:\n    print('OK', err)\n")
    run = fresh_python(code)
    assert run.returncode == 0 and "OK module 'vizneuron' has no attribute 'nothing_here'" in run.stdout, run.stderr


def _imports(path: Path) -> list[tuple[str, list[str], int]]:
    """Every import of a file: (module, the names taken from it, line), wherever it stands."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, [], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            found.append((node.module or "", [alias.name for alias in node.names], node.lineno))
    return found


def test_only_the_app_imports_streamlit():
    outside = [f"{path.relative_to(PACKAGE.parent)}:{line}" for name, path in modules().items()
               if not name.startswith("vizneuron.app") for module, _, line in _imports(path)
               if module.split(".")[0] == "streamlit"]
    assert not outside, f"streamlit imported outside vizneuron/app: {outside}"
    entry = PACKAGE.parent / "streamlit_app.py"
    assert len(entry.read_text().splitlines()) < 30, "streamlit_app.py is only the entry: the app is vizneuron/app"


def test_the_app_reaches_the_library_through_public_names_and_stays_small():
    """The app is a view: it imports the library's public names only (a package's `__all__`, or a
    module's names without a leading underscore; never a package's inner modules such as
    `vizneuron.shift.run`), and no module of it grows past 250 lines."""
    known = modules()
    exported = {name: set(getattr(importlib.import_module(name), "__all__", ()))
                for name, path in known.items() if path.name == "__init__.py"}
    app = {name: path for name, path in known.items() if name.startswith("vizneuron.app")}
    assert len(app) > 8
    for path in app.values():
        assert len(path.read_text().splitlines()) <= 250, f"{path.name} is over 250 lines: split it"
        for module, names, line in _imports(path):
            if not module.startswith("vizneuron") or module.startswith("vizneuron.app"):
                continue
            where = f"{path.relative_to(PACKAGE.parent)}:{line}"
            assert module != "vizneuron", f"{where}: import from the package's modules, not its lazy root"
            assert not any(n.startswith("_") for n in names), f"{where}: a private name of {module}"
            inside = [p for p in exported if module.startswith(p + ".") and exported[p] and p != "vizneuron"]
            assert not inside, f"{where}: {module} is inside {inside[0]}; import its public names from {inside[0]}"
            if module in exported and exported[module]:
                assert set(names) <= exported[module], f"{where}: {set(names) - exported[module]} not in __all__"
