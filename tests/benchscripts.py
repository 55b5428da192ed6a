"""The scripts under bench/ as modules for the tests, loaded by path: the checkout is not on sys.path
when CI tests the installed wheel, and bench/ is no package of the distribution."""
from __future__ import annotations

import importlib.util
import os
import sys
from types import ModuleType

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench")


def load(name: str) -> ModuleType:
    """``bench/<name>.py``, registered as module ``name`` (its dataclasses and pickles look it up)."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(BENCH, f"{name}.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
