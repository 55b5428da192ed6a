"""Golden files under tests/golden/: one checker for every test that compares output with one.

``NVLOW_UPDATE_GOLDEN=1 pytest ...`` rewrites the files and prints a unified diff of each change
(run with ``-s`` to see them as they happen; they are in the captured output otherwise), so a
regeneration is reviewed, not blind. Without it, a difference fails with the diff.
"""
from __future__ import annotations

import difflib
import os
import sys
from pathlib import Path

import pytest

GOLDEN = Path(__file__).parent / "golden"


def updating() -> bool:
    return os.environ.get("NVLOW_UPDATE_GOLDEN") == "1"


def diff(name: str, old: str, new: str, limit: int = 80) -> str:
    """A unified diff of ``old`` -> ``new`` (at most ``limit`` lines)."""
    lines = list(difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                      f"tests/golden/{name} (golden)", f"tests/golden/{name} (now)"))
    if len(lines) > limit:
        lines = lines[:limit] + [f"... {len(lines) - limit} more diff lines\n"]
    return "".join(lines)


def check_golden(name: str, text: str) -> None:
    """``text`` must equal ``tests/golden/NAME``; a missing file is written and the test fails once."""
    path = GOLDEN / name
    old = path.read_text(encoding="utf-8") if path.exists() else None
    if updating() or old is None:
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
        if old is not None and old != text:
            sys.stdout.write(f"NVLOW_UPDATE_GOLDEN: rewrote tests/golden/{name}:\n{diff(name, old, text)}")
        if old is None and not updating():
            pytest.fail(f"golden file {name} was missing and has been written; rerun")
        return
    if text != old:
        pytest.fail(f"output differs from tests/golden/{name} (NVLOW_UPDATE_GOLDEN=1 rewrites it):\n"
                    + diff(name, old, text), pytrace=False)
