"""MIG access capabilities: which ``/dev/nvidia-caps/nvidia-capN`` node grants which MIG instance.

The driver lists one ``access`` file per created GPU instance (GI) and
compute instance (CI) under ``/proc/driver/nvidia/capabilities/gpuN/mig/``,
plus ``mig/config`` and ``mig/monitor``; each names its ``DeviceFileMinor``.
``/proc/driver/nvidia-caps/mig-minors`` prints the same nv-caps table for
every possible instance. Every node is checked like the other /dev nodes
(char device, major from ``nvidia-caps`` in /proc/devices, the expected
minor); a missing one is reported with the ``nvidia-modprobe -f`` command
that creates it. Split out of :mod:`nvlow.host.scan`, which calls
:func:`scan_mig_caps` with its node checker.

Example:
    >>> import tempfile
    >>> from nvlow.host.root import HostRoot, file_node_reader
    >>> from nvlow.host.scan import scan_host
    >>> from nvlow.simulate.presets import get_preset
    >>> from nvlow.simulate.proctree import write_proc_dev_tree
    >>> with tempfile.TemporaryDirectory() as d:
    ...     write_proc_dev_tree(d, get_preset("dgx-h100-mig"))
    ...     scan = scan_host(HostRoot(d, node_reader=file_node_reader))
    >>> [(c.gpu_minor, c.gi, c.ci, c.cap_minor) for c in scan.mig_caps[:2]]
    [(0, 7, None, 66), (0, 7, 0, 67)]
    >>> (scan.config_cap.container_path, scan.config_cap.minor)
    ('/dev/nvidia-caps/nvidia-cap1', 1)
"""
from __future__ import annotations

from ..frozen import Record
from ..model import DeviceNode
from .procfs import parse_cap_access, parse_mig_cap_name, parse_mig_minors
from .root import HostRoot
from ..text import listed

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, List, Optional, Protocol, Set, Tuple

else:
    Protocol = object  # a plain base at run time; type checkers see typing.Protocol

_CAPS = "/proc/driver/nvidia/capabilities"


class MigCap(Record):
    """A MIG access capability: GI access when ``ci`` is None, else CI access."""

    gpu_minor: int
    gi: int
    ci: Optional[int]
    cap_minor: int
    node: Optional[DeviceNode]


class NodeChecker(Protocol):
    """What :func:`scan_mig_caps` needs from the scanner of :mod:`nvlow.host.scan`."""

    root: HostRoot
    warnings: List[str]
    #: host paths whose node check found nothing at all
    missing: Set[str]

    def read(self, path: str) -> Optional[str]:
        """The text at ``path`` or None (a read error becomes a warning)."""

    def node(self, path: str, major: Optional[int], minor: int, kind: str) -> Optional[DeviceNode]:
        """The checked node at ``path``, or None (with a warning when it is wrong)."""


def _cap_node(sc: NodeChecker, caps_major: Optional[int], minor: int) -> Optional[DeviceNode]:
    return sc.node(f"/dev/nvidia-caps/nvidia-cap{minor}", caps_major, minor, "cap")


def scan_mig_caps(sc: NodeChecker, caps_major: Optional[int]
                  ) -> Tuple[List[MigCap], Optional[DeviceNode], Optional[DeviceNode]]:
    """The MIG access caps (GPU minor, GI, CI order), the config cap node and the monitor cap node."""
    table: Optional[Dict[str, int]] = None

    def table_minor(name: str) -> Optional[int]:
        nonlocal table
        if table is None:
            table = parse_mig_minors(sc.read("/proc/driver/nvidia-caps/mig-minors") or "")
        return table.get(name)

    prefer_table = False

    def access_minor(path: str, name: str) -> Optional[int]:
        minor = table_minor(name) if prefer_table else None
        if minor is not None:
            return minor
        text = sc.read(f"{_CAPS}/{path}")
        minor = parse_cap_access(text) if text is not None else None
        if minor is None and not prefer_table:
            minor = table_minor(name)
        if minor is None and text is not None:
            sc.warnings.append(f"{sc.root.host(f'{_CAPS}/{path}')} is malformed (no DeviceFileMinor)")
        return minor

    entries: List[Tuple[int, int, Optional[int], int]] = []
    if sc.root.is_dir(_CAPS):
        config = access_minor("mig/config", "config") if sc.root.exists(f"{_CAPS}/mig/config") else None
        monitor = access_minor("mig/monitor", "monitor") if sc.root.exists(f"{_CAPS}/mig/monitor") else None
        rels: List[str] = []
        for gpu_dir in sc.root.listdir(_CAPS):
            if not gpu_dir.startswith("gpu"):
                continue
            for gi_dir in sc.root.listdir(f"{_CAPS}/{gpu_dir}/mig"):
                names = sc.root.listdir(f"{_CAPS}/{gpu_dir}/mig/{gi_dir}")
                rels += [f"{gpu_dir}/mig/{gi_dir}/access"] if "access" in names else []
                rels += [f"{gpu_dir}/mig/{gi_dir}/{ci}/access" for ci in names if ci.startswith("ci")]
        # Access files exist only for created instances. Up to a few dozen, one small
        # read each is cheaper than parsing mig-minors (4000+ lines, ~1.5 ms); above
        # that the table wins. Both are printed from the same nv-caps table.
        prefer_table = len(rels) > 32 and sc.root.exists("/proc/driver/nvidia-caps/mig-minors")
        for rel in rels:
            key = parse_mig_cap_name(rel)
            minor = access_minor(rel, rel.replace("/mig/", "/", 1)) if key is not None else None
            if key is not None and minor is not None:
                entries.append((key[0], key[1], key[2], minor))
    else:
        # No capabilities tree: take the mig-minors entries whose /dev node exists.
        config, monitor = table_minor("config"), table_minor("monitor")
        for name, minor in (table or {}).items():
            key = parse_mig_cap_name(name)
            if key is not None and sc.root.node(f"/dev/nvidia-caps/nvidia-cap{minor}") is not None:
                entries.append((key[0], key[1], key[2], minor))

    caps: List[MigCap] = []
    missing: List[str] = []
    for gpu_minor, gi, ci, minor in sorted(entries, key=lambda e: (e[0], e[1], -1 if e[2] is None else e[2])):
        node = _cap_node(sc, caps_major, minor)
        if node is None and caps_major is not None and f"/dev/nvidia-caps/nvidia-cap{minor}" in sc.missing:
            missing.append(f"nvidia-cap{minor}")
        caps.append(MigCap(gpu_minor, gi, ci, minor, node))
    if caps and caps_major is None:
        sc.warnings.append("/proc/devices has no 'nvidia-caps' device: MIG access is controlled through /proc "
                           "(older driver); MIG devices cannot be isolated with device nodes")
    if missing:
        sc.warnings.append(f"MIG capability node(s) missing under {sc.root.host('/dev/nvidia-caps')}: {listed(missing, 4)} "
                           "(create them with 'nvidia-modprobe -f /proc/driver/nvidia/capabilities/...')")
    config_node = _cap_node(sc, caps_major, config) if config is not None else None
    monitor_node = _cap_node(sc, caps_major, monitor) if monitor is not None else None
    return caps, config_node, monitor_node
