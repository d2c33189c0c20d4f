"""The project's layout rules, checked on the source:

* an implementation imports only the contract (rosetta.CONTRACT), never another implementation or
  the harness; the NumPy reference imports no framework; the contract imports only the contract;
* no import cycles among the project's modules (module-level and function-level imports alike);
* every implementation package exports the same surface (one class per model of the model table,
  and rosetta.registry.SURFACE_FUNCTIONS);
* the framework table names packages, adapters and extras that exist;
* docs/conventions.md's "Adding a framework" and "Adding a model" checklists name every table
  they rely on.
"""

from __future__ import annotations

import ast
import functools
import re
import tomllib
from pathlib import Path

import pytest
from conftest import require_framework

import rosetta
from rosetta import registry
from rosetta.configs import MODELS

ROOT = Path(__file__).resolve().parent.parent
PROJECT = ("rosetta", "reference_numpy", "torch_impl", "tf_impl", "chainer_impl")
IMPLEMENTATIONS = tuple(f.package for f in registry.FRAMEWORKS.values())
FRAMEWORK_MODULES = ("torch", "tensorflow", "keras", "chainer")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@functools.cache
def imports() -> dict[str, set[str]]:
    """module -> every module it imports (at any depth in the file), resolved to project modules
    where the name is one (``from rosetta import registry`` -> ``rosetta.registry``)."""
    modules = {module_name(p): p for pkg in PROJECT for p in (ROOT / pkg).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
                found |= {f"{node.module}.{a.name}" for a in node.names
                          if f"{node.module}.{a.name}" in modules}
        graph[name] = found
    return graph


def project_edges(name: str) -> set[str]:
    """The project modules ``name`` imports (a package import counts as its __init__)."""
    graph = imports()
    return {m for m in graph[name] if m in graph and m != name}


@pytest.mark.parametrize("package", IMPLEMENTATIONS)
def test_implementations_import_only_the_contract(package: str) -> None:
    bad = []
    for name, targets in imports().items():
        if name != package and not name.startswith(package + "."):
            continue
        for target in targets:
            top = target.split(".")[0]
            if top == "rosetta" and target not in rosetta.CONTRACT:
                bad.append(f"{name} imports the harness module {target}")
            if top in IMPLEMENTATIONS and top != package:
                bad.append(f"{name} imports another implementation, {target}")
            if package == "reference_numpy" and top in FRAMEWORK_MODULES:
                bad.append(f"{name} imports the framework {target}")
    assert not bad, bad


def test_the_contract_imports_only_the_contract() -> None:
    bad = [f"{name} imports {target}" for name in rosetta.CONTRACT for target in imports()[name]
           if target.split(".")[0] in PROJECT and target not in rosetta.CONTRACT]
    assert not bad, bad


def test_no_import_cycles() -> None:
    graph = {name: project_edges(name) for name in imports()}
    # A package's __init__ importing its own submodules is the package's surface, not a cycle
    # unless a submodule imports the package back.
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, f"import cycles: {[' -> '.join(c) for c in cycles]}"


def test_the_cycle_check_can_fail() -> None:
    assert "rosetta.registry" in project_edges("rosetta.adapters")  # the graph sees real edges


@pytest.mark.parametrize("framework", registry.FRAMEWORK_NAMES)
def test_every_package_exports_the_same_surface(framework: str) -> None:
    require_framework(framework)
    package = registry.package(framework)
    expected = {cls.class_name for cls in MODELS.values()} | set(registry.SURFACE_FUNCTIONS)
    missing = sorted(n for n in expected if not hasattr(package, n))
    assert not missing, f"{package.__name__} lacks {missing}"
    assert expected <= set(package.__all__), sorted(expected - set(package.__all__))
    for model in MODELS:
        assert registry.model_class(framework, model).__name__ == MODELS[model].class_name


@pytest.mark.parametrize("framework", registry.FRAMEWORK_NAMES)
def test_framework_rows_are_complete(framework: str) -> None:
    entry = registry.FRAMEWORKS[framework]
    assert (ROOT / entry.package / "__init__.py").is_file()
    module, _, cls = entry.adapter.partition(":")
    source = (ROOT / Path(*module.split("."))).with_suffix(".py").read_text(encoding="utf-8")
    assert f"class {cls}(" in source and f'framework = "{framework}"' in source
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "optional-dependencies"]
    assert entry.extra is None or entry.extra in extras
    assert registry.resolve_framework(framework) == framework
    assert all(registry.resolve_framework(alias) == framework for alias in entry.aliases)
    assert registry.NATIVE_FORMATS[entry.native_format] is entry


def test_aliases_resolve_and_unknown_names_list_the_choices() -> None:
    assert registry.resolve_framework("keras") == registry.resolve_framework("tensorflow") == "tf"
    assert registry.resolve_format("tf") == "keras"
    with pytest.raises(ValueError, match="unknown framework 'jax'; choose one of: numpy, torch, tf, chainer"):
        registry.resolve_framework("jax")


CHECKLISTS = {
    "Adding a framework": ["rosetta/registry.py", "FRAMEWORKS", "SURFACE_FUNCTIONS", "rosetta/adapters/",
                           "pyproject.toml", "docs/porting.md"],
    "Adding a model": ["rosetta/configs.py", "MODELS", "param_spec", "layer_names", "CASES",
                       "DEFAULT_RECIPES"],
}


@pytest.mark.parametrize("title", CHECKLISTS)
def test_conventions_checklists_name_every_table(title: str) -> None:
    text = (ROOT / "docs" / "conventions.md").read_text(encoding="utf-8")
    match = re.search(rf"^## {title}\n(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    assert match, f"docs/conventions.md has no section '## {title}'"
    missing = [name for name in CHECKLISTS[title] if name not in match.group(1)]
    assert not missing, f"'{title}' does not mention {missing}"
