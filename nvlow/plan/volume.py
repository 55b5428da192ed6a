"""The nvidia-docker 1.0 driver volume, one definition for the CLI, ``nvlow serve`` and its plugin.

Layout (nvidia-docker 1.0, ``src/nvidia/volumes.go`` on the 1.0 branch of
https://github.com/NVIDIA/nvidia-docker): ``<volumes_dir>/nvidia_driver/<driver
version>/`` with ``bin/`` (driver binaries), ``lib64/`` (64-bit libraries) and
``lib/`` (their 32-bit builds), each library under its real name plus SONAME
symlinks and ``libcuda.so``. :func:`ensure_driver_volume` selects the files of
every capability, ``compat32`` included, so whichever caller builds the volume
first, it holds the same files.

The volume carries a manifest (:data:`MANIFEST_NAME`: schema, driver version,
every file with its source, size and mtime, every symlink). A volume whose
manifest differs from what it should hold now (built by an older nvlow, from
another selection, or before the driver files were reinstalled) is rebuilt and
swapped in; an identical one is reused untouched.

Names and paths: a driver version is ASCII digits and dots (:func:`is_valid_version`,
the one check every entry point applies before touching the filesystem), every
path is proven to lie inside ``<volumes_dir>/nvidia_driver``, and a symlink where
a directory is expected is refused.

Concurrency: builds, rebuilds and removals of one version hold an ``flock`` on
``<volumes_dir>/nvidia_driver/.lock-<version>`` (:func:`volume_lock`), so racing
processes wait for the one builder and then reuse its volume instead of each
building a copy. The builder builds in a temporary sibling directory that it
keeps ``flock``-ed and renames into place, so a reader sees a complete volume or
none; a temporary directory whose lock nobody holds belonged to a killed build
and the next call removes it. Files are hard-linked, with a copy fallback
(checked against the free space first): nvidia-docker 1.0's most reported
failure was ``invalid cross-device link`` when /var/lib and /usr sat on
different filesystems (NVIDIA/nvidia-docker #38, #47, #133).

Example:
    >>> volume_path("/var/lib/nvlow/volumes", "550.54.15")
    '/var/lib/nvlow/volumes/nvidia_driver/550.54.15'
    >>> volume_name_version("nvidia_driver_550.54.15"), volume_name_version("nvidia_driver_..")
    ('550.54.15', None)
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import stat
import threading
import time

from ..frozen import Record
from ..host.capabilities import CAPABILITY_ORDER
from ..errors import HostError
from ..model import DriverFile, DriverFiles
from .plan import container_library_names
from ..host.root import HostRoot
from ..text import lazy_re

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Set, Tuple

    #: (root, driver version, capabilities) -> the driver files; :func:`nvlow.host.driverfiles.select_driver_files` fits
    Selector = Callable[[HostRoot, str, Iterable[str]], DriverFiles]
    #: (path inside the volume, source real path, size, mtime in ns)
    FileEntry = Tuple[str, str, int, int]

DEFAULT_VOLUMES_DIR = "/var/lib/nvlow/volumes"
VOLUME_BASE = "nvidia_driver"
#: a volume's name for Docker: ``nvidia_driver_<driver version>``
VOLUME_PREFIX = VOLUME_BASE + "_"
#: the longest driver version accepted in a volume name or path
MAX_VERSION_LEN = 32
#: the manifest inside every volume this nvlow builds
MANIFEST_NAME = ".nvlow-manifest.json"
MANIFEST_SCHEMA = 1
#: the marker of volumes built before the manifest; still written, so an older nvlow reuses a new volume
COMPLETE_MARKER = ".nvlow-complete"
#: one volume per driver version serves every container, so it holds every capability's files, as 1.0's did
VOLUME_CAPABILITIES: Tuple[str, ...] = CAPABILITY_ORDER
#: how long a build or removal waits for another process holding the volume's lock (seconds)
LOCK_TIMEOUT = 300.0
_SUBDIRS = ("bin", "lib", "lib64")
#: renameat2(2) flag and the "current directory" fd (linux/fs.h, fcntl.h)
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
#: a driver version: ASCII digits in dot-separated groups (no empty group, so no "..", no separator)
_VERSION_RE = lazy_re(r"[0-9]+(?:\.[0-9]+)*")  # explicit ASCII classes
#: room for the manifest, the marker and the directories, on top of the copied files
_SPACE_SLACK = 64 * 1024


class VolumeResult(Record):
    """A ready driver volume."""

    path: str
    version: str
    created: bool  # False when an existing volume with the same manifest was reused
    copied: int = 0  # files copied because hard links were impossible
    linked: int = 0
    replaced: bool = False  # True when a volume with another manifest was swapped out


class Manifest(Record):
    """What a driver volume holds: files (sorted) and symlinks (sorted)."""

    driver_version: str
    files: Tuple[FileEntry, ...]
    links: Tuple[Tuple[str, str], ...]  # (path inside the volume, symlink target)
    schema: int = MANIFEST_SCHEMA

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready dict (the file's content)."""
        return {"schema": self.schema, "driver_version": self.driver_version,
                "files": [list(f) for f in self.files], "links": [list(link) for link in self.links]}


# --- names and paths ----------------------------------------------------------------------------------

def is_valid_version(text: object) -> bool:
    r"""True for a driver version nvlow puts in a path: ASCII digits in dot-separated groups, at most
    :data:`MAX_VERSION_LEN` characters (no ``..``, no separator, no newline, no other character).

    Example:
        >>> [is_valid_version(v) for v in ("550.54.15", "1", "..", "550.54.15\n", "5/5", "٥٥٠", "1." )]
        [True, True, False, False, False, False, False]
    """
    return (isinstance(text, str) and 0 < len(text) <= MAX_VERSION_LEN
            and _VERSION_RE.fullmatch(text) is not None)


def volume_name_version(name: object) -> Optional[str]:
    r"""The driver version of the volume name ``nvidia_driver_<version>``; None for any other name.

    Example:
        >>> volume_name_version("nvidia_driver_560.35.03"), volume_name_version("nvidia_driver_1\n")
        ('560.35.03', None)
    """
    if not isinstance(name, str) or not name.startswith(VOLUME_PREFIX):
        return None
    version = name[len(VOLUME_PREFIX):]
    return version if is_valid_version(version) else None


def show_name(text: object, limit: int = 64) -> str:
    r"""``text`` for a one-line message: as is when short printable ASCII, else ``ascii()`` of its start.

    Example:
        >>> show_name("nvidia_driver_1"), show_name("nvidia_driver_1\n")
        ('nvidia_driver_1', "'nvidia_driver_1\\n'")
    """
    if isinstance(text, str) and len(text) <= limit and text.isascii() and text.isprintable():
        return text
    if isinstance(text, str):
        return ascii(text[:limit]) + ("..." if len(text) > limit else "")
    return ascii(text)


def _checked_version(version: object) -> str:
    if not is_valid_version(version):
        raise HostError(f"invalid driver version {show_name(version)} for a driver volume",
                        hint="a driver version is digits and dots, such as 550.54.15")
    return str(version)


def volume_path(volumes_dir: str, version: str) -> str:
    """Where the volume for ``version`` lives (HostError for a version that is not digits and dots)."""
    return os.path.join(volumes_dir, VOLUME_BASE, _checked_version(version))


def _inside(volumes_dir: str, path: str) -> str:
    """``path`` after proving that its real path lies inside ``<volumes_dir>/nvidia_driver``."""
    top = os.path.realpath(os.path.join(volumes_dir, VOLUME_BASE))
    real = os.path.realpath(path)
    if real == top or os.path.commonpath([top, real]) != top:
        raise HostError(f"refusing {path}: it resolves to {real}, outside the driver volumes directory {top}",
                        hint="remove the symlink that leads out of it")
    return path


def _real_dir(path: str, what: str) -> bool:
    """True for a real directory, False when nothing is there; HostError for a symlink or another file."""
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as exc:
        raise HostError(f"cannot read {what} {path}: {exc.strerror}", hint="check its permissions") from None
    if stat.S_ISLNK(st.st_mode):
        raise HostError(f"{what} {path} is a symlink; nvlow does not follow symlinks there",
                        hint="remove the symlink (nvlow never creates one there), or choose another --volumes-dir")
    if not stat.S_ISDIR(st.st_mode):
        raise HostError(f"{what} {path} is not a directory", hint="remove it, or choose another --volumes-dir")
    return True


def _dir_hint(exc: OSError, option: str) -> str:
    if exc.errno == errno.EROFS:
        return f"the directory is read-only: choose another {option}"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"run as root, or choose a directory you can write with {option}"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"free some space there, or choose another {option}"
    return f"choose another {option}"


def _prepare_base(volumes_dir: str) -> str:
    """Create ``<volumes_dir>/nvidia_driver`` when missing; refuse a symlink there. Its path."""
    base = os.path.join(volumes_dir, VOLUME_BASE)
    if _real_dir(base, "volume directory"):
        return base
    try:
        os.makedirs(base, mode=0o755, exist_ok=True)
    except OSError as exc:
        raise HostError(f"cannot create volume directory {base}: {exc.strerror}",
                        hint=_dir_hint(exc, "--volumes-dir DIR")) from None
    _real_dir(base, "volume directory")
    return base


def is_complete(path: str) -> bool:
    """True when ``path`` is a real directory holding a fully built volume (this nvlow's manifest or an
    older nvlow's marker, both regular files); symlinks are not followed."""
    try:
        if not stat.S_ISDIR(os.lstat(path).st_mode):
            return False
    except OSError:
        return False
    for name in (MANIFEST_NAME, COMPLETE_MARKER):
        try:
            if stat.S_ISREG(os.lstat(os.path.join(path, name)).st_mode):
                return True
        except OSError:
            pass
    return False


# --- the manifest ---------------------------------------------------------------------------------------

def _component(name: str, source: str) -> str:
    """A file name that stays in its directory (no separator, not ``.``/``..``, no NUL)."""
    if not name or "/" in name or "\0" in name or name in (".", ".."):
        raise HostError(f"refusing driver file name {show_name(name)} of {source}: it would leave the volume",
                        hint="check the host's ld.so.cache and driver files ('nvlow doctor')")
    return name


def _layout(files: DriverFiles) -> List[Tuple[str, DriverFile, Tuple[str, ...]]]:
    out: List[Tuple[str, DriverFile, Tuple[str, ...]]] = []
    for f in files.binaries:
        out.append(("bin", f, ()))
    for sub, libs in (("lib64", files.libraries64), ("lib", files.libraries32)):
        for f in libs:
            links = tuple(n for n in container_library_names(f) if n != f.names[0])
            out.append((sub, f, links))
    return out


def volume_manifest(files: DriverFiles, version: str) -> Manifest:
    """The manifest of a volume holding ``files`` (stats every source; OSError when one is missing).

    A name already taken (by an earlier file or link) is not reused, so the first file wins.
    HostError for a file or link name that is not a plain file name.
    """
    entries: Dict[str, FileEntry] = {}
    links: Dict[str, str] = {}
    for sub, f, names in _layout(files):
        name = _component(f.names[0], f.host_path)
        rel = f"{sub}/{name}"
        if rel in entries or rel in links:
            continue
        st = os.stat(f.host_path)
        entries[rel] = (rel, f.host_path, st.st_size, st.st_mtime_ns)
        for link in names:
            lrel = f"{sub}/{_component(link, f.host_path)}"
            if lrel not in entries and lrel not in links:
                links[lrel] = name
    return Manifest(version, tuple(sorted(entries.values())), tuple(sorted(links.items())))


def _entry(item: Any) -> FileEntry:
    rel, src, size, mtime = item
    if not (isinstance(rel, str) and isinstance(src, str) and isinstance(size, int) and isinstance(mtime, int)):
        raise ValueError("bad file entry")
    return rel, src, size, mtime


def read_manifest(path: str) -> Optional[Manifest]:
    """The manifest of the volume at ``path``; None when it has none (or an unreadable or foreign one,
    or a symlink in its place)."""
    try:
        fd = os.open(os.path.join(path, MANIFEST_NAME), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with open(fd, encoding="utf-8") as fh:
            doc = json.load(fh)
        if doc.get("schema") != MANIFEST_SCHEMA:
            return None
        files = tuple(_entry(item) for item in doc["files"])
        links = tuple((str(rel), str(target)) for rel, target in doc["links"])
        return Manifest(str(doc["driver_version"]), files, links)
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None


def _holds(path: str, want: Manifest) -> bool:
    """True when the volume at ``path`` has manifest ``want`` and still has its files and links."""
    if read_manifest(path) != want:
        return False
    try:
        for rel, _src, size, _mtime in want.files:
            st = os.lstat(os.path.join(path, rel))
            if not stat.S_ISREG(st.st_mode) or st.st_size != size:
                return False
        return all(os.readlink(os.path.join(path, rel)) == target for rel, target in want.links)
    except OSError:
        return False


# --- locks ----------------------------------------------------------------------------------------------

_held = threading.local()


def _held_locks() -> Set[Tuple[int, str]]:
    locks: Optional[Set[Tuple[int, str]]] = getattr(_held, "locks", None)
    if locks is None:
        locks = _held.locks = set()
    return locks


def _open_lock_file(path: str) -> int:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise HostError(f"lock file {path} is a symlink; nvlow does not follow symlinks there",
                            hint="remove it (nvlow recreates it)") from None
        raise HostError(f"cannot open the lock file {path}: {exc.strerror}",
                        hint=_dir_hint(exc, "--volumes-dir DIR")) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise HostError(f"lock file {path} is not a regular file", hint="remove it (nvlow recreates it)")
    return fd


def _acquire(path: str, timeout: float, version: str) -> int:
    """An fd holding an exclusive flock on the lock file ``path``, waiting at most ``timeout`` s."""
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        fd = _open_lock_file(path)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise HostError(f"timed out after {timeout:g} s waiting for the lock {path}: another "
                                        f"nvlow process is building or removing driver volume {version}",
                                        hint=f"check for a stuck nvlow process holding it (fuser {path})") from None
                    time.sleep(delay)
                    delay = min(delay * 2, 0.02)
                except OSError as exc:
                    raise HostError(f"cannot lock {path}: {exc.strerror}",
                                    hint="choose a --volumes-dir on a local filesystem") from None
            # nvlow never deletes a lock file; should someone else have, lock the file now at that path
            st = os.fstat(fd)
            try:
                now = os.lstat(path)
                if (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino):
                    return fd
            except FileNotFoundError:
                pass
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


@contextlib.contextmanager
def volume_lock(volumes_dir: Optional[str], version: str, *, timeout: Optional[float] = None) -> Iterator[str]:
    """Hold the lock of ``version``'s volume: an exclusive ``flock`` on ``<volumes_dir>/nvidia_driver/
    .lock-<version>``; yields the lock file's path.

    Every build, rebuild and removal holds it (across processes and across threads: each acquisition
    opens the file anew). Re-entrant within a thread, so the plugin can hold it around a Mount that
    builds. Waits at most ``timeout`` s (:data:`LOCK_TIMEOUT`), then HostError. Lock files stay: deleting
    one could let two processes hold "the" lock at once.
    """
    version = _checked_version(version)
    base = _prepare_base(volumes_dir or DEFAULT_VOLUMES_DIR)
    path = os.path.join(base, f".lock-{version}")
    key = (os.getpid(), os.path.realpath(path))
    held = _held_locks()
    if key in held:
        yield path
        return
    fd = _acquire(path, LOCK_TIMEOUT if timeout is None else timeout, version)
    held.add(key)
    try:
        yield path
    finally:
        held.discard(key)
        os.close(fd)


def _lock_dir(path: str) -> Tuple[int, bool]:
    """(fd of the directory ``path``, True when this fd now holds its flock). OSError when not a real
    directory. Where directories cannot be flock-ed, (fd, True): the volume lock still serializes."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return fd, False
    except OSError:
        pass
    return fd, True


def _leftovers(base: str, version: str) -> List[str]:
    try:
        names = os.listdir(base)
    except OSError:
        return []
    return [n for n in names if n.startswith((f".tmp-{version}-", f".old-{version}-"))]


def _clean_stale(base: str, version: str) -> int:
    """Remove what killed builds (``.tmp-``) and removals (``.old-``) of ``version`` left behind; the count.

    Called with the volume's lock held. A ``.tmp-`` directory is live while its builder holds its flock
    (a killed process holds nothing: no PID test, which zombies and reused PIDs would fool); an
    ``.old-`` directory is garbage from the moment it is renamed.
    """
    removed = 0
    for name in _leftovers(base, version):
        path = os.path.join(base, name)
        try:
            fd, free = _lock_dir(path)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):  # not a directory: nothing nvlow made, but in its name space
                with contextlib.suppress(OSError):
                    os.unlink(path)
                    removed += 1
            continue
        try:
            if free:
                shutil.rmtree(path, ignore_errors=True)
                removed += not os.path.lexists(path)
        finally:
            os.close(fd)
    return removed


def _clean_stale_if_free(volumes_dir: str, base: str, version: str) -> None:
    """On the reuse path: remove leftovers when there are some and nobody holds the volume's lock."""
    if not _leftovers(base, version):
        return
    try:
        with volume_lock(volumes_dir, version, timeout=0):
            _clean_stale(base, version)
    except HostError:
        pass  # busy (its holder cleans up) or not writable (nothing to do about it here)


# --- building -------------------------------------------------------------------------------------------

def _private_name(base: str, kind: str, version: str) -> str:
    return os.path.join(base, f".{kind}-{version}-{os.getpid()}-{os.urandom(3).hex()}")


def _free_bytes(path: str) -> int:
    st = os.statvfs(path)
    return (st.f_bfree if os.geteuid() == 0 else st.f_bavail) * st.f_frsize


def _blocks(size: int, block: int) -> int:
    return -(-size // block) * block


def _space_error(where: str, version: str, what: str, need: int, free: int) -> HostError:
    def mib(n: int) -> str:
        return f"{n / 2**20:.1f} MiB"

    return HostError(f"not enough space in {where} for driver volume {version}: {what} needs {mib(need)}, "
                     f"{mib(free)} free",
                     hint="free space there, choose a --volumes-dir on the driver files' filesystem "
                          "(hard links need no space), or use --driver-files bind")


def _place(src: str, dst: str, before_copy: Optional[Callable[[], None]] = None) -> bool:
    """Hard-link ``src`` to ``dst``, copying when linking is impossible (``before_copy`` runs first).
    True when copied."""
    try:
        os.link(src, dst)
        return False
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.EACCES, errno.ENOTSUP):
            raise
    if before_copy is not None:
        before_copy()
    shutil.copy2(src, dst)
    return True


class _Builder:
    """Fills a temporary directory from a manifest: hard links, copies where linking is impossible,
    the free space checked before copying."""

    def __init__(self, base: str, want: Manifest) -> None:
        self.base = base
        self.want = want
        self.copied = 0
        self.linked = 0
        self.block = os.statvfs(base).f_frsize or 4096
        self.expected: Set[str] = set()  # sources on another filesystem: they are copied

    def check_space(self) -> None:
        """One clear error before copying anything when the files to copy do not fit."""
        dev = os.stat(self.base).st_dev
        need = 0
        for _rel, src, size, _mtime in self.want.files:
            if os.stat(src).st_dev != dev:
                self.expected.add(src)
                need += _blocks(size, self.block)
        if not need:
            return
        need += _SPACE_SLACK
        free = _free_bytes(self.base)
        if need > free:
            raise _space_error(self.base, self.want.driver_version,
                               f"copying {len(self.expected)} files from another filesystem", need, free)

    def check_copy(self, src: str, size: int) -> None:
        """Before a copy that :meth:`check_space` did not count: does this file fit?"""
        if src in self.expected:
            return
        need = _blocks(size, self.block) + _SPACE_SLACK
        free = _free_bytes(self.base)
        if need > free:
            raise _space_error(self.base, self.want.driver_version, f"copying {src}", need, free)

    def place(self, src: str, dst: str, size: int) -> None:
        if _place(src, dst, lambda: self.check_copy(src, size)):
            self.copied += 1
        else:
            self.linked += 1

    def build(self, tmp: str) -> None:
        """Populate the (existing, empty) directory ``tmp``."""
        self.check_space()
        for sub in _SUBDIRS:
            os.mkdir(os.path.join(tmp, sub), 0o755)
        for rel, src, size, _mtime in self.want.files:
            self.place(src, os.path.join(tmp, rel), size)
        for rel, target in self.want.links:
            os.symlink(target, os.path.join(tmp, rel))
        with open(os.path.join(tmp, COMPLETE_MARKER), "w", encoding="utf-8") as fh:
            fh.writelines(f"{rel}\t{src}\n" for rel, src, _size, _mtime in self.want.files)
        with open(os.path.join(tmp, MANIFEST_NAME), "w", encoding="utf-8") as fh:
            json.dump(self.want.to_dict(), fh, indent=1)
            fh.write("\n")


def _build(tmp: str, want: Manifest) -> Tuple[int, int]:
    """Populate the existing, empty directory ``tmp`` from the manifest; (copied, linked)."""
    builder = _Builder(os.path.dirname(tmp), want)
    builder.build(tmp)
    return builder.copied, builder.linked


def _exchange(a: str, b: str) -> bool:
    """Swap two directories atomically: renameat2(2) with RENAME_EXCHANGE (Linux 3.16, glibc 2.28).

    False when the C library, the kernel or the filesystem cannot do it.
    """
    import ctypes

    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
    fn.restype = ctypes.c_int
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), b)


def _retire(path: str, base: str, version: str) -> None:
    """Move a volume out of the way (one rename), then delete it."""
    old = _private_name(base, "old", version)
    try:
        os.rename(path, old)
    except FileNotFoundError:
        return
    shutil.rmtree(old, ignore_errors=True)


def _install(tmp: str, final: str, want: Manifest) -> Tuple[bool, bool]:
    """Put the built ``tmp`` at ``final``; (installed, replaced an existing volume).

    Not installed when an identical volume is already there (an older nvlow, which takes no lock, may
    have put it there). An existing different volume is exchanged atomically where renameat2 works,
    else renamed away first (a moment without a volume). ``tmp`` may be left holding the old volume:
    the caller removes it.
    """
    replaced = False
    for _attempt in range(3):
        try:
            os.rename(tmp, final)
            return True, replaced
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
        if _holds(final, want):
            return False, replaced
        replaced = True
        if _exchange(tmp, final):
            return True, replaced
        _retire(final, os.path.dirname(final), want.driver_version)
    raise OSError(errno.EBUSY, "other processes keep replacing it", final)


def _build_error(final: str, exc: OSError) -> HostError:
    where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
    if exc.errno == errno.EROFS:
        hint = "the directory is read-only: choose another --volumes-dir, or use --driver-files bind"
    else:
        hint = "check free space and permissions, or use --driver-files bind"
    return HostError(f"cannot build driver volume {final}: {exc.strerror or exc}{where}", hint=hint)


def _volume_dir(volumes_dir: str, path: str) -> bool:
    """True when the volume directory ``path`` exists: a real directory inside the volumes directory;
    False when nothing is there; HostError for a symlink, another file, or a path leading outside."""
    present = _real_dir(path, "driver volume")
    _inside(volumes_dir, path)
    return present


def _reusable(volumes_dir: str, final: str, want: Manifest) -> bool:
    return _volume_dir(volumes_dir, final) and _holds(final, want)


def ensure_volume(files: DriverFiles, version: str, volumes_dir: Optional[str] = None) -> VolumeResult:
    """The driver volume for ``version`` holding exactly ``files``, built or rebuilt when needed.

    Reused when its manifest equals :func:`volume_manifest` of ``files`` and its files are in place
    (no lock taken, so a read-only volumes directory with a complete volume works). Otherwise, under
    :func:`volume_lock`: checked again (another process may have built it while this one waited),
    then built in a private, flock-ed temporary directory and renamed into place (replacing the old
    one). Leftovers of killed builds are removed. Callers that want *the* driver volume (the same one
    for the CLI, ``nvlow serve`` and the plugin) use :func:`ensure_driver_volume`.
    """
    version = _checked_version(version)
    vdir = volumes_dir or DEFAULT_VOLUMES_DIR
    final = volume_path(vdir, version)
    base = _prepare_base(vdir)
    try:
        want = volume_manifest(files, version)
    except OSError as exc:
        raise _build_error(final, exc) from None
    if _reusable(vdir, final, want):
        _clean_stale_if_free(vdir, base, version)
        return VolumeResult(final, version, created=False)
    with volume_lock(vdir, version):
        if _reusable(vdir, final, want):
            return VolumeResult(final, version, created=False)
        _clean_stale(base, version)
        tmp = _private_name(base, "tmp", version)
        fd = -1
        try:
            os.mkdir(tmp, 0o755)
            fd, _locked = _lock_dir(tmp)  # a fresh directory: always ours
            copied, linked = _build(tmp, want)
            installed, replaced = _install(tmp, final, want)
        except OSError as exc:
            raise _build_error(final, exc) from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)  # before its lock goes: never a lockless live build
            if fd >= 0:
                os.close(fd)
    if not installed:
        return VolumeResult(final, version, created=False)
    return VolumeResult(final, version, created=True, copied=copied, linked=linked, replaced=replaced)


def driver_volume_files(root: HostRoot, driver_version: str, *, select: Optional[Selector] = None) -> DriverFiles:
    """The files the driver volume holds: those of every capability (:data:`VOLUME_CAPABILITIES`)."""
    if select is not None:
        return select(root, driver_version, VOLUME_CAPABILITIES)
    from ..host.driverfiles import select_driver_files

    return select_driver_files(root, driver_version, VOLUME_CAPABILITIES)


def ensure_driver_volume(root: HostRoot, driver_version: Optional[str], volumes_dir: Optional[str] = None, *,
                         select: Optional[Selector] = None) -> VolumeResult:
    """The driver volume of ``driver_version`` under ``root``: the one definition every caller uses.

    Holds the binaries and the 64- and 32-bit libraries of every capability
    (``select`` picks them, :func:`nvlow.host.driverfiles.select_driver_files` by
    default; ``nvlow serve`` passes its cached selection). ``volumes_dir``
    defaults to :data:`DEFAULT_VOLUMES_DIR`. Rebuilt when its manifest differs
    from what it should hold (see :func:`ensure_volume`).
    """
    if not driver_version:
        raise HostError("the NVIDIA driver version is unknown, so no driver volume can be built",
                        hint="check /proc/driver/nvidia/version ('nvlow doctor')")
    _checked_version(driver_version)
    files = driver_volume_files(root, driver_version, select=select)
    return ensure_volume(files, driver_version, volumes_dir)


def volume_exists(volumes_dir: str, version: str) -> bool:
    """True when something (complete or not) is at ``version``'s volume path; HostError for a symlink
    there or in place of ``nvidia_driver``. Creates nothing."""
    path = volume_path(volumes_dir, version)
    if not _real_dir(os.path.dirname(path), "volume directory"):
        return False
    return _volume_dir(volumes_dir, path)


def remove_volume(volumes_dir: str, version: str) -> bool:
    """Remove a driver volume under its lock (renamed away first, so nobody sees half of one); True when
    one was removed. HostError for a symlink in its place."""
    if not volume_exists(volumes_dir, version):
        return False
    path = volume_path(volumes_dir, version)
    with volume_lock(volumes_dir, version):
        if not volume_exists(volumes_dir, version):
            return False
        base = os.path.dirname(path)
        _retire(path, base, version)
        _clean_stale(base, version)
    return True


def list_volumes(volumes_dir: str) -> List[str]:
    """Versions of the complete volumes on disk (real directories with a valid version as name)."""
    base = os.path.join(volumes_dir, VOLUME_BASE)
    if not _real_dir(base, "volume directory"):
        return []
    try:
        names = sorted(os.listdir(base))
    except OSError:
        return []
    return [n for n in names if is_valid_version(n) and is_complete(os.path.join(base, n))]


def find_volume(volumes_dir: str, version: str) -> Optional[str]:
    """Path of a complete volume, or None. HostError for a symlink in its place."""
    if not volume_exists(volumes_dir, version):
        return None
    path = volume_path(volumes_dir, version)
    return path if is_complete(path) else None
