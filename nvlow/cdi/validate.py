"""Host checks of a CDI spec: missing files, stale driver versions; re-exports the spec rules.

:func:`host_problems` checks a spec against this host: mounted files and
device nodes that no longer exist, and driver files whose version differs
from the running driver (the stale-spec failure of NVIDIA/nvidia-container-
toolkit #450, #692, #856). :func:`driver_version_of` reads the driver
version out of a file name.

The pure CDI rules (:func:`validate_document`, :func:`required_version`,
:func:`compatibility_notes`,
:data:`KNOWN_VERSIONS`, :data:`BASE_VERSION`, :data:`HOOK_NAMES`,
:data:`NODE_TYPES`) live in :mod:`nvlow.cdi.rules` and
:mod:`nvlow.cdi.field_rules`; they stay importable from here.

Example:
    >>> validate_document({"cdiVersion": "0.3.0", "kind": "nvidia.com/gpu",
    ...                    "devices": [{"name": "0", "containerEdits": {"env": ["A=1"]}}]})
    ['cdiVersion: version 0.3.0 is below 0.5.0, which device name "0" (starts with a digit) needs']
    >>> host_problems({"devices": [{"name": "0", "containerEdits": {"mounts": [
    ...     {"hostPath": "/usr/lib/libcuda.so.535.104.05", "containerPath": "/usr/lib/libcuda.so.535.104.05"}]}}]},
    ...     "550.54.15", exists=lambda path: True)
    ['stale: mounts libcuda.so.535.104.05 but the running driver is 550.54.15']
"""
from __future__ import annotations

import os
import re

from .field_rules import HOOK_NAMES, NODE_TYPES
from .rules import (BASE_VERSION, KNOWN_VERSIONS, as_list, compatibility_notes, required_version,
                    validate_document)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional


__all__ = [
    "BASE_VERSION", "HOOK_NAMES", "KNOWN_VERSIONS", "NODE_TYPES", "compatibility_notes", "driver_version_of",
    "host_problems", "required_version", "validate_document",
]

# A driver file: lib*.so.<3-digit major>.<minor>[.<patch>] (drivers 390 … 580+)
_DRIVER_SO_RE = re.compile(r"\.so\.(\d{3}\.\d+(?:\.\d+)?)$")
_FIRMWARE_RE = re.compile(r"/firmware/nvidia/(\d{3}\.\d+(?:\.\d+)?)/")


def _all_edits(doc: Dict[str, Any]) -> List[Dict[str, Any]]:
    out = []
    if isinstance(doc.get("containerEdits"), dict):
        out.append(doc["containerEdits"])
    for dev in as_list(doc.get("devices")):
        if isinstance(dev, dict) and isinstance(dev.get("containerEdits"), dict):
            out.append(dev["containerEdits"])
    return out


def driver_version_of(path: str) -> Optional[str]:
    """The driver version a file name carries (``libcuda.so.550.54.15``, ``firmware/nvidia/550.54.15/gsp.bin``).

    Example:
        >>> driver_version_of("/usr/lib/x86_64-linux-gnu/libcuda.so.535.104.05")
        '535.104.05'
        >>> driver_version_of("/usr/lib/libfoo.so.1.2.3") is None
        True
    """
    m = _DRIVER_SO_RE.search(path) or _FIRMWARE_RE.search(path)
    return m.group(1) if m else None


def host_problems(doc: Any, driver_version: Optional[str],
                  exists: Callable[[str], bool] = os.path.lexists) -> List[str]:
    """Problems of a spec on this host: missing host files, stale driver files.

    Staleness is checked only when ``driver_version`` is known; a device node
    with ``type`` and ``major`` set is not required to exist (engines then
    create it from the numbers without looking at the host).
    """
    if not isinstance(doc, dict):
        return []
    problems: List[str] = []
    missing_seen = set()
    stale: Dict[str, List[str]] = {}
    for e in _all_edits(doc):
        for m in as_list(e.get("mounts")):
            if not isinstance(m, dict) or not isinstance(m.get("hostPath"), str) or not m["hostPath"]:
                continue
            host = m["hostPath"]
            version = driver_version_of(host)
            if driver_version and version and version != driver_version:
                stale.setdefault(version, [])
                if host not in stale[version]:
                    stale[version].append(host)
            elif not exists(host) and host not in missing_seen:
                missing_seen.add(host)
                problems.append(f"mount hostPath {host} does not exist")
        for n in as_list(e.get("deviceNodes")):
            if not isinstance(n, dict):
                continue
            host = n.get("hostPath") or n.get("path")
            if not isinstance(host, str) or not host or host in missing_seen:
                continue
            if n.get("type") and n.get("major") is not None:
                continue
            if not exists(host):
                missing_seen.add(host)
                problems.append(f"device node {host} does not exist")
    for version in sorted(stale):
        paths = stale[version]
        more = f" (and {len(paths) - 1} more files of driver {version})" if len(paths) > 1 else ""
        problems.append(f"stale: mounts {os.path.basename(paths[0])}{more} but the running driver is {driver_version}")
    return problems
