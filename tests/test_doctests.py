"""Every docstring example in the package, and the README's Python API section, runs as a test."""
from __future__ import annotations

import doctest
import importlib
import pkgutil
from pathlib import Path

import pytest

import nvlow

MODULES = sorted(m.name for m in pkgutil.walk_packages(nvlow.__path__, "nvlow.")
                 if not m.name.endswith(("_ffi", "__main__")))


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("NVLOW_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "doctest-cache"))


@pytest.mark.parametrize("name", MODULES)
def test_module_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"


def test_readme_python_api_examples():
    readme = Path(__file__).resolve().parent.parent / "README.md"
    result = doctest.testfile(str(readme), module_relative=False,
                              optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 5, "the README's Python API section has no examples"
    assert result.failed == 0
