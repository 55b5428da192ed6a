"""nvlow command line (entry point ``nvlow``).

``args``, ``exec``, ``info``, ``list``, ``status``, ``doctor`` and ``cdi generate`` take a fast path that never
imports typer; every other command, ``--help`` and usage errors go through the typer app in
:mod:`nvlow.cli.app`. Errors from the core (:class:`nvlow.errors.NvlowError`)
become one line on stderr and the error's exit code; anything else is an
internal error, with a traceback only under ``--debug`` (or NVLOW_DEBUG=1).
"""
from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import List, Mapping, Optional, Sequence, TextIO

    from .fast import HostCommand
    from .options import PlanOptions

FAST_COMMANDS = ("args", "exec")
#: parsed without typer too (see :func:`nvlow.cli.fast.parse_host_command`)
HOST_COMMANDS = ("info", "list", "status", "doctor", "cdi")


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


#: ``nvlow exec`` becomes the engine, so the container's exit codes are the command's. nvlow's own
#: failures keep the contract's 1/2/3 (scripts test for 3, "the image's requirements are not met");
#: an engine program that cannot be run gets the shell's 126/127, as docker run does
EXEC_CANNOT_INVOKE, EXEC_NOT_FOUND = 126, 127


def report_exec_error(exc: BaseException, debug: bool) -> int:
    """:func:`report_error` for ``nvlow exec`` (without --dry-run): 127 when the engine program is not
    found, 126 when it cannot be executed, the contract's 1/2/3 for nvlow's own failures."""
    import errno

    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, OSError) and not isinstance(exc, OSError) and cause.errno is not None:
        name = cause.filename or "the engine"
        if cause.errno == errno.ENOENT:
            sys.stderr.write(f"nvlow: error: {exc}\n")
            sys.stderr.write("nvlow: hint: install Docker or Podman, or name the engine with --docker / "
                             "NV_DOCKER\n")
            return EXEC_NOT_FOUND
        if cause.errno in (errno.EACCES, errno.ENOEXEC, errno.EPERM, errno.EISDIR):
            sys.stderr.write(f"nvlow: error: {exc}\n")
            sys.stderr.write(f"nvlow: hint: check that {name} is an executable program (chmod +x, a #! line), "
                             "or name another engine with --docker / NV_DOCKER\n")
            return EXEC_CANNOT_INVOKE
    return report_error(exc, debug)


class _QuietStderr:
    """stderr for ``--quiet``: drops nvlow's notes and warnings, keeps errors, hints and anything else."""

    KEEP = ("nvlow: error:", "nvlow: hint:", "nvlow: internal error", "nvlow: interrupted")

    def __init__(self, stream: "TextIO") -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        if text.startswith("nvlow: ") and not text.startswith(self.KEEP):
            return len(text)
        return self._stream.write(text)

    def __getattr__(self, name: str) -> object:
        return getattr(self._stream, name)


def run_plan_command(opts: "PlanOptions", env: Mapping[str, str], command: str, debug: bool) -> int:
    """Check the options, run ``args``/``exec`` and turn errors into exit codes (both parsers' paths)."""
    from .options import check_plan_options

    saved = sys.stderr
    if opts.quiet:
        sys.stderr = _QuietStderr(saved)
    try:
        check_plan_options(opts, command)
        if command == "args":
            from .plancmd import run_args

            return run_args(opts, env)
        from .plancmd import run_exec

        return run_exec(opts, env)
    except BaseException as exc:  # noqa: BLE001 - the one place that turns errors into exit codes
        if isinstance(exc, SystemExit):
            raise
        if command == "exec" and not opts.dry_run:
            return report_exec_error(exc, debug)
        return report_error(exc, debug)
    finally:
        sys.stderr = saved


def run_host_command(command: "HostCommand", env: Mapping[str, str], debug: bool) -> int:
    """Run ``info``/``list``/``status``/``doctor``/``cdi generate`` as the typer app's commands do; errors
    become exit codes."""
    opts, extra = command.options, command.extra
    try:
        if command.name == "info":
            from .hostcmd import run_info

            return run_info(opts, env)
        if command.name == "list":
            from .hostcmd import run_list

            return run_list(opts, env, extra.get("gpus"), extra.get("capabilities"),
                            tuple(f for f in ("gds", "mofed", "gdrcopy", "nvswitch") if extra.get(f)))
        if command.name == "status":
            from .statuscmd import run_status

            return run_status(opts, env, extra.get("watch"), extra.get("count"))
        if command.name == "cdi generate":
            from .cdirun import run_generate

            return run_generate(opts, env, **extra)  # the fast parser's attributes are its keywords
        from .doctorcmd import run_doctor_cmd

        return run_doctor_cmd(opts, env, check_engine=not extra.get("no_engine"))
    except BaseException as exc:  # noqa: BLE001 - the one place that turns errors into exit codes
        if isinstance(exc, SystemExit):
            raise
        return report_error(exc, debug or opts.debug)


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``nvlow`` command."""
    from .options import hoist_globals

    args = hoist_globals(list(sys.argv[1:] if argv is None else argv))
    env = os.environ
    debug = _wants_debug(args, env)
    if args and (args[0] in FAST_COMMANDS or args[0] in HOST_COMMANDS):
        from . import fast

        try:
            if args[0] in FAST_COMMANDS:
                sys.exit(run_plan_command(fast.parse(args, env), env, args[0], debug))
            return run_host_command(fast.parse_host_command(args, env), env, debug)
        except fast.Fallback:
            pass  # --help, a usage error, an option the fast parser does not know: typer answers
    from .app import run_app

    return run_app(args, debug)
