"""The golden-file checker: a difference fails with a diff; NVLOW_UPDATE_GOLDEN=1 rewrites and prints it."""
from __future__ import annotations

import pytest

import goldens


def test_difference_fails_with_a_diff(tmp_path, monkeypatch):
    monkeypatch.setattr(goldens, "GOLDEN", tmp_path)
    monkeypatch.delenv("NVLOW_UPDATE_GOLDEN", raising=False)
    (tmp_path / "x.txt").write_text("a\nb\n")
    goldens.check_golden("x.txt", "a\nb\n")  # equal: passes
    with pytest.raises(pytest.fail.Exception) as info:
        goldens.check_golden("x.txt", "a\nc\n")
    assert "-b\n+c\n" in str(info.value) and "NVLOW_UPDATE_GOLDEN=1 rewrites it" in str(info.value)
    assert (tmp_path / "x.txt").read_text() == "a\nb\n"  # untouched


def test_update_rewrites_and_prints_the_diff(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(goldens, "GOLDEN", tmp_path)
    monkeypatch.setenv("NVLOW_UPDATE_GOLDEN", "1")
    (tmp_path / "x.txt").write_text("a\nb\n")
    goldens.check_golden("x.txt", "a\nc\n")
    assert (tmp_path / "x.txt").read_text() == "a\nc\n"
    out = capsys.readouterr().out
    assert "rewrote tests/golden/x.txt" in out and "-b\n+c\n" in out
    goldens.check_golden("x.txt", "a\nc\n")  # unchanged: nothing printed
    assert capsys.readouterr().out == ""


def test_missing_file_is_written_and_fails_once(tmp_path, monkeypatch):
    monkeypatch.setattr(goldens, "GOLDEN", tmp_path)
    monkeypatch.delenv("NVLOW_UPDATE_GOLDEN", raising=False)
    with pytest.raises(pytest.fail.Exception):
        goldens.check_golden("new.txt", "x\n")
    goldens.check_golden("new.txt", "x\n")
