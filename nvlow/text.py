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
    from typing import Any, Optional, Type


_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


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


def is_ascii_digits(text: str) -> bool:
    """True for a non-empty run of ASCII ``0-9`` (``str.isdigit`` also accepts ``²`` and ``٣``).

    Example:
        >>> is_ascii_digits("42"), is_ascii_digits("٣"), is_ascii_digits("")
        (True, False, False)
    """
    return bool(text) and text.isascii() and text.isdigit()


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
    elif base != 16 or not all(c in _HEX_DIGITS for c in text):
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
