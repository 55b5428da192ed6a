"""Number and message helpers every stage shares: pure functions of text, no nvlow imports but errors.

Numbers in procfs, environment variables, image labels and flags are read with
:func:`number_or_none`/:func:`parse_number` (ASCII digits only, bounded length: Python's ``int``
refuses strings over 4,300 digits with a ValueError, and ``str.isdigit`` accepts ``²`` and ``٣``);
values shown in a message go through :func:`printable`.
"""
from __future__ import annotations

from .errors import HostError, NvlowError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from re import Pattern
    from typing import Any, Optional, Sequence, Type


#: ASCII character classes for the string checks that stand in for regular expressions on hot paths
#: (``str.isalpha``/``isdigit`` also accept non-ASCII letters and digits)
ASCII_LETTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
ASCII_DIGITS = frozenset("0123456789")
ASCII_ALNUM = ASCII_LETTERS | ASCII_DIGITS
HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


def printable(text: str, limit: int = 100) -> str:
    """``text`` for a one-line message: as it is when printable and short, cut at ``limit``
    characters, and quoted with its escapes (``repr``) when it holds a newline or another
    unprintable character.

    Example:
        >>> printable("GPU-1"), printable("GPU-\\n0"), printable("9" * 200, 5)
        ('GPU-1', "'GPU-\\\\n0'", '99999...')
    """
    shown = text if len(text) <= limit else text[:limit] + "..."
    return shown if shown.isprintable() else repr(shown)


def listed(items: Sequence[str], limit: int) -> str:
    """The first ``limit`` of ``items`` for a one-line message, and how many more there are.

    Example:
        >>> listed(["a", "b"], 3), listed(["a", "b", "c", "d", "e"], 3)
        ('a, b', 'a, b, c and 2 more')
    """
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def is_ascii_digits(text: str) -> bool:
    """True for a non-empty run of ASCII ``0-9`` (``str.isdigit`` also accepts ``²`` and ``٣``).

    Example:
        >>> is_ascii_digits("42"), is_ascii_digits("٣"), is_ascii_digits("")
        (True, False, False)
    """
    return bool(text) and text.isascii() and text.isdigit()


def digits_end(text: str, start: int = 0) -> int:
    """Where the run of ASCII ``0-9`` that starts at ``start`` ends (``start`` itself when there is none).

    Example:
        >>> digits_end("12.4", 0), digits_end("12.4", 3), digits_end("v1", 0)
        (2, 4, 0)
    """
    end = start
    while end < len(text) and text[end] in ASCII_DIGITS:
        end += 1
    return end


def numbered(name: str, prefix: str, *, max_digits: int = 7) -> Optional[int]:
    """N of a name ``prefix`` + N, N written as the kernel writes it: ``0`` or 1 to ``max_digits`` ASCII
    digits without a leading zero (the regular expression ``prefix(0|[1-9][0-9]{0,6})\\Z``, which the
    hot paths no longer compile); None for any other name.

    Example:
        >>> numbered("nvidia12", "nvidia"), numbered("nvidia012", "nvidia"), numbered("nvidiactl", "nvidia")
        (12, None, None)
    """
    if not name.startswith(prefix):
        return None
    digits = name[len(prefix):]
    if not is_ascii_digits(digits) or len(digits) > max_digits or (digits[0] == "0" and len(digits) > 1):
        return None
    return int(digits)


def _in_token(c: str) -> bool:
    """A character of ``[\\w.:]`` in a ``str`` regular expression (Unicode letters, digits, ``_``,
    ``.``, ``:``): what may not touch a version token."""
    return c.isalnum() or c in "_.:"


def isolated_version(text: str, start: int = 0) -> Optional[str]:
    """The first ``N.N`` or ``N.N.N`` (1-10 ASCII digits each) that starts at or after ``start`` and
    stands alone: no letter, digit, ``_``, ``.`` or ``:`` touches it on either side (what the
    regular expression ``(?<![\\w.:])([0-9]{1,10}\\.[0-9]{1,10}(?:\\.[0-9]{1,10})?)(?![\\w.:])`` finds).

    Example:
        >>> isolated_version("Module for x86_64  560.35.03  Release"), isolated_version("v560.35.03 1.2.3.4")
        ('560.35.03', None)
    """
    n = len(text)
    i = start
    while i < n:
        c = text[i]
        if not _in_token(c):
            i += 1
            continue
        j = i
        while j < n and _in_token(text[j]):
            j += 1
        # a run of word/dot/colon characters: a match must be a whole run whose left edge is free
        if (i == 0 or not _in_token(text[i - 1])) and _is_version(text[i:j]):
            return text[i:j]
        i = j
    return None


def _is_version(token: str) -> bool:
    parts = token.split(".")
    return 2 <= len(parts) <= 3 and all(is_ascii_digits(p) and len(p) <= 10 for p in parts)


def word_after(text: str, before: Sequence[str], after: str = "") -> Optional[str]:
    """The whitespace-free word that follows the literals ``before`` (each separated from the next by
    whitespace) and whitespace in ``text``, and, when ``after`` is given, is followed by whitespace and
    ``after``: the first match of the regular expression ``b0\\s+b1\\s+...\\s+(\\S+)\\s+after``; None
    when there is none.

    Example:
        >>> word_after("NVIDIA UNIX x86_64 Kernel Module  550.54", ["NVIDIA UNIX"], "Kernel Module")
        'x86_64'
        >>> word_after("Open Kernel Module for  aarch64 1.2", ["Open Kernel Module", "for"]), word_after("a b", ["b"])
        ('aarch64', None)
    """
    first, rest_literals = before[0], before[1:]
    pos = text.find(first)
    while pos >= 0:
        rest: Optional[str] = text[pos + len(first):]
        for literal in (*rest_literals, ""):
            if rest is None or not rest[:1].isspace():
                rest = None
                break
            rest = rest.lstrip()
            rest = rest[len(literal):] if rest.startswith(literal) else None
        if rest:
            word = rest.split(None, 1)[0]
            tail = rest[len(word):]
            if not after or (tail[:1].isspace() and tail.lstrip().startswith(after)):
                return word
        pos = text.find(first, pos + 1)
    return None


def number_or_none(text: str, *, max_digits: int = 20, base: int = 10) -> Optional[int]:
    """The number written in ``text`` (ASCII digits of ``base`` 10 or 16, nothing else: no
    sign, space or underscore), or None; more than ``max_digits`` significant digits
    (leading zeros do not count) is None too.

    Example:
        >>> number_or_none("0042"), number_or_none("ff", base=16), number_or_none("1_0"), number_or_none("9" * 5000)
        (42, 255, None, None)
    """
    if not text or not text.isascii():
        return None
    if base == 10:
        if not text.isdigit():
            return None
    elif base != 16 or not HEX_DIGITS.issuperset(text):
        return None
    significant = text.lstrip("0")
    if len(significant) > max_digits:
        return None
    return int(significant or "0", base)


def parse_number(text: str, what: str, *, max_digits: int = 20, base: int = 10,
                 error: Type[NvlowError] = HostError) -> int:
    """:func:`number_or_none`, or ``error`` (an :class:`~nvlow.errors.NvlowError` class) naming ``what``.

    Example:
        >>> parse_number("²", "GPU index")
        Traceback (most recent call last):
        ...
        nvlow.errors.HostError: invalid GPU index '²': expected a number of at most 20 digits
    """
    value = number_or_none(text, max_digits=max_digits, base=base)
    if value is None:
        shown = text if len(text) <= 40 else text[:40] + "..."
        digits = "hexadecimal digits" if base == 16 else "digits"
        raise error(f"invalid {what} {shown!r}: expected a number of at most {max_digits} {digits}")
    return value


class _LazyPattern:
    """A regular expression compiled on first use (``re`` compiles cost ~0.2 ms each at import)."""

    __slots__ = ("_args", "_compiled")

    def __init__(self, pattern: str, flags: int) -> None:
        self._args = (pattern, flags)
        self._compiled: Any = None

    def __getattr__(self, name: str) -> Any:
        compiled = self._compiled
        if compiled is None:
            import re

            compiled = self._compiled = re.compile(*self._args)
        return getattr(compiled, name)


def lazy_re(pattern: str, flags: int = 0) -> Pattern[str]:
    """``re.compile(pattern, flags)``, done when the pattern is first used, so that a module's
    patterns cost nothing on a command that never reaches them.

    Example:
        >>> lazy_re(r"[0-9]+").fullmatch("42") is not None
        True
    """
    return _LazyPattern(pattern, flags)  # type: ignore[return-value]  # same methods, compiled lazily
