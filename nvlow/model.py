"""Frozen results of host discovery: GPUs, MIG devices, device nodes, driver files.

Paths named ``host_path`` are real paths on this machine (root-prefixed when
``--root`` is used); ``container_path`` is where a container sees the file.

Example:
    >>> n = DeviceNode("/dev/nvidia0", "/dev/nvidia0", 195, 0, "gpu")
    >>> n.to_dict()["container_path"]
    '/dev/nvidia0'
"""
from __future__ import annotations

from .frozen import Record, asdict, field


TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, Optional, Tuple


class DeviceNode(Record):
    """A character device node a container may need.

    ``kind`` is one of ``ctl``, ``uvm``, ``uvm-tools``, ``modeset``, ``gpu``,
    ``cap`` (MIG/nvidia-caps), ``imex``, ``drm``, and the multi-node features ``gds``, ``mofed``,
    ``gdrcopy``, ``nvswitch``, and ``dxg`` (WSL2's ``/dev/dxg``).

    Example:
        >>> DeviceNode("/dev/nvidiactl", "/dev/nvidiactl", 195, 255, "ctl").minor
        255
    """

    host_path: str
    container_path: str
    major: int
    minor: int
    kind: str

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


class MigDevice(Record):
    """A MIG device (GPU instance + compute instance) on a parent GPU.

    Example:
        >>> m = MigDevice(uuid="MIG-x", parent_index=0, index=0, gpu_instance_id=7, compute_instance_id=0)
        >>> m.name_for_index
        '0:0'
    """

    uuid: Optional[str]
    parent_index: int
    index: int
    gpu_instance_id: Optional[int]
    compute_instance_id: Optional[int]
    name: Optional[str] = None
    memory_total: Optional[int] = None
    cap_nodes: Tuple[DeviceNode, ...] = ()

    @property
    def name_for_index(self) -> str:
        """``parent:slot``, the index spelling used by NVIDIA_VISIBLE_DEVICES and CDI."""
        return f"{self.parent_index}:{self.index}"

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready dict."""
        d = asdict(self)
        d["cap_nodes"] = [n.to_dict() for n in self.cap_nodes]
        return d


class Gpu(Record):
    """One physical GPU.

    ``bus_id`` is normalised to the procfs/sysfs spelling ``0000:07:00.0``.

    Example:
        >>> Gpu(0, 0, "GPU-x", "0000:07:00.0", "NVIDIA A100-SXM4-40GB").device_path is None
        True
    """

    index: int
    minor: Optional[int]
    uuid: Optional[str]
    bus_id: Optional[str]
    name: Optional[str]
    brand: Optional[str] = None
    architecture: Optional[str] = None
    compute_capability: Optional[str] = None
    memory_total: Optional[int] = None
    persistence_mode: Optional[bool] = None
    mig_enabled: Optional[bool] = None
    mig_devices: Tuple[MigDevice, ...] = ()
    node: Optional[DeviceNode] = None
    excluded: bool = False
    #: the GPU's DRM nodes (``/dev/dri/cardN``, ``/dev/dri/renderDN``), found through sysfs by bus id;
    #: a container gets them with the ``graphics`` or ``display`` capability
    drm_nodes: Tuple[DeviceNode, ...] = ()

    @property
    def device_path(self) -> Optional[str]:
        """Host path of ``/dev/nvidiaN`` (None when the minor is unknown)."""
        return self.node.host_path if self.node else None

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready dict (the ``gpus[]`` entries of ``info --json``)."""
        return {
            "index": self.index,
            "minor": self.minor,
            "uuid": self.uuid,
            "bus_id": self.bus_id,
            "name": self.name,
            "brand": self.brand,
            "architecture": self.architecture,
            "compute_capability": self.compute_capability,
            "memory_total": self.memory_total,
            "persistence_mode": self.persistence_mode,
            "mig_enabled": self.mig_enabled,
            "device_path": self.device_path,
            "mig_devices": [m.to_dict() for m in self.mig_devices],
            "drm_nodes": [n.to_dict() for n in self.drm_nodes],
        }


class DriverFile(Record):
    """A driver file to expose in a container.

    ``kind``: ``lib64``, ``lib32``, ``bin``, ``config``, ``ipc``, ``firmware``.
    ``host_path`` is the real (symlink-resolved) file, root-prefixed.
    ``names`` are the file names programs look for, first the real name, then
    the SONAME and extra links (``libcuda.so``).
    ``path`` is the host path (without root prefix), used for config files that
    must appear at their usual host location in the container.

    Example:
        >>> DriverFile("/usr/bin/nvidia-smi", "bin", "utility", ("nvidia-smi",)).names[0]
        'nvidia-smi'
    """

    host_path: str
    kind: str
    capability: str
    names: Tuple[str, ...]
    soname: Optional[str] = None
    path: Optional[str] = None

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


#: why a file named as the running driver's was left out although the selection wanted it: it is damaged
#: (truncated, replaced by something else) or gone since ldconfig ran (:meth:`DriverFiles.damaged`)
UNREADABLE_ELF = "not a readable ELF file"
DANGLING_ENTRY = "listed in ld.so.cache but not a file"


class DriverFiles(Record):
    """Driver files selected for a set of capabilities, in the order of ``nvlow list``.

    Example:
        >>> DriverFiles().all()
        ()
    """

    libraries64: Tuple[DriverFile, ...] = ()
    libraries32: Tuple[DriverFile, ...] = ()
    binaries: Tuple[DriverFile, ...] = ()
    configs: Tuple[DriverFile, ...] = ()
    ipcs: Tuple[DriverFile, ...] = ()
    firmware: Tuple[DriverFile, ...] = ()
    #: (path, reason) for files that were seen and rejected (stale version, wrong ELF, ...)
    skipped: Tuple[Tuple[str, str], ...] = ()
    #: names from the capability lists that were not found
    missing: Tuple[str, ...] = ()

    def damaged(self) -> Tuple[Tuple[str, str], ...]:
        """The ``skipped`` files of the running driver left out as damaged or gone (a container then lacks
        them: a partial install or a full disk truncates files).

        Example:
            >>> DriverFiles(skipped=(("/a/libcuda.so.1.2", UNREADABLE_ELF), ("/b", "stale copy"))).damaged()
            (('/a/libcuda.so.1.2', 'not a readable ELF file'),)
        """
        return tuple((p, r) for p, r in self.skipped if r in (UNREADABLE_ELF, DANGLING_ENTRY))

    def all(self) -> Tuple[DriverFile, ...]:
        """Every selected file."""
        return (self.binaries + self.libraries64 + self.libraries32 + self.configs
                + self.ipcs + self.firmware)

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready dict."""
        return {
            "libraries64": [f.to_dict() for f in self.libraries64],
            "libraries32": [f.to_dict() for f in self.libraries32],
            "binaries": [f.to_dict() for f in self.binaries],
            "configs": [f.to_dict() for f in self.configs],
            "ipcs": [f.to_dict() for f in self.ipcs],
            "firmware": [f.to_dict() for f in self.firmware],
            "skipped": [list(s) for s in self.skipped],
            "missing": list(self.missing),
        }


class WslDriver(Record):
    """The GPU side of a WSL2 host (:mod:`nvlow.host.wsl`): the ``/dev/dxg`` node and the driver files
    nvidia-ctk's WSL mode mounts, each at its host path (``DriverFile.path``).

    ``driver_store`` is the host path of the NVIDIA driver store directory
    (``/usr/lib/wsl/drivers/nv_dispi.inf_amd64_...``, None when none holds ``libcuda.so.1.1``);
    ``library_dirs`` the directories the toolkit's ldcache hook names, in its order.

    Example:
        >>> dxg = DeviceNode("/dev/dxg", "/dev/dxg", 10, 63, "dxg")
        >>> WslDriver(dxg, None, DriverFiles()).to_dict()["driver_store"] is None
        True
    """

    dxg: DeviceNode
    driver_store: Optional[str]
    files: DriverFiles
    library_dirs: Tuple[str, ...] = ()
    #: False when ``/dev/dxg`` is not dxgkrnl's character device (``dxg`` then only names the path)
    usable: bool = True

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready dict (the ``wsl`` member of ``info --json`` on a WSL2 host)."""
        return {"dxg": self.dxg.to_dict() if self.usable else None, "driver_store": self.driver_store,
                "library_dirs": list(self.library_dirs), "files": self.files.to_dict()}


class Host(Record):
    """Everything discovery learned about a host (no capability-dependent data).

    Example:
        >>> import nvlow
        >>> host = nvlow.load_host(simulate="workstation")
        >>> (host.driver_version, host.source, host.control("modeset").container_path)
        ('560.35.03', 'nvml', '/dev/nvidia-modeset')
    """

    root: str
    driver_version: Optional[str]
    cuda_version: Optional[str]
    source: str  # "nvml" or "procfs" (or "simulated:<preset>" is reported via ``simulated``)
    gpus: Tuple[Gpu, ...]
    #: control nodes found: ctl, uvm, uvm-tools, modeset (only those that exist)
    control_nodes: Tuple[DeviceNode, ...] = ()
    nvml_version: Optional[str] = None
    open_kernel_module: Optional[bool] = None
    #: char majors by exact /proc/devices name
    majors: Tuple[Tuple[str, int], ...] = ()
    warnings: Tuple[str, ...] = ()
    simulated: Optional[str] = None
    library_paths: Tuple[str, ...] = field(default_factory=tuple)
    #: where cuda_version came from: "library" (libcuda/NVML) or "driver table" (inferred from the driver version)
    cuda_version_source: Optional[str] = None
    #: the nvidia-caps nodes of ``/proc/driver/nvidia/capabilities/mig/config`` and ``.../mig/monitor``
    #: (NVIDIA_MIG_CONFIG_DEVICES / NVIDIA_MIG_MONITOR_DEVICES)
    mig_config_node: Optional[DeviceNode] = None
    mig_monitor_node: Optional[DeviceNode] = None
    #: ``/dev/nvidia-caps-imex-channels/channelN`` nodes that exist, by channel number (NVIDIA_IMEX_CHANNELS)
    imex_channels: Tuple[DeviceNode, ...] = ()
    #: multi-node training nodes found (kind ``gds``, ``mofed``, ``gdrcopy``, ``nvswitch``), given to a
    #: container only when it asks (NVIDIA_GDS=enabled, ... or nvlow's --gds, ...; nvlow.host.extradevices)
    feature_nodes: Tuple[DeviceNode, ...] = ()
    #: set on a WSL2 host (``/dev/dxg``, driver under ``/usr/lib/wsl``; :mod:`nvlow.host.wsl`)
    wsl: Optional[WslDriver] = None

    def features(self, feature: str) -> Tuple[DeviceNode, ...]:
        """The nodes found for a multi-node feature (``gds``, ``mofed``, ``gdrcopy``, ``nvswitch``)."""
        return tuple(n for n in self.feature_nodes if n.kind == feature)

    def control(self, kind: str) -> Optional[DeviceNode]:
        """The control node of a kind (``ctl``, ``uvm``, ``uvm-tools``, ``modeset``) if present."""
        for n in self.control_nodes:
            if n.kind == kind:
                return n
        return None

    def major(self, name: str) -> Optional[int]:
        """Char major for an exact /proc/devices name."""
        for n, m in self.majors:
            if n == name:
                return m
        return None

    def to_dict(self) -> Dict[str, Any]:
        """The ``nvlow info --json`` document (schema_version 1)."""
        return {
            "schema_version": 1,
            "root": self.root,
            "driver_version": self.driver_version,
            "cuda_version": self.cuda_version,
            "cuda_version_source": self.cuda_version_source,
            "nvml_version": self.nvml_version,
            "source": self.source,
            "simulated": self.simulated,
            "open_kernel_module": self.open_kernel_module,
            "gpus": [g.to_dict() for g in self.gpus],
            "control_nodes": [n.to_dict() for n in self.control_nodes],
            "mig_config_node": self.mig_config_node.to_dict() if self.mig_config_node else None,
            "mig_monitor_node": self.mig_monitor_node.to_dict() if self.mig_monitor_node else None,
            "imex_channels": [n.to_dict() for n in self.imex_channels],
            "feature_nodes": {f: [n.to_dict() for n in self.feature_nodes if n.kind == f]
                              for f in ("gds", "mofed", "gdrcopy", "nvswitch")},
            "warnings": list(self.warnings),
            **({"wsl": self.wsl.to_dict()} if self.wsl is not None else {}),
        }


class ProcfsFacts(Record):
    """What a procfs/dev scan already knows, for :func:`needs_nvml` (no driver library involved).

    ``gpu_uuids``: the GPU UUIDs of ``/proc/driver/nvidia/gpus/*/information`` in index order
    (None where procfs shows none); ``mig_gpus``: indices of GPUs with MIG GPU instances under
    ``/proc/driver/nvidia/capabilities/gpuN/mig``; ``complete``: every GPU has its minor, UUID,
    bus id and model in procfs.
    """

    gpu_uuids: Tuple[Optional[str], ...] = ()
    mig_gpus: Tuple[int, ...] = ()
    complete: bool = True
