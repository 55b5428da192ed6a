"""A typer-free parser for ``nvlow args`` and ``nvlow exec`` (the hot path), and for ``info``,
``list``, ``status`` and ``doctor``.

Anything it does not understand (``--help``, an unknown option, a missing
value) raises :class:`Fallback` and the typer app parses the command line
instead, so users always get typer's usage messages.
"""
from __future__ import annotations

from .options import (ARGS_VALUES, ENV_OPTIONS, EXEC_ENV_OPTIONS, EXEC_FLAGS, EXEC_VALUES, FAST_FLAGS, FAST_VALUES,
                      SHORT_FLAGS, CommonOptions, PlanOptions, hoist_globals)


TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import AbstractSet, Any, Callable, Dict, List, Mapping, Sequence, Set, Tuple


class Fallback(Exception):
    """The fast parser declines; use the typer app."""


def parse(argv: Sequence[str], env: Mapping[str, str]) -> PlanOptions:
    """Parse ``args ...`` or ``exec ...`` (the command name first, or after the global options:
    ``--simulate dgx-a100 args``)."""
    argv = hoist_globals(list(argv))
    if not argv or argv[0] not in ("args", "exec"):
        raise Fallback()
    command = argv[0]
    flags: Dict[str, str] = {**FAST_FLAGS, **SHORT_FLAGS}
    values: Dict[str, str] = dict(FAST_VALUES)
    if command == "exec":
        flags.update(EXEC_FLAGS)
        values.update(EXEC_VALUES)
    else:
        values.update(ARGS_VALUES)
    opts = PlanOptions()
    rest: List[str] = list(argv[1:])
    found, end = _scan_options(rest, flags, values)
    if end < len(rest):  # "--" or the first engine word: the engine command line starts
        if command != "exec":
            raise Fallback()
        opts.engine_argv = rest[end + 1:] if rest[end] == "--" else rest[end:]
    for attr, value in found.items():
        setattr(opts, attr, value)
    # attributes set on the command line: their environment variables do not apply
    given: Set[str] = {attr for attr in found if attr in values.values()}
    apply_env_defaults(opts, env, given, command)
    return opts


def apply_env_defaults(opts: PlanOptions, env: Mapping[str, str], given: AbstractSet[str] = frozenset(),
                       command: str = "exec") -> None:
    """Fill the options not in ``given`` from their environment variables, as click's ``envvar`` does.

    An option given on the command line wins even when its value equals the
    default (``--root /`` beats ``NVLOW_ROOT``); an empty variable counts as
    unset. ``NV_DOCKER`` belongs to ``exec`` only (``args`` has no ``--docker``).
    """
    table = {**ENV_OPTIONS, **EXEC_ENV_OPTIONS} if command == "exec" else ENV_OPTIONS
    for attr, var in table.items():
        value = env.get(var)
        if attr not in given and value:
            setattr(opts, attr, value)


#: the host commands the fast parser runs too (``info``, ``list``, ``status``, ``doctor``): each
#: command's boolean flags and value options -> attribute, as the typer app declares them
#: (tests/test_cli_options.py checks both parsers agree); typer/click cost ~80 ms of start-up and
#: are imported only for --help, completion and usage errors
_COMMON_FLAGS: Dict[str, str] = {"--no-nvml": "no_nvml", "--debug": "debug", "--json": "json"}
_COMMON_VALUES: Dict[str, str] = {"--root": "root", "--simulate": "simulate"}
HOST_FLAGS: Dict[str, Dict[str, str]] = {
    "info": {**_COMMON_FLAGS, "--no-uvm-load": "no_uvm_load"},
    "list": {**_COMMON_FLAGS, "--no-uvm-load": "no_uvm_load", "--gds": "gds", "--mofed": "mofed",
             "--gdrcopy": "gdrcopy", "--nvswitch": "nvswitch"},
    "status": dict(_COMMON_FLAGS),
    "doctor": {**_COMMON_FLAGS, "--no-engine": "no_engine"},
    "cdi generate": {**_COMMON_FLAGS, "--no-uvm-load": "no_uvm_load", "--write": "write",
                     "--if-changed": "if_changed", "--no-all-device": "no_all_device"},
}
HOST_VALUES: Dict[str, Dict[str, str]] = {
    "info": dict(_COMMON_VALUES),
    "list": {**_COMMON_VALUES, "--gpus": "gpus", "--capabilities": "capabilities"},
    "status": {**_COMMON_VALUES, "--watch": "watch", "--count": "count"},
    "doctor": dict(_COMMON_VALUES),
    "cdi generate": {**_COMMON_VALUES, "--output": "output", "-o": "output", "--format": "fmt",
                     "--device-name-strategy": "strategies", "--capabilities": "capabilities",
                     "--driver-files": "driver_files", "--volumes-dir": "volumes_dir", "--vendor": "vendor",
                     "--class": "class_", "--engine-root": "engine_root"},
}
#: value options that may be repeated (click's multiple=True): every value is kept, in order
_LISTS = frozenset({"strategies"})
#: environment variables of each command's value options (the typer app's ``envvar``)
_ENV = {"root": ENV_OPTIONS["root"], "simulate": ENV_OPTIONS["simulate"]}
HOST_ENV: Dict[str, Dict[str, str]] = {
    "info": _ENV, "list": _ENV, "status": _ENV, "doctor": _ENV,
    "cdi generate": {**_ENV, "engine_root": ENV_OPTIONS["engine_root"]},
}
#: value options that are numbers (click's FLOAT and INT types convert with float() and int())
_NUMBERS: Dict[str, Callable[[str], object]] = {"watch": float, "count": int}


class HostCommand:
    """A parsed host command: its name, the common options and the command's own (``extra``)."""

    __slots__ = ("name", "options", "extra")

    def __init__(self, name: str, options: CommonOptions, extra: Dict[str, Any]) -> None:
        self.name = name
        self.options = options
        self.extra = extra


def _command_name(argv: Sequence[str]) -> Tuple[str, int]:
    """The host command ``argv`` starts with and how many words it takes (``cdi generate``: two)."""
    if len(argv) > 1 and argv[0] == "cdi" and argv[1] == "generate":
        return "cdi generate", 2
    if argv and argv[0] in HOST_FLAGS:
        return argv[0], 1
    raise Fallback()


def parse_host_command(argv: Sequence[str], env: Mapping[str, str]) -> HostCommand:
    """Parse ``info``/``list``/``status``/``doctor``/``cdi generate`` and their options (global options
    hoisted); :class:`Fallback` for anything else, ``--help`` and every usage error."""
    argv = hoist_globals(list(argv))
    name, words = _command_name(argv)
    flags, values = HOST_FLAGS[name], HOST_VALUES[name]
    rest = argv[words:]
    found, end = _scan_options(rest, flags, values)
    if end < len(rest):  # a word or "--": these commands take no arguments
        raise Fallback()
    for attr, var in HOST_ENV[name].items():
        if attr not in found and env.get(var):
            found[attr] = env[var]
    common = {k: found.pop(k) for k in ("root", "simulate", "no_nvml", "debug", "json", "no_uvm_load") if k in found}
    return HostCommand(name, CommonOptions(**common), found)


def _scan_options(tokens: Sequence[str], flags: Mapping[str, str], values: Mapping[str, str]
                  ) -> Tuple[Dict[str, Any], int]:
    """The options at the start of ``tokens`` as {attribute: value} (flags True, repeatable values
    as lists, numbers converted), and the index of the first token that is not an option (``--``, a
    word or ``-``; ``len(tokens)`` when all are). An option the tables do not know, a missing value
    or a bad number is :class:`Fallback`: typer then says what is wrong."""
    found: Dict[str, Any] = {}
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok == "--" or tok == "-" or not tok.startswith("-"):
            return found, i
        # --opt=value (long options only: click reads "-o=x" as the value "=x")
        opt, eq, inline = tok.partition("=") if tok.startswith("--") else (tok, "", "")
        if opt in flags and not eq:
            found[flags[opt]] = True
            i += 1
        elif opt in values and (eq or i + 1 < len(tokens)):
            _store(found, values[opt], inline if eq else tokens[i + 1])
            i += 1 if eq else 2
        else:
            raise Fallback()
    return found, i


def _store(found: Dict[str, Any], attr: str, raw: str) -> None:
    convert = _NUMBERS.get(attr)
    try:
        value = convert(raw) if convert else raw
    except ValueError:
        raise Fallback() from None  # typer names the option and the bad value
    if attr in _LISTS:
        found.setdefault(attr, []).append(value)
    else:
        found[attr] = value
