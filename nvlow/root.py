"""The host root: the one place where host paths are turned into file accesses.

Every host file nvlow reads (/proc, /dev, /etc/ld.so.cache, libraries,
binaries) is named by its *host* path ("/proc/devices") and read through a
:class:`HostRoot`. With ``--root /srv/fake`` the file actually read is
``/srv/fake/proc/devices``, and paths handed to an engine are the prefixed
ones (``HostRoot.host``).

Device-node checks go through an injectable ``node_reader`` so that tests and
the simulator can describe character devices with plain files.

Example:
    >>> r = HostRoot("/srv/fake")
    >>> r.host("/dev/nvidia0")
    '/srv/fake/dev/nvidia0'
    >>> HostRoot("/").host("/dev/nvidia0")
    '/dev/nvidia0'
"""
from __future__ import annotations

import os
import stat as _stat
from dataclasses import dataclass
from typing import Callable, List, Optional

from .errors import HostError


@dataclass(frozen=True)
class NodeInfo:
    """What a device-node check found at a path.

    Example:
        >>> NodeInfo(is_char=True, major=195, minor=0, mode=0o666).is_char
        True
    """

    is_char: bool
    major: int
    minor: int
    mode: int


NodeReader = Callable[[str], Optional[NodeInfo]]


def stat_node_reader(real_path: str) -> Optional[NodeInfo]:
    """Default node reader: ``os.stat`` of the real path (None when absent)."""
    try:
        st = os.stat(real_path)
    except OSError:
        return None
    is_char = _stat.S_ISCHR(st.st_mode)
    return NodeInfo(
        is_char=is_char,
        major=os.major(st.st_rdev) if is_char else -1,
        minor=os.minor(st.st_rdev) if is_char else -1,
        mode=_stat.S_IMODE(st.st_mode),
    )


SIMULATED_NODE_PREFIX = b"nvlow-simulated-char "


def file_node_reader(real_path: str) -> Optional[NodeInfo]:
    """Node reader for simulated/fake trees: a real char device, or a regular
    file whose content is ``nvlow-simulated-char MAJOR:MINOR``.

    Example:
        >>> file_node_reader("/nonexistent/path") is None
        True
    """
    info = stat_node_reader(real_path)
    if info is None or info.is_char:
        return info
    try:
        with open(real_path, "rb") as fh:
            head = fh.read(64)
    except OSError:
        return info
    if head.startswith(SIMULATED_NODE_PREFIX):
        try:
            major_s, minor_s = head[len(SIMULATED_NODE_PREFIX):].strip().split(b":")
            return NodeInfo(True, int(major_s), int(minor_s), info.mode)
        except ValueError:
            return info
    return info


class HostRoot:
    """A host filesystem seen from ``path`` (``/`` for the real host).

    Example:
        >>> HostRoot("/").is_default
        True
    """

    def __init__(
        self,
        path: str = "/",
        *,
        node_reader: Optional[NodeReader] = None,
        simulated: Optional[str] = None,
    ) -> None:
        norm = os.path.abspath(path or "/")
        self.path = norm
        self.node_reader: NodeReader = node_reader or stat_node_reader
        #: preset name when this root is a generated simulation tree
        self.simulated = simulated

    def __repr__(self) -> str:
        return f"HostRoot({self.path!r})"

    @property
    def is_default(self) -> bool:
        """True when the root is the real ``/``."""
        return self.path == "/"

    def host(self, path: str) -> str:
        """The real filesystem path of host path ``path`` (root-prefixed)."""
        if not path.startswith("/"):
            path = "/" + path
        if self.path == "/":
            return os.path.normpath(path)
        return os.path.normpath(self.path + path)

    def unhost(self, real_path: str) -> str:
        """Inverse of :meth:`host`: the host path of a real path under the root."""
        if self.path == "/":
            return real_path
        if real_path == self.path:
            return "/"
        if real_path.startswith(self.path + "/"):
            return real_path[len(self.path):]
        return real_path

    # -- thin readers -------------------------------------------------------
    def exists(self, path: str) -> bool:
        return os.path.lexists(self.host(path))

    def is_file(self, path: str) -> bool:
        return os.path.isfile(self.host(path))

    def is_dir(self, path: str) -> bool:
        return os.path.isdir(self.host(path))

    def is_link(self, path: str) -> bool:
        """True when the host path itself is a symbolic link (not followed)."""
        return os.path.islink(self.host(path))

    def read_bytes(self, path: str, *, limit: Optional[int] = None) -> bytes:
        """Read a host file; a missing or unreadable file is a :class:`HostError` naming it."""
        real = self.host(path)
        try:
            with open(real, "rb") as fh:
                return fh.read() if limit is None else fh.read(limit)
        except OSError as exc:
            raise HostError(f"cannot read {real}: {exc.strerror or exc}") from None

    def read_text(self, path: str) -> str:
        """Read a host text file (undecodable bytes replaced)."""
        return self.read_bytes(path).decode("utf-8", "replace")

    def read_text_optional(self, path: str) -> Optional[str]:
        """Read a host text file, or None when it does not exist."""
        if not os.path.lexists(self.host(path)):
            return None
        return self.read_text(path)

    def listdir(self, path: str) -> List[str]:
        """Sorted names in a host directory; empty when it does not exist."""
        try:
            return sorted(os.listdir(self.host(path)))
        except FileNotFoundError:
            return []
        except NotADirectoryError:
            return []
        except OSError as exc:
            raise HostError(f"cannot list {self.host(path)}: {exc.strerror or exc}") from None

    def node(self, path: str) -> Optional[NodeInfo]:
        """Device-node information of a host path (None when absent)."""
        return self.node_reader(self.host(path))

    def access(self, path: str, mode: int) -> bool:
        return os.access(self.host(path), mode)

    def realpath(self, path: str) -> str:
        """Resolve symlinks of a host path *inside* the root.

        Absolute link targets are taken relative to the root, as a chroot
        would. Returns a host path (not prefixed). Loops stop after 40 hops.
        """
        parts = [p for p in path.split("/") if p]
        resolved: List[str] = []
        hops = 0
        while parts:
            part = parts.pop(0)
            if part == ".":
                continue
            if part == "..":
                if resolved:
                    resolved.pop()
                continue
            candidate = "/" + "/".join(resolved + [part])
            real = self.host(candidate)
            if os.path.islink(real):
                hops += 1
                if hops > 40:
                    raise HostError(f"too many levels of symbolic links: {real}")
                target = os.readlink(real)
                if target.startswith("/"):
                    resolved = []
                parts = [p for p in target.split("/") if p] + parts
                continue
            resolved.append(part)
        return "/" + "/".join(resolved)

    def which(self, name: str, search_path: str) -> Optional[str]:
        """First executable ``name`` along ``search_path`` (a PATH string) under
        the root, as a host path with symlinks resolved, or None."""
        for d in search_path.split(":"):
            if not d.startswith("/"):
                continue
            cand = d.rstrip("/") + "/" + name
            real = self.host(cand)
            if os.path.isfile(real) and os.access(real, os.X_OK):
                return self.realpath(cand)
        return None
