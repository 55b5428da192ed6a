"""The nvidia-docker 1.0 driver volume, built atomically and race-safely.

Layout: ``<volumes_dir>/nvidia_driver/<driver version>/{bin,lib,lib64}``.
The volume is built in a temporary sibling directory and renamed into place,
so a reader either sees a complete volume or none (a killed build leaves only
a ``.tmp-*`` directory, removed by the next build). Files are hard-linked,
with a copy fallback: nvidia-docker 1.0's most reported failure was
``invalid cross-device link`` when /var/lib and /usr sat on different
filesystems (NVIDIA/nvidia-docker #38, #47, #133).

Example:
    >>> volume_path("/var/lib/nvlow/volumes", "550.54.15")
    '/var/lib/nvlow/volumes/nvidia_driver/550.54.15'
"""
from __future__ import annotations

import errno
import os
import shutil
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from .errors import HostError
from .model import DriverFile, DriverFiles
from .plan import container_library_names

DEFAULT_VOLUMES_DIR = "/var/lib/nvlow/volumes"
VOLUME_BASE = "nvidia_driver"
COMPLETE_MARKER = ".nvlow-complete"
_STALE_TMP_SECONDS = 600


@dataclass(frozen=True)
class VolumeResult:
    """A ready driver volume."""

    path: str
    version: str
    created: bool  # False when an existing complete volume was reused
    copied: int = 0  # files copied because hard links were impossible
    linked: int = 0


def volume_path(volumes_dir: str, version: str) -> str:
    """Where the volume for ``version`` lives."""
    return os.path.join(volumes_dir, VOLUME_BASE, version)


def is_complete(path: str) -> bool:
    """True when ``path`` is a fully built volume."""
    return os.path.isfile(os.path.join(path, COMPLETE_MARKER))


def _layout(files: DriverFiles) -> List[Tuple[str, DriverFile, Tuple[str, ...]]]:
    out: List[Tuple[str, DriverFile, Tuple[str, ...]]] = []
    for f in files.binaries:
        out.append(("bin", f, ()))
    for sub, libs in (("lib64", files.libraries64), ("lib", files.libraries32)):
        for f in libs:
            links = tuple(n for n in container_library_names(f) if n != f.names[0])
            out.append((sub, f, links))
    return out


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


def _clean_stale(base: str, version: str) -> None:
    now = time.time()
    try:
        names = os.listdir(base)
    except OSError:
        return
    for name in names:
        if not name.startswith(f".tmp-{version}-"):
            continue
        path = os.path.join(base, name)
        pid_alive = False
        try:
            pid = int(name.split("-")[-2])
            os.kill(pid, 0)
            pid_alive = True
        except (ValueError, IndexError, ProcessLookupError):
            pid_alive = False
        except PermissionError:
            pid_alive = True
        try:
            old = now - os.path.getmtime(path) > _STALE_TMP_SECONDS
        except OSError:
            continue
        if not pid_alive or old:
            shutil.rmtree(path, ignore_errors=True)


def ensure_volume(files: DriverFiles, version: str, volumes_dir: str = DEFAULT_VOLUMES_DIR) -> VolumeResult:
    """Build (once) and return the driver volume for ``version``.

    Safe when several processes race: each builds in its own temporary
    directory and the first rename wins; the others discard theirs.
    """
    final = volume_path(volumes_dir, version)
    if is_complete(final):
        return VolumeResult(final, version, created=False)
    base = os.path.dirname(final)
    try:
        os.makedirs(base, mode=0o755, exist_ok=True)
    except OSError as exc:
        raise HostError(f"cannot create volume directory {base}: {exc.strerror}",
                        hint="run as root or pass --volumes-dir DIR") from None
    _clean_stale(base, version)
    tmp = os.path.join(base, f".tmp-{version}-{os.getpid()}-{os.urandom(3).hex()}")
    copied = linked = 0
    manifest: Dict[str, str] = {}
    try:
        os.mkdir(tmp, 0o755)
        for sub in ("bin", "lib", "lib64"):
            os.mkdir(os.path.join(tmp, sub), 0o755)
        for sub, f, links in _layout(files):
            name = f.names[0]
            dst = os.path.join(tmp, sub, name)
            if os.path.lexists(dst):
                continue
            if _place(f.host_path, dst):
                copied += 1
            else:
                linked += 1
            manifest[f"{sub}/{name}"] = f.host_path
            for link in links:
                lpath = os.path.join(tmp, sub, link)
                if not os.path.lexists(lpath):
                    os.symlink(name, lpath)
        with open(os.path.join(tmp, COMPLETE_MARKER), "w") as fh:
            for key in sorted(manifest):
                fh.write(f"{key}\t{manifest[key]}\n")
        try:
            os.rename(tmp, final)
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST) and is_complete(final):
                shutil.rmtree(tmp, ignore_errors=True)
                return VolumeResult(final, version, created=False)
            if os.path.isdir(final) and not is_complete(final):
                # an incomplete directory from an older tool: replace it
                shutil.rmtree(final, ignore_errors=True)
                os.rename(tmp, final)
            else:
                raise
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise HostError(f"cannot build driver volume {final}: {exc.strerror or exc}"
                        + (f" ({exc.filename})" if getattr(exc, 'filename', None) else ""),
                        hint="check free space and permissions, or use --driver-files bind") from None
    return VolumeResult(final, version, created=True, copied=copied, linked=linked)


def remove_volume(volumes_dir: str, version: str) -> bool:
    """Remove a driver volume; True when something was removed."""
    path = volume_path(volumes_dir, version)
    if not os.path.exists(path):
        return False
    shutil.rmtree(path)
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
