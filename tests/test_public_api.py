"""The public surface of ``nvlow`` is pinned: names and signatures change only deliberately.

After a deliberate change, regenerate with ``NVLOW_UPDATE_GOLDEN=1 pytest tests/test_public_api.py``
and record it in CHANGELOG.md.
"""
from __future__ import annotations

import dataclasses
import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

import nvlow
from goldens import check_golden



def describe() -> str:
    lines = []
    for name in nvlow.__all__:
        if name == "__version__":
            continue
        obj = getattr(nvlow, name)
        if dataclasses.is_dataclass(obj):
            fields = ", ".join(f"{f.name}: {f.type}" for f in dataclasses.fields(obj))
            lines.append(f"dataclass {name}({fields})")
        elif inspect.isclass(obj):
            bases = ", ".join(b.__name__ for b in obj.__bases__)
            lines.append(f"class {name}({bases}) exit_code={getattr(obj, 'exit_code', '-')}")
        else:
            lines.append(f"def {name}{inspect.signature(obj)}")
    return "\n".join(lines) + "\n"


def test_public_surface_is_pinned():
    """A missing pin fails (once written, reviewed); NVLOW_UPDATE_GOLDEN=1 re-pins and prints the diff;
    a change fails with the diff: update tests/golden/public_api.txt and CHANGELOG.md together."""
    check_golden("public_api.txt", describe())


def test_every_public_name_has_a_docstring_with_an_example():
    for name in nvlow.__all__:
        if name == "__version__":
            continue
        obj = getattr(nvlow, name)
        doc = inspect.getdoc(obj) or ""
        assert doc, f"nvlow.{name} has no docstring"
        if inspect.isfunction(obj) or dataclasses.is_dataclass(obj):
            assert ">>>" in doc, f"nvlow.{name} has no example in its docstring"


def test_import_nvlow_exports_lazily():
    code = "import sys, nvlow; print(sorted(m for m in sys.modules if m.startswith('nvlow')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert out.strip() == "['nvlow']"


def test_py_typed_is_shipped():
    assert (Path(nvlow.__file__).parent / "py.typed").exists()


@pytest.mark.slow
def test_mypy_strict_on_the_package():
    pytest.importorskip("mypy")
    repo = Path(__file__).resolve().parent.parent
    res = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental", "nvlow"], cwd=repo,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
