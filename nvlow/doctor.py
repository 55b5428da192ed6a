"""``nvlow doctor``: the known failures of GPU containers, each named with its fix.

Every check is a function of a :class:`DoctorContext` (root, environment,
library opener, engine client factory) returning :class:`CheckResult` rows, so
each can be exercised on fake roots and simulated presets in both outcomes.

Example:
    >>> CheckResult("cgroup", "ok", "cgroup v2").to_dict()["status"]
    'ok'
"""
from __future__ import annotations

import os

from .frozen import Record, asdict, field
from .errors import DriverNotLoaded, LibraryError, NvlowError
from .model import Host
from .records import DriverLibrary, GpuRecord, SystemInfo
from .host.root import HostRoot
from .text import listed

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple


OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"


class CheckResult(Record):
    """One doctor line: ``status`` is ok, warn, fail or skip; ``fix`` says what to do."""

    check: str
    status: str
    message: str
    fix: Optional[str] = None

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


class DoctorContext(Record, frozen=False):
    """What the checks may look at; everything is passed in."""

    root: HostRoot
    env: Mapping[str, str]
    library_opener: Callable[[HostRoot], DriverLibrary]
    engine_factory: Optional[Callable[[Optional[str]], Any]] = None
    #: where a usable ``podman`` program is (None: podman is not looked for); podman needs no daemon,
    #: so a host with podman and no dockerd passes the engine check
    podman_finder: Optional[Callable[[], Optional[str]]] = None
    #: filled by the checks as they run
    scan: Any = None
    host: Optional[Host] = None
    system: Optional[SystemInfo] = None
    records: Tuple[GpuRecord, ...] = ()
    library_paths: Tuple[str, ...] = ()
    notes: Dict[str, Any] = field(default_factory=dict)


def check_kernel_module(ctx: DoctorContext) -> List[CheckResult]:
    from .host.scan import scan_host

    try:
        ctx.scan = scan_host(ctx.root, load_uvm=False)
    except DriverNotLoaded as exc:
        return [CheckResult("kernel module", FAIL, str(exc),
                            exc.hint or "install the NVIDIA driver and load it: 'modprobe nvidia'")]
    except NvlowError as exc:
        return [CheckResult("kernel module", FAIL, str(exc), exc.hint)]
    kind = "open" if ctx.scan.open_module else "proprietary"
    version = ctx.scan.driver_version or "unknown version"
    return [CheckResult("kernel module", OK, f"nvidia {version} loaded ({kind} kernel module)")]


def check_gpus(ctx: DoctorContext) -> List[CheckResult]:
    """A loaded driver with no GPU is not a working GPU host."""
    if ctx.scan is None:
        return [CheckResult("GPUs", SKIP, "kernel module not loaded")]
    count = len(ctx.scan.gpus)
    if not count:
        return [CheckResult("GPUs", FAIL, "the NVIDIA driver is loaded but sees no GPU",
                            "check that the GPU is present and bound to the nvidia driver ('lspci -nnk -d 10de:'), "
                            "and the kernel log ('dmesg | grep -i nvrm')")]
    return [CheckResult("GPUs", OK, f"{count} GPU(s)")]


def check_ld_cache(ctx: DoctorContext) -> List[CheckResult]:
    """nvlow (like the toolkit) finds the driver's libraries through /etc/ld.so.cache."""
    from .host.ldcache import CACHE_PATH, read_ldcache

    fix = "run 'ldconfig' as root (after installing the driver's libraries)"
    path = ctx.root.host(CACHE_PATH)
    try:
        cache = read_ldcache(ctx.root)
    except NvlowError as exc:
        return [CheckResult("ld.so.cache", FAIL, str(exc), fix)]
    if cache is None:
        return [CheckResult("ld.so.cache", FAIL, f"{path} is missing: the driver libraries cannot be found", fix)]
    if not cache.entries:
        return [CheckResult("ld.so.cache", FAIL, f"{path} lists no libraries", fix)]
    nvidia = [e for e in cache.entries if "nvidia" in e.key or e.key.startswith("libcuda.")]
    if not nvidia:
        return [CheckResult("ld.so.cache", FAIL, f"{path} lists no NVIDIA library ({len(cache.entries)} entries)",
                            fix)]
    return [CheckResult("ld.so.cache", OK, f"{path}: {len(cache.entries)} entries, {len(nvidia)} NVIDIA")]


def check_libraries(ctx: DoctorContext) -> List[CheckResult]:
    try:
        lib = ctx.library_opener(ctx.root)
    except LibraryError as exc:
        text = str(exc)
        if "mismatch" in text.lower():
            return [CheckResult("driver libraries", FAIL, text,
                                exc.hint or "reboot, or reload the nvidia kernel modules so they match the libraries")]
        return [CheckResult("driver libraries", FAIL, text,
                            exc.hint or "install the driver's user-space libraries (libnvidia-ml.so.1, libcuda.so.1)")]
    try:
        ctx.system = lib.system()
        ctx.records = tuple(lib.gpus())
        ctx.library_paths = tuple(lib.loaded_paths)
    except LibraryError as exc:
        return [CheckResult("driver libraries", FAIL, str(exc), exc.hint)]
    finally:
        lib.close()
    out = [CheckResult("driver libraries", OK, "loaded " + ", ".join(ctx.library_paths or ("(simulated)",)))]
    kernel = ctx.scan.driver_version if ctx.scan is not None else None
    user = ctx.system.driver_version if ctx.system else None
    if kernel and user and kernel != user:
        out.append(CheckResult(
            "library version", FAIL,
            f"Driver/library version mismatch: kernel module {kernel}, libraries {user}",
            "reboot, or unload and reload the nvidia modules (rmmod nvidia_uvm nvidia_drm nvidia_modeset nvidia; "
            "modprobe nvidia) so the kernel module matches the installed libraries"))
    elif kernel and user:
        out.append(CheckResult("library version", OK, f"libraries match the kernel module ({user})"))
    if ctx.system and ctx.system.cuda_version is None:
        out.append(CheckResult("cuda driver", WARN, "libcuda.so.1 could not report a CUDA version",
                               "install the driver's libcuda.so.1 (package libcuda1 / nvidia-driver-libs)"))
    elif ctx.system:
        out.append(CheckResult("cuda driver", OK, f"CUDA {ctx.system.cuda_version}"))
    return out


def check_stale_libraries(ctx: DoctorContext) -> List[CheckResult]:
    version = ctx.scan.driver_version if ctx.scan is not None else None
    if not version:
        return [CheckResult("stale libraries", SKIP, "no driver version to compare with")]
    from .host.driverfiles import parse_capabilities, select_driver_files

    try:
        files = select_driver_files(ctx.root, version, parse_capabilities("all"))
    except NvlowError as exc:
        return [CheckResult("stale libraries", FAIL, str(exc), exc.hint)]
    out: List[CheckResult] = []
    damaged = files.damaged()
    if damaged:
        shown = listed([f"{p} ({r})" for p, r in damaged], 4)
        out.append(CheckResult("damaged libraries", WARN, f"{len(damaged)} driver {version} file(s) left out of "
                               f"containers: {shown}", "reinstall the driver (a partial install or a full disk "
                               "leaves truncated files) and run ldconfig"))
    stale = [p for p, reason in files.skipped if "version" in reason or "stale" in reason]
    if stale:
        return out + [CheckResult("stale libraries", WARN,
                                  f"{len(stale)} library file(s) of another driver version in the loader cache: "
                                  f"{listed(stale, 4)}", "remove the leftovers of the old driver and run ldconfig")]
    return out + [CheckResult("stale libraries", OK, f"every NVIDIA library in the cache is {version}")]


def check_device_nodes(ctx: DoctorContext) -> List[CheckResult]:
    scan = ctx.scan
    if scan is None:
        return [CheckResult("device nodes", SKIP, "kernel module not loaded")]
    out: List[CheckResult] = []
    kinds = {n.kind: n for n in scan.control_nodes}
    ctl = kinds.get("ctl")
    if ctl is None:
        out.append(CheckResult("device nodes", FAIL, f"{ctx.root.host('/dev/nvidiactl')} is missing or not a "
                               "character device 195:255", "run 'nvidia-modprobe -c 0' or 'nvidia-smi' once as root"))
    missing = [g.bus_id for g in scan.gpus if g.node is None]
    if missing:
        out.append(CheckResult("device nodes", FAIL, "no usable /dev/nvidiaN node for GPU(s) " + ", ".join(missing),
                               "run 'nvidia-smi' once as root or 'nvidia-modprobe -c <minor>' for each GPU"))
    nodes = list(scan.control_nodes) + [g.node for g in scan.gpus if g.node is not None]
    denied = [n.host_path for n in nodes if not os.access(n.host_path, os.R_OK | os.W_OK)]
    if denied:
        out.append(CheckResult("device permissions", FAIL, "not readable/writable by this user: " + ", ".join(denied),
                               "check DeviceFileMode/DeviceFileGID in /proc/driver/nvidia/params or add the user "
                               "to the owning group"))
    if "uvm" not in kinds:
        out.append(CheckResult("nvidia-uvm", WARN, "/dev/nvidia-uvm is missing: CUDA fails in containers",
                               "run 'nvidia-modprobe -u -c=0' as root (or load the nvidia-uvm module)"))
    for w in scan.warnings:
        if "/dev/" in w:
            out.append(CheckResult("device nodes", WARN, w))
    if not any(r.status == FAIL for r in out):
        out.insert(0, CheckResult("device nodes", OK,
                                  f"{len(nodes)} node(s) present with the right type and numbers"))
    return out


def check_persistence(ctx: DoctorContext) -> List[CheckResult]:
    if not ctx.records:
        return [CheckResult("persistence mode", SKIP, "no GPU data from NVML")]
    off = [str(r.index) for r in ctx.records if r.persistence_mode is False]
    if off:
        return [CheckResult("persistence mode", WARN, f"persistence mode is off on GPU(s) {', '.join(off)}: "
                            "every container start re-initialises the GPU (slow first CUDA call)",
                            "enable nvidia-persistenced (systemctl enable --now nvidia-persistenced)")]
    return [CheckResult("persistence mode", OK, "on for every GPU")]


def check_engine(ctx: DoctorContext) -> List[CheckResult]:
    if ctx.engine_factory is None:
        return [CheckResult("container engine", SKIP, "not checked")]
    docker_host = ctx.env.get("DOCKER_HOST")
    try:
        client = ctx.engine_factory(docker_host)
        version = client.version()
        info = client.info()
    except NvlowError as exc:
        podman = ctx.podman_finder() if ctx.podman_finder is not None else None
        if podman:
            return [CheckResult("container engine", OK, f"Podman at {podman} (no daemon needed; Docker is not "
                                f"reachable: {exc})")]
        return [CheckResult("container engine", FAIL, str(exc),
                            (exc.hint or "start dockerd, or set DOCKER_HOST to the engine's socket")
                            + "; or install Podman (it needs no daemon)")]
    out = [CheckResult("container engine", OK,
                       f"Docker Engine {version.get('Version', '?')} (API {version.get('ApiVersion', '?')}) reachable")]
    runtimes = sorted((info.get("Runtimes") or {}).keys())
    if "nvidia" in runtimes:
        default = info.get("DefaultRuntime")
        out.append(CheckResult("nvidia runtime", WARN if default == "nvidia" else OK,
                               f"the engine also has the NVIDIA runtime (default runtime: {default})",
                               "with nvidia as the default runtime, images with NVIDIA_VISIBLE_DEVICES get GPUs "
                               "twice; prefer one mechanism" if default == "nvidia" else None))
    cdi_dirs = info.get("CDISpecDirs")
    if cdi_dirs:
        out.append(CheckResult("engine CDI", OK, "CDI enabled, spec dirs: " + ", ".join(cdi_dirs)))
    return out


def check_cdi_specs(ctx: DoctorContext) -> List[CheckResult]:
    from .cdi.store import spec_files

    files = spec_files(ctx.root)
    if not files:
        return [CheckResult("CDI specs", OK, "no CDI specs in /etc/cdi or /var/run/cdi")]
    from .cdi.store import read_spec
    from .cdi.validate import host_problems  # only with specs to read: it compiles regular expressions

    version = ctx.scan.driver_version if ctx.scan is not None else None
    stale: List[str] = []
    for _prio, path in files:
        try:
            doc = read_spec(path)
        except NvlowError:
            continue  # `nvlow cdi validate` reports unreadable specs; doctor looks at staleness
        stale.extend(f"{path} ({p})" for p in host_problems(doc, version, exists=lambda _p: True)
                     if p.startswith("stale:"))
    if stale:
        return [CheckResult("CDI specs", WARN, f"stale for driver {version}: " + "; ".join(stale),
                            "regenerate: 'nvlow cdi generate --write' (or nvidia-ctk cdi generate)")]
    return [CheckResult("CDI specs", OK, f"{len(files)} spec file(s) match the running driver")]


def check_cgroup(ctx: DoctorContext) -> List[CheckResult]:
    if ctx.root.exists("/sys/fs/cgroup/cgroup.controllers"):
        version = "v2 (unified)"
    elif ctx.root.is_dir("/sys/fs/cgroup"):
        version = "v1" + (" (hybrid)" if ctx.root.is_dir("/sys/fs/cgroup/unified") else "")
    else:
        return [CheckResult("cgroup", SKIP, "/sys/fs/cgroup not found under the root")]
    return [CheckResult("cgroup", OK, f"cgroup {version}; nvlow passes devices explicitly (--device), so "
                        "'systemctl daemon-reload' does not take GPUs away from running containers "
                        "(NVIDIA/nvidia-container-toolkit #48)")]


CHECKS: Tuple[Callable[[DoctorContext], List[CheckResult]], ...] = (
    check_kernel_module,
    check_gpus,
    check_ld_cache,
    check_libraries,
    check_stale_libraries,
    check_device_nodes,
    check_persistence,
    check_engine,
    check_cdi_specs,
    check_cgroup,
)


def run_doctor(ctx: DoctorContext) -> Tuple[CheckResult, ...]:
    """Run every check in order; a check that raises becomes a ``fail`` row."""
    results: List[CheckResult] = []
    for check in CHECKS:
        name = check.__name__.replace("check_", "").replace("_", " ")
        try:
            results.extend(check(ctx))
        except NvlowError as exc:
            results.append(CheckResult(name, FAIL, str(exc), exc.hint))
        except Exception as exc:  # noqa: BLE001 - one broken check must not hide the others
            results.append(CheckResult(name, FAIL, f"check crashed: {type(exc).__name__}: {exc}",
                                       "run with --debug and report this"))
    return tuple(results)


def doctor_document(results: Tuple[CheckResult, ...]) -> Dict[str, Any]:
    """The ``nvlow doctor --json`` document."""
    return {"schema_version": 1, "ok": not any(r.status == FAIL for r in results),
            "checks": [r.to_dict() for r in results]}


def format_doctor(results: Tuple[CheckResult, ...]) -> str:
    """One line per check, the fix indented below a warning or failure."""
    lines = []
    for r in results:
        lines.append(f"[{r.status:>4}] {r.check}: {r.message}")
        if r.fix and r.status in (WARN, FAIL):
            lines.append(f"       fix: {r.fix}")
    return "\n".join(lines) + "\n"
