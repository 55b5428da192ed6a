"""WSL2 hosts: ``/dev/dxg`` and the driver under ``/usr/lib/wsl``, as nvidia-ctk's WSL mode sees them.

On WSL2 there is no NVIDIA kernel module and no ``/proc/driver/nvidia``: every GPU is
reached through one paravirtualized node, ``/dev/dxg`` (the ``dxgkrnl`` misc device), and
the user-space driver comes from Windows: ``/usr/lib/wsl/lib`` (``libdxcore.so``, loader
stubs, ``nvidia-smi``) and the driver store ``/usr/lib/wsl/drivers/<dir>/``. The files a
container gets are the ones the toolkit's WSL mode mounts (docs/wsl2.md):

- ``libdxcore.so`` from ``/usr/lib/wsl/lib``;
- from the NVIDIA driver store (the directory holding ``libcuda.so.1.1``): the
  :data:`REQUIRED_DRIVER_STORE_FILES`, then every other ``*.so*``, ``*.bin`` and ``*.dll``;
- each at its host path; ``/usr/bin/nvidia-smi`` is the driver store's ``nvidia-smi``.

The toolkit then runs ldconfig in the container on the driver store and
``/usr/lib/wsl/lib`` (which creates ``libcuda.so.1 -> libcuda.so.1.1``) and links
``/usr/bin/nvidia-smi``; nvlow runs nothing in the container, so it binds the file a second
time under each link name instead (:func:`placements`).

Pure functions first, then the thin readers through :class:`~nvlow.host.root.HostRoot`.

Example:
    >>> is_lib_name("libcuda.so.1.1"), is_lib_name("nvcubins.bin"), is_lib_name("libfoo.sox")
    (True, False, False)
    >>> pick_driver_store([("/usr/lib/wsl/drivers/iigd", ["igdml64.dll"]),
    ...                    ("/usr/lib/wsl/drivers/nv_dispi", ["libcuda.so.1.1", "nvidia-smi"])])
    '/usr/lib/wsl/drivers/nv_dispi'
"""
from __future__ import annotations

import fnmatch
import posixpath

from ..errors import HostError, LibraryError
from ..model import DeviceNode, DriverFile, DriverFiles, Gpu, Host, WslDriver
from .root import HostRoot

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Dict, List, Optional, Sequence, Tuple

    from ..records import DriverLibrary, GpuRecord

DXG_NODE = "/dev/dxg"
#: dxgkrnl registers /dev/dxg with misc_register: major 10, a dynamic minor listed in /proc/misc
MISC_MAJOR = 10
WSL_DIR = "/usr/lib/wsl"
WSL_LIB_DIR = "/usr/lib/wsl/lib"
WSL_DRIVERS_DIR = "/usr/lib/wsl/drivers"
#: what the toolkit takes from /usr/lib/wsl/lib (pkg/nvcdi/driver-wsl.go, dxcoreLibraries)
DXCORE_LIBRARIES = ("libdxcore.so",)
#: the file that marks the NVIDIA driver store among the adapters' stores
DRIVER_STORE_MARKER = "libcuda.so.1.1"
#: the toolkit's requiredDriverStoreFiles, in its order
REQUIRED_DRIVER_STORE_FILES = (
    "libcuda.so.1.1",
    "libcuda_loader.so",
    "libnvidia-ptxjitcompiler.so.1",
    "libnvidia-ml.so.1",
    "libnvidia-ml_loader.so",
    "libnvdxgdmal.so.1",
    "nvcubins.bin",
    "nvidia-smi",
)
#: the other driver store files the toolkit mounts (getAdditionalFilesFromDriverStore), group by group
ADDITIONAL_PATTERNS = ("*.so*", "*.bin", "*.dll")
#: where the toolkit's create-symlinks hook puts nvidia-smi
SMI_LINK = "/usr/bin/nvidia-smi"
#: the one CDI device of a WSL2 spec (the toolkit's WSL mode names no other)
ALL_DEVICE = "all"


# -- pure functions -------------------------------------------------------------------------------

def is_wsl_layout(dxg_present: bool, wsl_dir: bool, nvidia_procfs: bool) -> bool:
    """A WSL2 host: ``/dev/dxg`` exists (whatever it is: a bad one is reported, not ignored),
    ``/usr/lib/wsl`` is a directory and the NVIDIA kernel module has no ``/proc/driver/nvidia``.

    Example:
        >>> is_wsl_layout(True, True, False), is_wsl_layout(True, True, True), is_wsl_layout(False, True, False)
        (True, False, False)
    """
    return dxg_present and wsl_dir and not nvidia_procfs


def is_lib_name(name: str) -> bool:
    """Whether a file name is a library name, by the toolkit's rule (``internal/discover/ldconfig.go``):
    ``lib?*.so*`` whose text after the last ``.so`` is empty or starts with ``.``.

    Example:
        >>> [is_lib_name(n) for n in ("libdxcore.so", "libcuda_loader.so", "libnvdxgdmal.so.1", "lib.so", "nvidia-smi")]
        [True, True, True, False, False]
    """
    base = posixpath.basename(name)
    if not fnmatch.fnmatchcase(base, "lib?*.so*"):
        return False
    tail = base.split(".so")[-1]
    return tail == "" or tail.startswith(".")


def pick_driver_store(stores: Sequence[Tuple[str, Sequence[str]]]) -> Optional[str]:
    """The first driver store (``(directory, file names)``, in order) that holds ``libcuda.so.1.1``,
    as the toolkit's ``getNVIDIADriverStorePath``; None when none does."""
    for directory, names in stores:
        if DRIVER_STORE_MARKER in names:
            return directory
    return None


def additional_store_files(names: Sequence[str], exclude: Sequence[str] = REQUIRED_DRIVER_STORE_FILES) -> List[str]:
    """The driver store's other files the toolkit mounts: ``*.so*``, then ``*.bin``, then ``*.dll``
    (sorted within each pattern, as a glob), leaving out ``exclude`` and names already taken.

    Example:
        >>> additional_store_files(["nvcubins.bin", "libnvwgf2umx.so", "nvlddmkm.sys", "nvcuda64.dll", "a.bin"])
        ['libnvwgf2umx.so', 'a.bin', 'nvcuda64.dll']
    """
    out: List[str] = []
    for pattern in ADDITIONAL_PATTERNS:
        for name in sorted(names):
            if fnmatch.fnmatchcase(name, pattern) and name not in exclude and name not in out:
                out.append(name)
    return out


def ldcache_folders(paths: Sequence[str]) -> Tuple[str, ...]:
    """The directories of the library paths among ``paths``, first seen first: the folders the
    toolkit's update-ldcache hook gets (and nvlow's ``LD_LIBRARY_PATH`` additions on WSL2).

    Example:
        >>> ldcache_folders(["/d/libcuda.so.1.1", "/d/nvcubins.bin", "/l/libdxcore.so", "/d/nvidia-smi"])
        ('/d', '/l')
    """
    out: List[str] = []
    for p in paths:
        if is_lib_name(p):
            d = posixpath.dirname(p)
            if d and d not in out:
                out.append(d)
    return tuple(out)


def smi_target(paths: Sequence[str]) -> Optional[str]:
    """The first path whose base name is ``nvidia-smi`` (the toolkit's nvidia-smi link target).

    Example:
        >>> smi_target(["/nvidia-smi/but-not", "/some/path/nvidia-smi", "/another/path/nvidia-smi"])
        '/some/path/nvidia-smi'
    """
    for p in paths:
        if posixpath.basename(p) == "nvidia-smi":
            return p
    return None


def ordered_files(files: DriverFiles) -> List[DriverFile]:
    """Every file in the toolkit's mount order: ``/usr/lib/wsl/lib`` first, then the required
    driver store files in the toolkit's order, then the additional ones."""
    def rank(f: DriverFile) -> Tuple[int, int, str]:
        path = f.path or f.host_path
        name = posixpath.basename(path)
        if posixpath.dirname(path) == WSL_LIB_DIR:
            return (0, 0, name)
        if name in REQUIRED_DRIVER_STORE_FILES:
            return (1, REQUIRED_DRIVER_STORE_FILES.index(name), name)
        group = next((i for i, p in enumerate(ADDITIONAL_PATTERNS) if fnmatch.fnmatchcase(name, p)),
                     len(ADDITIONAL_PATTERNS))
        return (2, group, name)

    return sorted(files.all(), key=rank)


def placements(files: DriverFiles) -> List[Tuple[str, str]]:
    """``(host path, container path)`` binds for a WSL2 container: every file at its host path
    (as the toolkit), each library again under its link names in the same directory (what the
    toolkit's ldconfig run creates: ``libcuda.so.1`` for ``libcuda.so.1.1``), and the driver
    store's ``nvidia-smi`` at ``/usr/bin/nvidia-smi`` (the toolkit's symlink). A container path
    is bound once.

    Example:
        >>> f = DriverFile("/r/d/libcuda.so.1.1", "lib64", "compute", ("libcuda.so.1.1", "libcuda.so.1"),
        ...                "libcuda.so.1", "/d/libcuda.so.1.1")
        >>> placements(DriverFiles(libraries64=(f,)))
        [('/r/d/libcuda.so.1.1', '/d/libcuda.so.1.1'), ('/r/d/libcuda.so.1.1', '/d/libcuda.so.1')]
    """
    out: List[Tuple[str, str]] = []
    seen = set()

    def bind(host_path: str, container_path: str) -> None:
        if container_path not in seen:
            seen.add(container_path)
            out.append((host_path, container_path))

    ordered = ordered_files(files)
    for f in ordered:
        path = f.path or f.host_path
        bind(f.host_path, path)
        if f.kind == "lib64":
            for name in f.names[1:]:
                bind(f.host_path, posixpath.join(posixpath.dirname(path), name))
    smi = smi_target([f.path or f.host_path for f in ordered if f.kind == "bin"])
    if smi is not None:
        bind(next(f.host_path for f in ordered if (f.path or f.host_path) == smi), SMI_LINK)
    return out


def misc_minor(text: str, name: str = "dxg") -> Optional[int]:
    """The minor of ``name`` in ``/proc/misc`` text (``" 63 dxg"`` lines), or None.

    Example:
        >>> misc_minor("183 hw_random\\n 63 dxg\\n")
        63
    """
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1] == name and parts[0].isdigit() and len(parts[0]) <= 7:
            return int(parts[0])
    return None


def subset_warning(selected: int, total: int) -> Optional[str]:
    """The note for a selection of fewer than every GPU: ``/dev/dxg`` gives a container all of them.

    Example:
        >>> subset_warning(1, 1) is None, subset_warning(1, 2)[:40]
        (True, 'WSL2 exposes every GPU through /dev/dxg:')
    """
    if selected >= total:
        return None
    return (f"WSL2 exposes every GPU through /dev/dxg: the container sees all {total} GPUs, not only the "
            f"{selected} selected (the toolkit's WSL mode has only the device 'all')")


# -- thin readers ---------------------------------------------------------------------------------

def looks_like_wsl(root: HostRoot) -> bool:
    """:func:`is_wsl_layout` for the host under ``root`` (a few ``lstat`` calls)."""
    return is_wsl_layout(root.exists(DXG_NODE), root.is_dir(WSL_DIR), root.exists("/proc/driver/nvidia"))


def _dxg(root: HostRoot, warnings: List[str]) -> Optional[DeviceNode]:
    real = root.host(DXG_NODE)
    info = root.node(DXG_NODE)
    if info is None:
        warnings.append(f"{real} is missing: no GPU is reachable on this WSL2 host")
        return None
    if info.is_link:
        warnings.append(f"{real} is a symbolic link, not a character device; not used")
        return None
    if not info.is_char:
        warnings.append(f"{real} is not a character device; not used")
        return None
    if info.major != MISC_MAJOR:
        warnings.append(f"{real} is {info.major}:{info.minor}, expected the misc major {MISC_MAJOR} of dxgkrnl; "
                        "not used")
        return None
    try:
        misc = root.read_text_optional("/proc/misc")
    except HostError as exc:
        warnings.append(str(exc))
        misc = None
    minor = misc_minor(misc) if misc is not None else None
    if minor is not None and minor != info.minor:
        warnings.append(f"{real} is {info.major}:{info.minor}, but {root.host('/proc/misc')} gives dxg the minor "
                        f"{minor}; not used")
        return None
    return DeviceNode(real, DXG_NODE, info.major, info.minor, "dxg")


def _driver_file(root: HostRoot, path: str, warnings: List[str], skipped: List[Tuple[str, str]]
                 ) -> Optional[DriverFile]:
    """The file at host path ``path`` when it is a regular file inside the root (a library also a
    readable ELF object), else None with the reason in ``skipped`` and ``warnings``."""
    from .elf import read_elf

    real = root.host(path)
    try:
        resolved = root.host(root.realpath(path))
    except HostError as exc:
        skipped.append((real, str(exc)))
        warnings.append(f"{real}: {exc}; not used")
        return None
    if not root.contains(resolved) or not root.is_file(root.realpath(path)):
        reason = "resolves outside the root" if not root.contains(resolved) else "is not a regular file"
        skipped.append((real, reason))
        warnings.append(f"{real} {reason}; not used")
        return None
    name = posixpath.basename(path)
    if name == "nvidia-smi":
        return DriverFile(resolved, "bin", "utility", (name,), None, path)
    if not is_lib_name(name):
        return DriverFile(resolved, "config", "compute", (name,), None, path)
    try:
        soname = read_elf(root, root.realpath(path)).soname
    except HostError as exc:
        skipped.append((real, str(exc)))
        warnings.append(f"{exc}; not used")
        return None
    names = (name, soname) if soname and soname != name and "/" not in soname else (name,)
    return DriverFile(resolved, "lib64", "compute", names, soname, path)


def scan_wsl(root: HostRoot) -> Tuple[WslDriver, List[str]]:
    """``/dev/dxg`` and the driver files of the WSL2 host under ``root``, and warnings (one line each)."""
    warnings: List[str] = []
    skipped: List[Tuple[str, str]] = []
    missing: List[str] = []
    dxg = _dxg(root, warnings)
    found: List[DriverFile] = []
    for name in DXCORE_LIBRARIES:
        path = f"{WSL_LIB_DIR}/{name}"
        if not root.exists(path):
            missing.append(name)
            warnings.append(f"{root.host(path)} is missing: CUDA cannot reach the GPU without it")
            continue
        f = _driver_file(root, path, warnings, skipped)
        if f is not None:
            found.append(f)
    stores: List[Tuple[str, List[str]]] = []
    try:
        for d in root.listdir(WSL_DRIVERS_DIR):
            directory = f"{WSL_DRIVERS_DIR}/{d}"
            if root.is_dir(directory) and not root.is_link(directory):
                stores.append((directory, root.listdir(directory)))
    except HostError as exc:
        warnings.append(str(exc))
    store = pick_driver_store(stores)
    nvidia_stores = [d for d, names in stores if DRIVER_STORE_MARKER in names]
    if len(nvidia_stores) > 1:
        warnings.append(f"several driver stores hold {DRIVER_STORE_MARKER} ({', '.join(nvidia_stores)}); "
                        f"using {store}")
    if store is None:
        warnings.append(f"no driver store under {root.host(WSL_DRIVERS_DIR)} holds {DRIVER_STORE_MARKER}: "
                        "install or update the NVIDIA driver on Windows")
    else:
        names = dict(stores)[store]
        for name in REQUIRED_DRIVER_STORE_FILES:
            if name not in names:
                missing.append(name)
                continue
            f = _driver_file(root, f"{store}/{name}", warnings, skipped)
            if f is not None:
                found.append(f)
        for name in additional_store_files(names):
            path = f"{store}/{name}"
            if not root.is_file(path):  # directories and dangling links are not files (the toolkit's locator)
                continue
            f = _driver_file(root, path, warnings, skipped)
            if f is not None:
                found.append(f)
    files = DriverFiles(
        libraries64=tuple(f for f in found if f.kind == "lib64"),
        binaries=tuple(f for f in found if f.kind == "bin"),
        configs=tuple(f for f in found if f.kind == "config"),
        skipped=tuple(skipped), missing=tuple(missing),
    )
    # the toolkit's ldcache hook: the library folders of the required and dxcore mounts, store first
    lib_paths = [f.path or "" for f in found if f.kind == "lib64" and posixpath.dirname(f.path or "") == store]
    lib_paths += [f.path or "" for f in found if f.kind == "lib64" and posixpath.dirname(f.path or "") == WSL_LIB_DIR]
    fallback = DeviceNode(root.host(DXG_NODE), DXG_NODE, -1, -1, "dxg")
    return WslDriver(dxg if dxg is not None else fallback, store, files, ldcache_folders(lib_paths),
                     usable=dxg is not None), warnings


def _gpus(records: Sequence[GpuRecord]) -> List[Gpu]:
    from .procfs import normalize_bus_id

    # NVML has no minor numbers on WSL2 (no /dev/nvidiaN): every GPU is behind /dev/dxg
    return [Gpu(index=r.index, minor=None, uuid=r.uuid, bus_id=normalize_bus_id(r.bus_id) if r.bus_id else None,
                name=r.name, brand=r.brand, architecture=r.architecture, compute_capability=r.compute_capability,
                memory_total=r.memory_total, persistence_mode=r.persistence_mode, mig_enabled=r.mig_enabled)
            for r in sorted(records, key=lambda r: r.index)]


#: the one GPU entry of a WSL2 host without NVML: every adapter behind /dev/dxg
ALL_GPUS = Gpu(index=0, minor=None, uuid=None, bus_id=None, name="all GPUs behind /dev/dxg (WSL2, no NVML)")


def discover_wsl(
    root: HostRoot,
    *,
    library: Optional[DriverLibrary] = None,
    library_opener: Optional[Callable[[HostRoot], DriverLibrary]] = None,
    use_nvml: bool = True,
    cuda_reader: Optional[Callable[[HostRoot], Optional[str]]] = None,
) -> Host:
    """The :class:`~nvlow.model.Host` of a WSL2 host: GPUs and versions from NVML when it loads
    (``/usr/lib/wsl/lib/libnvidia-ml.so.1``), else one entry for every GPU and no driver version."""
    wsl, warnings = scan_wsl(root)
    from .discover import ask_library, cuda_level  # discover imports this module

    system, records, paths = ask_library(root, library, library_opener, warnings,
                                         "GPUs not listed") if use_nvml else (None, None, ())
    gpus = _gpus(records) if records is not None else [ALL_GPUS]
    driver_version = system.driver_version if system is not None else None
    cuda_version, cuda_source = cuda_level(root, system, driver_version, cuda_reader)
    return Host(
        root=root.path, driver_version=driver_version, cuda_version=cuda_version, cuda_version_source=cuda_source,
        source="nvml" if records is not None else "wsl", gpus=tuple(gpus),
        nvml_version=system.nvml_version if system is not None else None,
        warnings=tuple(warnings), simulated=root.simulated, library_paths=paths, wsl=wsl,
    )


def wsl_driver_files(host: Host) -> DriverFiles:
    """The files a container gets on a WSL2 host (every capability: the toolkit's WSL mode mounts
    the same files whatever is asked); a :class:`HostError` when no NVIDIA driver store was found."""
    wsl = host.wsl
    if wsl is None or wsl.driver_store is None:
        raise HostError(f"no NVIDIA driver store under {WSL_DRIVERS_DIR} (no {DRIVER_STORE_MARKER}): the "
                        "driver files cannot be selected",
                        hint="install or update the NVIDIA driver on Windows, then 'wsl --shutdown'")
    return wsl.files


def dxg_node(host: Host) -> DeviceNode:
    """The usable ``/dev/dxg`` of a WSL2 host; a :class:`HostError` naming the problem otherwise."""
    wsl = host.wsl
    if wsl is None or not wsl.usable:
        path = wsl.dxg.host_path if wsl is not None else DXG_NODE
        raise HostError(f"{path} is missing or not dxgkrnl's character device: no GPU container can work "
                        "without it", hint="update WSL ('wsl --update') and the Windows NVIDIA driver")
    return wsl.dxg


def describe(host: Host) -> Dict[str, str]:
    """Lines for ``nvlow info`` on a WSL2 host (empty elsewhere)."""
    wsl = host.wsl
    if wsl is None:
        return {}
    return {"Platform": "WSL2 (" + (wsl.dxg.container_path if wsl.usable else "no usable /dev/dxg") + ")",
            "Driver store": wsl.driver_store or "N/A"}
