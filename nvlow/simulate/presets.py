"""Named machine presets, shared by ``--simulate`` and the compiled fake libraries in tests.

A preset is pure data. :mod:`nvlow.simulate.hosttree` turns it into a host
tree (/proc, /dev, driver files, ld.so.cache); :mod:`nvlow.simulate.fakelib`
into a Python stand-in for NVML/libcuda; ``tests/fakes`` into a scenario file
the compiled fake ``libnvidia-ml.so.1``/``libcuda.so.1`` read.

Example:
    >>> p = get_preset("dgx-a100")
    >>> (len(p.gpus), p.gpus[3].minor, p.driver_version, p.cuda_version)
    (8, 3, '550.54.15', 12040)
"""
from __future__ import annotations

from ..frozen import Record, replace
from ..errors import UsageError


TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, Optional, Tuple


def md5_hex(data: bytes) -> str:
    """MD5 of ``data`` in hex (names and cache keys, not security): the builtin ``_md5`` module, so
    that the --simulate hot path loads no OpenSSL."""
    try:
        from _md5 import md5  # type: ignore[import-not-found,unused-ignore]
    except ImportError:  # pragma: no cover - CPython built without _md5
        from hashlib import md5
    return md5(data).hexdigest()  # type: ignore[no-any-return,unused-ignore]


def _uuid(seed: str, prefix: str = "GPU") -> str:
    h = md5_hex(seed.encode())
    return f"{prefix}-{h[0:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


class SimMig(Record):
    """A simulated MIG device (GPU instance ``gi``, compute instance ``ci``)."""

    slot: int
    gi: int
    ci: int
    uuid: str
    profile: str  # "1g.10gb"
    memory_total: int  # bytes


class SimProcess(Record):
    pid: int
    name: str
    used_memory: int


class SimGpu(Record):
    """A simulated GPU with everything NVML, CUDA and procfs would report."""

    index: int
    minor: int
    name: str
    uuid: str
    bus_id: str  # NVML spelling: "00000000:07:00.0"
    pci_device_id: int
    brand: int  # nvmlBrandType_t value
    architecture: int  # nvmlDeviceArchitecture_t value
    cc_major: int
    cc_minor: int
    memory_total: int
    multiprocessor_count: int
    persistence_mode: bool = True
    mig_mode: bool = False
    migs: Tuple[SimMig, ...] = ()
    power_limit: int = 400000  # mW
    power_usage: int = 61000
    temperature: int = 33
    utilization_gpu: int = 0
    utilization_memory: int = 0
    memory_used: int = 0
    clock_sm: int = 210
    clock_memory: int = 1215
    max_clock_sm: int = 1410
    max_clock_memory: int = 1215
    numa_node: int = 0
    pcie_gen: int = 4
    pcie_width: int = 16
    processes: Tuple[SimProcess, ...] = ()
    utilization_encoder: int = 0
    utilization_decoder: int = 0
    pcie_rx: int = 0  # KB/s
    pcie_tx: int = 0
    # what nvidia-docker 1.0 showed beyond the above (defaults: an A100-SXM4-40GB)
    ecc: Optional[bool] = True  # None: the GPU has no ECC (NVML answers NOT_SUPPORTED, CUDA 0)
    ecc_errors: Tuple[int, int, int] = (0, 0, 0)  # uncorrected, volatile: L1, L2, device memory
    shared_memory_per_sm: int = 167936  # bytes
    constant_memory: int = 65536  # bytes
    l2_cache: int = 40 * 1024 ** 2  # bytes
    memory_clock: int = 1215000  # peak, kHz
    memory_bus_width: int = 5120  # bits
    bar1_total: int = 64 * 1024 ** 3  # bytes
    bar1_used: int = 2 * 1024 ** 2
    #: active NVLinks, all to NVSwitches (DGX): every GPU with some reaches every other one
    nvlinks: int = 0
    #: GPUs with the same number sit under the same PCIe switch hierarchy (nvidia-smi topo: PXB)
    pcie_switch: Optional[int] = None


class Preset(Record):
    """A simulated machine."""

    name: str
    description: str
    driver_loaded: bool
    driver_version: Optional[str]
    cuda_version: Optional[int]  # cuDriverGetVersion value, 12040
    nvml_version: Optional[str]
    gpus: Tuple[SimGpu, ...] = ()
    open_kernel_module: bool = False
    display: bool = False  # nvidia-modeset present
    uvm_major: int = 510
    caps_major: int = 511
    libraries_present: bool = True
    arch: str = "x86_64"
    #: nvidia-drm loaded: each GPU has /dev/dri/card<drm_first_card + index> and
    #: /dev/dri/renderD<128 + index>, listed under /sys/bus/pci/devices/<bus>/drm/
    drm: bool = False
    #: DRM cards taken before the GPUs' (a server BMC's VGA, which has no render node, is card0)
    drm_first_card: int = 0
    #: IMEX channel nodes /dev/nvidia-caps-imex-channels/channel0..N-1
    imex_channels: int = 0
    #: the driver ships libnvidia-nvvm70.so.4 next to libcuda (R575+; simulated on older versions too)
    nvvm70: bool = False
    #: multi-node devices (nvlow.host.extradevices): /dev/nvidia-nvswitchctl and nvidia-nvswitch0..N-1,
    #: /dev/infiniband/uverbs0..N-1 and rdma_cm, /dev/nvidia-fs0..15 (GDS), /dev/gdrdrv (GDRCopy)
    nvswitches: int = 0
    ib_verbs: int = 0
    gds: bool = False
    gdrcopy: bool = False
    #: a WSL2 host (nvlow.host.wsl): /dev/dxg and the Windows driver under /usr/lib/wsl, no NVIDIA kernel
    #: module (``driver_loaded`` is False) but a working NVML; nvlow.simulate.wsltree writes the tree
    wsl: bool = False


# nvmlGpuTopologyLevel_t values (nvml.h)
TOPOLOGY_INTERNAL, TOPOLOGY_MULTIPLE, TOPOLOGY_HOSTBRIDGE, TOPOLOGY_NODE, TOPOLOGY_SYSTEM = 0, 20, 30, 40, 50


def topology_level(a: SimGpu, b: SimGpu) -> int:
    """nvmlDeviceGetTopologyCommonAncestor of two simulated GPUs: the same switch hierarchy
    (PXB), else the same NUMA node (NODE), else across CPU sockets (SYS).

    Example:
        >>> g = get_preset("dgx-a100").gpus
        >>> topology_level(g[0], g[1]), topology_level(g[0], g[2]), topology_level(g[0], g[4])
        (20, 40, 50)
    """
    if a.index == b.index:
        return TOPOLOGY_INTERNAL
    if a.pcie_switch is not None and a.pcie_switch == b.pcie_switch:
        return TOPOLOGY_MULTIPLE
    if a.numa_node == b.numa_node:
        return TOPOLOGY_NODE
    return TOPOLOGY_SYSTEM


def nvlink_count(a: SimGpu, b: SimGpu) -> int:
    """NVLinks usable between two GPUs through the NVSwitches (none while either is in MIG mode,
    where NVLink peer-to-peer is not supported)."""
    if a.index == b.index or a.mig_mode or b.mig_mode:
        return 0
    return min(a.nvlinks, b.nvlinks)


def p2p_supported(a: SimGpu, b: SimGpu) -> bool:
    """Whether ``cuDeviceCanAccessPeer`` says yes: over NVLink, or over PCIe below a host bridge;
    never in MIG mode.

    Example:
        >>> g = get_preset("dgx-h100-mig").gpus
        >>> p2p_supported(g[2], g[7]), p2p_supported(g[0], g[7])
        (True, False)
    """
    if a.index == b.index or a.mig_mode or b.mig_mode:
        return False
    return nvlink_count(a, b) > 0 or topology_level(a, b) <= TOPOLOGY_HOSTBRIDGE


# nvmlBrandType_t and nvmlDeviceArchitecture_t values (nvml.h, API 12)
BRAND_GEFORCE = 5
BRAND_NVIDIA = 14
ARCH_AMPERE = 7
ARCH_ADA = 8
ARCH_HOPPER = 9
GiB = 1024 ** 3

_A100_BUSES = ("07", "0F", "47", "4E", "87", "90", "B7", "BD")
_H100_BUSES = ("18", "2A", "3A", "5D", "9A", "AB", "BA", "DB")


def _dgx_a100() -> Preset:
    gpus = tuple(
        SimGpu(
            index=i, minor=i, name="NVIDIA A100-SXM4-40GB", uuid=_uuid(f"dgx-a100:{i}"),
            bus_id=f"00000000:{bus}:00.0", pci_device_id=(0x20B0 << 16) | 0x10DE,
            brand=BRAND_NVIDIA, architecture=ARCH_AMPERE, cc_major=8, cc_minor=0,
            memory_total=40 * GiB, multiprocessor_count=108, numa_node=0 if i < 4 else 1,
            nvlinks=12, pcie_switch=i // 2,
        )
        for i, bus in enumerate(_A100_BUSES)
    )
    return Preset(
        name="dgx-a100", description="8x A100-SXM4-40GB, driver 550.54.15, CUDA 12.4",
        driver_loaded=True, driver_version="550.54.15", cuda_version=12040,
        nvml_version="12.550.54.15", gpus=gpus, uvm_major=510, caps_major=511,
        drm=True, drm_first_card=1, nvswitches=6, ib_verbs=8,
    )


def _h100_migs(gpu_index: int, layout: Tuple[Tuple[int, int, str, int], ...]) -> Tuple[SimMig, ...]:
    return tuple(
        SimMig(slot=slot, gi=gi, ci=ci, uuid=_uuid(f"dgx-h100-mig:{gpu_index}:{gi}:{ci}", "MIG"),
               profile=profile, memory_total=mem * GiB)
        for slot, (gi, ci, profile, mem) in enumerate(layout)
    )


def _dgx_h100_mig() -> Preset:
    layouts = {
        # GPU 0: seven 1g.10gb instances
        0: tuple((gi, 0, "1g.10gb", 10) for gi in range(7, 14)),
        # GPU 1: one 3g.40gb, and a 3g.40gb GPU instance split into two compute instances
        1: ((1, 0, "3g.40gb", 40), (2, 0, "1c.3g.40gb", 40), (2, 1, "1c.3g.40gb", 40)),
    }
    gpus = tuple(
        SimGpu(
            index=i, minor=i, name="NVIDIA H100 80GB HBM3", uuid=_uuid(f"dgx-h100-mig:{i}"),
            bus_id=f"00000000:{bus}:00.0", pci_device_id=(0x2330 << 16) | 0x10DE,
            brand=BRAND_NVIDIA, architecture=ARCH_HOPPER, cc_major=9, cc_minor=0,
            memory_total=80 * GiB, multiprocessor_count=132, power_limit=700000,
            numa_node=0 if i < 4 else 1, pcie_gen=5,
            mig_mode=i in layouts, migs=_h100_migs(i, layouts[i]) if i in layouts else (),
            max_clock_sm=1980, max_clock_memory=2619, clock_memory=2619,
            shared_memory_per_sm=233472, l2_cache=50 * 1024 ** 2, memory_clock=2619000,
            bar1_total=128 * GiB, nvlinks=18, pcie_switch=i // 2,
        )
        for i, bus in enumerate(_H100_BUSES)
    )
    return Preset(
        name="dgx-h100-mig",
        description="8x H100 80GB, GPUs 0 and 1 in MIG mode, driver 550.90.07, CUDA 12.4",
        driver_loaded=True, driver_version="550.90.07", cuda_version=12040,
        nvml_version="12.550.90.07", gpus=gpus, uvm_major=509, caps_major=237,
        drm=True, drm_first_card=1, imex_channels=2, nvswitches=4, ib_verbs=8, gds=True, gdrcopy=True,
    )


def _workstation() -> Preset:
    gpu = SimGpu(
        index=0, minor=0, name="NVIDIA GeForce RTX 4090", uuid=_uuid("workstation:0"),
        bus_id="00000000:01:00.0", pci_device_id=(0x2684 << 16) | 0x10DE,
        brand=BRAND_GEFORCE, architecture=ARCH_ADA, cc_major=8, cc_minor=9,
        memory_total=24 * GiB, multiprocessor_count=128, power_limit=450000,
        persistence_mode=False, temperature=41, utilization_gpu=3, memory_used=512 * 1024 ** 2,
        processes=(SimProcess(2210, "/usr/lib/xorg/Xorg", 310 * 1024 ** 2),),
        max_clock_sm=3105, max_clock_memory=10501, clock_memory=405,
        ecc=None, shared_memory_per_sm=102400, l2_cache=72 * 1024 ** 2, memory_clock=10501000,
        memory_bus_width=384, bar1_total=256 * 1024 ** 2, bar1_used=7 * 1024 ** 2, pcie_rx=1000, pcie_tx=3000,
    )
    return Preset(
        name="workstation", description="1x GeForce RTX 4090 with a display, open kernel module 560.35.03, CUDA 12.6",
        driver_loaded=True, driver_version="560.35.03", cuda_version=12060,
        nvml_version="12.560.35.03", gpus=(gpu,), open_kernel_module=True, display=True,
        uvm_major=234, caps_major=509, drm=True, nvvm70=True,
    )


def _no_gpu() -> Preset:
    return Preset(
        name="no-gpu", description="driver 550.54.15 loaded, no GPUs",
        driver_loaded=True, driver_version="550.54.15", cuda_version=12040,
        nvml_version="12.550.54.15", gpus=(),
    )


def _no_driver() -> Preset:
    return Preset(
        name="no-driver", description="no NVIDIA driver installed",
        driver_loaded=False, driver_version=None, cuda_version=None, nvml_version=None,
        gpus=(), libraries_present=False,
    )


def _wsl2() -> Preset:
    gpu = SimGpu(
        index=0, minor=0, name="NVIDIA GeForce RTX 4070 Laptop GPU", uuid=_uuid("wsl2:0"),
        bus_id="00000000:01:00.0", pci_device_id=(0x2820 << 16) | 0x10DE,
        brand=BRAND_GEFORCE, architecture=ARCH_ADA, cc_major=8, cc_minor=9,
        memory_total=8 * GiB, multiprocessor_count=36, power_limit=115000, persistence_mode=False,
        max_clock_sm=2175, max_clock_memory=8001, clock_memory=405, ecc=None, shared_memory_per_sm=102400,
        l2_cache=32 * 1024 ** 2, memory_clock=8001000, memory_bus_width=128, bar1_total=256 * 1024 ** 2,
    )
    # WSL2 reports the Windows driver's version (560.94: the R560 branch, CUDA 12.6)
    return Preset(
        name="wsl2", description="WSL2: 1x GeForce RTX 4070 Laptop behind /dev/dxg, Windows driver 560.94, CUDA 12.6",
        driver_loaded=False, driver_version="560.94", cuda_version=12060, nvml_version="12.560.94",
        gpus=(gpu,), wsl=True,
    )


_BUILDERS = {
    "dgx-a100": _dgx_a100,
    "dgx-h100-mig": _dgx_h100_mig,
    "workstation": _workstation,
    "no-gpu": _no_gpu,
    "no-driver": _no_driver,
    "wsl2": _wsl2,
}
_CACHE: Dict[str, Preset] = {}

PRESET_NAMES: Tuple[str, ...] = tuple(_BUILDERS)


def get_preset(name: str) -> Preset:
    """The preset called ``name``; a :class:`UsageError` listing the names otherwise."""
    if name not in _CACHE:
        builder = _BUILDERS.get(name)
        if builder is None:
            raise UsageError(
                f"unknown simulation preset: {name!r}",
                hint="choose one of: " + ", ".join(PRESET_NAMES),
            )
        _CACHE[name] = builder()
    return _CACHE[name]


def scaled_preset(gpus: int, *, mig: bool = False) -> Preset:
    """A synthetic host with ``gpus`` A100/H100 GPUs (benchmarks; minors 0..gpus-1).

    With ``mig`` every GPU is in MIG mode with seven 1g instances.

    Example:
        >>> len(scaled_preset(64, mig=True).gpus[63].migs)
        7
    """
    base = get_preset("dgx-h100-mig" if mig else "dgx-a100").gpus[0]
    out = []
    for i in range(gpus):
        bus = f"00000000:{(i // 8) + 1:02X}:{i % 8:02X}.0"
        migs = _h100_migs(i, tuple((gi, 0, "1g.10gb", 10) for gi in range(7, 14))) if mig else ()
        out.append(replace(base, index=i, minor=i, uuid=_uuid(f"scaled:{i}"), bus_id=bus,
                           mig_mode=mig, migs=migs, pcie_switch=i // 2))
    return Preset(
        name=f"scaled-{gpus}{'-mig' if mig else ''}", description=f"{gpus} simulated GPUs",
        driver_loaded=True, driver_version="550.54.15", cuda_version=12040,
        nvml_version="12.550.54.15", gpus=tuple(out),
    )
