"""Loaders for the real-world samples in tests/data/realworld (shared by the test_realworld_* files)."""
from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

ROOT = os.path.join(os.path.dirname(__file__), "data", "realworld")


@dataclass(frozen=True)
class Sample:
    name: str
    source: str
    expect: str
    body: str


def samples(kind: str) -> List[Sample]:
    """Every file of ``kind``: ``# source:``/``# expect:`` header lines, then the text exactly as pasted."""
    out = []
    folder = os.path.join(ROOT, kind)
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name), encoding="utf-8", newline="") as fh:
            text = fh.read()
        source = expect = ""
        while text.startswith("# source:") or text.startswith("# expect:"):
            line, _, text = text.partition("\n")
            key, _, value = line[2:].partition(":")
            if key == "source":
                source = value.strip()
            else:
                expect = value.strip()
        assert source, f"{name}: no # source line"
        out.append(Sample(name, source, expect, text))
    return out


def keyvals(expect: str, sep: str = " ") -> Dict[str, str]:
    return dict(part.split("=", 1) for part in expect.split(sep) if part.strip())


@dataclass(frozen=True)
class CommandLine:
    source: str
    image: str
    gpus: Optional[str]
    select: Optional[str]
    text: str

    @property
    def argv(self) -> List[str]:
        return shlex.split(self.text.replace("\\\n", " "))

    @property
    def id(self) -> str:
        return " ".join(self.argv)[:60]


def command_lines() -> List[CommandLine]:
    with open(os.path.join(ROOT, "cmdlines.txt"), encoding="utf-8") as fh:
        blocks = fh.read().split("\n\n")
    out = []
    for block in blocks:
        meta: Dict[str, str] = {}
        body: List[str] = []
        for line in block.strip("\n").splitlines():
            if line.startswith("# ") and not body:
                key, _, value = line[2:].partition(":")
                meta[key.strip()] = value.strip()
            elif line and not line.startswith("#"):
                body.append(line)
        if not body:
            continue  # the file header
        assert "source" in meta and "image" in meta, block
        out.append(CommandLine(meta["source"], meta["image"], meta.get("gpus"), meta.get("select"),
                               "\n".join(body)))
    return out


def table(name: str) -> List[Tuple[str, ...]]:
    with open(os.path.join(ROOT, name), encoding="utf-8") as fh:
        return [tuple(line.rstrip("\n").split("\t")) for line in fh if line.strip() and not line.startswith("#")]


def test_every_sample_names_its_source() -> None:
    for kind in ("version", "information", "devices", "mig-minors"):
        for s in samples(kind):
            assert s.source and s.expect, s.name
    for c in command_lines():
        assert c.source and c.image and c.argv, c.text
    for row in table("visible-devices.txt") + table("require.txt"):
        assert row[-1].strip(), row
