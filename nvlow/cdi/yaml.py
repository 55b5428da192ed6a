"""A minimal YAML emitter and reader, enough for CDI specs (no dependency).

:func:`dump_yaml` writes block-style YAML for dicts, lists, strings, ints,
bools and None, the shape of every CDI spec. Strings are quoted whenever a
YAML 1.1 reader (go-yaml v2, used by the CDI library through
sigs.k8s.io/yaml) could read them as anything but a string: ``"0"``,
``"0:1"`` (a base-60 integer in YAML 1.1), ``"yes"``, ``"on"``. Quoted strings
use only the escapes go-yaml v2 knows: no ``\\/``, and ``\\UXXXXXXXX`` rather
than a JSON surrogate pair, which go-yaml refuses.

:func:`load_yaml` is nvlow's own reader for the subset of YAML that CDI specs
use: inside it, it gives the value go-yaml v2 (the engines' parser) gives;
everything else, and everything go-yaml refuses, raises :class:`YamlError`
naming the line and column; see docs/cdi-spec-rules.md "Reading specs: the YAML that engines accept".

The emitter lives here, with the YAML 1.1 boolean and null words it must
quote and :class:`YamlError`; the reader is :mod:`nvlow.cdi.yaml_load` and
its YAML 1.1 scalar rules are :mod:`nvlow.cdi.yaml_scalar` (both loaded only
when a spec is read). Import all three public names from this module.

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

from ..errors import NvlowError
from ..text import ASCII_DIGITS, ASCII_LETTERS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, List, Optional, Union


__all__ = ["YamlError", "dump_yaml", "load_yaml"]

# YAML 1.1 booleans and nulls, in the spellings a YAML 1.1 reader resolves
BOOL_TRUE = {"y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"}
BOOL_FALSE = {"n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"}
NULLS = {"", "~", "null", "Null", "NULL"}


class YamlError(NvlowError, ValueError):
    """The text is not YAML the engines' reader accepts, or uses what nvlow does not support.

    ``line`` and ``column`` (1-based) say where, when known; the message starts with them.
    """

    def __init__(self, problem: str, *, line: Optional[int] = None, column: Optional[int] = None) -> None:
        where = f"line {line} column {column}: " if line is not None and column is not None else ""
        super().__init__(where + problem)
        self.problem = problem
        self.line = line
        self.column = column


#: a scalar written plain: one of _PLAIN_FIRST, then any of _PLAIN_REST (the expression
#: [A-Za-z/_][A-Za-z0-9_./=+@,:-]*, checked as sets: no regular expression on the hot path)
_PLAIN_FIRST = ASCII_LETTERS | frozenset("/_")
_PLAIN_REST = _PLAIN_FIRST | ASCII_DIGITS | frozenset(".=+@,:-")
#: plain-looking words a YAML 1.1 reader takes for a boolean or null: written quoted
_QUOTED_WORDS = frozenset(BOOL_TRUE | BOOL_FALSE | NULLS)


# ---------------------------------------------------------------- emitter
def _string(value: str) -> str:
    if (value and value[0] in _PLAIN_FIRST and _PLAIN_REST.issuperset(value) and value[-1] != ":"
            and value not in _QUOTED_WORDS):
        return value
    return _double_quoted(value)


def _scalar(value: Any) -> str:
    if type(value) is str:  # most scalars of a spec: tested first (the writer's one hot path)
        return _string(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return ".nan" if value != value else (".inf" if value > 0 else "-.inf")  # YAML 1.1, not JSON's NaN
        return repr(value)  # the shortest spelling that reads back as the same float (JSON's too)
    if isinstance(value, str):  # a str subclass
        return _string(value)
    raise TypeError(f"cannot write {type(value).__name__} as YAML")


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}


def _double_quoted(value: str) -> str:
    """A double-quoted scalar in printable ASCII: JSON's escapes, ``\\uXXXX``, and ``\\UXXXXXXXX`` above
    U+FFFF (go-yaml refuses the surrogate pairs JSON uses there)."""
    out = ['"']
    for c in value:
        code = ord(c)
        if c in _ESCAPES:
            out.append(_ESCAPES[c])
        elif 0x20 <= code < 0x7F:
            out.append(c)
        elif 0xD800 <= code <= 0xDFFF:
            raise YamlError(f"cannot write {value!r} as YAML: it holds a lone surrogate (bytes that are not UTF-8)")
        elif code > 0xFFFF:
            out.append(f"\\U{code:08x}")
        else:
            out.append(f"\\u{code:04x}")
    out.append('"')
    return "".join(out)


def _emit(value: Any, indent: int, out: List[str]) -> None:
    pad = " " * indent
    if isinstance(value, dict):
        for key, item in value.items():
            k = _string(key if type(key) is str else str(key))
            if type(item) is str:
                out.append(f"{pad}{k}: {_string(item)}")
            elif isinstance(item, (dict, list)) and item:
                out.append(f"{pad}{k}:")
                # sequences under a mapping key are indentless, as go-yaml writes them
                _emit(item, indent if isinstance(item, list) else indent + 2, out)
            else:
                out.append(f"{pad}{k}: {_inline(item)}")
    elif isinstance(value, list):
        for item in value:
            if type(item) is str:
                out.append(f"{pad}- {_string(item)}")
            elif isinstance(item, (dict, list)) and item:
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


def load_yaml(text: Union[str, bytes]) -> Any:
    """The document in ``text`` (:func:`nvlow.cdi.yaml_load.load_yaml`, imported when first needed:
    writing a spec never reads one)."""
    from .yaml_load import load_yaml as load

    return load(text)
