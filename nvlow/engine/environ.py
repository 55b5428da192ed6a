"""The environment a container will get from the engine command line (``--env-file``, ``-e``).

Docker reads every ``--env-file`` first, then every ``-e``/``--env``, later
values winning (docker/cli ``opts.ReadKVEnvStrings``); podman does the same.
nvlow needs this to see ``NVIDIA_VISIBLE_DEVICES``, ``NVIDIA_DRIVER_CAPABILITIES``,
``PATH`` and ``LD_LIBRARY_PATH`` as the container will.

Example:
    >>> parse_env_file("# gpus\\nNVIDIA_VISIBLE_DEVICES=1\\n\\nHOME\\n", {"HOME": "/root"})
    {'NVIDIA_VISIBLE_DEVICES': '1', 'HOME': '/root'}
    >>> assignments(["A=1", "B", "C="], {"B": "2"})
    {'A': '1', 'B': '2', 'C': ''}
"""
from __future__ import annotations

import os
import stat

from ..errors import UsageError
from ..text import printable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Dict, Mapping, Optional, Sequence


#: the largest env file nvlow reads (docker sets no limit; real ones are a few KiB)
ENV_FILE_LIMIT = 1 << 20


def assignments(values: Sequence[str], env: Mapping[str, str]) -> Dict[str, str]:
    """``K=V`` / ``K`` words as a dict; a bare ``K`` takes its value from ``env`` (or is skipped)."""
    out: Dict[str, str] = {}
    for v in values:
        key, eq, val = v.partition("=")
        if not key:
            continue
        if eq:
            out[key] = val
        elif key in env:
            out[key] = env[key]
    return out


def parse_env_file(text: str, env: Mapping[str, str]) -> Dict[str, str]:
    """An env file as docker reads it: ``K=V`` or ``K`` lines, ``#`` comments, blank lines skipped,
    no quote processing; leading whitespace of a line is dropped."""
    words = []
    for line in text.splitlines():
        line = line.lstrip()
        if line and not line.startswith("#"):
            words.append(line)
    return assignments(words, env)


def _not_regular(path: str) -> UsageError:
    return UsageError(f"env file {printable(path, 4096)} is not a regular file; nvlow reads only regular env files",
                      hint="write the variables to a file and pass that file to --env-file")


def _read(path: str) -> Optional[str]:
    """The text of env file ``path``; None when it is missing or unreadable (the engine itself
    reports that). ``/dev/null`` is empty; any other file that is not a regular file (``/dev/zero``,
    a FIFO) or is larger than :data:`ENV_FILE_LIMIT` is a :class:`~nvlow.errors.UsageError` naming it."""
    try:
        st = os.stat(path)
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3):
            return ""  # /dev/null: an empty env file
        if not stat.S_ISREG(st.st_mode):
            raise _not_regular(path)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _not_regular(path)
        chunks = []
        got = 0
        while got <= ENV_FILE_LIMIT:
            chunk = os.read(fd, ENV_FILE_LIMIT + 1 - got)
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
    except OSError:
        return None
    finally:
        os.close(fd)
    if got > ENV_FILE_LIMIT:
        raise UsageError(f"env file {printable(path, 4096)} is larger than {ENV_FILE_LIMIT} bytes; not read",
                         hint="docker reads env files of KEY=VALUE lines; pass a smaller file")
    return b"".join(chunks).decode("utf-8", "replace")


def container_environment(env_files: Sequence[str], env_values: Sequence[str], env: Mapping[str, str],
                          read: Callable[[str], Optional[str]] = _read) -> Dict[str, str]:
    """Env files first, then ``-e`` values, later ones winning."""
    out: Dict[str, str] = {}
    for path in env_files:
        text = read(path)
        if text is not None:
            out.update(parse_env_file(text, env))
    out.update(assignments(env_values, env))
    return out
