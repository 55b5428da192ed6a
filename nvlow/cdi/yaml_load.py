"""The CDI YAML reader: block mappings and sequences of one document (no dependency).

:func:`load_yaml` reads the subset that nvlow and ``nvidia-ctk cdi generate``
write: block mappings and sequences (including go-yaml's indentless
``key:\\n- item`` sequences), plain, single- and double-quoted scalars,
one-line flow collections and comments. Anchors, tags, block scalars and
multiple documents raise :class:`~nvlow.cdi.yaml_scalar.YamlError` naming the
line. This module handles lines and indentation; what each scalar means is
:mod:`nvlow.cdi.yaml_scalar`'s job. Import it as :func:`nvlow.cdi.yaml.load_yaml`.
"""
from __future__ import annotations

import re
from typing import Any, Dict, List, Optional, Tuple

from .yaml_scalar import YamlError, parse_scalar, quoted_end

_Line = Tuple[int, int, str]  # (line number, indent, content without comment)


def _strip_comment(text: str, lineno: int) -> str:
    quote = ""
    i = 0
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\" and quote == '"':
                i += 2
                continue
            if c == quote:
                if quote == "'" and text[i + 1:i + 2] == "'":
                    i += 2
                    continue
                quote = ""
        elif c in "\"'" and (i == 0 or text[i - 1] in " [{,:-"):
            quote = c
        elif c == "#" and (i == 0 or text[i - 1] in " \t"):
            return text[:i].rstrip()
        i += 1
    if quote:
        raise YamlError(f"line {lineno}: unterminated quoted string")
    return text.rstrip()


def _tokenize(text: str) -> List[_Line]:
    lines: List[_Line] = []
    started = False
    for n, raw in enumerate(text.splitlines(), 1):
        stripped = raw.lstrip(" ")
        if stripped.startswith("\t") or (raw[:len(raw) - len(stripped)].count("\t")):
            raise YamlError(f"line {n}: tab used for indentation")
        content = _strip_comment(stripped, n)
        if not content:
            continue
        indent = len(raw) - len(stripped)
        if indent == 0 and (content == "---" or content.startswith("--- ")):
            if started:
                raise YamlError(f"line {n}: more than one YAML document")
            rest = content[3:].strip()
            if rest:
                lines.append((n, 0, rest))
                started = True
            continue
        if indent == 0 and content == "...":
            break
        if content.startswith(("&", "*", "!", "|", ">", "%", "@", "`")):
            raise YamlError(f"line {n}: unsupported YAML feature {content[0]!r}")
        started = True
        lines.append((n, indent, content))
    return lines


def _split_key(content: str, lineno: int) -> Optional[Tuple[str, str]]:
    """``key: rest`` → (key, rest); None when the line is not a mapping entry."""
    if content[0] in "\"'":
        end = quoted_end(content, lineno)
        after = content[end:]
        if after == ":" or after.startswith(": "):
            return content[:end], after[1:].strip()
        return None
    if content[0] in "[{":
        return None
    m = re.search(r":( |$)", content)
    if not m:
        return None
    return content[:m.start()].rstrip(), content[m.end():].strip()


class _Reader:
    def __init__(self, lines: List[_Line]) -> None:
        self.lines = lines
        self.pos = 0

    def peek(self) -> Optional[_Line]:
        return self.lines[self.pos] if self.pos < len(self.lines) else None

    def node(self, indent: int) -> Any:
        line = self.peek()
        assert line is not None
        _n, ind, content = line
        if content == "-" or content.startswith("- "):
            return self.sequence(ind)
        if _split_key(content, _n) is not None:
            return self.mapping(ind)
        self.pos += 1
        return parse_scalar(content, _n)

    def child(self, parent_indent: int, lineno: int, allow_indentless: bool) -> Any:
        nxt = self.peek()
        if nxt is None:
            return None
        _n, ind, content = nxt
        if ind > parent_indent:
            return self.node(ind)
        if allow_indentless and ind == parent_indent and (content == "-" or content.startswith("- ")):
            return self.sequence(ind)
        return None

    def sequence(self, indent: int) -> List[Any]:
        items: List[Any] = []
        while True:
            line = self.peek()
            if line is None or line[1] != indent or not (line[2] == "-" or line[2].startswith("- ")):
                if line is not None and line[1] > indent:
                    raise YamlError(f"line {line[0]}: bad indentation")
                return items
            n, _ind, content = line
            rest = content[1:].lstrip(" ")
            if not rest:
                self.pos += 1
                items.append(self.child(indent, n, allow_indentless=False))
                continue
            # "- key: value" / "- - x": the rest is a node indented past the dash
            offset = len(content) - len(rest)
            self.lines[self.pos] = (n, indent + offset, rest)
            if rest == "-" or rest.startswith("- ") or _split_key(rest, n) is not None:
                items.append(self.node(indent + offset))
            else:
                self.pos += 1
                items.append(parse_scalar(rest, n))

    def mapping(self, indent: int) -> Dict[Any, Any]:
        out: Dict[Any, Any] = {}
        while True:
            line = self.peek()
            if line is None or line[1] < indent:
                return out
            n, ind, content = line
            if ind > indent:
                raise YamlError(f"line {n}: bad indentation")
            split = _split_key(content, n)
            if split is None:
                if content == "-" or content.startswith("- "):
                    return out  # an indentless sequence ends here; the caller decides
                raise YamlError(f"line {n}: expected 'key: value', got {content!r}")
            key_text, rest = split
            # keys stay strings (CDI keys are field names; YAML 1.1 would turn `n:` into false)
            key = parse_scalar(key_text, n) if key_text[0] in "\"'" else key_text
            if key in out:
                raise YamlError(f"line {n}: duplicate key {key!r}")
            self.pos += 1
            if rest:
                out[key] = parse_scalar(rest, n)
            else:
                out[key] = self.child(indent, n, allow_indentless=True)


def load_yaml(text: str) -> Any:
    """Parse one YAML document of the supported subset (see the module docstring).

    Example:
        >>> load_yaml("---\\nopts:\\n- ro\\n- bind\\nn: '0'\\nm: 195\\nv: 0.5.0\\n")
        {'opts': ['ro', 'bind'], 'n': '0', 'm': 195, 'v': '0.5.0'}
    """
    lines = _tokenize(text)
    if not lines:
        return None
    reader = _Reader(lines)
    value = reader.node(lines[0][1])
    extra = reader.peek()
    if extra is not None:
        raise YamlError(f"line {extra[0]}: unexpected content {extra[2]!r}")
    return value
