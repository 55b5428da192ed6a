"""YAML scalars for the CDI reader and writer: YAML 1.1 resolution, quoting, flow collections.

What a plain scalar means is the one piece of knowledge the emitter
(:mod:`nvlow.cdi.yaml`) and the reader (:mod:`nvlow.cdi.yaml_load`) share.
The CDI library reads specs with go-yaml v2 (through sigs.k8s.io/yaml), a
YAML 1.1 reader, so ``yes``/``on``/``n`` are booleans and ``0755`` is octal:
:data:`BOOL_TRUE`, :data:`BOOL_FALSE` and :data:`NULLS` list the words the
emitter must quote. :func:`parse_scalar` resolves one scalar (plain, single-
or double-quoted, or a one-line flow collection) the way YAML 1.1 does,
raising :class:`YamlError` naming the line.

Example:
    >>> [parse_scalar(t, 1) for t in ("0755", "on", "'0'", "'it''s'", "[ro, {a: 1}]", "~")]
    [493, True, '0', "it's", ['ro', {'a': 1}], None]
"""
from __future__ import annotations

import re
from typing import Any, Dict, List, Tuple

# YAML 1.1 booleans and nulls (go-yaml v2 resolves all of these)
BOOL_TRUE = {"y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"}
BOOL_FALSE = {"n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"}
NULLS = {"", "~", "null", "Null", "NULL"}
_INT_RE = re.compile(r"^[-+]?(0|[1-9][0-9_]*)$")
_INT_OTHER_RE = re.compile(r"^[-+]?0(x[0-9a-fA-F_]+|o?[0-7_]+|b[01_]+)$")
_FLOAT_RE = re.compile(r"^[-+]?(\.[0-9]+|[0-9][0-9_]*(\.[0-9_]*)?)([eE][-+]?[0-9]+)?$")
_SPECIAL_FLOATS = {".inf": float("inf"), ".Inf": float("inf"), ".INF": float("inf"),
                   "-.inf": float("-inf"), "-.Inf": float("-inf"), "-.INF": float("-inf"),
                   ".nan": float("nan"), ".NaN": float("nan"), ".NAN": float("nan")}


class YamlError(ValueError):
    """The text is not YAML this reader understands (the message names the line)."""


def quoted_end(text: str, lineno: int) -> int:
    """The index just past the closing quote of the quoted scalar that starts ``text``."""
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


def parse_scalar(text: str, lineno: int) -> Any:
    """The value of one scalar or one-line flow collection, resolved as YAML 1.1 (go-yaml v2) does."""
    if not text:
        return None
    if text[0] == '"':
        if quoted_end(text, lineno) != len(text):
            raise YamlError(f"line {lineno}: text after quoted string: {text}")
        return _unescape_double(text[1:-1], lineno)
    if text[0] == "'":
        if quoted_end(text, lineno) != len(text):
            raise YamlError(f"line {lineno}: text after quoted string: {text}")
        return text[1:-1].replace("''", "'")
    if text[0] in "&*!|>%@`":
        raise YamlError(f"line {lineno}: unsupported YAML feature {text[0]!r}")
    if text in NULLS:
        return None
    if text in BOOL_TRUE:
        return True
    if text in BOOL_FALSE:
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
        end = i + quoted_end(text[i:], lineno)
        return parse_scalar(text[i:end], lineno), end
    j = i
    while j < len(text) and text[j] not in stops:
        if text[j] == ":" and ":" in stops and (j + 1 == len(text) or text[j + 1] in " ,]}"):
            break
        j += 1
    return parse_scalar(text[i:j].strip(), lineno), j


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

