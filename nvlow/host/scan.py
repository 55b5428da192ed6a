"""The /proc and /dev scanner: what the NVIDIA kernel module says, checked against /dev.

Thin readers around :mod:`nvlow.host.procfs`. Every node is checked to be a
character device with the major:minor /proc implies (libnvidia-container
refuses mismatches as ``invalid device node``); a node that fails is reported
in ``warnings`` and not used. The MIG capability nodes are read by
:mod:`nvlow.host.migcaps` through the same node checks.

No device node is ever reached through a symbolic link: ``/dev/nvidiaN``,
the control nodes, the MIG capability nodes, a GPU's DRM nodes (named by
``/sys/bus/pci/devices/<bus>/drm/``) and the IMEX channels under
``/dev/nvidia-caps-imex-channels`` must be character devices themselves (as the
toolkit's char-device locator, which uses ``lstat``, ``internal/devices/devices.go``).
Under ``--root`` a followed link would leave the tree: ``dev/nvidia11 -> /dev/kmsg``
with ``1 nvidia`` in the tree's /proc/devices is 1:11, the host's kernel log.

Under a root other than ``/`` the tree's /proc/devices is not the running
kernel's, so a node is also refused when its major is a statically assigned one
that the running kernel's ``/proc/devices`` gives to a non-NVIDIA driver
(``1 mem``, ``4 tty``, ``10 misc``...; :func:`foreign_major`), and when its path
resolves outside the root (a symlinked ``dev`` directory). Under ``/`` the
tree's /proc/devices *is* the kernel's, so the majors are already the kernel's.

Example:
    >>> import tempfile
    >>> from nvlow.host.root import file_node_reader
    >>> from nvlow.simulate.presets import get_preset
    >>> from nvlow.simulate.proctree import write_proc_dev_tree
    >>> with tempfile.TemporaryDirectory() as d:
    ...     write_proc_dev_tree(d, get_preset("workstation"))
    ...     scan = scan_host(HostRoot(d, node_reader=file_node_reader))
    >>> (scan.driver_version, scan.open_module, scan.gpus[0].bus_id, scan.gpus[0].node.container_path)
    ('560.35.03', True, '0000:01:00.0', '/dev/nvidia0')
"""
from __future__ import annotations

import os

from ..frozen import Record, replace
from ..errors import DriverNotLoaded, HostError
from .migcaps import MigCap as MigCap  # noqa: F401 - re-exported for ``from nvlow.host.scan import MigCap``
from .migcaps import scan_mig_caps
from ..model import DeviceNode
from .procfs import (MAX_MINOR, device_names_by_major, normalize_bus_id, parse_bus_id, parse_devices,
                     parse_driver_version, parse_drm_node_name, parse_gpu_information, parse_imex_channel_name)
from .extradevices import FEATURE_DEVICE_NAMES, scan_feature_nodes
from .root import HostRoot, read_regular
from ..text import numbered

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Dict, List, Mapping, Optional, Sequence, Set, Tuple

    from ..records import GpuRecord

    Runner = Callable[[List[str]], int]


#: nvidia-modprobe hard-codes this major; used when /proc/devices lacks the name
NVIDIA_MAJOR = 195
CTL_MINOR = 255
MODESET_MINOR = 254
#: the DRM char major, fixed (include/uapi/linux/major.h ``DRM_MAJOR``); used when /proc/devices lacks ``drm``
DRM_MAJOR = 226
IMEX_CHANNELS_DIR = "/dev/nvidia-caps-imex-channels"
UVM_MISSING = ("{path} is missing: CUDA will fail in containers; run 'nvidia-modprobe -u -c=0' "
               "as root or load nvidia-uvm")
_EXTRA_PATH = "/usr/bin:/usr/sbin:/bin:/sbin:/usr/local/bin:/usr/local/sbin"
#: the running kernel's device table (never read under the root), to judge the majors of a tree other than ``/``
KERNEL_DEVICES = "/proc/devices"

#: the /proc/devices names a node of each kind may have its major from, in the running kernel
KIND_DEVICE_NAMES: Dict[str, Tuple[str, ...]] = {
    "gpu": ("nvidia", "nvidiactl", "nvidia-frontend"),
    "ctl": ("nvidia", "nvidiactl", "nvidia-frontend"),
    "modeset": ("nvidia", "nvidiactl", "nvidia-frontend", "nvidia-modeset"),
    "uvm": ("nvidia-uvm",),
    "uvm-tools": ("nvidia-uvm",),
    "cap": ("nvidia-caps",),
    "imex": ("nvidia-caps-imex-channels",),
    "drm": ("drm",),
}
KIND_DEVICE_NAMES.update(FEATURE_DEVICE_NAMES)  # gds, mofed, gdrcopy, nvswitch (nvlow.host.extradevices)


def is_dynamic_major(major: int) -> bool:
    """Whether the kernel hands ``major`` out at run time (``fs/char_dev.c``: 234-254, then 384-511).

    Example:
        >>> is_dynamic_major(1), is_dynamic_major(195), is_dynamic_major(510)
        (False, False, True)
    """
    return 234 <= major <= 254 or 384 <= major <= 511


def foreign_major(kernel: Mapping[int, Tuple[str, ...]], major: int, kind: str) -> Optional[Tuple[str, ...]]:
    """The running kernel's names for ``major`` when they make it a well-known non-NVIDIA major for
    a node of ``kind`` (statically assigned, registered, and under none of the kind's names), else None.

    Dynamic majors are not judged: their numbers differ from boot to boot, and a tree from
    another machine legitimately names them otherwise.

    Example:
        >>> foreign_major({1: ("mem",), 195: ("nvidia", "nvidiactl")}, 1, "gpu")
        ('mem',)
        >>> foreign_major({1: ("mem",), 195: ("nvidia", "nvidiactl")}, 195, "ctl") is None
        True
    """
    names = kernel.get(major)
    if not names or is_dynamic_major(major):
        return None
    wanted = KIND_DEVICE_NAMES.get(kind, ())
    return None if any(n in wanted for n in names) else names


class ProcGpu(Record):
    """A GPU as procfs lists it (``bus_id`` in the procfs spelling)."""

    bus_id: str
    minor: Optional[int]
    uuid: Optional[str]
    model: Optional[str]
    excluded: Optional[bool]
    firmware: Optional[str]
    node: Optional[DeviceNode]
    #: ``/dev/dri/cardN`` then ``/dev/dri/renderDN``, from ``/sys/bus/pci/devices/<bus>/drm/``
    drm_nodes: Tuple[DeviceNode, ...] = ()


class ProcScan(Record):
    """Everything the kernel side tells about the NVIDIA driver, GPUs and nodes."""

    driver_version: Optional[str]
    open_module: Optional[bool]
    majors: Tuple[Tuple[str, int], ...]
    gpus: Tuple[ProcGpu, ...]  # PCI bus order = NVML index order
    control_nodes: Tuple[DeviceNode, ...]
    mig_caps: Tuple[MigCap, ...] = ()
    config_cap: Optional[DeviceNode] = None
    monitor_cap: Optional[DeviceNode] = None
    warnings: Tuple[str, ...] = ()
    #: every checked /dev/nvidiaN node, by minor order (also those procfs gave no minor for)
    gpu_nodes: Tuple[DeviceNode, ...] = ()
    #: checked ``/dev/nvidia-caps-imex-channels/channelN`` nodes, by channel number
    imex_channels: Tuple[DeviceNode, ...] = ()
    #: checked multi-node feature nodes (kind gds, mofed, gdrcopy, nvswitch; nvlow.host.extradevices)
    feature_nodes: Tuple[DeviceNode, ...] = ()

    def major(self, name: str) -> Optional[int]:
        """Char major for an exact /proc/devices name."""
        return dict(self.majors).get(name)


def kernel_device_names(path: str = KERNEL_DEVICES) -> Optional[Dict[int, Tuple[str, ...]]]:
    """The running kernel's character majors and their names (``/proc/devices``, never under a
    root), or None when it cannot be read."""
    try:
        return device_names_by_major(read_regular(path).decode("utf-8", "replace"))
    except HostError:
        return None


class _Scanner:
    def __init__(self, root: HostRoot) -> None:
        self.root = root
        self.warnings: List[str] = []
        #: host paths whose node check found nothing at all
        self.missing: Set[str] = set()
        #: host paths that exist but could not be read (each already has its warning)
        self.unreadable: Set[str] = set()
        self._kernel: Optional[Dict[int, Tuple[str, ...]]] = None
        self._kernel_read = False

    def absent(self, path: str) -> str:
        """"missing" or "unreadable", for a path :meth:`read` returned None for."""
        return "unreadable" if path in self.unreadable else "missing"

    def kernel_majors(self) -> Optional[Dict[int, Tuple[str, ...]]]:
        """The running kernel's majors, read once; None under ``/`` (the tree's file is the kernel's)."""
        if self.root.is_default:
            return None
        if not self._kernel_read:
            self._kernel_read = True
            self._kernel = kernel_device_names(KERNEL_DEVICES)
            if self._kernel is None:
                self.warnings.append(f"cannot read the running kernel's {KERNEL_DEVICES}: the majors of the "
                                     f"device nodes under {self.root.path} are checked against its own only")
        return self._kernel

    def read(self, path: str) -> Optional[str]:
        try:
            return self.root.read_text_optional(path)
        except HostError as exc:
            self.warnings.append(str(exc))
            self.unreadable.add(path)
            return None

    def listdir(self, path: str) -> List[str]:
        """Sorted names in a host directory; empty (with a warning when unreadable) otherwise."""
        try:
            return self.root.listdir(path)
        except HostError as exc:
            self.warnings.append(str(exc))
            return []

    def node(self, path: str, major: Optional[int], minor: int, kind: str) -> Optional[DeviceNode]:
        """The checked node at ``path``, or None (with a warning when it is wrong).

        A symbolic link at ``path`` is rejected, never followed; so is, under a root other
        than ``/``, a node with a well-known non-NVIDIA major of the running kernel
        (:func:`foreign_major`) or a path that resolves outside the root.
        """
        real = self.root.host(path)
        info = self.root.node(path)
        if info is None:
            if self.root.is_link(path):  # a dangling link, for a reader that follows links
                self.warnings.append(f"{real} is a symbolic link, not a character device; not used")
                return None
            self.missing.add(path)
            return None
        if info.is_link or self.root.is_link(path):
            self.warnings.append(f"{real} is a symbolic link, not a character device; not used")
            return None
        if not info.is_char:
            self.warnings.append(f"{real} is not a character device; not used")
            return None
        if major is None:
            return None
        if (info.major, info.minor) != (major, minor):
            self.warnings.append(f"{real} is {info.major}:{info.minor}, expected {major}:{minor} "
                                 "from /proc/devices; not used")
            return None
        kernel = self.kernel_majors()
        foreign = foreign_major(kernel, major, kind) if kernel is not None else None
        if foreign is not None:
            self.warnings.append(f"{real} is {major}:{minor}, but the running kernel's {KERNEL_DEVICES} gives "
                                 f"major {major} to {', '.join(foreign)}, not to "
                                 f"{' or '.join(KIND_DEVICE_NAMES.get(kind, (kind,)))}; not used")
            return None
        if not self.root.contains(real):
            self.warnings.append(f"{real} resolves to {os.path.realpath(real)}, outside {self.root.path}; "
                                 "not used")
            return None
        return DeviceNode(real, path, major, minor, kind)


def _gpus(sc: _Scanner, nvidia_major: int) -> Tuple[List[ProcGpu], List[DeviceNode]]:
    found: List[Tuple[Tuple[int, int, int, int], ProcGpu]] = []
    for name in sc.root.listdir("/proc/driver/nvidia/gpus"):
        path = f"/proc/driver/nvidia/gpus/{name}/information"
        real = sc.root.host(path)
        text = sc.read(path)
        info = parse_gpu_information(text or "")
        parts = parse_bus_id(name) or (parse_bus_id(info.bus_location) if info.bus_location else None)
        if parts is None:
            sc.warnings.append(f"{sc.root.host('/proc/driver/nvidia/gpus/' + name)} is not named by a PCI bus id; "
                               "skipped")
            continue
        bus = normalize_bus_id(name) or info.bus_location or ""
        if text is None:
            sc.warnings.append(f"{real} is {sc.absent(path)}")
        elif not info.fields:
            sc.warnings.append(f"{real} is malformed (no 'Key: value' lines)")
        elif info.bus_location and info.bus_location != bus:
            sc.warnings.append(f"{real} says Bus Location {info.bus_location}; using the directory name {bus}")
        found.append((parts, ProcGpu(bus, info.minor, info.uuid, info.model, info.excluded, info.firmware, None)))
    found.sort(key=lambda item: item[0])
    gpus = [g for _, g in found]

    minors_in_dev = sorted(n for n in (numbered(name, "nvidia") for name in sc.root.listdir("/dev"))
                           if n is not None and n <= MAX_MINOR)
    gpu_nodes = [n for n in (sc.node(f"/dev/nvidia{m}", nvidia_major, m, "gpu") for m in minors_in_dev)
                 if n is not None]
    by_minor = {n.minor: n for n in gpu_nodes}
    # Old drivers print no Device Minor. Infer it only by elimination: exactly one
    # GPU without a minor and exactly one checked /dev/nvidiaN node nobody claims.
    unknown = [i for i, g in enumerate(gpus) if g.minor is None]
    unclaimed = sorted(set(by_minor) - {g.minor for g in gpus if g.minor is not None})
    if len(unknown) == 1 and len(unclaimed) == 1:
        g = gpus[unknown[0]]
        gpus[unknown[0]] = ProcGpu(g.bus_id, unclaimed[0], g.uuid, g.model, g.excluded, g.firmware, None)
    elif unknown:
        sc.warnings.append(f"no Device Minor for GPU(s) {', '.join(gpus[i].bus_id for i in unknown)} "
                           "(old driver): their /dev/nvidiaN node is unknown without NVML")
    seen: Dict[int, str] = {}
    for i, g in enumerate(gpus):
        if g.minor is None:
            continue
        if g.minor in seen:
            sc.warnings.append(f"GPUs {seen[g.minor]} and {g.bus_id} both claim Device Minor {g.minor}")
        seen.setdefault(g.minor, g.bus_id)
        node = by_minor.get(g.minor)
        if g.minor not in minors_in_dev:
            sc.warnings.append(f"{sc.root.host(f'/dev/nvidia{g.minor}')} is missing for GPU {g.bus_id}")
        gpus[i] = ProcGpu(g.bus_id, g.minor, g.uuid, g.model, g.excluded, g.firmware, node)
    return gpus, gpu_nodes


def scan_drm_nodes(sc: _Scanner, bus: str, drm_major: int) -> Tuple[DeviceNode, ...]:
    """The checked DRM nodes of the GPU at PCI ``bus`` (procfs spelling): every ``cardN`` and
    ``renderDN`` entry of ``/sys/bus/pci/devices/<bus>/drm/`` names ``/dev/dri/<entry>``, char
    ``drm_major``:N -- the toolkit's rule (``internal/info/drm/drm_devices.go``). Cards first, then
    render nodes, by minor. No sysfs directory (nvidia-drm not loaded, no /sys under the root) is
    no nodes and no warning; a listed node that is missing or wrong is a warning."""
    sysdir = f"/sys/bus/pci/devices/{bus}/drm"
    entries: List[Tuple[Tuple[str, int], str]] = []
    for name in sc.listdir(sysdir):
        parsed = parse_drm_node_name(name)
        if parsed is not None:
            entries.append((parsed, name))
    out: List[DeviceNode] = []
    for (_, minor), name in sorted(entries):
        path = f"/dev/dri/{name}"
        node = sc.node(path, drm_major, minor, "drm")
        if node is not None:
            out.append(node)
        elif path in sc.missing:
            sc.warnings.append(f"{sc.root.host(path)} is missing for GPU {bus} "
                               f"({sc.root.host(sysdir)} lists {name})")
    return tuple(out)


def scan_imex_channels(sc: _Scanner, imex_major: Optional[int]) -> Tuple[DeviceNode, ...]:
    """The checked ``/dev/nvidia-caps-imex-channels/channelN`` nodes (char ``imex_major``:N, the major
    of the exact /proc/devices name ``nvidia-caps-imex-channels``; "minor number is same as channel",
    open-gpu-kernel-modules ``nv-caps-imex.c``), by N -- the toolkit's ``all`` (``pkg/nvcdi/lib-imex.go``).
    The module only registers the major; the nodes exist where an administrator, the module option
    ``NVreg_CreateImexChannel0`` or libnvidia-container made them."""
    numbered: List[Tuple[int, str]] = []
    for name in sc.listdir(IMEX_CHANNELS_DIR):
        channel = parse_imex_channel_name(name)
        if channel is not None:
            numbered.append((channel, name))
    numbered.sort()
    if not numbered:
        return ()
    if imex_major is None:
        sc.warnings.append(f"/proc/devices has no 'nvidia-caps-imex-channels' device; the IMEX channel nodes "
                           f"under {sc.root.host(IMEX_CHANNELS_DIR)} are not used")
        return ()
    nodes = (sc.node(f"{IMEX_CHANNELS_DIR}/{name}", imex_major, n, "imex") for n, name in numbered)
    return tuple(n for n in nodes if n is not None)


def _modprobe_allowed(root: HostRoot) -> Optional[str]:
    """Host path of an nvidia-modprobe we may run (root, or setuid), else None."""
    path = root.which("nvidia-modprobe", (os.environ.get("PATH") or "") + ":" + _EXTRA_PATH)
    if path is None:
        return None
    try:
        setuid = bool(os.stat(root.host(path)).st_mode & 0o4000)
    except OSError:
        return None
    return path if setuid or os.geteuid() == 0 else None


def _default_runner(argv: List[str]) -> int:
    import subprocess

    try:
        return subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, timeout=30, check=False).returncode
    except subprocess.TimeoutExpired:
        return 124
    except OSError:
        return 127


def scan_host(root: HostRoot, *, load_uvm: bool = True, runner: Optional[Runner] = None) -> ProcScan:
    """Scan ``/proc`` and ``/dev`` under ``root``.

    When ``/dev/nvidia-uvm`` is missing and ``load_uvm`` is set,
    ``nvidia-modprobe -u -c=0`` is run through ``runner`` and the host
    rescanned -- only on the real root ``/`` (or when a ``runner`` is passed,
    which then stands for whatever loads UVM for that root) and only when
    nvidia-modprobe exists and may run (we are root, or it is setuid).

    Raises :class:`DriverNotLoaded` when neither the version file nor an
    ``nvidia``/``nvidia-frontend`` major exists, :class:`HostError` when the
    driver files exist but nothing usable could be read from them.
    """
    sc = _Scanner(root)
    devices_text = sc.read("/proc/devices")
    majors = parse_devices(devices_text) if devices_text is not None else {}
    version_path = "/proc/driver/nvidia/version"
    version_text = sc.read(version_path)
    nvidia_major = majors.get("nvidia", majors.get("nvidiactl", majors.get("nvidia-frontend")))
    if version_text is None and nvidia_major is None and version_path in sc.unreadable:
        reason = next((w for w in sc.warnings if w.startswith((root.host(version_path), "cannot read"))), "")
        raise HostError(f"no usable NVIDIA driver information under {root.path}: {reason}",
                        hint="point --root at a host tree whose /proc files are the kernel's")
    if version_text is None and nvidia_major is None:
        raise DriverNotLoaded(f"NVIDIA kernel module not loaded (no {version_path} under {root.path})",
                              hint="install the NVIDIA driver and load it: 'modprobe nvidia' (or run nvidia-smi "
                                   "once as root)")
    version = parse_driver_version(version_text or "")
    if version_text is None:
        sc.warnings.append(f"{root.host(version_path)} is {sc.absent(version_path)}; the driver version is unknown")
    elif version is None:
        sc.warnings.append(f"{root.host(version_path)} is malformed (no NVRM version banner)")
    if devices_text is None:
        sc.warnings.append(f"{root.host('/proc/devices')} is {sc.absent('/proc/devices')}; "
                           f"assuming major {NVIDIA_MAJOR}")
    elif nvidia_major is None:
        sc.warnings.append(f"{root.host('/proc/devices')} lists no 'nvidia' or 'nvidia-frontend' character "
                           f"device; assuming major {NVIDIA_MAJOR}")
    major = nvidia_major if nvidia_major is not None else NVIDIA_MAJOR

    gpus, gpu_nodes = _gpus(sc, major)
    drm_major = majors.get("drm", DRM_MAJOR)
    gpus = [replace(g, drm_nodes=scan_drm_nodes(sc, g.bus_id, drm_major)) for g in gpus]
    if version is None and nvidia_major is None and not gpus:
        raise HostError(f"no usable NVIDIA driver information under {root.path}: {root.host(version_path)} "
                        "is malformed and /proc/devices lists no nvidia device",
                        hint="check that the NVIDIA kernel module is loaded ('lsmod | grep nvidia')")

    control: List[DeviceNode] = []
    ctl = sc.node("/dev/nvidiactl", major, CTL_MINOR, "ctl")
    if ctl is None and "/dev/nvidiactl" in sc.missing:
        sc.warnings.append(f"{root.host('/dev/nvidiactl')} is missing: run 'nvidia-modprobe -c 0' or "
                           "'nvidia-smi' once as root")
    uvm_major = majors.get("nvidia-uvm")
    uvm = sc.node("/dev/nvidia-uvm", uvm_major, 0, "uvm")
    if uvm is None and load_uvm and (root.is_default or runner is not None):
        modprobe = _modprobe_allowed(root)
        if modprobe is not None:
            try:
                rc = (runner or _default_runner)([modprobe, "-u", "-c=0"])
            except OSError as exc:
                rc = 127
                sc.warnings.append(f"cannot run {modprobe}: {exc}")
            if rc == 0:
                return scan_host(root, load_uvm=False, runner=runner)
            sc.warnings.append(f"'{modprobe} -u -c=0' failed (exit {rc})")
    if uvm is None:
        sc.warnings.append(UVM_MISSING.format(path=root.host("/dev/nvidia-uvm")))
    tools = sc.node("/dev/nvidia-uvm-tools", uvm_major, 1, "uvm-tools") if uvm is not None else None
    modeset = sc.node("/dev/nvidia-modeset", major, MODESET_MINOR, "modeset")
    control += [n for n in (ctl, uvm, tools, modeset) if n is not None]

    caps, config, monitor = scan_mig_caps(sc, majors.get("nvidia-caps"))
    channels = scan_imex_channels(sc, majors.get("nvidia-caps-imex-channels"))
    features = scan_feature_nodes(sc, devices_text)
    return ProcScan(
        driver_version=version.version if version else None,
        open_module=version.open_module if version else None,
        majors=tuple(sorted(majors.items())),
        gpus=tuple(gpus), control_nodes=tuple(control), mig_caps=tuple(caps),
        config_cap=config, monitor_cap=monitor, warnings=tuple(sc.warnings), gpu_nodes=tuple(gpu_nodes),
        imex_channels=channels, feature_nodes=features,
    )


def cross_check(scan: ProcScan, records: Sequence[GpuRecord]) -> Tuple[str, ...]:
    """Warnings where NVML and procfs disagree about bus ids, minors or UUIDs.

    Example:
        >>> from nvlow.records import GpuRecord
        >>> s = ProcScan("1", False, (), (ProcGpu("0000:07:00.0", 0, "GPU-a", "A100", False, None, None),), ())
        >>> cross_check(s, [GpuRecord(0, 1, "GPU-a", "A100", "00000000:07:00.0")])
        ('GPU 0 (0000:07:00.0): NVML minor 1, procfs Device Minor 0',)
    """
    out: List[str] = []
    by_bus = {g.bus_id: g for g in scan.gpus}
    by_uuid = {g.uuid: g for g in scan.gpus if g.uuid}
    matched = set()
    for rec in records:
        bus = normalize_bus_id(rec.bus_id) if rec.bus_id else None
        proc = by_bus.get(bus) if bus else None
        if proc is None and rec.uuid:
            proc = by_uuid.get(rec.uuid)
        label = f"GPU {rec.index} ({bus or rec.bus_id or rec.uuid or 'unknown bus id'})"
        if proc is None:
            out.append(f"{label}: not listed under /proc/driver/nvidia/gpus")
            continue
        matched.add(proc.bus_id)
        if bus is not None and proc.bus_id != bus:
            out.append(f"{label}: NVML bus id {rec.bus_id}, procfs {proc.bus_id}")
        if rec.minor is not None and proc.minor is not None and rec.minor != proc.minor:
            out.append(f"{label}: NVML minor {rec.minor}, procfs Device Minor {proc.minor}")
        if rec.uuid and proc.uuid and rec.uuid.lower() != proc.uuid.lower():
            out.append(f"{label}: NVML UUID {rec.uuid}, procfs GPU UUID {proc.uuid}")
    for g in scan.gpus:
        if g.bus_id not in matched and not g.excluded:
            out.append(f"GPU {g.bus_id} is listed under /proc/driver/nvidia/gpus but not reported by NVML")
    return tuple(out)
