"""Parse a docker/podman command line, find the image, and insert nvlow's arguments before it.

The parser follows spf13/pflag as docker and podman use it (interspersed = false at the
root and for run/create), with the option tables of :mod:`nvlow.engine.dockerflags`. Unlike
nvidia-docker 1.0 it understands ``--``, attached short values (``-p8080:80``) and
``-x=value``, and it stops on an unknown option instead of guessing (1.0 swallowed the
image behind flags missing from its tables: NVIDIA/nvidia-docker#46, #52, #917).

Example:
    >>> cmd = parse_engine_argv(["docker", "run", "-it", "--rm", "--", "ubuntu", "ls"])
    >>> (cmd.image, cmd.image_index, cmd.insert_index)
    ('ubuntu', 5, 4)
    >>> inject(cmd, ["--device=/dev/nvidiactl"])
    ['docker', 'run', '-it', '--rm', '--device=/dev/nvidiactl', '--', 'ubuntu', 'ls']
"""
from __future__ import annotations

from ..frozen import Record
from .dockerflags import ENGINES, SUDO, FlagTable, command_table, global_table
from ..errors import UsageError
from .gpusflag import GpusRequest, parse_gpus_flag
from ..text import lazy_re

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import List, Optional, Sequence, Set, Tuple


__all__ = ["EngineCommand", "GpusRequest", "ParsedOption", "inject", "parse_engine_argv",
           "parse_gpus_flag", "split_engine_command"]

_IMAGE_HINT = "name the image explicitly: nvlow exec --image IMG -- docker run ... IMG ..."
_ENV_ASSIGNMENT = lazy_re(r"[A-Za-z_][A-Za-z0-9_]*=")
_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")


class ParsedOption(Record):
    """One option as the engine will read it: canonical long name, value, argv span [start, end).

    ``value`` is None for a boolean given without ``=value``. Letters of one short
    cluster (``-itv /a:/b``) share the cluster's span.
    """

    name: str
    value: Optional[str]
    start: int
    end: int


class EngineCommand(Record):
    """What an engine command line means to nvlow.

    ``command`` is ``run``/``create`` (also for ``container run|create``), else the first
    command word as written (``ps``, ``image``, ``container``), or None when there is none.
    ``image_index`` is the index of the image token (for podman ``--rootfs``: of the rootfs
    path, and ``image`` is None). ``insert_index`` is where nvlow's arguments go: the image
    index, or the index of the ``--`` that precedes the image. ``engine_index`` is the
    index of the engine program (after a leading ``sudo ...``), ``command_index`` the index
    of the first command word (``run`` or ``container``), so ``argv[:command_index]`` is
    the engine with its global options.
    """

    argv: Tuple[str, ...]
    engine: str
    command: Optional[str]
    injectable: bool
    image: Optional[str]
    image_index: Optional[int]
    insert_index: Optional[int]
    options: Tuple[ParsedOption, ...]
    global_options: Tuple[ParsedOption, ...]
    rootfs: bool
    engine_index: int = 0
    command_index: Optional[int] = None

    def get(self, name: str) -> Tuple[str, ...]:
        """Values of run/create option ``name`` (canonical long name), in order; "true" for a bare boolean."""
        return tuple("true" if o.value is None else o.value for o in self.options if o.name == name)


class _NeedsArgument(Exception):
    """A value-taking option is the last token: the engine will print its own error."""


class _Scan(Record, frozen=False):
    options: List[ParsedOption]
    positional: Optional[int] = None
    dashdash: Optional[int] = None
    missing_value: bool = False


def _scan(argv: Sequence[str], start: int, table: FlagTable, *, end: Optional[int] = None,
          skip_unknown: bool = False) -> _Scan:
    """Parse options from ``start`` until the first positional (pflag, interspersed = false).

    Raises UsageError on an unknown option unless ``skip_unknown`` (then the token is
    skipped). ``end`` bounds the scan (used with an image hint): nothing at or after it is read.
    """
    stop = len(argv) if end is None else end
    scan = _Scan([])
    i = start
    while i < stop:
        token = argv[i]
        if token == "--":
            scan.dashdash = i
            scan.positional = i + 1 if i + 1 < len(argv) else None
            return scan
        if len(token) < 2 or token[0] != "-":
            scan.positional = i
            return scan
        try:
            parsed = (_long_option(argv, i, stop, table) if token.startswith("--")
                      else _short_cluster(argv, i, stop, table))
        except _NeedsArgument:
            scan.missing_value = True
            return scan
        except UsageError:
            if not skip_unknown:
                raise
            i += 1
            continue
        scan.options.extend(parsed)
        i = parsed[-1].end
    return scan


def _long_option(argv: Sequence[str], i: int, stop: int, table: FlagTable) -> List[ParsedOption]:
    body = argv[i][2:]
    if body[0] in "-=":
        raise UsageError(f"bad flag syntax: {argv[i]}", hint=_IMAGE_HINT)
    name, eq, value = body.partition("=")
    found = table.lookup_long(name)
    if found is None:
        raise UsageError(f"unknown {table.title} option: --{name}", hint=_IMAGE_HINT)
    canonical, takes_value = found
    if eq:
        return [ParsedOption(canonical, value, i, i + 1)]
    if not takes_value:
        return [ParsedOption(canonical, None, i, i + 1)]
    if i + 1 >= stop:
        raise _NeedsArgument()
    return [ParsedOption(canonical, argv[i + 1], i, i + 2)]


def _short_cluster(argv: Sequence[str], i: int, stop: int, table: FlagTable) -> List[ParsedOption]:
    """Letters left to right; the first value letter takes the rest, or the next token when last."""
    letters = argv[i][1:]
    names: List[Tuple[str, Optional[str]]] = []
    end = i + 1
    while letters:
        found = table.lookup_short(letters[0])
        if found is None:
            where = f"-{letters[0]}" if len(argv[i]) == 2 else f"'{letters[0]}' in {argv[i]}"
            raise UsageError(f"unknown {table.title} option: {where}", hint=_IMAGE_HINT)
        name, takes_value = found
        if len(letters) > 2 and letters[1] == "=":
            names.append((name, letters[2:]))
            break
        if not takes_value:
            names.append((name, None))
            letters = letters[1:]
            continue
        if len(letters) > 1:
            names.append((name, letters[1:]))
            break
        if i + 1 >= stop:
            raise _NeedsArgument()
        names.append((name, argv[i + 1]))
        end = i + 2
        break
    return [ParsedOption(name, value, i, end) for name, value in names]


def _basename(program: str) -> str:
    """The last part of a program path, either slash separating (a Windows client path too)."""
    return program.replace("\\", "/").rsplit("/", 1)[-1]


def _engine_of(program: str) -> str:
    base = _basename(program).lower()
    if base.endswith(".exe"):
        base = base[:-4]
    # podman, podman-remote, podman-remote-static; docker, nerdctl and the rest use docker's tables.
    return "podman" if base.startswith("podman") else "docker"


def _skip_sudo(argv: Sequence[str]) -> int:
    """Index of the engine program in ``argv``, after ``sudo [OPTIONS] [VAR=value...]``."""
    if not argv or _basename(argv[0]) != "sudo":
        return 0
    i = 1
    while i < len(argv):
        token = argv[i]
        if token == "--":
            i += 1
            break
        if token.startswith("-h") and len(token) > 2 and not token.startswith("--"):
            i += 1  # -hHOST: sudo's optional attached host
            continue
        if len(token) < 2 or token[0] != "-":
            break
        try:
            parsed = (_long_option(argv, i, len(argv), SUDO) if token.startswith("--")
                      else _short_cluster(argv, i, len(argv), SUDO))
            i = parsed[-1].end
        except (UsageError, _NeedsArgument):
            i += 1
    while i < len(argv) and _ENV_ASSIGNMENT.match(argv[i]):
        i += 1
    return i


def _truthy(option: ParsedOption) -> bool:
    if option.value is None or option.value in _TRUE:
        return True
    if option.value in _FALSE:
        return False
    raise UsageError(f'invalid argument "{option.value}" for "--{option.name}" flag: invalid syntax')


def parse_engine_argv(argv: Sequence[str], *, engine: Optional[str] = None,
                      image_hint: Optional[str] = None) -> EngineCommand:
    """Parse ``argv`` (argv[0] = the engine program, optionally behind ``sudo``).

    ``engine`` forces the tables ("docker" or "podman"). ``image_hint`` names the image
    token: when an option is unknown, or when the parse finds another image, the image is
    located by that exact token instead (options before it are then read best-effort).
    Raises UsageError on an unknown option (without a hint) or an unusable hint.
    """
    argv = tuple(argv)
    engine_index = _skip_sudo(argv)
    if engine is not None and engine not in ENGINES:
        raise UsageError(f"unknown container engine: {engine}", hint="use docker or podman")
    kind = engine or (_engine_of(argv[engine_index]) if engine_index < len(argv) else "docker")

    def result(command: Optional[str] = None, command_index: Optional[int] = None,
               global_options: Tuple[ParsedOption, ...] = ()) -> EngineCommand:
        return EngineCommand(argv, kind, command, False, None, None, None, (), global_options, False,
                             engine_index, command_index)

    if engine_index >= len(argv):
        return result()
    globals_scan = _scan(argv, engine_index + 1, global_table(kind))
    global_options = tuple(globals_scan.options)
    c = globals_scan.positional
    if c is None:
        return result(global_options=global_options)
    command, start = argv[c], c + 1
    if command == "container" and c + 1 < len(argv) and argv[c + 1] in ("run", "create"):
        command, start = argv[c + 1], c + 2
    if command not in ("run", "create"):
        return result(command, c, global_options)
    table = command_table(kind, command)
    try:
        scan = _scan(argv, start, table)
    except UsageError:
        if image_hint is None:
            raise
        scan = _Scan([])
    else:
        if image_hint is None or (scan.positional is not None and argv[scan.positional] == image_hint):
            return _finish(argv, kind, command, c, scan, global_options, engine_index)
    return _finish(argv, kind, command, c, _hinted_scan(argv, start, table, image_hint), global_options,
                   engine_index)


def _hinted_scan(argv: Sequence[str], start: int, table: FlagTable, image_hint: str) -> _Scan:
    try:
        index = argv.index(image_hint, start)
    except ValueError:
        raise UsageError(f"image {image_hint} is not in the engine command line",
                         hint="--image must repeat the image token exactly as written") from None
    scan = _scan(argv, start, table, end=index, skip_unknown=True)
    scan.positional = index
    scan.dashdash = index - 1 if index > start and argv[index - 1] == "--" else None
    scan.missing_value = False
    return scan


def _finish(argv: Tuple[str, ...], engine: str, command: str, command_index: int, scan: _Scan,
            global_options: Tuple[ParsedOption, ...], engine_index: int) -> EngineCommand:
    options = tuple(scan.options)
    wants_help = any(o.name == "help" and _truthy(o) for o in options)
    rootfs = engine == "podman" and any(o.name == "rootfs" and _truthy(o) for o in options)
    if scan.positional is None or scan.missing_value or wants_help:
        return EngineCommand(argv, engine, command, False, None, None, None, options, global_options,
                             rootfs, engine_index, command_index)
    insert = scan.dashdash if scan.dashdash is not None else scan.positional
    image = None if rootfs else argv[scan.positional]
    return EngineCommand(argv, engine, command, True, image, scan.positional, insert, options,
                         global_options, rootfs, engine_index, command_index)


def inject(cmd: EngineCommand, args: Sequence[str], *, remove: Sequence[str] = ("gpus",),
           remove_options: Sequence[ParsedOption] = ()) -> List[str]:
    """The final argv: ``args`` inserted at ``cmd.insert_index``, options named in ``remove``
    (and the single occurrences in ``remove_options``) dropped.

    Every other original token is kept exactly and in order. Raises UsageError when the
    command is not injectable, or when an option to remove shares a short cluster with
    one to keep.
    """
    if not cmd.injectable or cmd.insert_index is None:
        raise UsageError("nothing to inject into: the engine command is not run/create with an image")
    drop: Set[int] = set()
    removed = [o for o in cmd.options if o.name in remove or o in remove_options]
    for option in removed:
        drop.update(range(option.start, option.end))
    for option in cmd.options:
        if option not in removed and option.start in drop:
            raise UsageError(f"cannot remove --{removed[0].name} from {cmd.argv[option.start]} without "
                             f"--{option.name}", hint="write the option on its own")
    head = [token for i, token in enumerate(cmd.argv[:cmd.insert_index]) if i not in drop]
    return head + list(args) + list(cmd.argv[cmd.insert_index:])


def split_engine_command(text: str) -> List[str]:
    """Split an engine command (``NV_DOCKER``, ``--docker``) like a POSIX shell; never run a shell.

    Example:
        >>> split_engine_command("sudo docker -H 'unix:///run/my docker.sock'")
        ['sudo', 'docker', '-H', 'unix:///run/my docker.sock']
    """
    import shlex

    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise UsageError(f"cannot split engine command {text!r}: {exc}",
                         hint="quote it like a shell word list, e.g. NV_DOCKER='sudo docker'") from None
    if not words:
        raise UsageError("empty engine command", hint="set NV_DOCKER / --docker to e.g. 'docker' or 'sudo docker'")
    return words
