"""A minimal YAML emitter and reader, enough for CDI specs (no dependency).

:func:`dump_yaml` writes block-style YAML for dicts, lists, strings, ints,
bools and None, the shape of every CDI spec. Strings are quoted whenever a
YAML 1.1 reader (go-yaml v2, used by the CDI library through
sigs.k8s.io/yaml) could read them as anything but a string: ``"0"``,
``"0:1"`` (a base-60 integer in YAML 1.1), ``"yes"``, ``"on"``.

:func:`load_yaml` reads the subset that nvlow and ``nvidia-ctk cdi generate``
write: block mappings and sequences (including go-yaml's indentless
``key:\\n- item`` sequences), plain, single- and double-quoted scalars,
one-line flow collections and comments. Anchors, tags, block scalars and
multiple documents raise :class:`YamlError` naming the line.

Example:
    >>> text = dump_yaml({"kind": "nvidia.com/gpu", "devices": [{"name": "0"}]})
    >>> print(text, end="")
    kind: nvidia.com/gpu
    devices:
    - name: "0"
    >>> load_yaml(text) == {"kind": "nvidia.com/gpu", "devices": [{"name": "0"}]}
    True
"""
from __future__ import annotations

import json
import re
from typing import Any, Dict, List, Optional, Tuple

_PLAIN_SAFE = re.compile(r"^[A-Za-z/_][A-Za-z0-9_./=+@,:-]*$")
# YAML 1.1 booleans and nulls (go-yaml v2 resolves all of these)
_BOOL_TRUE = {"y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"}
_BOOL_FALSE = {"n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"}
_NULLS = {"", "~", "null", "Null", "NULL"}
_INT_RE = re.compile(r"^[-+]?(0|[1-9][0-9_]*)$")
_INT_OTHER_RE = re.compile(r"^[-+]?0(x[0-9a-fA-F_]+|o?[0-7_]+|b[01_]+)$")
_FLOAT_RE = re.compile(r"^[-+]?(\.[0-9]+|[0-9][0-9_]*(\.[0-9_]*)?)([eE][-+]?[0-9]+)?$")
_SPECIAL_FLOATS = {".inf": float("inf"), ".Inf": float("inf"), ".INF": float("inf"),
                   "-.inf": float("-inf"), "-.Inf": float("-inf"), "-.INF": float("-inf"),
                   ".nan": float("nan"), ".NaN": float("nan"), ".NAN": float("nan")}


class YamlError(ValueError):
    """The text is not YAML this reader understands (the message names the line)."""


# ---------------------------------------------------------------- emitter
def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return json.dumps(value)
    if isinstance(value, str):
        if (_PLAIN_SAFE.match(value) and not value.endswith(":") and value not in _BOOL_TRUE
                and value not in _BOOL_FALSE and value not in _NULLS):
            return value
        # a JSON string (ASCII only: DEL and non-ASCII are \u escapes) is a valid YAML double-quoted scalar
        return json.dumps(value)
    raise TypeError(f"cannot write {type(value).__name__} as YAML")


def _emit(value: Any, indent: int, out: List[str]) -> None:
    pad = " " * indent
    if isinstance(value, dict):
        for key, item in value.items():
            k = _scalar(str(key))
            if isinstance(item, (dict, list)) and item:
                out.append(f"{pad}{k}:")
                # sequences under a mapping key are indentless, as go-yaml writes them
                _emit(item, indent if isinstance(item, list) else indent + 2, out)
            else:
                out.append(f"{pad}{k}: {_inline(item)}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, (dict, list)) and item:
                sub: List[str] = []
                _emit(item, indent + 2, sub)
                first = sub[0]
                out.append(f"{pad}- {first[indent + 2:]}")
                out.extend(sub[1:])
            else:
                out.append(f"{pad}- {_inline(item)}")
    else:
        out.append(pad + _scalar(value))


def _inline(value: Any) -> str:
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return _scalar(value)


def dump_yaml(value: Any, *, header: Optional[List[str]] = None, document_start: bool = False) -> str:
    """Block-style YAML text for ``value``; ``header`` lines become ``#`` comments.

    Example:
        >>> print(dump_yaml({"a": ["x", "on"], "b": {}}, document_start=True), end="")
        ---
        a:
        - x
        - "on"
        b: {}
    """
    lines: List[str] = ["---"] if document_start else []
    lines.extend(("# " + h).rstrip() for h in (header or []))
    if isinstance(value, (dict, list)) and not value:
        lines.append(_inline(value))
    else:
        _emit(value, 0, lines)
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- reader
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
        end = _quoted_end(content, lineno)
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


def _quoted_end(text: str, lineno: int) -> int:
    q = text[0]
    i = 1
    while i < len(text):
        if q == '"' and text[i] == "\\":
            i += 2
            continue
        if text[i] == q:
            if q == "'" and text[i + 1:i + 2] == "'":
                i += 2
                continue
            return i + 1
        i += 1
    raise YamlError(f"line {lineno}: unterminated quoted string")


_SIMPLE_ESCAPES = {"0": "\0", "a": "\a", "b": "\b", "t": "\t", "\t": "\t", "n": "\n", "v": "\v", "f": "\f",
                   "r": "\r", "e": "\x1b", " ": " ", '"': '"', "/": "/", "\\": "\\", "N": "\x85",
                   "_": "\xa0", "L": "\u2028", "P": "\u2029"}
_HEX_ESCAPES = {"x": 2, "u": 4, "U": 8}


def _unescape_double(body: str, lineno: int) -> str:
    """The value of a YAML double-quoted scalar's body (YAML 1.1/1.2 escapes, a superset of JSON's)."""
    out: List[str] = []
    i = 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        esc = body[i + 1:i + 2]
        if esc in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[esc])
            i += 2
        elif esc in _HEX_ESCAPES:
            digits = body[i + 2:i + 2 + _HEX_ESCAPES[esc]]
            if len(digits) != _HEX_ESCAPES[esc] or not all(d in "0123456789abcdefABCDEF" for d in digits):
                raise YamlError(f"line {lineno}: bad escape \\{esc}{digits} in double-quoted string")
            code = int(digits, 16)
            i += 2 + len(digits)
            if esc == "u" and 0xD800 <= code < 0xDC00 and body[i:i + 2] == "\\u":
                low = int(body[i + 2:i + 6], 16)  # a JSON-style surrogate pair
                code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                i += 6
            out.append(chr(code))
        else:
            raise YamlError(f"line {lineno}: bad escape \\{esc} in double-quoted string")
    return "".join(out)


def _parse_scalar(text: str, lineno: int) -> Any:
    if not text:
        return None
    if text[0] == '"':
        if _quoted_end(text, lineno) != len(text):
            raise YamlError(f"line {lineno}: text after quoted string: {text}")
        return _unescape_double(text[1:-1], lineno)
    if text[0] == "'":
        if _quoted_end(text, lineno) != len(text):
            raise YamlError(f"line {lineno}: text after quoted string: {text}")
        return text[1:-1].replace("''", "'")
    if text[0] in "&*!|>%@`":
        raise YamlError(f"line {lineno}: unsupported YAML feature {text[0]!r}")
    if text in _NULLS:
        return None
    if text in _BOOL_TRUE:
        return True
    if text in _BOOL_FALSE:
        return False
    if _INT_RE.match(text) or _INT_OTHER_RE.match(text):
        clean = text.replace("_", "")
        sign = -1 if clean.startswith("-") else 1
        body = clean.lstrip("+-")
        if len(body) > 1 and body[0] == "0" and body[1] not in "xob":
            return sign * int(body, 8)  # YAML 1.1 octal: 0755
        return sign * int(body, 0) if body[:2] in ("0x", "0o", "0b") else sign * int(body)
    if text in _SPECIAL_FLOATS:
        return _SPECIAL_FLOATS[text]
    if _FLOAT_RE.match(text) and any(c.isdigit() for c in text):
        return float(text.replace("_", ""))
    if text[0] in "[{":
        value, end = _parse_flow(text, 0, lineno)
        if text[end:].strip():
            raise YamlError(f"line {lineno}: text after flow collection: {text[end:].strip()}")
        return value
    return text


def _skip_spaces(text: str, i: int) -> int:
    while i < len(text) and text[i] == " ":
        i += 1
    return i


def _flow_item(text: str, i: int, stops: str, lineno: int) -> Tuple[Any, int]:
    """One flow value at ``text[i]``: a nested collection, a quoted or a plain scalar."""
    i = _skip_spaces(text, i)
    if i < len(text) and text[i] in "[{":
        return _parse_flow(text, i, lineno)
    if i < len(text) and text[i] in "\"'":
        end = i + _quoted_end(text[i:], lineno)
        return _parse_scalar(text[i:end], lineno), end
    j = i
    while j < len(text) and text[j] not in stops:
        if text[j] == ":" and ":" in stops and (j + 1 == len(text) or text[j + 1] in " ,]}"):
            break
        j += 1
    return _parse_scalar(text[i:j].strip(), lineno), j


def _parse_flow(text: str, i: int, lineno: int) -> Tuple[Any, int]:
    """A one-line flow collection starting at ``text[i]``; returns (value, end index)."""
    is_map = text[i] == "{"
    closer = "}" if is_map else "]"
    items: List[Any] = []
    mapping: Dict[Any, Any] = {}
    i += 1
    while True:
        i = _skip_spaces(text, i)
        if i >= len(text):
            raise YamlError(f"line {lineno}: unterminated flow collection")
        if text[i] == closer:
            return (mapping if is_map else items), i + 1
        if is_map:
            key, i = _flow_item(text, i, ",}:", lineno)
            if isinstance(key, (dict, list)):
                raise YamlError(f"line {lineno}: collection used as a mapping key")
            i = _skip_spaces(text, i)
            value = None
            if i < len(text) and text[i] == ":":
                value, i = _flow_item(text, i + 1, ",}", lineno)
            if key in mapping:
                raise YamlError(f"line {lineno}: duplicate key {key!r}")
            mapping[key] = value
        else:
            value, i = _flow_item(text, i, ",]", lineno)
            items.append(value)
        i = _skip_spaces(text, i)
        if i < len(text) and text[i] == ",":
            i += 1
        elif i < len(text) and text[i] != closer:
            raise YamlError(f"line {lineno}: expected ',' or {closer!r} in flow collection")


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
        return _parse_scalar(content, _n)

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
                items.append(_parse_scalar(rest, n))

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
            key = _parse_scalar(key_text, n) if key_text[0] in "\"'" else key_text
            if key in out:
                raise YamlError(f"line {n}: duplicate key {key!r}")
            self.pos += 1
            if rest:
                out[key] = _parse_scalar(rest, n)
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
