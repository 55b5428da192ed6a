"""A JSON reader for what the engines send: Engine API answers, ``docker``/``podman inspect`` output and
the docker CLI's ``config.json``.

``nvlow exec`` reads one Engine API answer on every wrapped ``docker run``, and ``import json`` loads
``re`` and ``enum`` with it (about 4 ms, a fifth of nvlow's whole share of the run). :func:`loads` is
RFC 8259 JSON (rfc-editor.org/rfc/rfc8259) as Python's ``json.loads`` reads it, without those imports:
for every text ``json.loads`` accepts, apart from its ``NaN``/``Infinity`` extension, the value is
equal (integers stay ``int``, numbers with a fraction or exponent are ``float``, a repeated key keeps
its last value, ``\\uXXXX`` surrogate pairs join, a lone surrogate stays as it is), and every text it
refuses raises :class:`JsonError`. tests/test_hotpath_parsers.py property-tests both against
``json.loads``. Beyond that: nesting deeper than :data:`MAX_DEPTH` is a :class:`JsonError` (``json``
raises ``RecursionError`` somewhere near 1,000), as is ``NaN``/``Infinity``, which no engine writes.

Strings, the bulk of an inspect document, are cut with ``str.find``; only an escape costs a loop.

Example:
    >>> loads('{"Config": {"Env": ["PATH=/bin", "A=\\\\u00e9"], "Labels": null}, "Size": 1.5e3}')
    {'Config': {'Env': ['PATH=/bin', 'A=é'], 'Labels': None}, 'Size': 1500.0}
    >>> loads('[1, 2,]')
    Traceback (most recent call last):
    ...
    nvlow.engine.jsondoc.JsonError: invalid JSON: expected a value at character 6
"""
from __future__ import annotations

from ..errors import NvlowError
from ..text import ASCII_DIGITS, HEX_DIGITS, digits_end

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Tuple

#: the deepest nesting of arrays and objects read (an Engine API answer nests a few levels; two Python
#: frames a level, well inside the interpreter's recursion limit wherever the reader is called from)
MAX_DEPTH = 128

_SPACE = " \t\n\r"
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_NUMBER_CHARS = frozenset("+-.eE") | ASCII_DIGITS
_NONZERO = frozenset("123456789")


class JsonError(NvlowError, ValueError):
    """The text is not JSON (the message says where, as a character offset)."""


def loads(text: str) -> Any:
    """The value of the JSON document ``text`` (see the module docstring)."""
    i = _skip(text, 0)
    value, i = _value(text, i, 0)
    i = _skip(text, i)
    if i != len(text):
        raise JsonError(f"invalid JSON: extra data at character {i}")
    return value


def _fail(what: str, i: int) -> JsonError:
    return JsonError(f"invalid JSON: {what} at character {i}")


def _skip(text: str, i: int) -> int:
    n = len(text)
    while i < n and text[i] in _SPACE:
        i += 1
    return i


def _value(text: str, i: int, depth: int) -> Tuple[Any, int]:
    c = text[i:i + 1]
    if c == '"':
        return _string(text, i + 1)
    if c == "{":
        return _object(text, i + 1, depth + 1)
    if c == "[":
        return _array(text, i + 1, depth + 1)
    if c == "-" or c in ASCII_DIGITS:
        return _number(text, i)
    if text.startswith("true", i):
        return True, i + 4
    if text.startswith("false", i):
        return False, i + 5
    if text.startswith("null", i):
        return None, i + 4
    raise _fail("expected a value", i)


def _object(text: str, i: int, depth: int) -> Tuple[Dict[str, Any], int]:
    if depth > MAX_DEPTH:
        raise _fail(f"nested deeper than {MAX_DEPTH} levels", i)
    out: Dict[str, Any] = {}
    i = _skip(text, i)
    if text.startswith("}", i):
        return out, i + 1
    while True:
        if not text.startswith('"', i):
            raise _fail("expected a property name in double quotes", i)
        key, i = _string(text, i + 1)
        i = _skip(text, i)
        if not text.startswith(":", i):
            raise _fail("expected ':'", i)
        value, i = _value(text, _skip(text, i + 1), depth)
        out[key] = value
        i, done = _after_item(text, i, "}")
        if done:
            return out, i


def _array(text: str, i: int, depth: int) -> Tuple[List[Any], int]:
    if depth > MAX_DEPTH:
        raise _fail(f"nested deeper than {MAX_DEPTH} levels", i)
    out: List[Any] = []
    i = _skip(text, i)
    if text.startswith("]", i):
        return out, i + 1
    while True:
        value, i = _value(text, i, depth)
        out.append(value)
        i, done = _after_item(text, i, "]")
        if done:
            return out, i


def _after_item(text: str, i: int, close: str) -> Tuple[int, bool]:
    """After an array item or object member: (start of the next one, False) past a comma, (the index
    after ``close``, True) at the end."""
    i = _skip(text, i)
    if text.startswith(",", i):
        return _skip(text, i + 1), False
    if text.startswith(close, i):
        return i + 1, True
    raise _fail(f"expected ',' or '{close}'", i)


def _plain(chunk: str, at: int) -> str:
    """A piece of a string between escapes: no control characters (JSON requires them escaped)."""
    if chunk and min(chunk) < " ":
        bad = next(k for k, c in enumerate(chunk) if c < " ")
        raise _fail("control character in a string", at + bad)
    return chunk


def _string(text: str, i: int) -> Tuple[str, int]:
    """The string whose opening quote is just before ``i``, and the index after its closing quote."""
    end = text.find('"', i)
    if end < 0:
        raise _fail("unterminated string", i - 1)
    if text.find("\\", i, end) < 0:
        return _plain(text[i:end], i), end + 1
    parts: List[str] = []
    while True:
        end = text.find('"', i)
        if end < 0:
            raise _fail("unterminated string", i)
        slash = text.find("\\", i, end)
        if slash < 0:
            parts.append(_plain(text[i:end], i))
            return "".join(parts), end + 1
        parts.append(_plain(text[i:slash], i))
        esc = text[slash + 1:slash + 2]
        if esc == "u":
            code = _hex4(text, slash + 2)
            i = slash + 6
            if 0xD800 <= code <= 0xDBFF and text.startswith("\\u", i):
                low = _hex4(text, i + 2)
                if 0xDC00 <= low <= 0xDFFF:  # a surrogate pair is one character
                    code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                    i += 6
            parts.append(chr(code))
        elif esc and esc in _ESCAPES:
            parts.append(_ESCAPES[esc])
            i = slash + 2
        else:
            raise _fail("invalid escape", slash)


def _hex4(text: str, i: int) -> int:
    digits = text[i:i + 4]
    if len(digits) != 4 or not HEX_DIGITS.issuperset(digits):
        raise _fail("invalid \\uXXXX escape", i - 2)
    return int(digits, 16)


def _number(text: str, i: int) -> Tuple[Any, int]:
    n = len(text)
    j = i
    while j < n and text[j] in _NUMBER_CHARS:
        j += 1
    token = text[i:j]
    integral = _number_kind(token)
    if integral is None:
        raise _fail("invalid number", i)
    try:
        return (int(token) if integral else float(token)), j
    except ValueError:  # an integer beyond Python's digit limit for int() (CPython 3.11+)
        raise _fail("number too long", i) from None


def _number_kind(token: str) -> Any:
    """True for a JSON integer, False for a JSON number with a fraction or exponent, None for neither:
    ``-?(0|[1-9][0-9]*)(\\.[0-9]+)?([eE][+-]?[0-9]+)?``."""
    n = len(token)
    k = 1 if token.startswith("-") else 0
    if k < n and token[k] == "0":
        k += 1
    elif k < n and token[k] in _NONZERO:
        k = digits_end(token, k + 1)
    else:
        return None
    integral = True
    if k < n and token[k] == ".":
        start, k = k + 1, digits_end(token, k + 1)
        if k == start:
            return None
        integral = False
    if k < n and token[k] in "eE":
        k += 1
        if k < n and token[k] in "+-":
            k += 1
        start, k = k, digits_end(token, k)
        if k == start:
            return None
        integral = False
    return integral if k == n else None
