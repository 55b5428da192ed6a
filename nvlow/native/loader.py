"""Find and dlopen the driver's ``libnvidia-ml.so.1`` and ``libcuda.so.1`` under a host root.

The search is nvlow's own, because the process's dynamic loader knows nothing of
``--root`` and ``LD_LIBRARY_PATH`` set at run time does not affect ``dlopen``
(ld.so(8); docs/host-formats.md). Order:

1. ``NVLOW_NVML_LIBRARY`` / ``NVLOW_CUDA_LIBRARY`` in the ``env`` mapping: an absolute
   real path, used alone (tests and odd installs);
2. ``/etc/ld.so.cache`` under the root, entries for the SONAME and the native arch;
3. the usual library directories under the root (:data:`FALLBACK_DIRS`);
4. the bare SONAME, left to the system loader, only when the root is ``/``.

Every candidate that fails is remembered, and the final :class:`LibraryError`
names all of them on one line. Nothing is loaded at import time.

No file reaches ``dlopen`` unchecked (:func:`nvlow.host.elf.loadable_problem_at`):
``dlopen`` of a truncated or corrupt library kills the process with SIGBUS or
SIGSEGV and ``dlopen`` of a FIFO blocks forever, so a candidate that is not a
regular file, or not an ELF shared object of this process's class and machine
whose segments and dynamic section lie inside the file, is a failed candidate
like a missing one ("...libnvidia-ml.so.1: truncated: PT_LOAD segment 3 ends at
byte 28776, the file has 20000 bytes"). Only the bare SONAME of the last step
(root ``/``) is left to the system loader unchecked: it searches the host's own
library path, which nvlow trusts as the loader does.

Example:
    >>> from nvlow.host.root import HostRoot
    >>> candidate_paths(HostRoot("/nonexistent"), NVML_SONAME, {})[0][0]
    ('/usr/lib64/libnvidia-ml.so.1', '/nonexistent/usr/lib64/libnvidia-ml.so.1')
"""
from __future__ import annotations

import os

from ..frozen import Record
from ..errors import HostError, LibraryError
from ..host.root import HostRoot

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, List, Mapping, Optional, Tuple

    #: (host path shown to the user, real path to dlopen)
    Candidate = Tuple[str, str]

NVML_SONAME = "libnvidia-ml.so.1"
CUDA_SONAME = "libcuda.so.1"

#: env override variable per SONAME
ENV_OVERRIDES = {NVML_SONAME: "NVLOW_NVML_LIBRARY", CUDA_SONAME: "NVLOW_CUDA_LIBRARY"}

#: directories distributions and the .run installer put the driver libraries in
FALLBACK_DIRS: Tuple[str, ...] = (
    "/usr/lib64",
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/lib64",
    "/usr/lib/x86_64-linux-gnu/nvidia/current",
    "/usr/local/nvidia/lib64",
    "/usr/lib",
    "/usr/lib/wsl/lib",  # WSL2: the Windows driver's libnvidia-ml.so.1 and libcuda.so.1 (docs/wsl2.md)
)

_HINT = ("install the NVIDIA driver's user-space libraries, or point {var} at the library "
         "(an absolute path)")



class LoadedLibrary(Record):
    """A dlopened library: ``lib`` is the cffi library object, ``path`` the host path."""

    lib: Any
    path: str
    soname: str


def _ldcache_candidates(root: HostRoot, soname: str, tried: List[str]) -> List[str]:
    """Host paths the root's ld.so.cache lists for ``soname`` (native arch)."""
    if not root.exists("/etc/ld.so.cache"):
        return []
    from ..host.ldcache import native_arch, read_ldcache

    try:
        cache = read_ldcache(root)
    except HostError as exc:
        path, text = root.host("/etc/ld.so.cache"), str(exc)
        tried.append(text if text.startswith(path + " ") else f"{path}: {text}")
        return []
    if cache is None:
        return []
    return [e.value for e in cache.lookup(soname, native_arch())]


def candidate_paths(root: HostRoot, soname: str, env: Mapping[str, str]
                    ) -> Tuple[List[Candidate], List[str]]:
    """The candidates to try for ``soname``, and failures met while listing them.

    Host paths are resolved inside the root (absolute symlinks are taken
    relative to it, as in a chroot).
    """
    tried: List[str] = []
    override = env.get(ENV_OVERRIDES.get(soname, ""), "")
    if override:
        return [(override, override)], tried
    host_paths = _ldcache_candidates(root, soname, tried)
    host_paths += [d + "/" + soname for d in FALLBACK_DIRS]
    out: List[Candidate] = []
    seen = set()
    for hp in host_paths:
        try:
            real = root.host(root.realpath(hp))
        except HostError as exc:
            tried.append(f"{root.host(hp)}: {exc}")
            continue
        if real in seen:
            continue
        seen.add(real)
        out.append((hp, real))
    if root.is_default:
        out.append((soname, soname))
    return out, tried


def _dlopen_error(exc: BaseException, path: str) -> str:
    """The useful tail of a dlopen error ("wrong ELF class: ELFCLASS32")."""
    text = str(exc).strip()
    marker = path + ": "
    idx = text.rfind(marker)
    return text[idx + len(marker):] if idx >= 0 else text


def _identity(real: str) -> Optional[Tuple[int, int, int, int]]:
    try:
        st = os.stat(real)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def _check(real: str) -> Optional[str]:
    """Why ``real`` must not be dlopened (:func:`nvlow.host.elf.loadable_problem_at`), or None.

    The file is stat'ed before and after the check: one that changed meanwhile is refused too.
    """
    from ..host.elf import loadable_problem_at

    before = _identity(real)
    problem = loadable_problem_at(real)
    if problem is None and (before is None or _identity(real) != before):
        problem = "changed while it was checked"
    return problem


def load_library(ffi: Any, soname: str, root: HostRoot, env: Mapping[str, str]) -> LoadedLibrary:
    """dlopen the first working candidate for ``soname`` with the out-of-line ``ffi``.

    Raises :class:`LibraryError` naming every candidate tried.
    """
    candidates, tried = candidate_paths(root, soname, env)
    var = ENV_OVERRIDES.get(soname, "NVLOW_NVML_LIBRARY")
    for host_path, real in candidates:
        if "/" in real:
            if not os.path.exists(real):
                tried.append(f"{real}: not found")
                continue
            problem = _check(real)
            if problem is not None:
                tried.append(f"{real}: {problem}")
                continue
        try:
            lib = ffi.dlopen(real)
        except OSError as exc:
            tried.append(f"{real}: {_dlopen_error(exc, real)}")
            continue
        return LoadedLibrary(lib=lib, path=host_path, soname=soname)
    raise LibraryError(f"cannot load {soname} (tried: {'; '.join(tried) or 'nothing'})",
                       hint=_HINT.format(var=var))

