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

Builds happen in a temporary sibling directory that is renamed into place, so a
reader sees a complete volume or none (a killed build leaves only a ``.tmp-*``
directory, removed by the next build). Files are hard-linked, with a copy
fallback: nvidia-docker 1.0's most reported failure was ``invalid cross-device
link`` when /var/lib and /usr sat on different filesystems (NVIDIA/nvidia-docker
#38, #47, #133).

Example:
    >>> volume_path("/var/lib/nvlow/volumes", "550.54.15")
    '/var/lib/nvlow/volumes/nvidia_driver/550.54.15'
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from .capabilities import CAPABILITY_ORDER
from .errors import HostError
from .model import DriverFile, DriverFiles
from .plan import container_library_names
from .root import HostRoot

DEFAULT_VOLUMES_DIR = "/var/lib/nvlow/volumes"
VOLUME_BASE = "nvidia_driver"
#: the manifest inside every volume this nvlow builds
MANIFEST_NAME = ".nvlow-manifest.json"
MANIFEST_SCHEMA = 1
#: the marker of volumes built before the manifest; still written, so an older nvlow reuses a new volume
COMPLETE_MARKER = ".nvlow-complete"
#: one volume per driver version serves every container, so it holds every capability's files, as 1.0's did
VOLUME_CAPABILITIES: Tuple[str, ...] = CAPABILITY_ORDER
_STALE_TMP_SECONDS = 600
_SUBDIRS = ("bin", "lib", "lib64")
#: renameat2(2) flag and the "current directory" fd (linux/fs.h, fcntl.h)
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100

#: (root, driver version, capabilities) -> the driver files; :func:`nvlow.driverfiles.select_driver_files` fits
Selector = Callable[[HostRoot, str, Iterable[str]], DriverFiles]
#: (path inside the volume, source real path, size, mtime in ns)
FileEntry = Tuple[str, str, int, int]


@dataclass(frozen=True)
class VolumeResult:
    """A ready driver volume."""

    path: str
    version: str
    created: bool  # False when an existing volume with the same manifest was reused
    copied: int = 0  # files copied because hard links were impossible
    linked: int = 0
    replaced: bool = False  # True when a volume with another manifest was swapped out


@dataclass(frozen=True)
class Manifest:
    """What a driver volume holds: files (sorted) and symlinks (sorted)."""

    driver_version: str
    files: Tuple[FileEntry, ...]
    links: Tuple[Tuple[str, str], ...]  # (path inside the volume, symlink target)
    schema: int = MANIFEST_SCHEMA

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready dict (the file's content)."""
        return {"schema": self.schema, "driver_version": self.driver_version,
                "files": [list(f) for f in self.files], "links": [list(link) for link in self.links]}


def volume_path(volumes_dir: str, version: str) -> str:
    """Where the volume for ``version`` lives."""
    return os.path.join(volumes_dir, VOLUME_BASE, version)


def is_complete(path: str) -> bool:
    """True when ``path`` is a fully built volume (this nvlow's manifest or an older nvlow's marker)."""
    return os.path.isfile(os.path.join(path, MANIFEST_NAME)) or os.path.isfile(os.path.join(path, COMPLETE_MARKER))


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
    """
    entries: Dict[str, FileEntry] = {}
    links: Dict[str, str] = {}
    for sub, f, names in _layout(files):
        name = f.names[0]
        rel = f"{sub}/{name}"
        if rel in entries or rel in links:
            continue
        st = os.stat(f.host_path)
        entries[rel] = (rel, f.host_path, st.st_size, st.st_mtime_ns)
        for link in names:
            lrel = f"{sub}/{link}"
            if lrel not in entries and lrel not in links:
                links[lrel] = name
    return Manifest(version, tuple(sorted(entries.values())), tuple(sorted(links.items())))


def _entry(item: Any) -> FileEntry:
    rel, src, size, mtime = item
    if not (isinstance(rel, str) and isinstance(src, str) and isinstance(size, int) and isinstance(mtime, int)):
        raise ValueError("bad file entry")
    return rel, src, size, mtime


def read_manifest(path: str) -> Optional[Manifest]:
    """The manifest of the volume at ``path``; None when it has none (or an unreadable or foreign one)."""
    try:
        with open(os.path.join(path, MANIFEST_NAME), encoding="utf-8") as fh:
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


def _place(src: str, dst: str) -> bool:
    """Hard-link ``src`` to ``dst``, copying when linking is impossible. True when copied."""
    try:
        os.link(src, dst)
        return False
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.EACCES, errno.ENOTSUP):
            raise
    shutil.copy2(src, dst)
    return True


def _pid_alive(name: str) -> bool:
    try:
        os.kill(int(name.split("-")[-2]), 0)
        return True
    except (ValueError, IndexError, ProcessLookupError):
        return False
    except PermissionError:
        return True


def _clean_stale(base: str, version: str) -> None:
    """Remove what killed builds (``.tmp-``) and replacements (``.old-``) of ``version`` left behind."""
    now = time.time()
    try:
        names = os.listdir(base)
    except OSError:
        return
    for name in names:
        if not name.startswith((f".tmp-{version}-", f".old-{version}-")):
            continue
        path = os.path.join(base, name)
        try:
            old = now - os.path.getmtime(path) > _STALE_TMP_SECONDS
        except OSError:
            continue
        if old or not _pid_alive(name):
            shutil.rmtree(path, ignore_errors=True)


def _private_name(base: str, kind: str, version: str) -> str:
    return os.path.join(base, f".{kind}-{version}-{os.getpid()}-{os.urandom(3).hex()}")


def _build(tmp: str, want: Manifest) -> Tuple[int, int]:
    """Populate ``tmp`` from the manifest; (copied, linked)."""
    copied = linked = 0
    os.mkdir(tmp, 0o755)
    for sub in _SUBDIRS:
        os.mkdir(os.path.join(tmp, sub), 0o755)
    for rel, src, _size, _mtime in want.files:
        if _place(src, os.path.join(tmp, rel)):
            copied += 1
        else:
            linked += 1
    for rel, target in want.links:
        os.symlink(target, os.path.join(tmp, rel))
    with open(os.path.join(tmp, COMPLETE_MARKER), "w", encoding="utf-8") as fh:
        fh.writelines(f"{rel}\t{src}\n" for rel, src, _size, _mtime in want.files)
    with open(os.path.join(tmp, MANIFEST_NAME), "w", encoding="utf-8") as fh:
        json.dump(want.to_dict(), fh, indent=1)
        fh.write("\n")
    return copied, linked


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

    Not installed when another process installed an identical volume first. An
    existing different volume is exchanged atomically where renameat2 works, else
    renamed away first (a moment without a volume). ``tmp`` may be left holding the
    old volume: the caller removes it.
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
    return HostError(f"cannot build driver volume {final}: {exc.strerror or exc}{where}",
                     hint="check free space and permissions, or use --driver-files bind")


def ensure_volume(files: DriverFiles, version: str, volumes_dir: Optional[str] = None) -> VolumeResult:
    """The driver volume for ``version`` holding exactly ``files``, built or rebuilt when needed.

    Reused when its manifest equals :func:`volume_manifest` of ``files`` and its
    files are in place; otherwise built in a private temporary directory and
    renamed into place (replacing the old one). Safe when processes race: each
    builds its own copy, the first rename wins, later ones with the same manifest
    discard theirs. Callers that want *the* driver volume (the same one for the
    CLI, ``nvlow serve`` and the plugin) use :func:`ensure_driver_volume`.
    """
    final = volume_path(volumes_dir or DEFAULT_VOLUMES_DIR, version)
    base = os.path.dirname(final)
    try:
        os.makedirs(base, mode=0o755, exist_ok=True)
    except OSError as exc:
        raise HostError(f"cannot create volume directory {base}: {exc.strerror}",
                        hint="run as root or pass --volumes-dir DIR") from None
    try:
        want = volume_manifest(files, version)
    except OSError as exc:
        raise _build_error(final, exc) from None
    if _holds(final, want):
        return VolumeResult(final, version, created=False)
    _clean_stale(base, version)
    tmp = _private_name(base, "tmp", version)
    try:
        copied, linked = _build(tmp, want)
        installed, replaced = _install(tmp, final, want)
    except OSError as exc:
        raise _build_error(final, exc) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if not installed:
        return VolumeResult(final, version, created=False)
    return VolumeResult(final, version, created=True, copied=copied, linked=linked, replaced=replaced)


def driver_volume_files(root: HostRoot, driver_version: str, *, select: Optional[Selector] = None) -> DriverFiles:
    """The files the driver volume holds: those of every capability (:data:`VOLUME_CAPABILITIES`)."""
    if select is not None:
        return select(root, driver_version, VOLUME_CAPABILITIES)
    from .driverfiles import select_driver_files

    return select_driver_files(root, driver_version, VOLUME_CAPABILITIES)


def ensure_driver_volume(root: HostRoot, driver_version: Optional[str], volumes_dir: Optional[str] = None, *,
                         select: Optional[Selector] = None) -> VolumeResult:
    """The driver volume of ``driver_version`` under ``root``: the one definition every caller uses.

    Holds the binaries and the 64- and 32-bit libraries of every capability
    (``select`` picks them, :func:`nvlow.driverfiles.select_driver_files` by
    default; ``nvlow serve`` passes its cached selection). ``volumes_dir``
    defaults to :data:`DEFAULT_VOLUMES_DIR`. Rebuilt when its manifest differs
    from what it should hold (see :func:`ensure_volume`).
    """
    if not driver_version:
        raise HostError("the NVIDIA driver version is unknown, so no driver volume can be built",
                        hint="check /proc/driver/nvidia/version ('nvlow doctor')")
    files = driver_volume_files(root, driver_version, select=select)
    return ensure_volume(files, driver_version, volumes_dir)


def remove_volume(volumes_dir: str, version: str) -> bool:
    """Remove a driver volume (renamed away first, so nobody sees half of one); True when one was removed."""
    path = volume_path(volumes_dir, version)
    if not os.path.lexists(path):
        return False
    _retire(path, os.path.dirname(path), version)
    return True


def list_volumes(volumes_dir: str) -> List[str]:
    """Versions of the complete volumes on disk."""
    base = os.path.join(volumes_dir, VOLUME_BASE)
    try:
        names = sorted(os.listdir(base))
    except OSError:
        return []
    return [n for n in names if not n.startswith(".") and is_complete(os.path.join(base, n))]


def find_volume(volumes_dir: str, version: str) -> Optional[str]:
    """Path of a complete volume, or None."""
    path = volume_path(volumes_dir, version)
    return path if is_complete(path) else None
