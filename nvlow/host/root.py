"""The host root: the one place where host paths are turned into file accesses.

Every host file nvlow reads (/proc, /dev, /etc/ld.so.cache, libraries,
binaries) is named by its *host* path ("/proc/devices") and read through a
:class:`HostRoot`. With ``--root /srv/fake`` the file actually read is
``/srv/fake/proc/devices``, and paths handed to an engine are the prefixed
ones (``HostRoot.host``).

Device-node checks go through an injectable ``node_reader`` so that tests and
the simulator can describe character devices with plain files. The default
reader uses ``lstat``: a symbolic link is never a device node.

Every file is read with :func:`read_regular`: opened non-blocking, only when it
is a regular file, and never more than a size limit for its kind
(:data:`TEXT_LIMIT` for /proc and /sys text), so a FIFO, a device or an endless
file in the tree is an unreadable file (a :class:`HostError` naming it), never a
hang. :meth:`HostRoot.contains` tells whether a real path stays inside the root
once every symbolic link is resolved; nothing outside it is handed to an engine
(docs/security.md).

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

from ..frozen import Record
from ..errors import HostError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, List, Optional

    NodeReader = Callable[[str], Optional["NodeInfo"]]

#: the most nvlow reads of a /proc, /sys or other small text file
TEXT_LIMIT = 1 << 20

_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)


def _kind_of(mode: int) -> str:
    if _stat.S_ISFIFO(mode):
        return "a FIFO"
    if _stat.S_ISCHR(mode):
        return "a character device"
    if _stat.S_ISBLK(mode):
        return "a block device"
    if _stat.S_ISSOCK(mode):
        return "a socket"
    if _stat.S_ISDIR(mode):
        return "a directory"
    return "not a regular file"


def not_regular(real_path: str) -> Optional[str]:
    """Why the file at ``real_path`` is not a regular file (``"/x is a FIFO, not a regular file"``), or
    None when it is one or does not exist (symlinks followed).

    Example:
        >>> not_regular("/dev/null"), not_regular("/no/such/file")
        ('/dev/null is a character device, not a regular file', None)
    """
    try:
        mode = os.stat(real_path).st_mode
    except OSError:
        return None
    return None if _stat.S_ISREG(mode) else _not_regular(real_path, mode)


def _not_regular(real_path: str, mode: int) -> str:
    kind = _kind_of(mode)
    return f"{real_path} is {kind}, not a regular file" if kind != "not a regular file" else \
        f"{real_path} is not a regular file"


def open_regular(real_path: str) -> int:
    """A read-only descriptor of the regular file at ``real_path`` (symlinks followed, as ``open``).

    The file is checked with ``stat`` before it is opened (opening a device can have side
    effects) and with ``fstat`` after (it may have been swapped); it is opened ``O_NONBLOCK``,
    so even a FIFO swapped in between never blocks. Anything else is a :class:`HostError`
    naming the file ("... is a FIFO, not a regular file").
    """
    try:
        st = os.stat(real_path)
        if not _stat.S_ISREG(st.st_mode):
            raise HostError(f"{_not_regular(real_path, st.st_mode)}; not read")
        fd = os.open(real_path, _OPEN_FLAGS)
    except OSError as exc:
        raise HostError(f"cannot read {real_path}: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
    except OSError as exc:
        os.close(fd)
        raise HostError(f"cannot read {real_path}: {exc.strerror or exc}") from None
    if not _stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise HostError(f"{_not_regular(real_path, st.st_mode)}; not read")
    return fd


def read_fd(fd: int, real_path: str, max_size: int, *, limit: Optional[int] = None) -> bytes:
    """Read ``fd`` to its end; more than ``max_size`` bytes is a :class:`HostError` naming the file.

    With ``limit``, only the first ``limit`` bytes are read (never more than ``max_size``).
    The size is not taken from ``fstat``: /proc and /sys files report 0.
    """
    want = max_size + 1 if limit is None else min(limit, max_size)
    chunks: List[bytes] = []
    got = 0
    try:
        while got < want:
            chunk = os.read(fd, min(want - got, 1 << 16))  # small reads: no 1 MiB buffer per /proc line
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
    except BlockingIOError:
        raise HostError(f"cannot read {real_path}: it would block (not a regular file?)") from None
    except OSError as exc:
        raise HostError(f"cannot read {real_path}: {exc.strerror or exc}") from None
    if limit is None and got > max_size:
        raise HostError(f"{real_path} is larger than {max_size} bytes; not read")
    return b"".join(chunks)


def read_regular(real_path: str, max_size: int = TEXT_LIMIT, *, limit: Optional[int] = None) -> bytes:
    """The bytes of the regular file ``real_path`` (see :func:`open_regular` and :func:`read_fd`).

    Example:
        >>> read_regular("/dev/null")
        Traceback (most recent call last):
        ...
        nvlow.errors.HostError: /dev/null is a character device, not a regular file; not read
    """
    fd = open_regular(real_path)
    try:
        return read_fd(fd, real_path, max_size, limit=limit)
    finally:
        os.close(fd)


class NodeInfo(Record):
    """What a device-node check found at a path.

    Example:
        >>> NodeInfo(is_char=True, major=195, minor=0, mode=0o666).is_char
        True
    """

    is_char: bool
    major: int
    minor: int
    mode: int
    #: the path is a symbolic link (never followed, so never a device node)
    is_link: bool = False


def stat_node_reader(real_path: str) -> Optional[NodeInfo]:
    """Default node reader: ``os.lstat`` of the real path (None when absent).

    A symbolic link is reported as such and never followed: under ``--root`` a link
    such as ``dev/nvidia0 -> /dev/kmsg`` would hand a host device to the container.
    """
    try:
        st = os.lstat(real_path)
    except OSError:
        return None
    is_char = _stat.S_ISCHR(st.st_mode)
    return NodeInfo(
        is_char=is_char,
        major=os.major(st.st_rdev) if is_char else -1,
        minor=os.minor(st.st_rdev) if is_char else -1,
        mode=_stat.S_IMODE(st.st_mode),
        is_link=_stat.S_ISLNK(st.st_mode),
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
    if info is None or info.is_char or info.is_link:
        return info
    try:
        head = read_regular(real_path, limit=64)
    except HostError:
        return info
    if head.startswith(SIMULATED_NODE_PREFIX):
        major_s, _, minor_s = head[len(SIMULATED_NODE_PREFIX):].strip().partition(b":")
        if 0 < len(major_s) <= 7 and 0 < len(minor_s) <= 7 and (major_s + minor_s).isdigit():
            return NodeInfo(True, int(major_s), int(minor_s), info.mode)
    return info


_MAX_LINKS = 40  # the kernel's limit on symbolic links followed in one lookup (MAXSYMLINKS)


def _resolve_below(base: str, rest: str) -> str:
    """``os.path.realpath(base + "/" + rest)`` for a ``base`` that is already a real path (no symbolic
    link in it): only the components of ``rest`` are looked up. Link targets follow the kernel's rules
    (an absolute target starts again at ``/``, ``..`` goes up from where the link is); a missing
    component is kept as written, as realpath does; a chain of more than 40 links resolves to ``""``
    (inside no root: the kernel would refuse it with ELOOP).

    Example:
        >>> _resolve_below("/", "proc/../etc/./hostname") == os.path.realpath("/etc/hostname")
        True
    """
    path = base
    pending = [c for c in reversed(rest.split("/")) if c and c != "."]
    links = 0
    while pending:
        name = pending.pop()
        if name == "..":
            path = os.path.dirname(path)
            continue
        candidate = path.rstrip("/") + "/" + name
        try:
            mode = os.lstat(candidate).st_mode
        except OSError:
            mode = 0  # missing (or unreadable): kept as written, as realpath does
        if not _stat.S_ISLNK(mode):
            path = candidate
            continue
        links += 1
        if links > _MAX_LINKS:
            return ""
        try:
            target = os.readlink(candidate)
        except OSError:
            return ""
        if target.startswith("/"):
            path = "/"
        pending.extend(c for c in reversed(target.split("/")) if c and c != ".")
    return path


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
        self._real_root: Optional[str] = None

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

    def read_bytes(self, path: str, *, limit: Optional[int] = None, max_size: int = TEXT_LIMIT) -> bytes:
        """Read a host file (:func:`read_regular`): a missing or unreadable file, one that is not
        a regular file (a FIFO would block) or one larger than ``max_size`` is a
        :class:`HostError` naming it. ``limit`` reads only the first bytes."""
        return read_regular(self.host(path), max_size, limit=limit)

    def read_text(self, path: str, *, max_size: int = TEXT_LIMIT) -> str:
        """Read a host text file (undecodable bytes replaced)."""
        return self.read_bytes(path, max_size=max_size).decode("utf-8", "replace")

    def read_text_optional(self, path: str, *, max_size: int = TEXT_LIMIT) -> Optional[str]:
        """Read a host text file, or None when it does not exist."""
        if not os.path.lexists(self.host(path)):
            return None
        return self.read_text(path, max_size=max_size)

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

    def contains(self, real_path: str) -> bool:
        """Whether the real path ``real_path`` (a :meth:`host` result) is inside the root once
        every symbolic link in it is resolved by the kernel's rules -- what an engine handed the
        path would open. Always True for ``/``.

        Example:
            >>> HostRoot("/srv/fake").contains("/srv/fake/../etc/passwd")
            False
        """
        if self.path == "/":
            return True
        if self._real_root is None:
            self._real_root = os.path.realpath(self.path)
        base = self._real_root
        prefix = self.path.rstrip("/") + "/"
        if real_path.startswith(prefix):
            # the root itself is resolved once: only the components below it are looked at (a host
            # path under a deep --root costs two lstat calls, not one per component of the whole path)
            resolved = _resolve_below(base, real_path[len(prefix):])
        else:
            resolved = os.path.realpath(real_path)
        return resolved == base or resolved.startswith(base.rstrip("/") + "/")

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
            if not os.path.lexists(self.host(cand)):
                continue
            try:
                resolved = self.realpath(cand)
            except HostError:
                continue
            real = self.host(resolved)
            if os.path.isfile(real) and os.access(real, os.X_OK) and self.contains(real):
                return resolved
        return None
