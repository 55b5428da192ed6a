"""The CDI YAML reader: nvlow's own reader for the YAML subset CDI spec files use (no dependency).

Engines read spec files (``.yaml`` and ``.json`` alike) with ``sigs.k8s.io/yaml``
v1.4.0, which parses with go-yaml v2 and turns the result into JSON. nvlow does
not copy that reader. :func:`load_yaml` is a small recursive-descent reader,
driven by lines and indentation in block context and by characters inside
``[ ]``/``{ }``, for a clearly defined subset of YAML 1.1; inside it, it gives
the value go-yaml v2 gives, and outside it, it refuses. A refusal is always a
:class:`~nvlow.cdi.yaml.YamlError` whose one-line message starts with
``line L column C:``; it is never a guess at a value.

The subset (docs/cdi-spec-rules.md "Reading specs: the YAML that engines accept" has the full list):

- block mappings and sequences, including ``- key: value`` entries, nested
  ``- - x`` entries and go-yaml's indentless ``key:\\n- item`` sequences;
  indentation with spaces only;
- flow sequences and mappings (JSON included) on one line or several, with
  trailing commas, ``"key":value`` without a space, and single-pair
  ``[key: value]`` entries;
- plain scalars (several lines in block context; one line inside ``[ ]``/``{ }``),
  single- and double-quoted scalars on one or several lines, with the escapes
  ``\\0 \\a \\b \\t \\n \\v \\f \\r \\e \\  \\" \\' \\\\ \\N \\_ \\L \\P``, ``\\xXX``,
  ``\\uXXXX``, ``\\UXXXXXXXX`` (a Unicode scalar value: no surrogates, at most
  U+10FFFF) and escaped line breaks;
- literal and folded block scalars (``|``, ``>``) with the ``-``/``+`` chomping
  indicators and an indentation found from their first line;
- comments, a leading ``---`` and an optional ``...``; the reader stops at the
  first ``---`` or ``...`` line after the document and ignores the rest, as
  go-yaml's ``Unmarshal`` reads only the first document;
- UTF-8 (an optional byte-order mark first) or UTF-16 with a byte-order mark;
  line breaks LF, CRLF, CR and NEL.

Refused on purpose, though go-yaml may accept them: anchors (``&a``), aliases
(``*a``) and merge keys (``<<``), tags (``!!str``), directives (``%YAML``),
complex keys (``? key``), block scalar indentation indicators (``|2``), tabs in
indentation, a comment with no space before it, a plain scalar that starts with
``?`` or ``:`` or spans lines inside ``[ ]``/``{ }``, keys longer than 1000
characters, nesting deeper than :data:`MAX_DEPTH` levels, U+2028/U+2029 and a
byte-order mark anywhere but at the start, and two keys that become the same JSON key
(``1`` and ``'1'``: sigs.k8s.io/yaml keeps one of them at random).
Every document go-yaml rejects is rejected too, as far as the corpus in
``tests/data/cdi-yaml-corpus`` and the YAML 1.1/1.2 specifications
(yaml.org/spec) tell: those are the sources of the facts here, not go-yaml's
code. What a plain scalar means and how a key becomes a string is
:mod:`nvlow.cdi.yaml_scalar`. Import the reader as :func:`nvlow.cdi.yaml.load_yaml`.
"""
from __future__ import annotations

import bisect
import re

from ..text import HEX_DIGITS
from .yaml import YamlError
from .yaml_scalar import key_string, resolve_plain

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, NoReturn, Optional, Tuple, Union


#: collections nested deeper than this are refused (CDI specs need fewer than 10)
MAX_DEPTH = 200
#: longer keys are refused (go-yaml refuses keys from 1024 characters on)
MAX_KEY_CHARS = 1000

# characters the reader accepts at all: tab, line breaks, printable ASCII, NEL and Unicode above
# U+00A0 except surrogates, U+2028/U+2029 (line separators nvlow refuses), U+FEFF and U+FFFE/U+FFFF
_BAD_CHAR = re.compile("[^\t\n\r\x20-\x7e\x85\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd"
                       "\U00010000-\U0010ffff]")
_SIMPLE_ESCAPES = {"0": "\0", "a": "\x07", "b": "\x08", "t": "\t", "\t": "\t", "n": "\n", "v": "\x0b",
                   "f": "\x0c", "r": "\r", "e": "\x1b", " ": " ", '"': '"', "'": "'", "\\": "\\", "N": "\x85",
                   "_": "\xa0", "L": "\u2028", "P": "\u2029"}
_HEX_ESCAPES = {"x": 2, "u": 4, "U": 8}
_FLOW_INDICATORS = frozenset(",[]{}")
_NEVER_START = frozenset("&*!|>%@`")  # anchors, aliases, tags, block scalars, directives, reserved
_FEATURE = {"&": "anchors (&name)", "*": "aliases (*name)", "!": "YAML tags", "%": "directives (%YAML, %TAG)"}


def _key_repr(key: Any) -> str:
    if key is None:
        return "null"
    if isinstance(key, bool):
        return "true" if key else "false"
    return repr(key) if isinstance(key, str) else str(key)


class _Reader:
    """One document: ``text`` has LF line breaks only; ``i`` is the cursor."""

    def __init__(self, text: str) -> None:
        self.s = text
        self.n = len(text)
        self.i = 0
        self.depth = 0
        self.starts = [0] + [m.end() for m in re.finditer("\n", text)]

    # ------------------------------------------------------------ positions and errors
    def fail(self, problem: str, at: Optional[int] = None) -> NoReturn:
        at = self.i if at is None else at
        if at >= self.n and self.n and self.s[-1] != "\n":
            # the end of a file whose last line has no line break counts as the start of one more line
            raise YamlError(problem, line=len(self.starts) + 1, column=1)
        row = bisect.bisect_right(self.starts, at) - 1
        raise YamlError(problem, line=row + 1, column=at - self.starts[row] + 1)

    def where(self, at: int) -> str:
        row = bisect.bisect_right(self.starts, at) - 1
        return f"line {row + 1} column {at - self.starts[row] + 1}"

    def column(self, at: int) -> int:
        return at - self.starts[bisect.bisect_right(self.starts, at) - 1]

    def ch(self, at: int) -> str:
        """The character at ``at``, or NUL past the end (NUL never gets this far: it is refused first)."""
        return self.s[at] if at < self.n else "\0"

    def blank(self, at: int) -> bool:
        """A space, a tab, a line break or the end."""
        return at >= self.n or self.s[at] in " \t\n"

    def marker(self, at: int) -> bool:
        """``---`` or ``...`` at the start of a line, then a blank: a document boundary."""
        return (self.column(at) == 0 and self.s[at:at + 3] in ("---", "...")
                and (at + 3 >= self.n or self.s[at + 3] in " \t\n"))

    def refuse_feature(self, at: int) -> NoReturn:
        """Anchors, aliases, tags and directives (outside the subset), '@' and '`' (reserved)."""
        c = self.s[at]
        if c in "@`" or (c == "%" and self.column(at) != 0):
            self.fail(f"found character that cannot start any token ({c!r})", at)
        end = at
        while end < self.n and self.s[end] not in " \t\n,[]{}":
            end += 1
        self.fail(f"{_FEATURE[c]} are not supported in CDI specs (found {self.s[at:end][:40]!r})", at)

    def enter(self, at: int) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            self.fail(f"collections nested deeper than {MAX_DEPTH} levels (nvlow's limit)", at)

    # ------------------------------------------------------------ lines
    def line_end(self, at: int) -> int:
        end = self.s.find("\n", at)
        return self.n if end < 0 else end

    def finish_line(self, at: int) -> None:
        """After a node: only blanks and a comment may follow on this line; move to the next line."""
        j = at
        while j < self.n and self.s[j] in " \t":
            j += 1
        if j < self.n and self.s[j] != "\n":
            if self.s[j] != "#":
                self.fail(f"unexpected {self.s[j]!r} after the value", j)
            if self.s[j - 1] not in " \t":
                self.fail("a comment needs a space before '#'", j)
        self.i = min(self.line_end(j) + 1, self.n)

    def next_content(self) -> Tuple[int, int]:
        """The first character and column of the next line with content (blank and comment lines
        skipped), without moving; (n, -1) at the end. Tabs in block indentation are refused."""
        j = self.i
        while j < self.n:
            start = j
            while j < self.n and self.s[j] == " ":
                j += 1
            if j < self.n and self.s[j] == "\t":
                self.fail("tabs are not allowed in indentation", j)
            if j >= self.n:
                break
            if self.s[j] == "\n":
                j += 1
                continue
            if self.s[j] == "#":
                j = self.line_end(j) + 1
                continue
            return j, j - start
        return self.n, -1

    # ------------------------------------------------------------ document
    def document(self) -> Any:
        at, col = self.next_content()
        if col < 0:
            return None
        if col == 0 and self.s[at] == "%":
            self.fail("directives (%YAML, %TAG) are not supported in CDI specs", at)
        if self.marker(at) and self.s[at] == "-":
            j = at + 3
            while j < self.n and self.s[j] == " ":
                j += 1
            if j < self.n and self.s[j] == "\t":
                self.fail("tabs are not allowed here", j)
            if j >= self.n or self.s[j] in "#\n":
                self.finish_line(j)
                at, col = self.next_content()
                if col < 0 or self.marker(at):
                    return None
            else:
                # "--- value": a scalar or a flow collection, never a block collection
                value = self.node(j, -1, inline=True)
                return self.end_document(value)
        elif self.marker(at):
            self.fail("a document end marker ('...') with no document before it", at)
        return self.end_document(self.node(at, -1, inline=False))

    def end_document(self, value: Any) -> Any:
        at, col = self.next_content()
        if col >= 0 and not self.marker(at):
            self.fail("unexpected content after the document's top-level value", at)
        return value

    # ------------------------------------------------------------ block nodes
    def node(self, at: int, enclosing: int, inline: bool) -> Any:
        """The node whose first character is ``s[at]``; ``enclosing`` is the column of the innermost
        block collection (-1 at the top). ``inline``: it follows ``key:`` or ``---`` on the same line,
        where no block collection may start (after ``- `` one may: ``- a: 1``, ``- - x``)."""
        c = self.s[at]
        col = self.column(at)
        if c == "-" and self.blank(at + 1):
            if inline:
                self.fail("a block sequence cannot start on the line of its key", at)
            return self.sequence(at, col)
        if c in _NEVER_START and c not in "|>":
            self.refuse_feature(at)
        if c in "|>":
            return self.block_scalar(at, enclosing)
        if c in "?:" and self.blank(at + 1):
            if c == "?":
                self.fail("complex keys ('? key') are not supported in CDI specs", at)
            self.fail("did not find expected key", at)
        if c in "?:":
            self.fail(f"a plain scalar starting with {c!r} is not supported", at)
        if c in ",]}":
            self.fail(f"unexpected {c!r}", at)
        if c == "#":
            self.fail("unexpected comment", at)
        if c in "[{":
            value = self.flow(at)
            j = self.i
            while j < self.n and self.s[j] in " \t":
                j += 1
            if self.ch(j) == ":":
                self.fail("a collection cannot be a mapping key", at)
            self.finish_line(self.i)
            return value
        if c in "\"'":
            text, end = self.quoted(at)
            j = end
            while j < self.n and self.s[j] in " \t":
                j += 1
            if self.ch(j) == ":" and self.blank(j + 1):
                if inline:
                    self.fail("mapping values are not allowed in this context", j)
                return self.mapping(at, col)
            self.finish_line(end)
            return text
        text, end, is_key = self.plain_line(at)
        if is_key:
            if inline:
                self.fail("mapping values are not allowed in this context", end)
            return self.mapping(at, col)
        return self.plain_block(text, end, enclosing)

    def value_after(self, at: int, parent: int, indentless: bool) -> Any:
        """The value after ``key:`` or ``-`` at ``at`` (the indicator's end) of a collection at ``parent``."""
        j = at
        while j < self.n and self.s[j] in " \t":
            j += 1
        if j < self.n and self.s[j] not in "#\n":
            return self.node(j, parent, inline=True)
        if j < self.n and self.s[j] == "#" and j == at:
            self.fail("a comment needs a space before '#'", j)
        self.finish_line(j)
        nxt, col = self.next_content()
        if col < 0 or self.marker(nxt):
            return None
        if col > parent:
            return self.node(nxt, parent, inline=False)
        if indentless and col == parent and self.s[nxt] == "-" and self.blank(nxt + 1):
            return self.sequence(nxt, col)
        return None

    def mapping(self, at: int, col: int) -> Dict[str, Any]:
        self.enter(at)
        out: Dict[str, Any] = {}
        originals: Dict[str, Any] = {}
        while True:
            key, key_end = self.block_key(at)
            value = self.value_after(key_end + 1, col, indentless=True)
            self.store(out, originals, key, value, at)
            nxt, ncol = self.next_content()
            if ncol < 0 or self.marker(nxt) or ncol < col:
                break
            if ncol > col:
                self.fail("bad indentation: a mapping entry is indented more than the ones before", nxt)
            at = nxt
        self.depth -= 1
        return out

    def block_key(self, at: int) -> Tuple[Any, int]:
        """A block mapping key at ``at``: its value and the index of its ':'."""
        c = self.s[at]
        if c in "\"'":
            key, end = self.quoted(at)
            if "\n" in self.s[at:end]:
                self.fail("a key must fit on one line", at)
        elif c in _NEVER_START or c in ",[]{}#" or (c in "?:-" and self.blank(at + 1)) or c in "?:":
            if c == "-" and self.blank(at + 1):
                self.fail("expected a mapping key, found a sequence entry", at)
            if c == "?" and self.blank(at + 1):
                self.fail("complex keys ('? key') are not supported in CDI specs", at)
            if c in "&*!%@`":
                self.refuse_feature(at)
            if c in "[{":
                self.fail("a collection cannot be a mapping key", at)
            self.fail(f"expected a mapping key, found {c!r}", at)
        else:
            text, end, is_key = self.plain_line(at)
            if not is_key:
                self.fail("expected 'key: value', found a scalar with no ':'", at)
            if text == "<<":
                self.fail("merge keys (<<) are not supported in CDI specs", at)
            key = resolve_plain(text)
            end = self.s.index(":", end)
            return key, self.check_key_length(at, end)
        j = end
        while j < self.n and self.s[j] in " \t":
            j += 1
        if self.ch(j) != ":" or not self.blank(j + 1):
            self.fail("expected ':' after the key", j)
        return key, self.check_key_length(at, j)

    def check_key_length(self, at: int, colon: int) -> int:
        if colon - at > MAX_KEY_CHARS:
            self.fail(f"a key longer than {MAX_KEY_CHARS} characters is not supported", at)
        return colon

    def store(self, out: Dict[str, Any], originals: Dict[str, Any], key: Any, value: Any, at: int) -> None:
        name = key_string(key)
        if name is None:
            self.fail(f"map key {_key_repr(key)} cannot be a JSON object key", at)
        if name in out:
            first = originals[name]
            if type(first) is type(key) and first == key:
                self.fail(f"duplicate key {_key_repr(key)}", at)
            self.fail(f"keys {_key_repr(first)} and {_key_repr(key)} are both {name!r} for the engines", at)
        out[name] = value
        originals[name] = key

    def sequence(self, at: int, col: int) -> List[Any]:
        self.enter(at)
        items: List[Any] = []
        while True:
            j = at + 1
            if self.ch(j) == "\t" or (self.ch(j) == " " and self.s[j:self.line_end(j)].lstrip(" ")[:1] == "\t"):
                self.fail("a tab after '-' is not allowed", j)
            while j < self.n and self.s[j] == " ":
                j += 1
            if j < self.n and self.s[j] not in "#\n":
                items.append(self.node(j, col, inline=False))
            else:
                if j < self.n and self.s[j] == "#" and j == at + 1:
                    self.fail("a comment needs a space before '#'", j)
                self.finish_line(j)
                nxt, ncol = self.next_content()
                items.append(None if ncol <= col or self.marker(nxt) else self.node(nxt, col, inline=False))
            nxt, ncol = self.next_content()
            if ncol < 0 or self.marker(nxt) or ncol < col:
                break
            if ncol > col:
                self.fail("bad indentation: a sequence entry is indented more than the ones before", nxt)
            if not (self.s[nxt] == "-" and self.blank(nxt + 1)):
                break  # the caller decides: an indentless sequence's mapping goes on, anything else fails
            at = nxt
        self.depth -= 1
        return items

    # ------------------------------------------------------------ plain scalars
    def plain_line(self, at: int, flow: bool = False) -> Tuple[str, int, bool]:
        """One line of a plain scalar from ``at``: (text, end, ends at a ': ' value indicator)."""
        j = at
        while j < self.n:
            c = self.s[j]
            if c == "\n":
                break
            if c == ":" and self.blank(j + 1):
                return self.s[at:j].rstrip(" \t"), j, True
            if c == "#" and j > at and self.s[j - 1] in " \t":
                break
            if flow and (c in _FLOW_INDICATORS or c == "?"):
                break  # in [ ] and { } a '?' ends a plain scalar too, and then nothing can follow it
            j += 1
        return self.s[at:j].rstrip(" \t"), j, False

    def plain_block(self, first: str, end: int, enclosing: int) -> Any:
        """A plain scalar in block context, continued on lines indented past ``enclosing``; resolved."""
        parts = [first]
        if self.ch(end) == "#":
            self.finish_line(end)
            return resolve_plain(first)
        self.i = min(end + 1, self.n)
        while True:
            j = self.i
            empty = 0
            # blank lines (spaces only) between the pieces
            while True:
                k = j
                while k < self.n and self.s[k] == " ":
                    k += 1
                if k < self.n and self.s[k] == "\n":
                    empty += 1
                    j = k + 1
                    continue
                break
            if k >= self.n or self.s[k] in "\t#" or k - j <= enclosing or self.marker(k):
                break  # the caller reads what comes next (a tab there is refused by it)
            text, stop, is_key = self.plain_line(k)
            if is_key:
                self.fail("mapping values are not allowed in this context", stop)
            parts.append("\n" * empty if empty else " ")
            parts.append(text)
            if self.ch(stop) == "#":
                self.finish_line(stop)
                return resolve_plain("".join(parts))
            self.i = min(stop + 1, self.n)
        return resolve_plain("".join(parts))

    # ------------------------------------------------------------ quoted scalars
    def quoted(self, at: int) -> Tuple[str, int]:
        """A single- or double-quoted scalar at ``at``: (value, index after the closing quote)."""
        q = self.s[at]
        out: List[str] = []
        blanks = 0  # raw spaces and tabs at the end of ``out`` (escaped ones are content and stay)
        j = at + 1
        while True:
            if j >= self.n:
                self.fail(f"found unexpected end of stream (while scanning a quoted scalar at {self.where(at)})",
                          self.n)
            c = self.s[j]
            if c == q:
                if q == "'" and self.ch(j + 1) == "'":
                    out.append("'")
                    blanks = 0
                    j += 2
                    continue
                return "".join(out), j + 1
            if c == "\n":  # a line break: the blanks before it go, then fold
                if blanks:
                    del out[-blanks:]
                j = self.fold(j + 1, out, escaped=False)
                blanks = 0
                continue
            if q == '"' and c == "\\":
                e = self.ch(j + 1)
                blanks = 0
                if e == "\n":  # an escaped line break: no space, the next line's blanks dropped
                    j = self.fold(j + 2, out, escaped=True)
                    continue
                if e in _SIMPLE_ESCAPES:
                    out.append(_SIMPLE_ESCAPES[e])
                    j += 2
                    continue
                if e in _HEX_ESCAPES:
                    width = _HEX_ESCAPES[e]
                    digits = self.s[j + 2:j + 2 + width]
                    if len(digits) != width or not HEX_DIGITS.issuperset(digits):
                        self.fail(f"did not find expected hexdecimal number (while parsing a quoted scalar at "
                                  f"{self.where(at)})", j + 2)
                    code = int(digits, 16)
                    if 0xD800 <= code <= 0xDFFF or code > 0x10FFFF:
                        self.fail(f"found invalid Unicode character escape code (while parsing a quoted scalar at "
                                  f"{self.where(at)})", j + 2)
                    out.append(chr(code))
                    j += 2 + width
                    continue
                self.fail(f"found unknown escape character (while parsing a quoted scalar at {self.where(at)})", j)
            out.append(c)
            blanks = blanks + 1 if c in " \t" else 0
            j += 1

    def fold(self, j: int, out: List[str], escaped: bool) -> int:
        """Just past a line break (escaped or not) inside a quoted scalar: skip the next lines' leading
        blanks; an unescaped break becomes a space, or a newline per empty line after it."""
        breaks = 0
        while True:
            while j < self.n and self.s[j] in " \t":
                j += 1
            if self.marker(j):
                self.fail("a document marker inside a quoted scalar", j)
            if j < self.n and self.s[j] == "\n":
                breaks += 1
                j += 1
                continue
            break
        if breaks:
            out.append("\n" * breaks)
        elif not escaped:
            out.append(" ")
        return j

    # ------------------------------------------------------------ block scalars
    def block_scalar(self, at: int, enclosing: int) -> str:
        literal = self.s[at] == "|"
        chomp = self.block_header(at)
        indent, content_follows = self.block_indent(enclosing)
        if content_follows:
            text, pending_break, breaks = self.block_lines(literal, indent)
        else:
            text, pending_break, breaks = "", "", self.block_empty_lines()
        if chomp == "-":
            return text
        if chomp == "+":
            return text + pending_break + "\n" * breaks
        return text + pending_break

    def block_header(self, at: int) -> str:
        """The chomping indicator (``+``, ``-`` or none) after ``|``/``>``; moves to the next line."""
        j = at + 1
        chomp = ""
        if self.ch(j) in "+-":
            chomp = self.s[j]
            j += 1
        if self.ch(j).isdigit():
            self.fail("block scalar indentation indicators (|2) are not supported in CDI specs", j)
        if not self.blank(j):
            self.fail(f"unexpected {self.s[j]!r} after the block scalar indicator", j)
        while j < self.n and self.s[j] in " \t":
            j += 1
        self.finish_line(j)
        return chomp

    def block_indent(self, enclosing: int) -> Tuple[int, bool]:
        """The block's indentation, from its first line with content (empty lines before it may not
        be longer), and whether content follows at all."""
        j = self.i
        longest = 0
        indent = -1
        while j < self.n:
            k = j
            while k < self.n and self.s[k] == " ":
                k += 1
            if k < self.n and self.s[k] == "\n":
                longest = max(longest, k - j)
                j = k + 1
                continue
            if k < self.n and self.s[k] == "\t":
                self.fail("a tab where the block scalar's indentation is expected", k)
            if k < self.n:
                indent = k - j
            break
        content_follows = indent > enclosing and indent >= 1
        if not content_follows:
            indent = max(enclosing + 1, 1)
        if longest > indent:
            self.fail("an empty line at the start of a block scalar is indented more than its first line",
                      j)
        return indent, content_follows

    def block_lines(self, literal: bool, indent: int) -> Tuple[str, str, int]:
        """The block's content lines, folded (``>``) or kept (``|``): (text, the pending line break,
        the count of trailing empty lines)."""
        text: List[str] = []
        pending_break = ""
        breaks = 0
        previous_blank = False
        j = self.i
        while j < self.n:
            k = j
            while k < self.n and k - j < indent and self.s[k] == " ":
                k += 1
            if k < self.n and self.s[k] == "\n":
                breaks += 1
                j = k + 1
                continue
            if k >= self.n:
                break
            if k - j < indent and self.s[k] == "\t":
                self.fail("a tab where the block scalar's indentation is expected", k)
            if k - j < indent or self.marker(j):
                break  # a line less indented (or a document marker) ends the scalar
            end = self.line_end(k)
            line = self.s[k:end]
            blank_start = line[:1] in (" ", "\t")
            if not literal and pending_break and not previous_blank and not blank_start:
                text.append("\n" * breaks if breaks else " ")
            else:
                text.append(pending_break + "\n" * breaks)
            breaks = 0
            text.append(line)
            previous_blank = blank_start
            pending_break = "\n" if end < self.n else ""
            j = min(end + 1, self.n)
        self.i = j
        return "".join(text), pending_break, breaks

    def block_empty_lines(self) -> int:
        """A block with only empty lines: how many belong to it."""
        j = self.i
        breaks = 0
        while j < self.n:
            k = j
            while k < self.n and self.s[k] == " ":
                k += 1
            if k < self.n and self.s[k] == "\n":
                breaks += 1
                j = k + 1
                continue
            break
        self.i = j
        return breaks

    # ------------------------------------------------------------ flow collections
    def skip_flow_space(self, j: int) -> int:
        while j < self.n:
            c = self.s[j]
            if c in " \t":
                j += 1
            elif c == "\n":
                j += 1
                if self.marker(j):
                    self.fail("a document marker inside a flow collection", j)
            elif c == "#":
                if j > 0 and self.s[j - 1] not in " \t\n":
                    self.fail("a comment needs a space before '#'", j)
                j = self.line_end(j)
            else:
                break
        return j

    def flow(self, at: int) -> Any:
        """A flow collection at ``at``; leaves ``self.i`` just after its closing bracket."""
        self.enter(at)
        is_map = self.s[at] == "{"
        closer = "}" if is_map else "]"
        seq: List[Any] = []
        out: Dict[str, Any] = {}
        originals: Dict[str, Any] = {}
        j = self.skip_flow_space(at + 1)
        while True:
            if j >= self.n:
                self.fail("did not find expected node content", j)
            if self.s[j] == closer:
                break
            start = j
            key, j, adjacent_ok = self.flow_node(j)
            key_line_end = self.line_end(start)
            j = self.skip_flow_space(j)
            has_value = False
            if self.ch(j) == ":" and (adjacent_ok or self.blank(j + 1) or self.ch(j + 1) in _FLOW_INDICATORS):
                if j > key_line_end:
                    self.fail("a flow key and its ':' must be on one line", j)
                if isinstance(key, (dict, list)):
                    self.fail("a collection cannot be a mapping key", start)
                self.check_key_length(start, j)
                has_value = True
                j = self.skip_flow_space(j + 1)
                if self.ch(j) in (",", closer):
                    value = None
                else:
                    value, j, _adj = self.flow_node(j)
                    j = self.skip_flow_space(j)
            if is_map:
                if isinstance(key, (dict, list)):
                    self.fail("a collection cannot be a mapping key", start)
                if key == "<<" and self.s[start] not in "\"'":
                    self.fail("merge keys (<<) are not supported in CDI specs", start)
                self.store(out, originals, key, value if has_value else None, start)
            elif has_value:
                if key == "<<" and self.s[start] not in "\"'":
                    self.fail("merge keys (<<) are not supported in CDI specs", start)
                pair: Dict[str, Any] = {}
                self.store(pair, {}, key, value, start)
                seq.append(pair)
            else:
                seq.append(key)
            if self.ch(j) == ",":
                j = self.skip_flow_space(j + 1)
            elif self.ch(j) != closer:
                self.fail(f"did not find expected ',' or {closer!r}", j)
        self.i = j + 1
        self.depth -= 1
        return out if is_map else seq

    def flow_node(self, j: int) -> Tuple[Any, int, bool]:
        """One node inside a flow collection: (value, end, a ':' right after it is a value indicator)."""
        c = self.ch(j)
        if c in "[{":
            value = self.flow(j)
            return value, self.i, True
        if c in "\"'":
            text, end = self.quoted(j)
            return text, end, True
        if c in "&*!%@`":
            self.refuse_feature(j)
        if c == "?" and self.blank(j + 1):
            self.fail("complex keys ('? key') are not supported in CDI specs", j)
        if c == "-" and self.blank(j + 1):
            self.fail("block sequence entries are not allowed inside [ ] or { }", j)
        if c in "?:":
            self.fail(f"a plain scalar starting with {c!r} is not supported", j)
        if c in "|>@`#,]}\0":
            self.fail("did not find expected node content", j)
        text, end, _is_key = self.plain_line(j, flow=True)
        k = end
        while k < self.n and self.s[k] in " \t":
            k += 1
        if self.ch(k) == "\n":
            nxt = self.skip_flow_space(k)
            if nxt < self.n and self.s[nxt] not in ",]}:#":
                self.fail("a plain scalar inside [ ] or { } must fit on one line (quote it)", nxt)
        return resolve_plain(text), j + len(text), False


def _decode_bytes(data: bytes) -> str:
    """UTF-16 after its byte-order mark, otherwise UTF-8 (an optional byte-order mark dropped)."""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        codec, body = ("utf-16-le" if data[:2] == b"\xff\xfe" else "utf-16-be"), data[2:]
    else:
        codec, body = "utf-8", data[3:] if data[:3] == b"\xef\xbb\xbf" else data
    try:
        return body.decode(codec)
    except UnicodeDecodeError as exc:
        good = body[:exc.start].decode(codec, errors="replace")
        line = good.count("\n") + 1
        column = len(good) - (good.rfind("\n") + 1) + 1
        raise YamlError(f"invalid {codec.upper()} ({exc.reason})", line=line, column=column) from None


def load_yaml(text: Union[str, bytes]) -> Any:
    """The first YAML document of ``text``, read as the engines read it (see the module docstring).

    Bytes are UTF-8, or UTF-16 after its byte-order mark; a leading byte-order mark is skipped.
    Raises :class:`~nvlow.cdi.yaml.YamlError` naming the line and column, and nothing else.

    Example:
        >>> load_yaml("---\\nopts:\\n- ro\\n- bind\\nname: '0'\\nm: 195\\nv: 0.5.0\\non: yes\\n")
        {'opts': ['ro', 'bind'], 'name': '0', 'm': 195, 'v': '0.5.0', 'true': True}
        >>> load_yaml("note: see: docs\\n")
        Traceback (most recent call last):
        ...
        nvlow.cdi.yaml.YamlError: line 1 column 10: mapping values are not allowed in this context
    """
    if isinstance(text, bytes):
        text = _decode_bytes(text)
    elif text[:1] == "\ufeff":
        text = text[1:]
    if text[:1] == "\ufeff":
        raise YamlError("a second byte-order mark is not supported", line=1, column=1)
    bad = _BAD_CHAR.search(text)
    if bad is not None:
        before = text[:bad.start()]
        code = ord(bad.group())
        if 0xD800 <= code <= 0xDFFF:
            what = "invalid Unicode character"
        elif code in (0x2028, 0x2029, 0xFEFF):
            what = "this character is not supported in CDI specs"
        elif code in (0xFFFE, 0xFFFF):
            what = "invalid Unicode character"
        else:
            what = "control characters are not allowed"
        raise YamlError(f"{what} (U+{code:04X})", line=before.count("\n") + 1,
                        column=bad.start() - (before.rfind("\n") + 1) + 1)
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x85", "\n")
    try:
        return _Reader(text).document()
    except RecursionError:  # MAX_DEPTH keeps the reader far below Python's limit; a caller deep in its own stack
        raise YamlError(f"the document is nested too deeply to read here (nvlow's limit is {MAX_DEPTH} levels)",
                        line=1, column=1) from None
