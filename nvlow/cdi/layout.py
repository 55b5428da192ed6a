"""Where a CDI spec puts the driver files in a container: directories the image already searches.

A CDI ``env`` entry *sets* a variable (the CDI library writes ``NAME=VALUE``
into the OCI spec), so a ``PATH`` or ``LD_LIBRARY_PATH`` entry would replace
the image's own value: a conda or CUDA image would lose ``/opt/conda/bin``.
A spec therefore carries neither, and places the files where programs find
them without help (docs/cdi-spec-rules.md, "Where the driver files go"):

- each library under its SONAME and extra link names (``libcuda.so``), in the
  directories glibc's dynamic loader searches by default even when the
  image's ``/etc/ld.so.cache`` does not list the library (ld.so(8), step
  "default path"; ``ld.so --help`` prints them as "system search path"):
  Debian/Ubuntu's multiarch directory ``/usr/lib/<tuple>`` and the RHEL
  family's ``/usr/lib64``. 32-bit (compat32) libraries go to
  ``/usr/lib/i386-linux-gnu`` and ``/usr/lib``. The VDPAU driver goes to the
  ``vdpau/`` directory under each, libvdpau's module directory (where
  nvidia-ctk mounts it too);
- binaries in ``/usr/bin``, which every image's PATH holds;
- config files, IPC sockets and firmware at their host paths
  (:func:`nvlow.plan.plan.driver_file_mounts`).

Nothing runs on the host or in the container (no hooks, no ldconfig).

Example:
    >>> library_dirs("x86-64"), library_dirs("aarch64")
    (('/usr/lib/x86_64-linux-gnu', '/usr/lib64'), ('/usr/lib/aarch64-linux-gnu', '/usr/lib64'))
    >>> f = DriverFile("/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.15", "lib64", "compute",
    ...                ("libcuda.so.550.54.15", "libcuda.so.1", "libcuda.so"), "libcuda.so.1")
    >>> [m.container_path for m in driver_mounts(DriverFiles(libraries64=(f,)), arch="x86-64")[0]]
    ... # doctest: +NORMALIZE_WHITESPACE
    ['/usr/lib/x86_64-linux-gnu/libcuda.so.1', '/usr/lib/x86_64-linux-gnu/libcuda.so',
     '/usr/lib64/libcuda.so.1', '/usr/lib64/libcuda.so']
    >>> v = DriverFile("/usr/lib/x86_64-linux-gnu/vdpau/libvdpau_nvidia.so.550.54.15", "lib64", "video",
    ...                ("libvdpau_nvidia.so.550.54.15", "libvdpau_nvidia.so.1"), "libvdpau_nvidia.so.1")
    >>> [m.container_path for m in driver_mounts(DriverFiles(libraries64=(v,)), arch="x86-64")[0]]
    ['/usr/lib/x86_64-linux-gnu/vdpau/libvdpau_nvidia.so.1', '/usr/lib64/vdpau/libvdpau_nvidia.so.1']
"""
from __future__ import annotations

import os

from ..host.ldcache import native_arch
from ..model import DriverFile, DriverFiles
from ..plan.plan import (VDPAU_SUBDIR, Mount, container_library_names, damaged_files_warning, driver_file_mounts,
                         is_vdpau_driver)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Dict, List, Optional, Tuple

    #: ``source(file) -> (host path to bind, warning or None)``
    Source = Callable[[DriverFile], Tuple[str, Optional[str]]]

BIN_DIR = "/usr/bin"
#: glibc's default 32-bit directories: Debian's i386 multiarch directory, then the RHEL family's /usr/lib
COMPAT32_DIRS = ("/usr/lib/i386-linux-gnu", "/usr/lib")
#: Debian multiarch tuples (https://wiki.debian.org/Multiarch/Tuples) of the ld.so.cache arch names
#: whose tuple is not simply ``<arch>-linux-gnu``
_MULTIARCH = {"x86-64": "x86_64-linux-gnu", "ppc64le": "powerpc64le-linux-gnu", "i386": "i386-linux-gnu"}
#: sub-directories of the nvidia-docker 1.0 driver volume (:mod:`nvlow.plan.volume`) by file kind
VOLUME_SUBDIRS = {"bin": "bin", "lib64": "lib64", "lib32": "lib"}


def multiarch_tuple(arch: str) -> str:
    """The Debian multiarch tuple of an ld.so.cache arch name (``x86-64`` -> ``x86_64-linux-gnu``).

    Example:
        >>> multiarch_tuple("x86-64"), multiarch_tuple("aarch64"), multiarch_tuple("riscv64")
        ('x86_64-linux-gnu', 'aarch64-linux-gnu', 'riscv64-linux-gnu')
    """
    return _MULTIARCH.get(arch, f"{arch}-linux-gnu")


def library_dirs(arch: str) -> Tuple[str, ...]:
    """The 64-bit library directories of a spec for ``arch``: Debian's multiarch one, then RHEL's."""
    return (f"/usr/lib/{multiarch_tuple(arch)}", "/usr/lib64")


def host_source(f: DriverFile) -> Tuple[str, Optional[str]]:
    """Bind the host's own file (``--driver-files bind``)."""
    return f.host_path, None


def volume_source(volume: str, exists: Callable[[str], bool] = os.path.isfile) -> Source:
    """Bind the copy in the 1.0 driver volume ``volume`` (``--driver-files volume``).

    A file the volume lacks (it was built once, earlier, for fewer
    capabilities) is bound from the host instead, with a warning.
    """
    def source(f: DriverFile) -> Tuple[str, Optional[str]]:
        path = f"{volume}/{VOLUME_SUBDIRS.get(f.kind, f.kind)}/{f.names[0]}"
        if exists(path):
            return path, None
        return f.host_path, (f"{f.names[0]} is not in the driver volume {volume} (built earlier for other "
                             "capabilities): bound from the host; remove the volume directory to have it rebuilt")
    return source


def driver_mounts(files: DriverFiles, *, arch: Optional[str] = None,
                  source: Source = host_source) -> Tuple[List[Mount], List[str]]:
    """Read-only binds for the driver files (binaries, 64-bit and 32-bit libraries, then the
    rest) and the warnings of ``source``, one line each.

    ``arch`` (an ld.so.cache arch name) defaults to this machine's. A
    container path is bound once (the first file wins).
    """
    arch = arch or native_arch()
    damaged = damaged_files_warning(files)
    warnings: List[str] = [damaged] if damaged else []
    seen: Dict[str, str] = {}
    mounts: List[Mount] = []

    def bind(f: DriverFile, container_paths: List[str]) -> None:
        host, warning = source(f)
        if warning is not None and warning not in warnings:
            warnings.append(warning)
        for path in container_paths:
            if path not in seen:
                seen[path] = host
                mounts.append(Mount(host, path))

    for f in files.binaries:
        bind(f, [f"{BIN_DIR}/{f.names[0]}"])
    for dirs, libs in ((library_dirs(arch), files.libraries64), (COMPAT32_DIRS, files.libraries32)):
        for lib_dir in dirs:
            for f in libs:
                where = f"{lib_dir}/{VDPAU_SUBDIR}" if is_vdpau_driver(f) else lib_dir
                bind(f, [f"{where}/{name}" for name in container_library_names(f)])
    for m in driver_file_mounts(files, include_nvidia_dir=False):
        if m.container_path not in seen:
            seen[m.container_path] = m.host_path
            mounts.append(m)
    return mounts, warnings
