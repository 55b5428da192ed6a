"""The package layout shows the pipeline, and imports only go down it.

Every import in ``nvlow/`` (module level and inside functions, ``TYPE_CHECKING`` blocks included) is
read with ``ast``; a stage may import only the stages its package docstring allows. Breaking the
direction (for example ``nvlow.host`` importing ``nvlow.plan``) fails here.
"""
from __future__ import annotations

import ast
import importlib
import os
from typing import Dict, FrozenSet, Iterator, List, Tuple

import pytest

import nvlow

PACKAGE_DIR = os.path.dirname(nvlow.__file__)

LEAF = frozenset({"errors", "frozen", "model", "records", "text"})
#: stage -> the stages it may import (besides itself); the leaf modules are allowed everywhere
ALLOWED: Dict[str, FrozenSet[str]] = {
    "errors": frozenset(),
    "frozen": frozenset(),
    "text": frozenset(),
    "model": frozenset(),
    "records": frozenset(),
    "host": frozenset(),
    "native": frozenset({"host"}),
    "engine": frozenset(),
    "plan": frozenset({"host", "engine"}),
    "cdi": frozenset({"host", "plan", "package"}),
    "remote": frozenset({"host", "plan", "engine"}),
    "simulate": frozenset({"host", "package"}),
    "doctor": frozenset({"host", "cdi", "native", "engine", "plan"}),
    "serve": frozenset({"host", "native", "plan", "engine", "cdi", "remote", "simulate", "package"}),
    "api": frozenset({"host", "native", "plan", "engine", "cdi", "simulate", "package"}),
    "package": frozenset({"api", "plan"}),  # nvlow/__init__.py: lazy re-exports
    "__main__": frozenset({"cli"}),
    "cli": frozenset({"host", "native", "plan", "engine", "cdi", "remote", "serve", "simulate", "doctor",
                      "api", "package"}),
}
PACKAGES = ("host", "plan", "engine", "remote", "native", "cdi", "serve", "cli", "simulate")


def _stage(module: str) -> str:
    parts = module.split(".")
    if parts == ["nvlow"]:
        return "package"
    return parts[1]


def _modules() -> Iterator[Tuple[str, str, bool]]:
    """(dotted module name, file path, is a package __init__) for every module of nvlow."""
    for dirpath, _, files in os.walk(PACKAGE_DIR):
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, os.path.dirname(PACKAGE_DIR))[:-3].replace(os.sep, ".")
            init = rel.endswith(".__init__")
            yield (rel[: -len(".__init__")] if init else rel), path, init


def _is_module(dotted: str) -> bool:
    rel = os.path.join(os.path.dirname(PACKAGE_DIR), *dotted.split("."))
    return os.path.isfile(rel + ".py") or os.path.isdir(rel)


def _imports(module: str, path: str, init: bool) -> List[str]:
    package = module if init else module.rpartition(".")[0]
    out: List[str] = []
    with open(path, encoding="utf-8") as fh:
        tree = ast.parse(fh.read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if node.module is None:  # from . import x: x may be a module of that package, or a name in it
                out.extend(f"{target}.{a.name}" if _is_module(f"{target}.{a.name}") else target for a in node.names)
            else:
                out.append(target)
        elif isinstance(node, ast.Import):
            out.extend(a.name for a in node.names)
    return [t for t in out if t == "nvlow" or t.startswith("nvlow.")]


def _violations() -> List[str]:
    bad = []
    for module, path, init in _modules():
        stage = _stage(module)
        allowed = ALLOWED[stage] | LEAF | {stage}
        for target in _imports(module, path, init):
            if target == "nvlow.__version__":
                target = "nvlow"
            if _stage(target) not in allowed:
                bad.append(f"{module} imports {target} ({stage} may import {sorted(allowed - {stage})})")
    return bad


def test_every_module_belongs_to_a_known_stage() -> None:
    assert sorted({_stage(m) for m, _, _ in _modules()}) == sorted(ALLOWED)


def test_imports_go_down_the_pipeline() -> None:
    assert _violations() == []


def test_the_check_sees_a_wrong_import(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both outcomes: an upward import written into a host module is reported."""
    real = _imports

    def with_upward(module: str, path: str, init: bool) -> List[str]:
        found = real(module, path, init)
        return found + ["nvlow.plan.decide"] if module == "nvlow.host.scan" else found

    monkeypatch.setattr(__import__(__name__), "_imports", with_upward)
    assert _violations() == [
        "nvlow.host.scan imports nvlow.plan.decide (host may import ['errors', 'frozen', 'model', 'records', 'text'])"]


@pytest.mark.parametrize("package", PACKAGES)
def test_each_package_says_what_it_owns_and_may_import(package: str) -> None:
    mod = importlib.import_module(f"nvlow.{package}")
    doc = mod.__doc__ or ""
    assert doc.strip(), f"nvlow.{package} has no docstring"
    if package != "cli":
        assert "May import" in doc
