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

PINNED = Path(__file__).parent / "golden" / "public_api.txt"


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
    text = describe()
    if os.environ.get("NVLOW_UPDATE_GOLDEN") == "1":
        import difflib

        old = PINNED.read_text() if PINNED.exists() else ""
        sys.stdout.write("".join(difflib.unified_diff(old.splitlines(True), text.splitlines(True),
                                                      str(PINNED), "now")))
        PINNED.write_text(text)
    # a missing pin is a failure, not a silent re-pin: the file is the record of the public API
    assert PINNED.exists(), f"{PINNED} is missing: regenerate it with NVLOW_UPDATE_GOLDEN=1 and review it"
    assert text == PINNED.read_text(), "the public API changed: update tests/golden/public_api.txt and CHANGELOG.md"


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
