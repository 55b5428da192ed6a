"""Host discovery: procfs/dev scan merged with NVML into one :class:`~nvlow.model.Host`.

The scanner alone is enough (``use_nvml=False`` or NVML not loadable): it
yields GPUs, minors, UUIDs, bus ids, models, MIG caps and the driver version.
When a driver library is available its richer records are merged in, and
minors and bus ids are cross-checked against procfs. Device nodes always come
from the scanner: a GPU's ``/dev/nvidiaN`` and DRM nodes (matched by bus id),
the MIG config/monitor cap nodes and the IMEX channel nodes.

Example:
    >>> from nvlow.simulate.hosttree import simulated_host
    >>> root, opener = simulated_host("dgx-a100")
    >>> host = discover(root, library_opener=opener)
    >>> (len(host.gpus), host.source, host.gpus[0].bus_id)
    (8, 'nvml', '0000:07:00.0')
"""
from __future__ import annotations

from ..errors import LibraryError
from ..model import DeviceNode, Gpu, Host, MigDevice, ProcfsFacts
from .root import HostRoot

TYPE_CHECKING = False
if TYPE_CHECKING:  # records only in annotations: a plan without NVML never loads nvlow.records
    from typing import Callable, List, Optional, Sequence, Tuple
    from ..records import DriverLibrary, GpuRecord, SystemInfo
    from .scan import MigCap, ProcScan
    LibraryOpener = Callable[[HostRoot], DriverLibrary]
    #: decides after the procfs scan whether NVML is opened: a reason (open it) or None (procfs only)
    NvmlWanted = Callable[[ProcfsFacts], Optional[str]]
    #: the driver's CUDA version without NVML (libcuda's cuDriverGetVersion), or None
    CudaReader = Callable[[HostRoot], Optional[str]]


def _cap_nodes(mig_caps: Sequence[MigCap], gpu_minor: Optional[int], gi: Optional[int],
               ci: Optional[int]) -> Tuple[DeviceNode, ...]:
    """The GI access node, then the CI access node, of one MIG device."""
    if gpu_minor is None or gi is None:
        return ()
    nodes: List[DeviceNode] = []
    for want_ci in (None, ci):
        for cap in mig_caps:
            if cap.gpu_minor == gpu_minor and cap.gi == gi and cap.ci == want_ci and cap.node is not None:
                nodes.append(cap.node)
                break
    return tuple(nodes)


def _gpus_from_records(records: Sequence[GpuRecord], scan: ProcScan) -> List[Gpu]:
    from .procfs import normalize_bus_id

    proc_by_bus = {pg.bus_id: pg for pg in scan.gpus}
    # every checked /dev/nvidiaN, so GPUs whose procfs entry lacks a minor still find their node
    nodes_by_minor = {n.minor: n for n in scan.gpu_nodes}
    mig_caps = scan.mig_caps
    gpus: List[Gpu] = []
    for rec in sorted(records, key=lambda r: r.index):
        bus = normalize_bus_id(rec.bus_id) if rec.bus_id else None
        proc = proc_by_bus.get(bus) if bus else None
        minor = rec.minor if rec.minor is not None else (proc.minor if proc else None)
        migs = tuple(
            MigDevice(
                uuid=m.uuid, parent_index=rec.index, index=m.index,
                gpu_instance_id=m.gpu_instance_id, compute_instance_id=m.compute_instance_id,
                name=m.name, memory_total=m.memory_total,
                cap_nodes=_cap_nodes(mig_caps, minor, m.gpu_instance_id, m.compute_instance_id),
            )
            for m in rec.mig_devices
        )
        gpus.append(Gpu(
            index=rec.index, minor=minor, uuid=rec.uuid or (proc.uuid if proc else None),
            bus_id=bus, name=rec.name or (proc.model if proc else None), brand=rec.brand,
            architecture=rec.architecture, compute_capability=rec.compute_capability,
            memory_total=rec.memory_total, persistence_mode=rec.persistence_mode,
            mig_enabled=rec.mig_enabled, mig_devices=migs,
            node=nodes_by_minor.get(minor) if minor is not None else None,
            drm_nodes=proc.drm_nodes if proc else (),
        ))
    return gpus


def _gpus_from_procfs(scan: ProcScan) -> Tuple[List[Gpu], List[str]]:
    gpus: List[Gpu] = []
    warnings: List[str] = []
    mig_caps = scan.mig_caps
    for pg in scan.gpus:
        if pg.excluded:
            warnings.append(f"GPU {pg.bus_id} is excluded by the driver (GPU Excluded: Yes); skipped")
            continue
        index = len(gpus)
        pairs = sorted({(c.gi, c.ci) for c in mig_caps if c.gpu_minor == pg.minor and c.ci is not None})
        migs = tuple(
            MigDevice(uuid=None, parent_index=index, index=slot, gpu_instance_id=gi, compute_instance_id=ci,
                      cap_nodes=_cap_nodes(mig_caps, pg.minor, gi, ci))
            for slot, (gi, ci) in enumerate(pairs)
        )
        gpus.append(Gpu(
            index=index, minor=pg.minor, uuid=pg.uuid, bus_id=pg.bus_id, name=pg.model,
            mig_enabled=True if migs else None, mig_devices=migs, node=pg.node, drm_nodes=pg.drm_nodes,
        ))
    return gpus, warnings


def procfs_facts(scan: ProcScan) -> ProcfsFacts:
    """What the scan knows for :func:`nvlow.plan.request.needs_nvml`, with the indices procfs-only
    discovery gives (excluded GPUs skipped, PCI bus order)."""
    kept = [pg for pg in scan.gpus if not pg.excluded]
    mig_minors = {c.gpu_minor for c in scan.mig_caps if c.gi is not None}
    return ProcfsFacts(
        gpu_uuids=tuple(pg.uuid for pg in kept),
        mig_gpus=tuple(i for i, pg in enumerate(kept) if pg.minor is not None and pg.minor in mig_minors),
        complete=all(pg.minor is not None and bool(pg.uuid) and bool(pg.model) for pg in kept),
    )


def _order_check(scan: ProcScan, records: Sequence[GpuRecord]) -> List[str]:
    """A warning when NVML's index order is not procfs's PCI bus order (the order of a plan made
    without NVML, docs/nvml-lazy.md): nvlow's indices are NVML's while NVML is open."""
    from .procfs import normalize_bus_id

    nvml = [normalize_bus_id(r.bus_id) for r in sorted(records, key=lambda r: r.index) if r.bus_id]
    known = set(nvml)
    procfs = [pg.bus_id for pg in scan.gpus if not pg.excluded and pg.bus_id in known]
    if len(nvml) != len(procfs) or nvml == procfs:
        return []
    return ["NVML's GPU index order (" + ", ".join(b or "?" for b in nvml) + ") differs from the PCI bus order "
            "of /proc/driver/nvidia/gpus: indices follow NVML here, but plans that do not open NVML "
            "number GPUs in bus order; select GPUs by UUID or bus id"]


def cuda_level(root: HostRoot, system: Optional[SystemInfo], driver_version: Optional[str],
               cuda_reader: Optional[CudaReader]) -> Tuple[Optional[str], Optional[str]]:
    """(the driver's CUDA version, where it came from): the driver library's answer, else libcuda's
    (``cuda_reader``), else the driver branch's published CUDA level ("driver table"), else (None, None)."""
    version = system.cuda_version if system is not None else None
    if version is None and cuda_reader is not None:
        version = cuda_reader(root)
    if version:
        return version, "library"
    if driver_version:
        from .cudaversions import cuda_for_driver

        # no libcuda answer (procfs only, or a broken libcuda): the driver's published CUDA level
        version = cuda_for_driver(driver_version)
        return version, ("driver table" if version else None)
    return None, None


def ask_library(root: HostRoot, library: Optional[DriverLibrary], opener: Optional[LibraryOpener],
                warnings: List[str], fallback: str
                ) -> Tuple[Optional[SystemInfo], Optional[Tuple[GpuRecord, ...]], Tuple[str, ...]]:
    """(system, GPU records, loaded library paths) from ``library``, or from one ``opener`` opens and
    closes; a library that cannot be opened or fails adds a warning ending in ``fallback`` (what
    discovery does without it) and gives ``(None, None, ())``."""
    lib = library
    if lib is None and opener is not None:
        try:
            lib = opener(root)
        except LibraryError as exc:
            warnings.append(f"NVML unavailable, {fallback}: {exc}")
            return None, None, ()
        opened_here = True
    else:
        opened_here = False
    if lib is None:
        return None, None, ()
    try:
        return lib.system(), lib.gpus(), tuple(lib.loaded_paths)
    except LibraryError as exc:
        warnings.append(f"NVML failed, {fallback}: {exc}")
        return None, None, ()
    finally:
        if opened_here:
            lib.close()


def discover(
    root: HostRoot,
    *,
    library: Optional[DriverLibrary] = None,
    library_opener: Optional[LibraryOpener] = None,
    use_nvml: bool = True,
    load_uvm: bool = True,
    runner: Optional[Callable[[List[str]], int]] = None,
    nvml_wanted: Optional[NvmlWanted] = None,
    cuda_reader: Optional[CudaReader] = None,
) -> Host:
    """Discover GPUs, device nodes and versions under ``root``.

    ``library`` (already open) or ``library_opener`` provide NVML data; a
    :class:`~nvlow.errors.LibraryError` from the opener makes discovery fall
    back to procfs with a warning. The library is closed before returning
    unless it was passed in.

    ``nvml_wanted`` (``nvlow args``/``exec``) is asked after the procfs scan: when it returns
    None, no library is opened (as ``use_nvml=False``, without a warning). ``cuda_reader`` gives
    the CUDA version when NVML is not used (libcuda); the driver table is the last resort.
    """
    from .scan import cross_check, scan_host

    if root.exists("/dev/dxg") and not root.exists("/proc/driver/nvidia"):
        from .wsl import discover_wsl, looks_like_wsl

        if looks_like_wsl(root):  # WSL2: /dev/dxg and /usr/lib/wsl, no NVIDIA kernel module (docs/wsl2.md)
            return discover_wsl(root, library=library, library_opener=library_opener, use_nvml=use_nvml,
                                cuda_reader=cuda_reader)
    scan = scan_host(root, load_uvm=load_uvm, runner=runner)
    warnings: List[str] = list(scan.warnings)
    if use_nvml and library is None and nvml_wanted is not None and nvml_wanted(procfs_facts(scan)) is None:
        use_nvml = False
    system, records, paths = ask_library(root, library, library_opener, warnings,
                                         "using procfs only") if use_nvml else (None, None, ())
    if records is not None:
        gpus = _gpus_from_records(records, scan)
        warnings.extend(cross_check(scan, records))
        warnings.extend(_order_check(scan, records))
        source = "nvml"
    else:
        gpus, extra = _gpus_from_procfs(scan)
        warnings.extend(extra)
        source = "procfs"
    driver_version = scan.driver_version
    if system is not None and system.driver_version:
        if driver_version and system.driver_version != driver_version:
            warnings.append(
                f"driver library version {system.driver_version} differs from kernel module {driver_version}: "
                "Driver/library version mismatch (reboot or reload the nvidia module)")
        driver_version = driver_version or system.driver_version
    cuda_version, cuda_source = cuda_level(root, system, driver_version, cuda_reader)
    return Host(
        root=root.path,
        driver_version=driver_version,
        cuda_version=cuda_version,
        cuda_version_source=cuda_source,
        source=source,
        gpus=tuple(gpus),
        control_nodes=tuple(scan.control_nodes),
        nvml_version=system.nvml_version if system else None,
        open_kernel_module=scan.open_module,
        majors=tuple(scan.majors),
        warnings=tuple(warnings),
        simulated=root.simulated,
        library_paths=paths,
        mig_config_node=scan.config_cap,
        mig_monitor_node=scan.monitor_cap,
        imex_channels=scan.imex_channels,
        feature_nodes=scan.feature_nodes,
    )

