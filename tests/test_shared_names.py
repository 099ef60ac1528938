"""Each shared concept (the modalities, the default sample rate, the split parts, the head
kinds, the sampling orders) is defined in exactly one module of emofuse/, and every module
that uses it imports it from there instead of restating it.

Read from the source with `ast`, so a second definition anywhere in the package fails,
even in a module no test imports."""

from __future__ import annotations

import ast
import functools
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "emofuse"

#: Shared name -> its home: the module that defines it, or the package (a module in it).
HOMES = {
    "SPEECH": "emofuse.modalities",
    "TEXT": "emofuse.modalities",
    "BOTH": "emofuse.modalities",
    "MODALITIES": "emofuse.modalities",
    "ENCODER_MODALITIES": "emofuse.modalities",
    "inputs_of": "emofuse.modalities",
    "DEFAULT_SAMPLE_RATE_HZ": "emofuse.modalities",
    "PARTS": "emofuse.splits",
    "HEAD_KINDS": "emofuse.head.config",
    "ORDERS": "emofuse.sampling",
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@functools.cache
def _sources() -> dict[str, ast.Module]:
    return {
        _module_name(path): ast.parse(path.read_text(encoding="utf-8"), str(path))
        for path in sorted(PACKAGE.rglob("*.py"))
    }


def _top_level(tree: ast.Module) -> list[ast.stmt]:
    """The module's own statements, including those under a top-level if/try/with."""
    out: list[ast.stmt] = []
    todo = list(tree.body)
    while todo:
        node = todo.pop(0)
        out.append(node)
        if isinstance(node, (ast.If, ast.Try, ast.With)):
            for field in ("body", "orelse", "finalbody", "handlers"):
                todo.extend(getattr(node, field, []))
        elif isinstance(node, ast.ExceptHandler):
            todo.extend(node.body)
    return out


def _assigned(node: ast.stmt) -> list[str]:
    if isinstance(node, ast.Assign):
        targets = [t for target in node.targets for t in ast.walk(target)]
    elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
        targets = [node.target]
    else:
        return []
    return [t.id for t in targets if isinstance(t, ast.Name)]


def _defined_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in _top_level(tree):
        names.update(_assigned(node))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
    return names


def _imports_of(module: str, tree: ast.Module, name: str) -> list[str]:
    """The modules ``module`` imports ``name`` from (anywhere in it, lazy ones included)."""
    package = module if _is_package(module) else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and any(a.name == name for a in node.names):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                found.append(".".join([*base, *([node.module] if node.module else [])]))
            else:
                found.append(node.module or "")
    return found


def _is_package(module: str) -> bool:
    return (PACKAGE.parent / module.replace(".", "/") / "__init__.py").is_file()


def _uses(tree: ast.Module, name: str) -> bool:
    return any(
        isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id == name
        for node in ast.walk(tree)
    )


def _home_of(name: str) -> str:
    defining = [m for m, tree in _sources().items() if name in _defined_names(tree)]
    assert len(defining) == 1, f"{name} is defined in {len(defining)} modules: {defining}"
    return defining[0]


@pytest.mark.parametrize("name", sorted(HOMES))
def test_each_shared_name_is_defined_in_exactly_one_module_its_home(name):
    home = _home_of(name)
    assert home == HOMES[name] or home.startswith(HOMES[name] + "."), (name, home)


@pytest.mark.parametrize("name", sorted(HOMES))
def test_every_user_imports_the_shared_name_from_its_home(name):
    home = _home_of(name)
    value = getattr(importlib.import_module(home), name)
    users = 0
    for module, tree in _sources().items():
        if module == home or not _uses(tree, name):
            continue
        users += 1
        sources = _imports_of(module, tree, name)
        assert sources, f"{module} uses {name} without importing it from {home}"
        for source in sources:
            # From its home, or from a package on the way to it (which re-exports it).
            assert source == home or home.startswith(source + "."), (module, source, home)
            assert source != "emofuse", f"{module}: import {name} from {home}"
            assert getattr(importlib.import_module(source), name) is value, (module, source)
    assert users, f"nothing outside {home} uses {name}: not a shared name"


def _literal(node: ast.AST) -> object:
    try:
        return ast.literal_eval(node)
    except ValueError:
        return None  # a name or an expression: not a restated value


def test_no_module_restates_the_value_of_a_shared_constant():
    """A module-level constant elsewhere with the same value (the same members, for a
    tuple) is a second definition under another name, e.g. its own ``("train", "val",
    "test")`` or ``SAMPLE_RATE_HZ = 16000``."""
    shared = {}
    for name in HOMES:
        value = getattr(importlib.import_module(_home_of(name)), name)
        if isinstance(value, tuple):
            shared[frozenset(value)] = name
        elif isinstance(value, int):
            shared[value] = name
    restated = []
    for module, tree in _sources().items():
        for node in _top_level(tree):
            if not _assigned(node) or node.value is None:  # type: ignore[attr-defined]
                continue
            value = _literal(node.value)  # type: ignore[attr-defined]
            key = frozenset(value) if isinstance(value, (tuple, list, set)) else value
            if isinstance(key, (frozenset, int)) and key in shared:
                name = shared[key]
                if module != _home_of(name):
                    restated.append(f"{module}:{node.lineno} restates {name}")
    assert not restated, restated
