"""YAML scalars for the CDI reader and writer: what a plain scalar means, and map keys as strings.

Engines read CDI specs through ``sigs.k8s.io/yaml``, which parses with go-yaml
v2 (a YAML 1.1 reader) and then turns the result into JSON. So a plain
``yes``/``on``/``n`` is a boolean, ``0755`` is octal and ``08`` (not octal) is
the float 8.0, while quoted and block scalars are always strings; map keys
that are not strings become strings (``n:`` is the key ``"false"``, ``1.5:`` is
``"1.5"``) and a null or a too large unsigned key makes the file unreadable.
:func:`resolve_plain` and :func:`key_string` are those two rules, written for
nvlow from the YAML 1.1 type definitions (yaml.org/type: bool, null, int,
float), Go's documented ``strconv`` number syntax, and the values recorded in
``tests/data/cdi-yaml-corpus``. The boolean and null words come from the
emitter (:mod:`nvlow.cdi.yaml`), which must quote them and, writing a spec,
loads neither this module nor ``math``.

Example:
    >>> [resolve_plain(t) for t in ("0755", "08", "on", "~", "0x1f", "1_000", "0.5.0", ".5", "-.inf")]
    [493, 8.0, True, None, 31, 1000, '0.5.0', 0.5, -inf]
    >>> [key_string(k) for k in (False, 10, 1.5, 1e6, "x")]
    ['false', '10', '1.5', '1e+06', 'x']
"""
from __future__ import annotations

import math
import struct

from ..text import lazy_re
from .yaml import BOOL_FALSE, BOOL_TRUE, NULLS
from .yaml import YamlError as YamlError  # defined with the emitter; re-exported for older imports

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, Optional


#: plain scalars with a fixed meaning: the emitter's boolean and null words and YAML 1.1's spellings of NaN and infinity
_WORDS: Dict[str, Any] = {}
for _word in BOOL_TRUE:
    _WORDS[_word] = True
for _word in BOOL_FALSE:
    _WORDS[_word] = False
for _word in NULLS:
    _WORDS[_word] = None
for _spelling in ("nan", "NaN", "NAN"):
    _WORDS["." + _spelling] = math.nan
for _spelling in ("inf", "Inf", "INF"):
    _WORDS["." + _spelling] = _WORDS["+." + _spelling] = math.inf
    _WORDS["-." + _spelling] = -math.inf

#: a number has to start with one of these; anything else that is not in _WORDS is a string
_NUMBER_START = frozenset("+-.0123456789")
#: YAML 1.1's float syntax as the engines apply it (underscores removed first): 1.5, -2., .5, 6.8523e+5, 123456e1
_FLOAT = lazy_re(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?")
#: a float that starts with '.', as Go's ParseFloat reads it
_DOT_FLOAT = lazy_re(r"\.[0-9]+(?:[eE][-+]?[0-9]+)?")
_INT64_MIN, _INT64_MAX, _UINT64_MAX = -2 ** 63, 2 ** 63 - 1, 2 ** 64 - 1
_MIN_UINT64_ONLY = 2 ** 63  # the engines read 2**63 … 2**64-1 as uint64, which sigs.k8s.io/yaml refuses as a key
_BASES = {"b": 2, "o": 8, "x": 16}


def _digits_value(digits: str, base: int) -> Optional[int]:
    """``digits`` (no sign, no prefix, no underscores) as a number in ``base``; None if any is not a digit of
    that base or there are none. Python's int() is not used: it would take spaces and underscores."""
    if not digits:
        return None
    value = 0
    for c in digits:
        d = int(c, 36) if c.isascii() and c.isalnum() else 99
        if d >= base:
            return None
        value = value * base + d
    return value


def _unsigned(text: str) -> Optional[int]:
    """An unsigned integer literal in Go's syntax (``12``, ``0755``/``0o755`` octal, ``0x1F``, ``0b101``)."""
    if len(text) > 1 and text[0] == "0":
        base = _BASES.get(text[1].lower())
        return _digits_value(text[2:], base) if base else _digits_value(text[1:], 8)
    return _digits_value(text, 10)


def _integer(text: str) -> Optional[int]:
    """An integer the engines read as int64 (a sign allowed) or, failing that, as uint64 (no sign)."""
    sign = text[:1] if text[:1] in ("+", "-") else ""
    magnitude = _unsigned(text[len(sign):])
    if magnitude is None:
        return None
    value = -magnitude if sign == "-" else magnitude
    if _INT64_MIN <= value <= _INT64_MAX:
        return value
    if not sign and value <= _UINT64_MAX:
        return value  # a Go uint64
    return None


def _binary_with_sign(text: str) -> Optional[int]:
    """The engines' extra binary spellings, where a sign may follow the prefix: ``0b-1`` is -1,
    ``-0b101010`` is -42 (corpus: go2-unmarshal-28, octal-and-not)."""
    if text.startswith("0b"):
        body = text[2:]
        sign = body[:1] if body[:1] in ("+", "-") else ""
        magnitude = _digits_value(body[len(sign):], 2)
        if magnitude is None:
            return None
        value = -magnitude if sign == "-" else magnitude
        if _INT64_MIN <= value <= _INT64_MAX or (not sign and value <= _UINT64_MAX):
            return value
        return None
    if text.startswith("-0b"):
        magnitude = _digits_value(text[3:], 2)
        return -magnitude if magnitude is not None and -magnitude >= _INT64_MIN else None
    return None


def _underscores_between_digits(text: str) -> bool:
    """Each ``_`` sits between two digits (Go's rule for underscores in number literals; a sign is ignored)."""
    body = text[1:] if text[:1] in ("+", "-") else text
    return all(c != "_" or (0 < i < len(body) - 1 and body[i - 1].isdigit() and body[i + 1].isdigit())
               for i, c in enumerate(body))


def _finite(text: str) -> Optional[float]:
    value = float(text)
    return None if math.isinf(value) else value  # out of range: the scalar stays a string


def resolve_plain(text: str) -> Any:
    """The value of a plain (unquoted, untagged) scalar, as the engines resolve it into ``interface{}``.

    Timestamps stay strings; integers above 2**63-1 are Go ``uint64`` values (Python ints here), and
    larger ones become floats; a float too large for a double stays a string.
    """
    if text in _WORDS:
        return _WORDS[text]
    if text[0] not in _NUMBER_START:
        return text
    bare = text.replace("_", "")
    if text[0] == ".":
        if _DOT_FLOAT.fullmatch(bare) and _underscores_between_digits(text):
            value = _finite(bare)
            if value is not None:
                return value
        return text
    number = _integer(bare)
    if number is not None:
        return number
    if _FLOAT.fullmatch(bare):
        value = _finite(bare)
        if value is not None:
            return value
    number = _binary_with_sign(bare)
    return text if number is None else number


def _format_float32_g(value: float) -> str:
    """Go's ``strconv.FormatFloat(value, 'g', -1, 32)``: shortest digits that survive a float32."""
    if math.isnan(value):
        return "NaN"
    try:
        f32 = struct.unpack("<f", struct.pack("<f", value))[0]
    except OverflowError:
        f32 = math.copysign(math.inf, value)
    if math.isinf(f32):
        return "+Inf" if f32 > 0 else "-Inf"
    if f32 == 0:
        return "-0" if math.copysign(1.0, f32) < 0 else "0"
    digits = ""
    for precision in range(1, 18):
        text = f"{f32:.{precision - 1}e}"
        if struct.unpack("<f", struct.pack("<f", float(text)))[0] == f32:
            digits = text
            break
    mantissa, _e, exp_text = digits.partition("e")
    sign = "-" if mantissa.startswith("-") else ""
    figures = mantissa.lstrip("-").replace(".", "").rstrip("0") or "0"
    exp = int(exp_text)
    if exp < -4 or exp >= 6:  # %e: at least two exponent digits
        body = figures[0] + ("." + figures[1:] if len(figures) > 1 else "")
        return f"{sign}{body}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if exp < 0:
        return f"{sign}0.{'0' * (-exp - 1)}{figures}"
    whole = figures[:exp + 1].ljust(exp + 1, "0")
    frac = figures[exp + 1:]
    return f"{sign}{whole}" + (f".{frac}" if frac else "")


def key_string(key: Any) -> Optional[str]:
    """A decoded map key as sigs.k8s.io/yaml turns it into a JSON object key; None when it refuses it.

    Strings stay, booleans become ``true``/``false``, integers decimal, floats Go's 32-bit ``%g``
    (``.inf``, ``-.inf``, ``.nan`` for the specials); null and uint64 keys are refused.
    """
    if isinstance(key, str):
        return key
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, int):
        return str(key) if key < _MIN_UINT64_ONLY else None
    if isinstance(key, float):
        text = _format_float32_g(key)
        return {"+Inf": ".inf", "-Inf": "-.inf", "NaN": ".nan"}.get(text, text)
    return None
