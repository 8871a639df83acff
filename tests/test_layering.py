"""The package layering, read from the source with ``ast`` (nothing is imported).

``viewgp`` (geometry + GPs) imports neither ``generative`` nor ``sequences``; ``generative`` (image
models) does not import ``sequences``; and no module import graph has a cycle. Every import counts,
including those inside functions (a lazy import still ties the modules together) and under
``if TYPE_CHECKING``. Importing ``a.b.c`` also runs the ``__init__`` of every package on the way
that is not already a package of the importer, so ``generative.x`` importing
``generative.training.losses`` depends on ``generative.training`` (whose ``__init__`` imports the
trainers) as well. Sub-packages must not form cycles with their neighbours either: taken as one
unit each (``generative.training``, ``generative.metrics``), the graph between them and the other
modules of their package is acyclic, so e.g. ``generative.aging.translator`` (a model) may not import
training code that imports it back.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("viewgp", "generative", "sequences")
FORBIDDEN = {"viewgp": ("generative", "sequences"), "generative": ("sequences",)}

#: The layers inside each package, bottom first (docs/architecture.md says what each holds).
#: A unit (a sub-package taken whole, or a top-level module) may import only the units before it.
SUBPACKAGE_ORDER = {
    "generative": (
        "generative.images",  # image files, atomic writes, frame geometry, datasets: no model
        "generative.backbones",  # the architectures, their registry and checkpoints, the latent codec
        "generative.metrics",  # image metrics (pixel, SSIM, LPIPS, FID, SWD, PPL)
        "generative.precision",  # float32 or bfloat16, by what the device computes natively
        "generative.latents",  # frame arrays <-> latents: encode, decode, invert, adapt, detail, uncertainty
        "generative.training",  # the backbones' training loops and their parts
        "generative.aging",  # the face-aging application (translators, their training, the chain)
        "generative.gp_prior_ae",  # the GP-prior autoencoder, trained on its own
        "generative.public_data",  # where the public data sets are found
    ),
    "sequences": (
        "sequences.poses",  # the trajectory type and every pose-file reader and writer
        "sequences.run",  # CameraRun and run folders
        "sequences.capture",  # video / image folder / run directory + poses -> CameraRun
        "sequences.synthetic",  # rendered camera runs
        "sequences.pipeline",  # orchestration, baselines, evaluation, report
        "sequences.cli",  # the viewgp command
    ),
}


@dataclass(frozen=True)
class Edge:
    source: str  # importing module
    target: str  # imported module (or a package whose __init__ the import runs)
    where: str  # "path:line" of the import statement


def _module_name(path: Path, root: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(root).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts = parts[:-1]
    return ".".join(parts), is_package


def _imported_names(node: ast.AST, module: str, is_package: bool) -> list[str]:
    """Absolute dotted names an import statement refers to: ``[a.b]`` for ``import a.b``;
    ``[base.mod, base.mod.name, ...]`` for ``from [.]*mod import name, ...``."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module
    return [prefix] + [f"{prefix}.{a.name}" for a in node.names if a.name != "*"]


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def import_graph(root: Path, packages=PACKAGES) -> tuple[set[str], list[Edge]]:
    """Every module of ``packages`` under ``root`` and the import edges between them."""
    files = {}
    for pkg in packages:
        for path in sorted((root / pkg).rglob("*.py")):
            files[path] = _module_name(path, root)
    modules = {name for name, _ in files.values()}
    edges = []
    for path, (module, is_package) in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        own_packages = set(_ancestors(module)) | ({module} if is_package else set())
        for node in ast.walk(tree):  # every statement, at any depth: functions, if / try blocks
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            where = f"{path.relative_to(root)}:{node.lineno}"
            targets = set()
            for name in _imported_names(node, module, is_package):
                if name in modules:
                    targets.add(name)
                # the package __init__s the import runs (not those already running for the importer)
                targets.update(p for p in _ancestors(name) if p in modules and p not in own_packages)
            edges.extend(Edge(module, t, where) for t in sorted(targets) if t != module)
    return modules, edges


def _in(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def find_cycles(modules: set[str], edges: list[Edge]) -> list[list[Edge]]:
    """One cycle (as its edges) for every strongly connected component with more than one module
    (Tarjan's algorithm, iterative)."""
    out: dict[str, list[Edge]] = {m: [] for m in modules}
    for e in edges:
        if e.source in out and e.target in out:
            out[e.source].append(e)
    index, low, on_stack, stack, components = {}, {}, set(), [], []
    counter = 0
    for start in sorted(modules):
        if start in index:
            continue
        work = [(start, iter(out[start]))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, it = work[-1]
            advanced = False
            for e in it:
                if e.target not in index:
                    index[e.target] = low[e.target] = counter
                    counter += 1
                    stack.append(e.target)
                    on_stack.add(e.target)
                    work.append((e.target, iter(out[e.target])))
                    advanced = True
                    break
                if e.target in on_stack:
                    low[node] = min(low[node], index[e.target])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = set()
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    comp.add(m)
                    if m == node:
                        break
                if len(comp) > 1:
                    components.append(comp)
    return [_a_cycle(comp, out) for comp in components]


def _a_cycle(component: set[str], out: dict[str, list[Edge]]) -> list[Edge]:
    """A shortest cycle through the component's first module (breadth-first inside the component)."""
    start = min(component)
    parent: dict[str, Edge] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for node in frontier:
            for e in out[node]:
                if e.target not in component:
                    continue
                if e.target == start:
                    path = [e]
                    while path[0].source != start:
                        path.insert(0, parent[path[0].source])
                    return path
                if e.target not in parent:
                    parent[e.target] = e
                    nxt.append(e.target)
        frontier = nxt
    raise AssertionError(f"no cycle found in strongly connected component {sorted(component)}")


def _describe(cycle: list[Edge]) -> str:
    steps = "\n".join(f"    {e.source} -> {e.target}  ({e.where})" for e in cycle)
    return f"  {' -> '.join([e.source for e in cycle] + [cycle[0].source])}\n{steps}"


@pytest.fixture(scope="module")
def graph():
    return import_graph(ROOT)


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_lower_layers_do_not_import_higher_ones(graph, package):
    _, edges = graph
    bad = [
        f"  {e.where}: {e.source} imports {e.target}"
        for e in edges
        if _in(e.source, package) and any(_in(e.target, higher) for higher in FORBIDDEN[package])
    ]
    assert not bad, f"{package} must not import {' or '.join(FORBIDDEN[package])}:\n" + "\n".join(sorted(set(bad)))


@pytest.mark.parametrize("scope", [*PACKAGES, "whole"])
def test_no_import_cycles(graph, scope):
    modules, edges = graph
    if scope != "whole":
        modules = {m for m in modules if _in(m, scope)}
    cycles = find_cycles(modules, edges)
    assert not cycles, f"{len(cycles)} import cycle(s) in {scope}:\n" + "\n".join(map(_describe, cycles))


def subpackage_graph(modules: set[str], edges: list[Edge]) -> tuple[set[str], list[Edge]]:
    """The graph with every second-level sub-package (``generative.training``, ...) as one node."""
    packages = {m for m in modules if any(x.startswith(m + ".") for x in modules)}

    def unit(name: str) -> str:
        head = ".".join(name.split(".")[:2])
        return head if head in packages and head != name.split(".")[0] else name

    units = {unit(m) for m in modules}
    merged = [Edge(unit(e.source), unit(e.target), e.where) for e in edges if unit(e.source) != unit(e.target)]
    return units, merged


@pytest.mark.parametrize("package", PACKAGES)
def test_no_cycles_between_subpackages_and_their_neighbours(graph, package):
    modules, _ = graph
    units, edges = subpackage_graph(*graph)
    if units >= {m for m in modules if _in(m, package)}:
        pytest.skip(f"{package} has no sub-packages (test_no_import_cycles covers its modules)")
    cycles = find_cycles({u for u in units if _in(u, package)}, edges)
    assert not cycles, f"{len(cycles)} cycle(s) between the sub-packages of {package}:\n" + "\n".join(map(_describe, cycles))


def _units_of(package: str, modules: set[str]) -> set[str]:
    units, _ = subpackage_graph(modules, [])
    return {u for u in units if _in(u, package) and u != package}


@pytest.mark.parametrize("package", sorted(SUBPACKAGE_ORDER))
def test_every_subpackage_has_a_place_in_the_order(graph, package):
    modules, _ = graph
    missing = sorted(_units_of(package, modules) - set(SUBPACKAGE_ORDER[package]))
    assert not missing, f"place {missing} in SUBPACKAGE_ORDER[{package!r}] (tests/test_layering.py), bottom first"
    gone = sorted(set(SUBPACKAGE_ORDER[package]) - _units_of(package, modules))
    assert not gone, f"SUBPACKAGE_ORDER[{package!r}] names {gone}, which no longer exist"


def upward_imports(merged: list[Edge], order: tuple[str, ...]) -> list[Edge]:
    """The edges of the unit graph (:func:`subpackage_graph`) from a unit of ``order`` (bottom first) to
    one above it."""
    rank = {u: i for i, u in enumerate(order)}
    return [e for e in merged if e.source in rank and e.target in rank and rank[e.target] > rank[e.source]]


@pytest.mark.parametrize("package", sorted(SUBPACKAGE_ORDER))
def test_subpackages_import_only_the_ones_below_them(graph, package):
    _, merged = subpackage_graph(*graph)
    bad = [f"  {e.where}: {e.source} imports {e.target}, which sits above it"
           for e in upward_imports(merged, SUBPACKAGE_ORDER[package])]
    assert not bad, f"the layers of {package} (SUBPACKAGE_ORDER, bottom first) are broken:\n" + "\n".join(sorted(set(bad)))


# ------------------------------------------------------------------------ the checker itself
def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


def test_the_checker_sees_lazy_relative_and_package_init_imports(tmp_path):
    _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "def f():\n    from .sub import b\n",  # lazy, relative
        "pkg/sub/__init__.py": "from . import c\n",  # the package __init__ imports c
        "pkg/sub/b.py": "import os\n",
        "pkg/sub/c.py": "from ..a import f\n",  # c -> a closes the cycle through sub/__init__
        "pkg/d.py": "if False:\n    import pkg.sub.b as bb\n",
        "low/__init__.py": "",
        "low/x.py": "try:\n    import pkg.d\nexcept ImportError:\n    pass\n",
    })  # fmt: skip
    modules, edges = import_graph(tmp_path, ("pkg", "low"))
    pairs = {(e.source, e.target) for e in edges}
    assert {("pkg.a", "pkg.sub.b"), ("pkg.a", "pkg.sub"), ("pkg.sub", "pkg.sub.c"), ("pkg.sub.c", "pkg.a"),
            ("pkg.d", "pkg.sub.b"), ("pkg.d", "pkg.sub"), ("low.x", "pkg.d"), ("low.x", "pkg")} <= pairs  # fmt: skip
    assert ("pkg.sub.c", "pkg.sub") not in pairs  # its own package's __init__ is already running
    (cycle,) = find_cycles(modules, edges)
    assert [e.source for e in cycle] == ["pkg.a", "pkg.sub", "pkg.sub.c"]
    assert "pkg/a.py:2" in _describe(cycle)
    assert find_cycles({m for m in modules if _in(m, "low")}, edges) == []


def test_sub_packages_count_as_one_unit(tmp_path):
    _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/model.py": "from .train.pool import Pool\n",  # the model imports training code ...
        "pkg/train/__init__.py": "",
        "pkg/train/pool.py": "Pool = list\n",
        "pkg/train/loop.py": "from ..model import Pool\n",  # ... which imports the model
    })  # fmt: skip
    modules, edges = import_graph(tmp_path, ("pkg",))
    assert find_cycles(modules, edges) == []  # no cycle between single modules
    units, merged = subpackage_graph(modules, edges)
    assert units == {"pkg", "pkg.model", "pkg.train"}
    (cycle,) = find_cycles(units, merged)
    assert {e.source for e in cycle} == {"pkg.model", "pkg.train"}


def test_the_order_check_sees_an_import_upwards(tmp_path):
    _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/low/__init__.py": "",
        "pkg/low/a.py": "from pkg.high import b\n",  # the lower layer reaches up
        "pkg/high/__init__.py": "",
        "pkg/high/b.py": "",
    })  # fmt: skip
    _, merged = subpackage_graph(*import_graph(tmp_path, ("pkg",)))
    assert {(e.source, e.target) for e in upward_imports(merged, ("pkg.low", "pkg.high"))} == {("pkg.low", "pkg.high")}
    assert upward_imports(merged, ("pkg.high", "pkg.low")) == []
