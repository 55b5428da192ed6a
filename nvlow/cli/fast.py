"""A typer-free parser for ``nvlow args`` and ``nvlow exec`` (the hot path).

Anything it does not understand (``--help``, an unknown option, a missing
value) raises :class:`Fallback` and the typer app parses the command line
instead, so users always get typer's usage messages.
"""
from __future__ import annotations

from typing import AbstractSet, Dict, List, Mapping, Sequence, Set

from .options import (ARGS_VALUES, ENV_OPTIONS, EXEC_ENV_OPTIONS, EXEC_FLAGS, EXEC_VALUES, FAST_FLAGS, FAST_VALUES,
                      SHORT_FLAGS, PlanOptions, hoist_globals)


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
    given: Set[str] = set()  # attributes set on the command line: their environment variables do not apply
    rest: List[str] = list(argv[1:])
    i = 0
    while i < len(rest):
        tok = rest[i]
        if tok == "--":
            if command != "exec":
                raise Fallback()
            opts.engine_argv = rest[i + 1:]
            break
        if not tok.startswith("-") or tok == "-":
            if command != "exec":
                raise Fallback()
            opts.engine_argv = rest[i:]
            break
        name, eq, inline = tok.partition("=")
        if name in flags and not eq:
            setattr(opts, flags[name], True)
            i += 1
            continue
        if name in values:
            if eq:
                value = inline
                i += 1
            else:
                if i + 1 >= len(rest):
                    raise Fallback()
                value = rest[i + 1]
                i += 2
            setattr(opts, values[name], value)
            given.add(values[name])
            continue
        raise Fallback()
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
