"""Pick the host's driver files (libraries, binaries, configs, IPC, firmware) for a set of capabilities.

Rules (docs/driver-file-selection.md, "Lists per capability" to "32-bit"; libnvidia-container
``select_libraries``), applied per library name prefix and per arch:

1. Candidates are the ld.so.cache ELF entries whose key starts with the
   prefix, in cache order (hwcaps entries excluded); without a cache, the
   files of fixed library directories (as the toolkit's ``pkg/lookup``).
2. The entry's value is resolved through symlinks inside the root; the real
   file's name must end in the running driver version. Other versions are
   stale copies (reported in ``skipped``).
3. ``libnvidia-tls`` needs the new-TLS ABI note 2.3.99; the GL loaders
   ``libGL``/``libEGL``/``libGLESv*`` need ``DT_NEEDED`` libnvidia-glcore or
   -eglcore (this rejects Mesa/GLVND); the ELF machine must match the arch.
4. The *first* passing entry wins, as for the dynamic loader (libnvidia-container
   lets the last one win); other passing files are reported as duplicates.
5. The lists are unioned with a sweep of ``lib*.so.<version>`` in the
   directories holding libcuda/libnvidia-ml (and their ``vdpau/``), because
   either source alone has missed libraries (toolkit #1875, #1908).
6. Libraries whose file carries their own version instead of the driver's are
   taken as the toolkit takes them: the EGL platform libraries
   (``libnvidia-egl-gbm.so.1.1.2``, graphics) from the cache whatever the
   version, and the legacy NVVM (``libnvidia-nvvm70.so.4``, compute) only from
   the directory of the driver's libcuda. A name that does carry another driver
   version is still a stale copy.
7. With ``graphics`` (or ``display``) the GBM backend link
   ``<libdir>/gbm/nvidia-drm_gbm.so`` (to the driver's libnvidia-allocator) and
   the X.Org modules ``nvidia_drv.so``/``libglxserver_nvidia.so.<version>``
   become config files: mounted at their host path, ``host_path`` the real file.

``DriverFile.capability`` names the list a file came from (``compute`` for
libcuda even when only ``video`` asked for it).

Example:
    >>> sorted(parse_capabilities("utility"))
    ['utility']
"""
from __future__ import annotations

import os

from .capabilities import (ALL_CAPABILITIES, BINARIES, CAPABILITY_ORDER, CONFIG_FILES,  # noqa: F401
                           DEFAULT_CAPABILITIES, DEFAULT_MPS_PIPE_DIR, DRIVER_DIR_LIBS, EXTRA_LINKS, GBM_BACKEND,
                           GL_COMPAT_LOADERS, GL_CORE_NEEDED, IPC_PATHS, LIBRARIES, NEVER_LIBS, OPTIONAL_LIBS,
                           OWN_VERSION_LIBS, SWEEP_EXTRAS, XORG_MODULES, library_capabilities,
                           parse_capabilities)
from .elf import ElfInfo, try_read_elf
from ..errors import HostError
from .ldcache import LdCache, PrefixIndex, compat32_arch, native_arch, read_ldcache
from ..model import DANGLING_ENTRY, UNREADABLE_ELF, DriverFile, DriverFiles
from ..text import is_ascii_digits
from .root import HostRoot, not_regular

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Dict, FrozenSet, Iterable, List, Optional, Set, Tuple

    Candidates = Callable[[str], List[Tuple[str, str]]]  # prefix -> [(key, host path)]

__all__ = ["ALL_CAPABILITIES", "CAPABILITY_ORDER", "DEFAULT_CAPABILITIES", "DEFAULT_PATH",
           "FALLBACK_LIB_DIRS", "parse_capabilities", "select_driver_files"]

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

#: library directories searched when the host has no ld.so.cache (toolkit ``pkg/lookup/library.go``)
FALLBACK_LIB_DIRS: Dict[str, Tuple[str, ...]] = {
    "x86-64": ("/usr/lib64", "/usr/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu/nvidia/current",
               "/lib64", "/lib/x86_64-linux-gnu", "/usr/lib"),
    "i386": ("/usr/lib32", "/usr/lib/i386-linux-gnu", "/usr/lib/i386-linux-gnu/nvidia/current",
             "/lib32", "/lib/i386-linux-gnu", "/usr/lib"),
    "aarch64": ("/usr/lib64", "/usr/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu/nvidia/current",
                "/lib64", "/lib/aarch64-linux-gnu", "/usr/lib"),
    "ppc64le": ("/usr/lib64", "/usr/lib/powerpc64le-linux-gnu",
                "/usr/lib/powerpc64le-linux-gnu/nvidia/current", "/lib64", "/usr/lib"),
}
FIRMWARE_DIRS = ("/lib/firmware", "/usr/lib/firmware")
#: X.Org module directories under a driver library directory, then the fixed ones, searched in this order
#: (toolkit internal/discover/graphics.go ``buildXOrgSearchPathsAtRoot``)
XORG_LIBDIR_SUBDIRS = ("nvidia/xorg", "xorg/modules/drivers", "xorg/modules/extensions",
                       "xorg/modules/updates/drivers", "xorg/modules/updates/extensions")
XORG_FIXED_DIRS = tuple(f"{base}/{sub}" for base in ("/usr/lib/xorg", "/usr/lib64/xorg", "/usr/X11R6/lib",
                                                      "/usr/X11R6/lib64")
                        for sub in ("modules/drivers", "modules/extensions", "modules/updates/drivers",
                                    "modules/updates/extensions"))
NEW_TLS_ABI = (2, 3, 99)


def _dedupe(names: Iterable[str]) -> Tuple[str, ...]:
    out: List[str] = []
    for n in names:
        if n and n not in out:
            out.append(n)
    return tuple(out)


def _version_of(name: str) -> Optional[str]:
    """``535.104.05`` from ``libcuda.so.535.104.05`` when the suffix looks like a driver version."""
    _, sep, tail = name.partition(".so.")
    parts = tail.split(".")
    if sep and len(parts) in (2, 3) and all(is_ascii_digits(p) for p in parts) and len(parts[0]) >= 3:
        return tail
    return None


class _Collector:
    """Shared state of one selection: what was chosen, skipped and missed."""

    def __init__(self, root: HostRoot, version: str) -> None:
        self.root = root
        self.version = version
        self.skipped: List[Tuple[str, str]] = []
        self.missing: List[str] = []
        self._skipped_paths: Set[str] = set()
        self._dirs: Dict[str, str] = {}  # host directory -> its resolved path, for this selection

    def skip(self, path: str, reason: str) -> None:
        if path not in self._skipped_paths:
            self._skipped_paths.add(path)
            self.skipped.append((path, reason))

    def realpath(self, path: str) -> Optional[str]:
        try:
            return self._resolve(path)
        except HostError as exc:
            self.skip(path, str(exc))
            return None

    def _resolve(self, path: str) -> str:
        """:meth:`HostRoot.realpath`, with each directory resolved once per selection: a selection
        resolves ~100 paths in a handful of directories, and every component costs an lstat. A name
        that is a link to a plain name in the same directory (``libcuda.so.1 -> libcuda.so.580.65.06``,
        the usual case) is followed here; any other link takes the full walk."""
        parent, _, name = path.rpartition("/")
        if not parent or name in ("", ".", ".."):
            return self.root.realpath(path)
        base = self._dirs.get(parent)
        if base is None:
            base = self._dirs[parent] = self.root.realpath(parent)
        candidate = base.rstrip("/") + "/" + name
        for _ in range(40):
            real = self.root.host(candidate)
            if not os.path.islink(real):
                return candidate
            target = os.readlink(real)
            if "/" in target or target in ("", ".", ".."):
                return self.root.realpath(candidate)
            candidate = base.rstrip("/") + "/" + target
        return self.root.realpath(candidate)  # a loop: the full walk names it

    def version_reason(self, base: str, prefix: str, own_version: bool) -> Optional[str]:
        """Why the file name ``base`` is not of the running driver (None when it is).

        With ``own_version`` any all-numeric suffix after ``prefix`` passes, unless it is another
        driver's version.
        """
        other = _version_of(base)
        if own_version:
            tail = base[len(prefix) + 1:] if base.startswith(prefix + ".") else ""
            if not tail or not all(is_ascii_digits(p) for p in tail.split(".")):
                return f"not a {prefix} library file"
            if other is not None and other != self.version:
                return f"stale copy from driver {other} (running {self.version})"
            return None
        if base.endswith("." + self.version):
            return None
        if other is not None:
            return f"stale copy from driver {other} (running {self.version})"
        return f"not a driver {self.version} file"

    def check_library(self, prefix: str, real: str, arch: str, *,
                      own_version: bool = False) -> Tuple[Optional[str], Optional[ElfInfo]]:
        """(reason to reject, ELF info) for the real file of a library candidate."""
        reason = self.version_reason(os.path.basename(real), prefix, own_version)
        if reason is not None:
            return reason, None
        if not self.root.is_file(real):
            # a FIFO or device where a library should be: say so (dlopen of it would block or fail)
            return not_regular(self.root.host(real)) or DANGLING_ENTRY, None
        elf = try_read_elf(self.root, real)
        if elf is None:
            return UNREADABLE_ELF, None
        if elf.machine != arch:
            return f"ELF machine {elf.machine}, wanted {arch}", None
        if prefix == "libnvidia-tls.so" and (elf.abi_note is None or elf.abi_note[1:] != NEW_TLS_ABI):
            note = ".".join(str(x) for x in elf.abi_note[1:]) if elf.abi_note else "none"
            return f"not the new-TLS build (ABI note {note}, wanted 2.3.99)", None
        if prefix in GL_COMPAT_LOADERS and not any(n.startswith(GL_CORE_NEEDED) for n in elf.needed):
            return "not NVIDIA's GL loader (no DT_NEEDED libnvidia-glcore/eglcore)", None
        return None, elf


def _cache_candidates(cache: LdCache, arch: str) -> Candidates:
    """``prefix -> [(key, path)]`` over the cache's ELF entries of ``arch`` (no glibc-hwcaps), in cache
    order (:class:`~nvlow.host.ldcache.PrefixIndex`: sorted once for all prefixes)."""
    index = PrefixIndex(cache, arch)

    def find(prefix: str) -> List[Tuple[str, str]]:
        return [(e.key, e.value) for e in index.find(prefix)]
    return find


def _dir_candidates(root: HostRoot, dirs: Tuple[str, ...]) -> Candidates:
    listing: Dict[str, List[str]] = {}

    def find(prefix: str) -> List[Tuple[str, str]]:
        out: List[Tuple[str, str]] = []
        for d in dirs:
            if d not in listing:
                try:
                    listing[d] = root.listdir(root.realpath(d)) if root.exists(d) else []
                except HostError:  # a symlink loop or an unreadable directory
                    listing[d] = []
            out += [(n, f"{d}/{n}") for n in listing[d] if n.startswith(prefix)]
        return out
    return find


def _extra_links(base: str) -> Tuple[str, ...]:
    for prefix, links in EXTRA_LINKS.items():
        if base.startswith(prefix + "."):
            return links
    return ()


def _library_file(col: _Collector, real: str, key: str, elf: ElfInfo, kind: str, cap: str) -> DriverFile:
    base = os.path.basename(real)
    soname = elf.soname or key
    return DriverFile(host_path=col.root.host(real), kind=kind, capability=cap,
                      names=_dedupe([base, soname, *_extra_links(base)]), soname=soname, path=real)


def _sweep_capability(name: str) -> Optional[str]:
    if name.startswith(NEVER_LIBS):
        return None
    for cap in CAPABILITY_ORDER:
        if name.startswith(LIBRARIES.get(cap, ())):
            return cap
    for prefix, cap in SWEEP_EXTRAS.items():
        if name.startswith(prefix):
            return cap
    # Unknown driver libraries live next to libcuda; CUDA programs are the likeliest users.
    return "compute"


def _listed(col: _Collector, caps: Tuple[str, ...], arch: str, kind: str, find: Candidates,
            chosen: Dict[str, DriverFile]) -> List[str]:
    """Rules 1-4 for every listed prefix; returns the prefixes nothing passed for."""
    missing: List[str] = []
    seen: Set[str] = set()
    for cap in caps:
        for prefix in LIBRARIES[cap]:
            if prefix in seen:  # in two lists (libnvidia-allocator): the first capability names it
                continue
            seen.add(prefix)
            if _first_passing(col, prefix, arch, kind, cap, find(prefix), chosen) is None:
                missing.append(prefix)
    return missing


def _first_passing(col: _Collector, prefix: str, arch: str, kind: str, cap: str,
                   candidates: Iterable[Tuple[str, str]], chosen: Dict[str, DriverFile],
                   own_version: bool = False) -> Optional[str]:
    """The real file of the first candidate that passes the checks (added to ``chosen``), or None;
    later passing files are reported as duplicates."""
    winner: Optional[str] = None
    tried: Set[str] = set()
    for key, value in candidates:
        real = col.realpath(value)
        if real is None or real in tried:
            continue
        tried.add(real)
        reason, elf = col.check_library(prefix, real, arch, own_version=own_version)
        if reason is not None or elf is None:
            col.skip(real, reason or "rejected")
        elif winner is None:
            winner = real
            if real not in chosen:
                chosen[real] = _library_file(col, real, key, elf, kind, cap)
        elif real != winner:
            col.skip(real, f"duplicate of {winner} (the first in ld.so.cache order wins)")
    return winner


def _driver_dirs(chosen: Dict[str, DriverFile], stems: Tuple[str, ...]) -> List[str]:
    """Directories (host paths) of the chosen libraries whose real name starts with one of ``stems``."""
    dirs: List[str] = []
    for f in chosen.values():
        if f.names and f.names[0].startswith(stems) and f.path:
            d = os.path.dirname(f.path)
            if d not in dirs:
                dirs.append(d)
    return dirs


def _sweep(col: _Collector, caps: Tuple[str, ...], arch: str, kind: str, chosen: Dict[str, DriverFile],
           missing: List[str]) -> None:
    """Rule 5: the ``*.so.<version>`` sweep of the libcuda / libnvidia-ml directories and their vdpau/."""
    dirs: List[str] = []
    for d in _driver_dirs(chosen, ("libcuda.so.", "libnvidia-ml.so.")):
        dirs += [c for c in (d, d + "/vdpau") if c not in dirs]
    for d in dirs:
        for name in col.root.listdir(d):
            if not (name.startswith("lib") and name.endswith(".so." + col.version)):
                continue
            cap = _sweep_capability(name)
            if cap is None or cap not in caps:
                continue
            real = col.realpath(f"{d}/{name}")
            if real is None or real in chosen:
                continue
            prefix = next((p for p in LIBRARIES.get(cap, ()) if name.startswith(p)), "")
            reason, elf = col.check_library(prefix, real, arch)
            if reason is not None or elf is None:
                col.skip(real, reason or "rejected")
                continue
            chosen[real] = _library_file(col, real, name, elf, kind, cap)
            if prefix in missing:
                missing.remove(prefix)


def _own_version(col: _Collector, caps: Tuple[str, ...], arch: str, kind: str, find: Candidates,
                 chosen: Dict[str, DriverFile]) -> None:
    """Rule 6: own-version libraries from the cache, and the libcuda directory's own-version libraries."""
    for cap in caps:
        for prefix in OWN_VERSION_LIBS.get(cap, ()):
            found = [(k, v) for k, v in find(prefix) if k.startswith(prefix + ".")]
            _first_passing(col, prefix, arch, kind, cap, found, chosen, own_version=True)
    libcuda_dirs = _driver_dirs(chosen, ("libcuda.so.",))
    for cap in caps:
        for prefix in DRIVER_DIR_LIBS.get(cap, ()):
            found = [(n, f"{d}/{n}") for d in libcuda_dirs for n in col.root.listdir(d)
                     if n.startswith(prefix + ".")]
            _first_passing(col, prefix, arch, kind, cap, found, chosen, own_version=True)


def _select_libraries(col: _Collector, caps: Tuple[str, ...], arch: str, kind: str,
                      find: Candidates, missing_suffix: str,
                      report_missing: Optional[Set[str]] = None) -> Tuple[DriverFile, ...]:
    chosen: Dict[str, DriverFile] = {}
    missing = _listed(col, caps, arch, kind, find, chosen)
    _sweep(col, caps, arch, kind, chosen, missing)
    _own_version(col, caps, arch, kind, find, chosen)
    if any(f.names[0].startswith("libGLX_nvidia.so.") for f in chosen.values()):
        # A GLVND install has no NVIDIA libGL/libEGL; not finding them is normal.
        missing = [m for m in missing if m not in GL_COMPAT_LOADERS]
    missing = [m for m in missing if m not in OPTIONAL_LIBS]
    if report_missing is not None:
        missing = [m for m in missing if m in report_missing]
    col.missing += [m + missing_suffix for m in missing]
    return tuple(chosen.values())


def _which(root: HostRoot, name: str, search_path: str) -> Optional[str]:
    """First executable ``name`` along ``search_path`` under the root, symlinks resolved inside the root."""
    for d in search_path.split(":"):
        if not d.startswith("/"):
            continue
        cand = d.rstrip("/") + "/" + name
        if not root.exists(cand):
            continue
        try:
            real = root.realpath(cand)
        except HostError:
            continue
        if root.is_file(real) and root.access(real, os.X_OK):
            return real
    return None


def _binaries(col: _Collector, caps: FrozenSet[str], search_path: str) -> Tuple[DriverFile, ...]:
    out: List[DriverFile] = []
    for cap in CAPABILITY_ORDER:
        if cap not in caps or cap not in BINARIES:
            continue
        for name in BINARIES[cap]:
            real = _which(col.root, name, search_path)
            if real is None:
                col.missing.append(name)
                continue
            out.append(DriverFile(host_path=col.root.host(real), kind="bin", capability=cap,
                                  names=_dedupe([os.path.basename(real), name]), path=real))
    return tuple(out)


def _present(col: _Collector, entries: Iterable[Tuple[str, str]], wanted: Set[str], kind: str,
             want_dir: bool = False) -> Tuple[DriverFile, ...]:
    out: List[DriverFile] = []
    seen: Set[str] = set()
    for path, cap in entries:
        if cap not in wanted or not col.root.exists(path):
            continue
        real = col.realpath(path)
        if real is None or real in seen:
            continue
        if want_dir:
            ok = col.root.is_dir(real)
        elif kind == "config":  # a config is a regular file (a FIFO or a device in its place is not)
            ok = col.root.is_file(real)
        else:  # an IPC socket
            ok = col.root.exists(real) and not col.root.is_dir(real)
        if not ok:
            continue
        seen.add(real)
        out.append(DriverFile(host_path=col.root.host(real), kind=kind, capability=cap,
                              names=(os.path.basename(path),), path=path))
    return tuple(out)


#: the kernel's firmware_class search path set by the administrator (empty when unset); driver
#: containers and installs under /usr/local/nvidia point it at their own firmware directory
FIRMWARE_CLASS_PATH = "/sys/module/firmware_class/parameters/path"


def firmware_search_dirs(root: HostRoot) -> Tuple[str, ...]:
    r"""Where the kernel looks for ``nvidia/<version>/gsp*.bin``, in its order: the custom
    ``firmware_class.path``, then ``/lib/firmware/updates/<release>``, ``/lib/firmware/updates``,
    ``/lib/firmware/<release>``, ``/lib/firmware`` (the kernel's ``fw_path``, as nvidia-ctk searches:
    ``pkg/nvcdi/driver-nvml.go`` ``getFirmwareSearchPaths``), and ``/usr/lib/firmware`` for trees
    without the ``/lib`` link. ``<release>`` is the tree's ``/proc/sys/kernel/osrelease`` (the running
    kernel's on a real host).

    Example:
        >>> import tempfile, os
        >>> with tempfile.TemporaryDirectory() as d:
        ...     os.makedirs(f"{d}/sys/module/firmware_class/parameters"); os.makedirs(f"{d}/proc/sys/kernel")
        ...     _ = open(f"{d}{FIRMWARE_CLASS_PATH}", "w").write("/usr/local/nvidia/firmware\n")
        ...     _ = open(f"{d}/proc/sys/kernel/osrelease", "w").write("6.8.0-49-generic\n")
        ...     firmware_search_dirs(HostRoot(d))[:3]
        ('/usr/local/nvidia/firmware', '/lib/firmware/updates/6.8.0-49-generic', '/lib/firmware/updates')
    """
    dirs: List[str] = []
    custom = _sysfs_value(root, FIRMWARE_CLASS_PATH)
    if custom and custom.startswith("/") and ".." not in custom.split("/"):
        dirs.append(custom.rstrip("/") or "/")
    release = _sysfs_value(root, "/proc/sys/kernel/osrelease")
    if release is None and root.is_default:
        release = os.uname().release
    versioned = release is not None and "/" not in release and release not in (".", "..")
    if versioned:
        dirs.append(f"/lib/firmware/updates/{release}")
    dirs.append("/lib/firmware/updates")
    if versioned:
        dirs.append(f"/lib/firmware/{release}")
    dirs.extend(FIRMWARE_DIRS)
    return tuple(dict.fromkeys(dirs))


def _sysfs_value(root: HostRoot, path: str) -> Optional[str]:
    """A one-line kernel value (``/proc/sys``, ``/sys/module``), or None when absent, unreadable,
    empty or not plain printable text."""
    try:
        text = root.read_text_optional(path, max_size=4096)
    except HostError:
        return None
    value = (text or "").strip()
    return value if value and value.isprintable() else None


def _firmware(col: _Collector, caps: FrozenSet[str]) -> Tuple[DriverFile, ...]:
    preferred: Tuple[str, ...] = ("compute", "utility") + CAPABILITY_ORDER
    cap = next((c for c in preferred if c in caps), None)
    if cap is None:
        return ()
    out: List[DriverFile] = []
    seen: Set[str] = set()
    for base in firmware_search_dirs(col.root):
        d = f"{base}/nvidia/{col.version}"
        if not col.root.exists(d):
            continue
        real_dir = col.realpath(d)
        if real_dir is None or real_dir in seen:
            continue
        seen.add(real_dir)
        for name in col.root.listdir(real_dir):
            if name.startswith("gsp") and name.endswith(".bin"):
                real = col.realpath(f"{real_dir}/{name}")
                if real is not None and col.root.is_file(real):
                    out.append(DriverFile(host_path=col.root.host(real), kind="firmware", capability=cap,
                                          names=(name,), path=f"{d}/{name}"))
    return tuple(out)


def _gbm_backend(col: _Collector, libs: Tuple[DriverFile, ...], arch: str) -> List[DriverFile]:
    """Rule 7: ``<libdir>/gbm/nvidia-drm_gbm.so`` in the directories of the chosen libraries, when it
    resolves to the running driver's libnvidia-allocator."""
    out: List[DriverFile] = []
    for d in _driver_dirs({f.host_path: f for f in libs}, ("lib",)):
        link = f"{d}/{GBM_BACKEND}"
        if not col.root.exists(link):
            continue
        real = col.realpath(link)
        if real is None:
            continue
        if not col.root.is_file(real):
            col.skip(link, "dangling link")
            continue
        if not os.path.basename(real).startswith("libnvidia-allocator.so."):
            col.skip(link, "not a link to the driver's libnvidia-allocator")
            continue
        reason, _elf = col.check_library("libnvidia-allocator.so", real, arch)
        if reason is not None:
            col.skip(real, reason)
            continue
        out.append(DriverFile(host_path=col.root.host(real), kind="config", capability="graphics",
                              names=(os.path.basename(link),), path=link))
    return out


def _xorg_modules(col: _Collector, libs: Tuple[DriverFile, ...], arch: str) -> List[DriverFile]:
    """Rule 7: each X.Org module from the first directory holding it (the driver library directories'
    X.Org subdirectories first), at its host path, plus its link name."""
    dirs = [f"{d}/{sub}" for d in _driver_dirs({f.host_path: f for f in libs}, ("lib",))
            for sub in XORG_LIBDIR_SUBDIRS] + list(XORG_FIXED_DIRS)
    out: List[DriverFile] = []
    for pattern, link_name in XORG_MODULES:
        name = pattern.format(version=col.version)
        path = next((f"{d}/{name}" for d in dirs if col.root.exists(f"{d}/{name}")), None)
        real = col.realpath(path) if path is not None else None
        if path is None or real is None:
            continue
        elf = try_read_elf(col.root, real) if col.root.is_file(real) else None
        if elf is None or elf.machine != arch:
            col.skip(real, UNREADABLE_ELF if elf is None else f"ELF machine {elf.machine}, wanted {arch}")
            continue
        for target in (name,) + ((link_name,) if link_name else ()):
            out.append(DriverFile(host_path=col.root.host(real), kind="config", capability="graphics",
                                  names=(target,), path=f"{os.path.dirname(path)}/{target}"))
    return out


def select_driver_files(
    root: HostRoot,
    driver_version: str,
    capabilities: Iterable[str],
    *,
    cache: Optional[LdCache] = None,
    arch: Optional[str] = None,
    search_path: str = DEFAULT_PATH,
    use_cache: bool = True,
    mps_pipe_dir: str = DEFAULT_MPS_PIPE_DIR,
    gsp_firmware: bool = True,
) -> DriverFiles:
    """The driver files of ``driver_version`` that ``capabilities`` need, under ``root``.

    ``cache`` defaults to the root's ``/etc/ld.so.cache``; with no cache (or
    ``use_cache=False``) fixed library directories are searched instead.
    ``arch`` defaults to this machine's (:func:`nvlow.host.ldcache.native_arch`).
    Each :class:`DriverFile` has ``path`` = the host path without the root
    prefix (the symlink-resolved real file for libraries, binaries and
    firmware; the usual lookup location for configs and IPC) and
    ``host_path`` = the root-prefixed real file. Library ``names`` are the
    real name, the SONAME (ELF, else the cache key) and extra links
    (``libcuda.so``, ``libGLX_indirect.so.0``, ``libnvidia-opticalflow.so``).
    Host files that cannot be read or are corrupt (the cache included) are
    reported in ``skipped``, never raised; unknown capabilities are a
    :class:`~nvlow.errors.UsageError`.
    """
    caps = frozenset(capabilities)
    unknown = sorted(caps - ALL_CAPABILITIES)
    if unknown:
        parse_capabilities(",".join(unknown))  # raises UsageError naming the first
    arch = arch or native_arch()
    col = _Collector(root, driver_version)
    if use_cache and cache is None:
        try:
            cache = read_ldcache(root)
        except HostError as exc:
            # A broken cache must not hide the driver: search the fixed directories instead.
            col.skip("/etc/ld.so.cache", f"{exc}; searched the usual library directories instead")
    lib_caps = library_capabilities(caps)

    def finder(a: str) -> Candidates:
        if use_cache and cache is not None:
            return _cache_candidates(cache, a)
        return _dir_candidates(root, FALLBACK_LIB_DIRS.get(a, ("/usr/lib64", "/usr/lib", "/lib64", "/lib")))

    libs64 = _select_libraries(col, lib_caps, arch, "lib64", finder(arch), "")
    libs32: Tuple[DriverFile, ...] = ()
    arch32 = compat32_arch(arch)
    if "compat32" in caps and arch32 is not None:
        # Few libraries exist in 32-bit builds: report only those the 64-bit side has.
        found64 = {p for c in lib_caps for p in LIBRARIES[c]
                   if any(f.names[0].startswith(p + ".") for f in libs64)}
        libs32 = _select_libraries(col, lib_caps, arch32, "lib32", finder(arch32), " (compat32)", found64)
    binaries = _binaries(col, caps, search_path)
    config_caps: Set[str] = {c for c in ("compute", "graphics") if c in lib_caps}
    configs = _present(col, CONFIG_FILES, config_caps, "config")
    if "graphics" in lib_caps:
        configs += tuple(_gbm_backend(col, libs64, arch)) + tuple(_xorg_modules(col, libs64, arch))
    ipc_caps: Set[str] = {c for c in ("utility", "compute") if c in caps}
    ipcs = _present(col, IPC_PATHS, ipc_caps, "ipc") + _present(
        col, ((mps_pipe_dir, "compute"),), ipc_caps, "ipc", want_dir=True)
    firmware = _firmware(col, caps) if gsp_firmware else ()
    return DriverFiles(libraries64=_inside(col, libs64), libraries32=_inside(col, libs32),
                       binaries=_inside(col, binaries), configs=_inside(col, configs), ipcs=_inside(col, ipcs),
                       firmware=_inside(col, firmware), skipped=tuple(col.skipped), missing=tuple(col.missing))


def _inside(col: _Collector, files: Tuple[DriverFile, ...]) -> Tuple[DriverFile, ...]:
    """The files whose host path stays inside the root once the kernel resolves it (what the engine
    will mount). Every path above was resolved inside the root already (:meth:`HostRoot.realpath`,
    absolute links taken relative to it); this is the last check before a path leaves nvlow."""
    if col.root.is_default:
        return files
    out: List[DriverFile] = []
    for f in files:
        if col.root.contains(f.host_path):
            out.append(f)
        else:
            col.skip(f.host_path, f"resolves to {os.path.realpath(f.host_path)}, outside {col.root.path}; not used")
    return tuple(out)
