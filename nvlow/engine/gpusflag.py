"""The value of docker's ``--gpus`` flag, read the way docker/cli ``opts/gpus.go`` reads it.

The value is one CSV record (Go ``encoding/csv``): ``all``, ``N``, ``device=0``,
``'"device=0,2"'`` (a comma inside a field needs the inner quotes), ``capabilities=…``,
``driver=…``, ``options=…``, ``count=…``, combined with commas. Errors carry docker's wording,
e.g. ``invalid argument "bogus=1" for "--gpus" flag: unexpected key 'bogus' in 'bogus=1'``.

Example:
    >>> parse_gpus_flag('"device=0,2",capabilities=utility')
    GpusRequest(count=None, devices=('0', '2'), capabilities=('utility',), driver=None, options=())
    >>> parse_gpus_flag("all").count
    -1
"""
from __future__ import annotations


from ..frozen import Record
from ..errors import UsageError
from ..text import lazy_re, number_or_none

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, List, Optional, Tuple


_INT = lazy_re(r"[+-]?[0-9]+")
_INT64_MAX = 2 ** 63 - 1


class GpusRequest(Record):
    """One ``--gpus`` request.

    ``count``: -1 for ``all``, N for a count, 1 when neither a count nor devices were given
    (docker's default), None when only devices were given. ``capabilities`` are the ones
    written by the user (docker adds ``gpu`` itself). ``options`` are key/value pairs.
    """

    count: Optional[int] = None
    devices: Tuple[str, ...] = ()
    capabilities: Tuple[str, ...] = ()
    driver: Optional[str] = None
    options: Tuple[Tuple[str, str], ...] = ()


class _CsvError(Exception):
    pass


def go_quote(text: str) -> str:
    """``text`` quoted like Go's ``%q`` (strconv.Quote), as docker prints flag values."""
    named = {'"': '\\"', "\\": "\\\\", "\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
             "\t": "\\t", "\v": "\\v"}
    out = []
    for ch in text:
        if ch in named:
            out.append(named[ch])
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    return '"' + "".join(out) + '"'


def _csv_record(text: str) -> List[str]:
    """The first record of ``text`` as Go's csv.Reader (strict quotes) returns it."""
    text = text.replace("\r\n", "\n")
    pos = 0
    while pos < len(text) and text[pos] == "\n":  # Go skips empty lines
        pos += 1
    if pos >= len(text):
        raise _CsvError("EOF")
    fields: List[str] = []
    line = 1 + text.count("\n", 0, pos)
    while True:
        if pos < len(text) and text[pos] == '"':
            value, pos = _quoted_field(text, pos + 1, line)
        else:
            stop = len(text)
            for sep in (",", "\n"):
                found = text.find(sep, pos)
                if found != -1:
                    stop = min(stop, found)
            value = text[pos:stop]
            if '"' in value:
                col = pos + value.index('"') - (text.rfind("\n", 0, pos) + 1) + 1
                raise _CsvError(f'parse error on line {line}, column {col}: bare " in non-quoted-field')
            pos = stop
        fields.append(value)
        if pos >= len(text) or text[pos] == "\n":
            return fields
        pos += 1  # the comma


def _quoted_field(text: str, pos: int, line: int) -> Tuple[str, int]:
    out = []
    while True:
        quote = text.find('"', pos)
        if quote == -1:
            raise _CsvError(f'parse error on line {line}, column {len(text) + 1}: extraneous or missing " '
                            f"in quoted-field")
        out.append(text[pos:quote])
        after = text[quote + 1:quote + 2]
        if after == '"':
            out.append('"')
            pos = quote + 2
        elif after in ("", ",", "\n"):
            return "".join(out), quote + 1
        else:
            raise _CsvError(f'parse error on line {line}, column {quote + 2}: extraneous or missing " '
                            f"in quoted-field")


def _count(text: str) -> int:
    """A count as Go's ``strconv.Atoi`` reads it (ASCII digits, an optional sign, any leading zeros,
    int64), with docker's wording for anything else."""
    if text == "all":
        return -1
    reason = "invalid syntax"
    if _INT.fullmatch(text):
        digits = text.lstrip("+-")
        # at most 19 significant digits fit an int64; more is out of range, as for Go (and
        # never reaches int(), which refuses over 4,300 digits)
        number = number_or_none(digits, max_digits=19)
        if number is not None:
            number = -number if text.startswith("-") else number
            if -_INT64_MAX - 1 <= number <= _INT64_MAX:
                return number
        reason = "value out of range"
    raise _CsvError(f'invalid count ({text}): value must be either "all" or an integer: {reason}')


def parse_gpus_flag(value: str) -> GpusRequest:
    """Parse one ``--gpus`` value; raises UsageError with docker's message on bad input."""
    try:
        return _parse(value)
    except _CsvError as exc:
        # docker prints the reason raw; a newline in a quoted field would break nvlow's one-line errors
        reason = "".join(c if c.isprintable() else go_quote(c)[1:-1] for c in str(exc))
        raise UsageError(f'invalid argument {go_quote(value)} for "--gpus" flag: {reason}',
                         hint="e.g. --gpus all, --gpus 2, --gpus '\"device=0,1\"'") from None


def _parse(value: str) -> GpusRequest:
    seen: Dict[str, None] = {}
    count: Optional[int] = None
    devices: Optional[Tuple[str, ...]] = None
    capabilities: Tuple[str, ...] = ()
    driver: Optional[str] = None
    options: Tuple[Tuple[str, str], ...] = ()
    for field in _csv_record(value):
        key, eq, val = field.partition("=")
        if key in seen:
            raise _CsvError(f"gpu request key '{key}' can be specified only once")
        seen[key] = None
        if not eq:
            seen["count"] = None
            count = _count(key)
        elif key == "driver":
            driver = val
        elif key == "count":
            count = _count(val)
        elif key == "device":
            devices = tuple(val.split(","))
        elif key == "capabilities":
            capabilities = tuple(val.split(","))
        elif key == "options":
            try:
                pairs = _csv_record(val)
            except _CsvError as exc:
                raise _CsvError(f"failed to read gpu options: {exc}") from None
            options = tuple((k, v) for k, _, v in (p.partition("=") for p in pairs))
        else:
            raise _CsvError(f"unexpected key '{key}' in '{field}'")
    if "count" not in seen and devices is None:
        count = 1
    if devices is not None and count:
        # Docker's client accepts this; its daemon then refuses the request
        # ("cannot set both Count and DeviceIDs on device request"). The usual cause is an
        # unquoted list: device=0,2 is read as device 0 plus a bare count of 2.
        shown = "all" if count == -1 else str(count)
        raise _CsvError(f"sets both a count ({shown}) and device IDs ({','.join(devices)}), which the "
                        "daemon refuses; quote a device list: '\"device=0,2\"'")
    return GpusRequest(count, devices or (), capabilities, driver, options)
