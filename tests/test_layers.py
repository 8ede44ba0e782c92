"""The import graph of gpudl follows the layer order of the design notes: no cycle between units, no arrow upward.

A unit is gpudl.<first component> (gpudl.functional.conv belongs to `functional`, gpudl.optim is `optim`); each
module's imports are read from its source with ast (relative ones resolved, imports inside functions included), so
nothing is imported but the packages whose modules are walked. gpudl/__init__.py and gpudl/__main__.py are the top:
they may import anything, and nothing may import them.
"""
import ast
import importlib
import importlib.util
import pkgutil

import pytest

# Lowest first; a module imports only from its own unit or a lower one. Units not written yet are allowed here.
LAYERS = ["backend", "geometry", "kernels", "cpu", "functional", "gradient_check", "readers", "serialization", "data",
          "nn", "optim", "distributed", "models", "train", "onnx", "experiments", "bench", "cli"]
TOP = {"gpudl", "gpudl.__main__"}
# gpudl.kernels lives in the top-level folder kernels/ (mapped by setuptools), so walking gpudl/ does not reach it.
ROOTS = ["gpudl", "gpudl.kernels"]


def gpudl_modules():
    """{module name: source file} for every module of gpudl, packages included."""
    found = {}
    for root in ROOTS:
        package = importlib.import_module(root)
        found[root] = package.__file__
        for info in pkgutil.walk_packages(package.__path__, root + "."):
            found[info.name] = importlib.util.find_spec(info.name).origin
    return found


def imported_names(name, path):
    """The absolute names of the gpudl modules or attributes that module `name` (source at `path`) imports."""
    with open(path, encoding="utf-8") as handle:
        tree = ast.parse(handle.read(), path)
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module
            names += [module] if node.module else [f"{module}.{alias.name}" for alias in node.names]
    return [n for n in names if n == "gpudl" or n.startswith("gpudl.")]


def unit_of(name, modules=None):
    """The unit of a gpudl name: its first component below gpudl, or "top" for gpudl itself.

    With `modules` (the names that are modules), a name that is no module nor inside one, such as gpudl.device
    (an attribute of gpudl/__init__.py), belongs to the top.
    """
    parts = name.split(".")
    if modules is not None and parts[1:2] and parts[1] not in LAYERS:
        while name not in modules and "." in name:
            name = name.rpartition(".")[0]
        parts = name.split(".")
    if len(parts) == 1 or name in TOP:
        return "top"
    return parts[1]


def unit_edges():
    """{(importer unit, imported unit): [(module, imported name), ...]} between different units."""
    modules = gpudl_modules()
    edges = {}
    for name, path in sorted(modules.items()):
        if name in TOP:
            continue
        for target in imported_names(name, path):
            pair = (unit_of(name), unit_of(target, modules))
            if pair[0] != pair[1]:
                edges.setdefault(pair, []).append((name, target))
    return edges


def test_every_module_belongs_to_a_known_unit():
    unknown = sorted({unit_of(name) for name in gpudl_modules() if name not in TOP} - set(LAYERS))
    assert not unknown, (f"gpudl has unit(s) {unknown} that the layer order does not place; add them to LAYERS "
                         f"here and to the design notes' order")


def test_the_walk_sees_every_layer_that_exists():
    """The walk is no vacuous pass: it reaches the kernels in their own folder and the units on both ends."""
    units = {unit_of(name) for name in gpudl_modules()}
    assert {"backend", "geometry", "kernels", "functional", "nn", "cli"} <= units
    assert ("functional", "kernels") in unit_edges()


def test_no_import_cycle_between_units():
    graph = {}
    for importer, imported in unit_edges():
        graph.setdefault(importer, set()).add(imported)
    done, path = set(), []

    def visit(unit):
        if unit in path:
            cycle = path[path.index(unit):] + [unit]
            pytest.fail(f"import cycle between units: {' -> '.join(cycle)}")
        if unit in done:
            return
        path.append(unit)
        for nxt in sorted(graph.get(unit, ())):
            visit(nxt)
        path.pop()
        done.add(unit)

    for unit in sorted(graph):
        visit(unit)


def upward_arrows():
    """[(module, imported name, its unit, the imported unit)] for every import from a lower layer to a higher one."""
    rank = {unit: k for k, unit in enumerate(LAYERS)}
    rank["top"] = len(LAYERS)
    return [(module, target, importer, imported)
            for (importer, imported), pairs in sorted(unit_edges().items())
            if rank.get(imported, -1) > rank.get(importer, len(LAYERS))
            for module, target in pairs]


def test_imports_follow_the_layer_order():
    upward = [f"{module} imports {target} ({importer} is below {imported})"
              for module, target, importer, imported in upward_arrows()]
    assert not upward, "imports from a lower layer to a higher one:\n" + "\n".join(upward)


def test_the_checks_catch_an_upward_import(tmp_path):
    """imported_names resolves a relative import the way Python does, so an upward arrow would be seen."""
    source = tmp_path / "conv.py"
    source.write_text("from .. import kernels\nfrom ..nn.module import Module\nfrom . import pooling\n"
                      "import numpy\n\ndef lazy():\n    from gpudl.cli import main\n")
    names = imported_names("gpudl.functional.conv", str(source))
    assert names == ["gpudl.kernels", "gpudl.nn.module", "gpudl.functional.pooling", "gpudl.cli"]
    assert [unit_of(n) for n in names] == ["kernels", "nn", "functional", "cli"]
    assert unit_of("gpudl.device", {"gpudl", "gpudl.backend"}) == "top"
    assert unit_of("gpudl.onnx.export", {"gpudl"}) == "onnx"        # a unit not written yet keeps its place
