"""A Python stand-in for NVML/libcuda, fed by a preset (``--simulate``, tests, benchmarks).

Implements :class:`nvlow.records.DriverLibrary` exactly as the native probe
does, including the enum-to-token mapping (``BRAND_NAMES``/``ARCH_NAMES``,
the single place these names are defined) and ``None`` for readings NVML
does not support (utilization of a GPU in MIG mode, ECC counters of a GPU
without ECC). Records also carry what ``nvlow serve`` adds for nvidia-docker
1.0's documents: BAR1, the libcuda memory attributes and every GPU pair's
topology (PCIe level, peer-to-peer, NVLinks through the DGX NVSwitches;
:func:`nvlow.simulate.presets.topology_level`); for a GPU in MIG mode the
CUDA-only facts (SM count, shared and constant memory, L2) are None, as
``nvlow serve`` leaves them.

Example:
    >>> from nvlow.simulate.presets import get_preset
    >>> lib = open_simulated_library(get_preset("workstation"))
    >>> g = lib.gpus()[0]
    >>> (g.brand, g.architecture, g.compute_capability, lib.system().cuda_version)
    ('geforce', 'ada', '8.9', '12.6')
    >>> lib.close()
"""
from __future__ import annotations

from ..errors import LibraryError
from ..records import GpuRecord, GpuStatus, MigRecord, PeerLink, ProcessRecord, SystemInfo
from .presets import Preset, SimGpu, nvlink_count, p2p_supported, topology_level

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, Optional, Tuple


#: nvmlBrandType_t value -> lower-case token (shared with the native helper)
BRAND_NAMES: Dict[int, str] = {
    0: "unknown", 1: "quadro", 2: "tesla", 3: "nvs", 4: "grid", 5: "geforce", 6: "titan",
    7: "nvidia_vapps", 8: "nvidia_vpc", 9: "nvidia_vcs", 10: "nvidia_vws", 11: "nvidia_cloud_gaming",
    12: "quadro_rtx", 13: "nvidia_rtx", 14: "nvidia", 15: "geforce_rtx", 16: "titan_rtx",
}

#: nvmlDeviceArchitecture_t value -> lower-case token (shared with the native helper)
ARCH_NAMES: Dict[int, str] = {
    2: "kepler", 3: "maxwell", 4: "pascal", 5: "volta", 6: "turing", 7: "ampere", 8: "ada",
    9: "hopper", 10: "blackwell",
}

_MULTIARCH = {"x86_64": "x86_64-linux-gnu", "aarch64": "aarch64-linux-gnu", "ppc64le": "powerpc64le-linux-gnu"}


def brand_name(value: Optional[int]) -> Optional[str]:
    """Token of an NVML brand value (None for None or an unknown value)."""
    return BRAND_NAMES.get(value) if value is not None else None


def arch_name(value: Optional[int]) -> Optional[str]:
    """Token of an NVML architecture value (None for None or an unknown value)."""
    return ARCH_NAMES.get(value) if value is not None else None


def cuda_version_text(value: Optional[int]) -> Optional[str]:
    """``cuDriverGetVersion`` value as "major.minor" (12040 -> "12.4").

    Example:
        >>> cuda_version_text(12060), cuda_version_text(11080), cuda_version_text(None)
        ('12.6', '11.8', None)
    """
    if value is None or value <= 0:
        return None
    return f"{value // 1000}.{(value % 1000) // 10}"


def simulated_library_paths(preset: Preset) -> Tuple[str, ...]:
    """Host paths the simulated NVML and libcuda are "loaded" from."""
    if preset.wsl:  # the Windows driver's stubs, found through /etc/ld.so.conf.d/ld.wsl.conf
        return ("/usr/lib/wsl/lib/libnvidia-ml.so.1", "/usr/lib/wsl/lib/libcuda.so.1")
    libdir = f"/usr/lib/{_MULTIARCH.get(preset.arch, preset.arch + '-linux-gnu')}"
    version = preset.driver_version or "unknown"
    return (f"{libdir}/libnvidia-ml.so.{version}", f"{libdir}/libcuda.so.{version}")


def peer_links(gpu: SimGpu, gpus: Tuple[SimGpu, ...]) -> Tuple[PeerLink, ...]:
    """``gpu``'s :class:`PeerLink` to every other GPU of ``gpus``, in index order.

    Example:
        >>> from nvlow.simulate.presets import get_preset
        >>> gpus = get_preset("dgx-a100").gpus
        >>> [(p.index, p.topology, p.p2p, p.nvlinks) for p in peer_links(gpus[0], gpus)][:3]
        [(1, 20, True, 12), (2, 40, True, 12), (3, 40, True, 12)]
    """
    return tuple(PeerLink(index=o.index, bus_id=o.bus_id, topology=topology_level(gpu, o),
                          p2p=p2p_supported(gpu, o), nvlinks=nvlink_count(gpu, o))
                 for o in sorted(gpus, key=lambda g: g.index) if o.index != gpu.index)


def _record(gpu: SimGpu, gpus: Tuple[SimGpu, ...]) -> GpuRecord:
    # In MIG mode the GPU is no CUDA device of its own: what only libcuda knows is unknown
    cuda_only = None if gpu.mig_mode else gpu
    migs = tuple(
        MigRecord(index=m.slot, uuid=m.uuid, gpu_instance_id=m.gi, compute_instance_id=m.ci,
                  name=f"{gpu.name} MIG {m.profile}", memory_total=m.memory_total)
        for m in gpu.migs
    ) if gpu.mig_mode else ()
    return GpuRecord(
        index=gpu.index, minor=gpu.minor, uuid=gpu.uuid, name=gpu.name, bus_id=gpu.bus_id,
        pci_device_id=gpu.pci_device_id, brand=brand_name(gpu.brand), architecture=arch_name(gpu.architecture),
        compute_capability=f"{gpu.cc_major}.{gpu.cc_minor}", memory_total=gpu.memory_total,
        persistence_mode=gpu.persistence_mode, mig_enabled=gpu.mig_mode, mig_pending=gpu.mig_mode,
        mig_devices=migs, power_limit=gpu.power_limit, max_clocks_sm=gpu.max_clock_sm,
        max_clocks_memory=gpu.max_clock_memory,
        multiprocessor_count=cuda_only.multiprocessor_count if cuda_only else None,
        numa_node=gpu.numa_node, pcie_max_generation=gpu.pcie_gen, pcie_max_width=gpu.pcie_width,
        bar1_total=gpu.bar1_total, ecc_enabled=gpu.ecc is True,
        global_memory=cuda_only.memory_total if cuda_only else None,
        shared_memory_per_sm=cuda_only.shared_memory_per_sm if cuda_only else None,
        constant_memory=cuda_only.constant_memory if cuda_only else None,
        l2_cache=cuda_only.l2_cache if cuda_only else None, memory_clock=gpu.memory_clock,
        memory_bus_width=gpu.memory_bus_width, peers=peer_links(gpu, gpus),
    )


def _status(gpu: SimGpu) -> GpuStatus:
    # NVML answers NOT_SUPPORTED for whole-GPU utilization while MIG is on.
    util_gpu = None if gpu.mig_mode else gpu.utilization_gpu
    util_mem = None if gpu.mig_mode else gpu.utilization_memory
    # ECC counters answer NOT_SUPPORTED unless ECC is on
    ecc = gpu.ecc_errors if gpu.ecc else (None, None, None)
    return GpuStatus(
        index=gpu.index, power_usage=gpu.power_usage, power_limit=gpu.power_limit,
        temperature=gpu.temperature, utilization_gpu=util_gpu, utilization_memory=util_mem,
        utilization_encoder=gpu.utilization_encoder, utilization_decoder=gpu.utilization_decoder,
        memory_used=gpu.memory_used, memory_total=gpu.memory_total, clock_sm=gpu.clock_sm,
        clock_memory=gpu.clock_memory, pcie_rx=gpu.pcie_rx, pcie_tx=gpu.pcie_tx,
        processes=tuple(ProcessRecord(p.pid, p.name, p.used_memory) for p in gpu.processes),
        bar1_used=gpu.bar1_used, ecc_errors_l1=ecc[0], ecc_errors_l2=ecc[1], ecc_errors_device=ecc[2],
    )


class SimulatedLibrary:
    """NVML/libcuda answers for a preset (a :class:`~nvlow.records.DriverLibrary`)."""

    def __init__(self, preset: Preset) -> None:
        self.preset = preset
        self.loaded_paths: Tuple[str, ...] = simulated_library_paths(preset)
        self._closed = False
        self._records: Optional[Tuple[GpuRecord, ...]] = None

    def _check_open(self) -> None:
        if self._closed:
            raise LibraryError("the simulated NVML library was already shut down")

    def system(self) -> SystemInfo:
        """Driver, NVML and CUDA driver versions of the preset."""
        self._check_open()
        return SystemInfo(driver_version=self.preset.driver_version, nvml_version=self.preset.nvml_version,
                          cuda_version=cuda_version_text(self.preset.cuda_version))

    def gpus(self) -> Tuple[GpuRecord, ...]:
        """Every GPU in NVML index order."""
        self._check_open()
        if self._records is None:
            self._records = tuple(_record(g, self.preset.gpus)
                                  for g in sorted(self.preset.gpus, key=lambda g: g.index))
        return self._records

    def status(self) -> Tuple[GpuStatus, ...]:
        """Live readings (constant values from the preset)."""
        self._check_open()
        return tuple(_status(g) for g in sorted(self.preset.gpus, key=lambda g: g.index))

    def close(self) -> None:
        """Idempotent shutdown."""
        self._closed = True


def open_simulated_library(preset: Preset) -> SimulatedLibrary:
    """The simulated library, failing as the real loader would on driverless presets.

    Example:
        >>> from nvlow.simulate.presets import get_preset
        >>> open_simulated_library(get_preset("no-driver"))
        Traceback (most recent call last):
        ...
        nvlow.errors.LibraryError: cannot load libnvidia-ml.so.1: libnvidia-ml.so.1: cannot open shared object file: No such file or directory
    """
    if not preset.libraries_present:
        raise LibraryError(
            "cannot load libnvidia-ml.so.1: libnvidia-ml.so.1: cannot open shared object file: "
            "No such file or directory",
            hint="install the NVIDIA driver's user-space libraries")
    if not preset.driver_loaded and not preset.wsl:  # WSL2: no kernel module, NVML works through /dev/dxg
        raise LibraryError("nvmlInit failed: Driver Not Loaded (libnvidia-ml.so.1)",
                           hint="load the NVIDIA kernel module: 'modprobe nvidia'")
    return SimulatedLibrary(preset)
