"""The /proc, /sys and /dev part of a simulated host tree.

Writes what the NVIDIA kernel module would show for a preset, in the exact
formats of ``nv-procfs.c``/``nv-caps.c``. Device nodes are regular files
holding ``nvlow-simulated-char MAJOR:MINOR`` (read by
:func:`nvlow.host.root.file_node_reader`), so no privileges are needed. With
nvidia-drm (``preset.drm``) each GPU's PCI device gets its ``drm/cardN`` and
``drm/renderDN`` sysfs directories, reached like on a real host through the
``/sys/bus/pci/devices/<bus>`` symlink into ``/sys/devices``.

Example:
    >>> import tempfile
    >>> from nvlow.simulate.presets import get_preset
    >>> with tempfile.TemporaryDirectory() as d:
    ...     write_proc_dev_tree(d, get_preset("dgx-a100"))
    ...     print(open(d + "/dev/nvidia3").read().strip())
    nvlow-simulated-char 195:3
"""
from __future__ import annotations

import os

from ..host.procfs import normalize_bus_id
from ..host.root import SIMULATED_NODE_PREFIX
from .presets import ARCH_HOPPER, Preset, SimGpu

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, List, Optional, Tuple


NVIDIA_MAJOR = 195
DRM_MAJOR = 226
#: the PCI device of a server BMC's VGA (ast), which takes the DRM cards before the GPUs'
BMC_VGA_BUS = "0000:03:00.0"
CAP_CONFIG_MINOR = 1
CAP_MONITOR_MINOR = 2
CAP_FABRIC_IMEX_MINOR = 4323
_MODE_CONFIG = 256  # 0400, printed in decimal by nv-caps.c
_MODE_ACCESS = 292  # 0444

# Other character devices of a typical server, so that exact-name matching is exercised.
_OTHER_CHAR: Tuple[Tuple[int, str], ...] = (
    (1, "mem"), (4, "/dev/vc/0"), (4, "tty"), (4, "ttyS"), (5, "/dev/tty"), (5, "/dev/console"),
    (5, "/dev/ptmx"), (7, "vcs"), (10, "misc"), (13, "input"), (29, "fb"), (89, "i2c"), (128, "ptm"),
    (136, "pts"), (180, "usb"), (188, "ttyUSB"), (189, "usb_device"), (202, "cpu/msr"), (203, "cpu/cpuid"),
    (226, "drm"), (240, "aux"), (241, "hidraw"), (242, "ttyDBC"), (243, "bsg"), (244, "watchdog"),
    (245, "ptp"), (246, "pps"), (247, "rtc"), (248, "dma_heap"), (249, "dax"), (250, "dimmctl"),
    (251, "ndctl"), (252, "tpm"), (253, "gnss"), (254, "gpiochip"),
)
_BLOCK = ((7, "loop"), (8, "sd"), (9, "md"), (11, "sr"), (65, "sd"), (253, "device-mapper"),
          (254, "mdp"), (259, "blkext"))


def cap_gi_minor(gpu_minor: int, gi: int) -> int:
    """nv-caps minor of GI access (the deterministic table of current drivers)."""
    return 3 + 135 * gpu_minor + 9 * gi


def cap_ci_minor(gpu_minor: int, gi: int, ci: int) -> int:
    """nv-caps minor of CI access."""
    return cap_gi_minor(gpu_minor, gi) + 1 + ci


def imex_major(preset: Preset) -> int:
    """A free dynamic major below ``nvidia-caps`` so its line comes first in /proc/devices."""
    used = {preset.uvm_major, preset.caps_major, NVIDIA_MAJOR} | {m for m, _ in _OTHER_CHAR}
    major = preset.caps_major - 1
    while major in used:
        major -= 1
    return major


#: InfiniBand verbs: fixed major 231, minors from 192 (uverbs0); rdma_cm is a misc device (10:58 here)
IB_VERBS_MAJOR = 231
IB_VERBS_BASE_MINOR = 192
MISC_MAJOR = 10
RDMA_CM_MINOR = 58
GDS_NODES = 16


def feature_majors(preset: Preset) -> Dict[str, int]:
    """Free dynamic majors (below the others) for the preset's nvidia-nvswitch, nvidia-fs and gdrdrv."""
    used = {preset.uvm_major, preset.caps_major, NVIDIA_MAJOR, imex_major(preset)} | {m for m, _ in _OTHER_CHAR}
    out: Dict[str, int] = {}
    major = 508
    for name, wanted in (("nvidia-nvswitch", preset.nvswitches > 0), ("nvidia-fs", preset.gds),
                         ("gdrdrv", preset.gdrcopy)):
        if not wanted:
            continue
        while major in used:
            major -= 1
        out[name] = major
        used.add(major)
    return out


def misc_text(preset: Preset) -> str:
    """``/proc/misc`` with rdma_cm when the preset has InfiniBand."""
    lines = [(183, "hw_random"), (200, "tun"), (237, "loop-control"), (227, "mcelog")]
    if preset.ib_verbs:
        lines.append((RDMA_CM_MINOR, "rdma_cm"))
    return "".join(f"{m:3d} {n}\n" for m, n in lines)


def proc_devices_text(preset: Preset) -> str:
    """``/proc/devices`` with the preset's NVIDIA majors among ordinary ones."""
    chars: List[Tuple[int, str]] = list(_OTHER_CHAR)
    if preset.driver_loaded:
        chars += [(NVIDIA_MAJOR, "nvidia"), (NVIDIA_MAJOR, "nvidiactl"), (preset.uvm_major, "nvidia-uvm"),
                  (imex_major(preset), "nvidia-caps-imex-channels"), (preset.caps_major, "nvidia-caps")]
        if preset.display:
            chars.append((NVIDIA_MAJOR, "nvidia-modeset"))
        chars += [(m, n) for n, m in feature_majors(preset).items()]
    if preset.ib_verbs:
        chars.append((IB_VERBS_MAJOR, "infiniband_verbs"))
    # The kernel lists by major; the sort is stable, so equal majors keep the order above.
    lines = ["Character devices:"] + [f"{m:3d} {n}" for m, n in sorted(chars, key=lambda c: c[0])]
    lines += ["", "Block devices:"] + [f"{m:3d} {n}" for m, n in _BLOCK]
    return "\n".join(lines) + "\n"


def version_text(preset: Preset) -> str:
    """``/proc/driver/nvidia/version`` (open-module banner when the preset says so)."""
    if preset.open_kernel_module:
        nvrm = (f"NVIDIA UNIX Open Kernel Module for {preset.arch}  {preset.driver_version}  Release Build  "
                "(dvs-builder@U16-I3-B03-4-3)  Fri Aug 16 21:42:42 UTC 2024")
    else:
        nvrm = f"NVIDIA UNIX {preset.arch} Kernel Module  {preset.driver_version}  Tue Mar  5 22:23:56 UTC 2024"
    return f"NVRM version: {nvrm}\nGCC version:  gcc version 12.2.0 (Debian 12.2.0-14) \n"


def procfs_bus(gpu: SimGpu) -> str:
    """The procfs spelling of the GPU's NVML bus id."""
    bus = normalize_bus_id(gpu.bus_id)
    if bus is None:
        raise ValueError(f"preset GPU {gpu.index} has a malformed bus id: {gpu.bus_id!r}")
    return bus


def _has_gsp(preset: Preset, gpu: SimGpu) -> bool:
    # The open module always runs GSP firmware; Hopper needs it with either module.
    return preset.open_kernel_module or gpu.architecture >= ARCH_HOPPER


def information_text(preset: Preset, gpu: SimGpu) -> str:
    """``/proc/driver/nvidia/gpus/<bus>/information`` in the nv-procfs.c layout."""
    bus = procfs_bus(gpu)
    lines = [
        f"Model: \t\t {gpu.name}", f"IRQ:   \t\t {130 + gpu.minor}", f"GPU UUID: \t {gpu.uuid}",
        "Video BIOS: \t 92.00.45.00.06", "Bus Type: \t PCIe", "DMA Size: \t 47 bits",
        "DMA Mask: \t 0x7fffffffffff", f"Bus Location: \t {bus}", f"Device Minor: \t {gpu.minor}",
    ]
    if _has_gsp(preset, gpu):
        lines.append(f"GPU Firmware: \t {preset.driver_version}")
    lines.append("GPU Excluded:\t No")
    return "\n".join(lines) + "\n"


_PARAMS = (
    ("ResmanDebugLevel", "4294967295"), ("RmLogonRC", "1"), ("ModifyDeviceFiles", "1"),
    ("DeviceFileUID", "0"), ("DeviceFileGID", "0"), ("DeviceFileMode", "438"), ("InitializeSystemMemoryAllocations", "1"),
    ("UsePageAttributeTable", "4294967295"), ("EnableMSI", "1"), ("EnablePCIeGen3", "0"),
    ("MemoryPoolSize", "0"), ("KMallocHeapMaxSize", "0"), ("VMallocHeapMaxSize", "0"),
    ("IgnoreMMIOCheck", "0"), ("EnableStreamMemOPs", "0"), ("EnableUserNUMAManagement", "1"),
    ("NvLinkDisable", "0"), ("RmProfilingAdminOnly", "1"), ("PreserveVideoMemoryAllocations", "0"),
    ("EnableS0ixPowerManagement", "0"), ("DynamicPowerManagement", "3"), ("RegisterPCIDriver", "1"),
    ("EnablePCIERelaxedOrderingMode", "0"), ("EnableResizableBar", "0"), ("EnableGpuFirmware", "18"),
    ("EnableGpuFirmwareLogs", "2"), ("EnableDbgBreakpoint", "0"), ("RegistryDwords", '""'),
    ("RmMsg", '""'), ("GpuBlacklist", '""'), ("TemporaryFilePath", '""'), ("ExcludedGpus", '""'),
)


def params_text() -> str:
    """``/proc/driver/nvidia/params`` of a default install."""
    return "".join(f"{k}: {v}\n" for k, v in _PARAMS)


def _access_text(minor: int, mode: int) -> str:
    return f"DeviceFileMinor: {minor}\nDeviceFileMode: {mode}\nDeviceFileModify: 1\n"


def mig_minors_text(max_gpu_minor: int) -> str:
    """``/proc/driver/nvidia-caps/mig-minors``: the whole static table, as the driver prints it."""
    lines = [f"config {CAP_CONFIG_MINOR}", f"monitor {CAP_MONITOR_MINOR}"]
    for n in range(max(31, max_gpu_minor) + 1):
        for g in range(15):
            lines.append(f"gpu{n}/gi{g}/access {cap_gi_minor(n, g)}")
            lines += [f"gpu{n}/gi{g}/ci{c}/access {cap_ci_minor(n, g, c)}" for c in range(8)]
    return "\n".join(lines) + "\n"


def _write(path: str, text: str, mode: int = 0o444) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if os.path.lexists(path):
        os.unlink(path)  # read-only files from an earlier write
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(path, mode)


def _node(dest: str, path: str, major: int, minor: int, mode: int = 0o666) -> None:
    _write(os.path.join(dest, path.lstrip("/")),
           SIMULATED_NODE_PREFIX.decode() + f"{major}:{minor}\n", mode)


def drm_card_minor(preset: Preset, gpu: SimGpu) -> int:
    """N of the GPU's ``/dev/dri/cardN``."""
    return preset.drm_first_card + gpu.index


def drm_render_minor(gpu: SimGpu) -> int:
    """N of the GPU's ``/dev/dri/renderDN`` (render minors start at 128)."""
    return 128 + gpu.index


def _sysfs_drm(dest: str, bus: str, names: Tuple[str, ...], minors: Tuple[int, ...],
               numa_node: Optional[int] = None) -> None:
    """``/sys/devices/pci0000:00/<bus>/drm/<name>/dev`` (and ``numa_node``) plus the
    ``/sys/bus/pci/devices/<bus>`` link."""
    device = f"sys/devices/pci0000:00/{bus}"
    for name, minor in zip(names, minors):
        _write(os.path.join(dest, device, "drm", name, "dev"), f"{DRM_MAJOR}:{minor}\n")
    if numa_node is not None:
        _write(os.path.join(dest, device, "numa_node"), f"{numa_node}\n")
    link = os.path.join(dest, "sys/bus/pci/devices", bus)
    os.makedirs(os.path.dirname(link), exist_ok=True)
    if os.path.lexists(link):
        os.unlink(link)
    os.symlink(f"../../../devices/pci0000:00/{bus}", link)


def _drm(dest: str, preset: Preset) -> None:
    for card in range(preset.drm_first_card):  # the BMC's VGA: a card, no render node, not an NVIDIA GPU
        _sysfs_drm(dest, BMC_VGA_BUS, (f"card{card}",), (card,))
        _node(dest, f"/dev/dri/card{card}", DRM_MAJOR, card, 0o660)
    for gpu in preset.gpus:
        card, render = drm_card_minor(preset, gpu), drm_render_minor(gpu)
        _sysfs_drm(dest, procfs_bus(gpu), (f"card{card}", f"renderD{render}"), (card, render), gpu.numa_node)
        _node(dest, f"/dev/dri/card{card}", DRM_MAJOR, card, 0o660)
        _node(dest, f"/dev/dri/renderD{render}", DRM_MAJOR, render, 0o666)


def _mig_caps(preset: Preset) -> Dict[str, Tuple[int, int]]:
    """capabilities-tree path -> (cap minor, mode) for every created GPU/compute instance."""
    caps: Dict[str, Tuple[int, int]] = {}
    for gpu in preset.gpus:
        if not gpu.mig_mode:
            continue
        for mig in gpu.migs:
            caps[f"gpu{gpu.minor}/mig/gi{mig.gi}/access"] = (cap_gi_minor(gpu.minor, mig.gi), _MODE_ACCESS)
            caps[f"gpu{gpu.minor}/mig/gi{mig.gi}/ci{mig.ci}/access"] = (
                cap_ci_minor(gpu.minor, mig.gi, mig.ci), _MODE_ACCESS)
    return caps


def _feature_nodes(dest: str, preset: Preset) -> None:
    """The multi-node nodes: NVSwitch (ctl minor 255), InfiniBand verbs and rdma_cm, GDS, GDRCopy."""
    majors = feature_majors(preset)
    if preset.nvswitches:
        _node(dest, "/dev/nvidia-nvswitchctl", majors["nvidia-nvswitch"], 255)
        for n in range(preset.nvswitches):
            _node(dest, f"/dev/nvidia-nvswitch{n}", majors["nvidia-nvswitch"], n)
    if preset.ib_verbs:
        for n in range(preset.ib_verbs):
            _node(dest, f"/dev/infiniband/uverbs{n}", IB_VERBS_MAJOR, IB_VERBS_BASE_MINOR + n)
        _node(dest, "/dev/infiniband/rdma_cm", MISC_MAJOR, RDMA_CM_MINOR)
    if preset.gds:
        for n in range(GDS_NODES):
            _node(dest, f"/dev/nvidia-fs{n}", majors["nvidia-fs"], n)
    if preset.gdrcopy:
        _node(dest, "/dev/gdrdrv", majors["gdrdrv"], 0)


def write_proc_dev_tree(dest: str, preset: Preset) -> None:
    """Write the preset's ``/proc`` and ``/dev`` under the directory ``dest``.

    Nothing under ``/proc/driver`` and no NVIDIA nodes for a driverless preset.
    """
    _write(os.path.join(dest, "proc/devices"), proc_devices_text(preset))
    _write(os.path.join(dest, "proc/misc"), misc_text(preset))
    os.makedirs(os.path.join(dest, "dev"), exist_ok=True)
    if not preset.driver_loaded:
        return
    drv = os.path.join(dest, "proc/driver/nvidia")
    _write(os.path.join(drv, "version"), version_text(preset))
    _write(os.path.join(drv, "params"), params_text())
    _write(os.path.join(drv, "registry"), 'Binary: ""\n')
    for gpu in preset.gpus:
        gdir = os.path.join(drv, "gpus", procfs_bus(gpu))
        _write(os.path.join(gdir, "information"), information_text(preset, gpu))
        _write(os.path.join(gdir, "registry"), 'Binary: ""\n')
        _write(os.path.join(gdir, "power"), "Runtime D3 status:          Not supported\n"
                                           "Video Memory:               Active\n")
        _node(dest, f"/dev/nvidia{gpu.minor}", NVIDIA_MAJOR, gpu.minor)

    caps_dir = os.path.join(drv, "capabilities")
    _write(os.path.join(caps_dir, "mig/config"), _access_text(CAP_CONFIG_MINOR, _MODE_CONFIG), 0o400)
    _write(os.path.join(caps_dir, "mig/monitor"), _access_text(CAP_MONITOR_MINOR, _MODE_ACCESS))
    _write(os.path.join(caps_dir, "fabric-imex-mgmt"), _access_text(CAP_FABRIC_IMEX_MINOR, _MODE_CONFIG), 0o400)
    max_minor: Optional[int] = max((g.minor for g in preset.gpus), default=None)
    caps_root = os.path.join(dest, "proc/driver/nvidia-caps")
    _write(os.path.join(caps_root, "mig-minors"), mig_minors_text(max_minor or 0))
    _write(os.path.join(caps_root, "nvlink-minors"), "fabric-mgmt 0\n")
    _write(os.path.join(caps_root, "sys-minors"), f"fabric-imex-mgmt {CAP_FABRIC_IMEX_MINOR}\n")

    _node(dest, "/dev/nvidiactl", NVIDIA_MAJOR, 255)
    _node(dest, "/dev/nvidia-uvm", preset.uvm_major, 0)
    _node(dest, "/dev/nvidia-uvm-tools", preset.uvm_major, 1)
    if preset.display:
        _node(dest, "/dev/nvidia-modeset", NVIDIA_MAJOR, 254)
    if preset.drm:
        _drm(dest, preset)
    for channel in range(preset.imex_channels):
        _node(dest, f"/dev/nvidia-caps-imex-channels/channel{channel}", imex_major(preset), channel)
    _feature_nodes(dest, preset)
    caps = _mig_caps(preset)
    if caps:
        # nvidia-modprobe creates the cap nodes (libnvidia-container asks it to): config 0400, others 0444.
        _node(dest, f"/dev/nvidia-caps/nvidia-cap{CAP_CONFIG_MINOR}", preset.caps_major, CAP_CONFIG_MINOR, 0o400)
        _node(dest, f"/dev/nvidia-caps/nvidia-cap{CAP_MONITOR_MINOR}", preset.caps_major, CAP_MONITOR_MINOR, 0o444)
    for rel, (minor, mode) in sorted(caps.items()):
        _write(os.path.join(caps_dir, rel), _access_text(minor, mode))
        _node(dest, f"/dev/nvidia-caps/nvidia-cap{minor}", preset.caps_major, minor, 0o444)
