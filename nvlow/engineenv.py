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

from typing import Callable, Dict, Mapping, Optional, Sequence


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


def _read(path: str) -> Optional[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return None  # the engine itself will report an unreadable env file


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
