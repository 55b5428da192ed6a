"""What nvlow asks of the driver libraries, as plain records.

:class:`DriverLibrary` is the seam between discovery and the C layer. Two
implementations exist: :class:`nvlow.native.probe.NativeDriverLibrary` (NVML
and libcuda through cffi) and :class:`nvlow.simulate.fakelib.SimulatedLibrary`
(a Python stand-in fed by a preset). Discovery is written against this
protocol only, so it never knows which one it has.

Every field a GPU or driver does not support is ``None``, never an error.

Example:
    >>> SystemInfo(driver_version="550.54.15", nvml_version=None, cuda_version="12.4").cuda_version
    '12.4'
"""
from __future__ import annotations

from .frozen import Record, field


TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional, Protocol, Tuple

else:
    Protocol = object  # a plain base at run time; type checkers see typing.Protocol


class SystemInfo(Record):
    """Driver-wide versions. ``cuda_version`` is "major.minor" (12040 -> "12.4")."""

    driver_version: Optional[str]
    nvml_version: Optional[str]
    cuda_version: Optional[str]


class MigRecord(Record):
    """One MIG device as NVML reports it."""

    index: int  # slot index under the parent (nvmlDeviceGetMigDeviceHandleByIndex)
    uuid: Optional[str]
    gpu_instance_id: Optional[int]
    compute_instance_id: Optional[int]
    name: Optional[str] = None
    memory_total: Optional[int] = None  # bytes


#: nvmlGpuTopologyLevel_t values: the closest common ancestor of two GPUs on the PCIe tree
TOPOLOGY_INTERNAL, TOPOLOGY_SINGLE, TOPOLOGY_MULTIPLE, TOPOLOGY_HOSTBRIDGE, TOPOLOGY_NODE, TOPOLOGY_SYSTEM = (
    0, 10, 20, 30, 40, 50)


class PeerLink(Record):
    """How one GPU reaches another (a ``GpuRecord.peers`` entry).

    ``topology`` is the nvmlGpuTopologyLevel_t of the pair (0 same board ... 50
    across CPU sockets); ``p2p`` whether peer-to-peer access works between them
    (``cuDeviceCanAccessPeer``, else NVML's P2P read status), over PCIe or
    NVLink; ``nvlinks`` how many active NVLinks join them, directly or through
    NVSwitches (0: none).
    """

    index: int  # the peer's NVML index
    bus_id: Optional[str]  # the peer's bus id, NVML spelling
    topology: Optional[int] = None
    p2p: Optional[bool] = None
    nvlinks: Optional[int] = None


class GpuRecord(Record):
    """Static facts about one GPU from NVML (and libcuda where NVML lacks them)."""

    index: int
    minor: Optional[int]
    uuid: Optional[str]
    name: Optional[str]
    bus_id: Optional[str]  # as NVML spells it: "00000000:07:00.0"
    pci_device_id: Optional[int] = None  # (device << 16) | vendor
    brand: Optional[str] = None  # lower-case token: "tesla", "geforce", "nvidia", ...
    architecture: Optional[str] = None  # "ampere", "hopper", ...
    compute_capability: Optional[str] = None  # "8.0"
    memory_total: Optional[int] = None  # bytes
    persistence_mode: Optional[bool] = None
    mig_enabled: Optional[bool] = None  # current == pending == enabled
    mig_pending: Optional[bool] = None
    mig_devices: Tuple[MigRecord, ...] = ()
    power_limit: Optional[int] = None  # milliwatts
    max_clocks_sm: Optional[int] = None  # MHz
    max_clocks_memory: Optional[int] = None  # MHz
    multiprocessor_count: Optional[int] = None
    numa_node: Optional[int] = None
    pcie_max_generation: Optional[int] = None
    pcie_max_width: Optional[int] = None
    bar1_total: Optional[int] = None  # bytes
    # what nvidia-docker 1.0 read through cudaGetDeviceProperties (libcuda device attributes, NVML fallbacks)
    ecc_enabled: Optional[bool] = None
    global_memory: Optional[int] = None  # bytes, cuDeviceTotalMem (NVML's total also counts reserved memory)
    shared_memory_per_sm: Optional[int] = None  # bytes
    constant_memory: Optional[int] = None  # bytes
    l2_cache: Optional[int] = None  # bytes
    memory_clock: Optional[int] = None  # peak memory clock, kHz
    memory_bus_width: Optional[int] = None  # bits
    #: every other GPU, in index order (empty when unknown)
    peers: Tuple[PeerLink, ...] = ()


class ProcessRecord(Record):
    """A compute process running on a GPU."""

    pid: int
    name: Optional[str]
    used_memory: Optional[int]  # bytes


class GpuStatus(Record):
    """Live readings for one GPU."""

    index: int
    power_usage: Optional[int] = None  # milliwatts
    power_limit: Optional[int] = None  # milliwatts
    temperature: Optional[int] = None  # Celsius
    utilization_gpu: Optional[int] = None  # percent
    utilization_memory: Optional[int] = None
    utilization_encoder: Optional[int] = None
    utilization_decoder: Optional[int] = None
    memory_used: Optional[int] = None  # bytes allocated (nvidia-smi's "Used")
    memory_total: Optional[int] = None
    # bytes the driver and firmware set aside (NVML R510+); None where NVML counts it in memory_used
    memory_reserved: Optional[int] = None
    clock_sm: Optional[int] = None  # MHz
    clock_memory: Optional[int] = None
    pcie_rx: Optional[int] = None  # KB/s
    pcie_tx: Optional[int] = None
    processes: Tuple[ProcessRecord, ...] = field(default_factory=tuple)
    bar1_used: Optional[int] = None  # bytes
    # uncorrected ECC errors since the driver loaded (NVML's volatile counters), per location
    ecc_errors_l1: Optional[int] = None
    ecc_errors_l2: Optional[int] = None
    ecc_errors_device: Optional[int] = None


class DriverLibrary(Protocol):
    """The driver-library facade discovery, status and doctor use."""

    #: absolute host paths of the libraries actually loaded (for doctor/info)
    loaded_paths: Tuple[str, ...]

    def system(self) -> SystemInfo:
        """Driver, NVML and CUDA driver versions."""
        ...

    def gpus(self) -> Tuple[GpuRecord, ...]:
        """Every GPU in NVML index order."""
        ...

    def status(self) -> Tuple[GpuStatus, ...]:
        """Live readings for every GPU."""
        ...

    def close(self) -> None:
        """Shut the libraries down (idempotent)."""
        ...
