"""nvlow command line (entry point ``nvlow``).

``args`` and ``exec`` take a fast path that never imports typer; every
other command, and ``--help``, goes through the typer app in
:mod:`nvlow.cli.app`. Errors from the core (:class:`nvlow.errors.NvlowError`)
become one line on stderr and the error's exit code; anything else is an
internal error, with a traceback only under ``--debug`` (or NVLOW_DEBUG=1).
"""
from __future__ import annotations

import os
import sys
from typing import List, Optional, Sequence

FAST_COMMANDS = ("args", "exec")


def _wants_debug(argv: Sequence[str], env: "os._Environ[str]") -> bool:
    head = list(argv)
    if "--" in head:
        head = head[: head.index("--")]
    return "--debug" in head or env.get("NVLOW_DEBUG", "") not in ("", "0")


def report_error(exc: BaseException, debug: bool) -> int:
    """Print an error the way every nvlow command does; return the exit code."""
    from ..errors import NvlowError

    if isinstance(exc, NvlowError):
        if debug:
            import traceback

            traceback.print_exc()
        sys.stderr.write(f"nvlow: error: {exc}\n")
        if exc.hint:
            sys.stderr.write(f"nvlow: hint: {exc.hint}\n")
        return exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        sys.stderr.write("nvlow: interrupted\n")
        return 130
    if isinstance(exc, BrokenPipeError):
        return 1
    if debug:
        import traceback

        traceback.print_exc()
    sys.stderr.write(f"nvlow: internal error: {type(exc).__name__}: {exc} (run with --debug for a traceback)\n")
    return 1


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``nvlow`` command."""
    args = list(sys.argv[1:] if argv is None else argv)
    env = os.environ
    debug = _wants_debug(args, env)
    if args and args[0] in FAST_COMMANDS:
        from . import fast

        try:
            opts = fast.parse(args, env)
        except fast.Fallback:
            pass
        else:
            from .plancmd import run_args, run_exec

            try:
                code = run_args(opts, env) if args[0] == "args" else run_exec(opts, env)
            except BaseException as exc:  # noqa: BLE001 - the one place that turns errors into exit codes
                if isinstance(exc, SystemExit):
                    raise
                code = report_error(exc, debug)
            sys.exit(code)
    from .app import run_app

    return run_app(args, debug)
