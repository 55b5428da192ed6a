"""CDI spec rules (cdi.md §§1–3) and host checks (missing files, stale driver versions).

:func:`validate_document` applies the rules the CDI library applies when an
engine loads a spec (strict fields, version minima, kind and device-name
syntax, unique names, env/mount/node/hook shape) plus the ones engines accept
silently but that break containers (relative container paths). Each problem
is one line: ``location: what is wrong``.

:func:`host_problems` checks a spec against this host: mounted files and
device nodes that no longer exist, and driver files whose version differs
from the running driver (the stale-spec failure of NVIDIA/nvidia-container-
toolkit #450, #692, #856).

Example:
    >>> validate_document({"cdiVersion": "0.3.0", "kind": "nvidia.com/gpu",
    ...                    "devices": [{"name": "0", "containerEdits": {"env": ["A=1"]}}]})
    ['cdiVersion: version 0.3.0 is below 0.5.0, which device name "0" (starts with a digit) needs']
"""
from __future__ import annotations

import os
import re
from typing import Any, Callable, Dict, List, Optional, Tuple

KNOWN_VERSIONS = ("0.1.0", "0.2.0", "0.3.0", "0.4.0", "0.5.0", "0.6.0", "0.7.0", "0.8.0", "1.0.0", "1.1.0")
BASE_VERSION = "0.3.0"
HOOK_NAMES = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")
NODE_TYPES = ("b", "c", "u", "p")

_SPEC_FIELDS = ("cdiVersion", "kind", "annotations", "devices", "containerEdits")
_DEVICE_FIELDS = ("name", "annotations", "containerEdits")
_EDIT_FIELDS = ("env", "deviceNodes", "mounts", "hooks", "intelRdt", "additionalGids", "netDevices")
_NODE_FIELDS = ("path", "hostPath", "type", "major", "minor", "fileMode", "permissions", "uid", "gid")
_MOUNT_FIELDS = ("hostPath", "containerPath", "options", "type")
_HOOK_FIELDS = ("hookName", "path", "args", "env", "timeout")
_RDT_FIELDS = ("closID", "l3CacheSchema", "memBwSchema", "schemata", "enableMonitoring")
_NETDEV_FIELDS = ("hostInterfaceName", "name")

_VENDOR_RE = re.compile(r"^[A-Za-z]([A-Za-z0-9_.-]*[A-Za-z0-9])?$")
_NAME_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_.:-]*[A-Za-z0-9])?$")
# A driver file: lib*.so.<3-digit major>.<minor>[.<patch>] (drivers 390 … 580+)
_DRIVER_SO_RE = re.compile(r"\.so\.(\d{3}\.\d+(?:\.\d+)?)$")
_FIRMWARE_RE = re.compile(r"/firmware/nvidia/(\d{3}\.\d+(?:\.\d+)?)/")


def _vkey(version: str) -> Tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def required_version(doc: Dict[str, Any]) -> Tuple[str, str]:
    """The lowest ``cdiVersion`` whose rules allow ``doc``, and the first field that needs it.

    Example:
        >>> required_version({"kind": "a.com/b", "devices": [{"name": "gpu0", "containerEdits": {}}]})
        ('0.3.0', 'the baseline')
    """
    best = (BASE_VERSION, "the baseline")

    def need(version: str, reason: str) -> None:
        nonlocal best
        if _vkey(version) > _vkey(best[0]):
            best = (version, reason)

    def edits(e: Any, where: str) -> None:
        if not isinstance(e, dict):
            return
        for m in _list(e.get("mounts")):
            if isinstance(m, dict) and "type" in m:
                need("0.4.0", f"a mount 'type' ({where})")
        for n in _list(e.get("deviceNodes")):
            if isinstance(n, dict) and "hostPath" in n:
                need("0.5.0", f"a device node 'hostPath' ({where})")
        if "intelRdt" in e:
            need("0.7.0", f"'intelRdt' ({where})")
            rdt = e.get("intelRdt")
            if isinstance(rdt, dict) and ("schemata" in rdt or "enableMonitoring" in rdt):
                need("1.1.0", f"'intelRdt' schemata/enableMonitoring ({where})")
        if "additionalGids" in e:
            need("0.7.0", f"'additionalGids' ({where})")
        if "netDevices" in e:
            need("1.1.0", f"'netDevices' ({where})")

    if not isinstance(doc, dict):
        return best
    if "annotations" in doc:
        need("0.6.0", "spec 'annotations'")
    kind = doc.get("kind")
    if isinstance(kind, str) and "." in kind.partition("/")[2]:
        need("0.6.0", f"a '.' in the class name of {kind!r}")
    edits(doc.get("containerEdits"), "containerEdits")
    for i, dev in enumerate(_list(doc.get("devices"))):
        if not isinstance(dev, dict):
            continue
        name = dev.get("name")
        if isinstance(name, str) and name[:1].isdigit():
            need("0.5.0", f"device name {name!r} (starts with a digit)".replace("'", '"'))
        if "annotations" in dev:
            need("0.6.0", f"'annotations' (devices[{i}])")
        edits(dev.get("containerEdits"), f"devices[{i}]")
    return best


def _list(value: Any) -> List[Any]:
    return value if isinstance(value, list) else []


class _Checker:
    def __init__(self) -> None:
        self.problems: List[str] = []

    def add(self, where: str, message: str) -> None:
        self.problems.append(f"{where}: {message}")

    def fields(self, obj: Any, allowed: Tuple[str, ...], where: str) -> bool:
        """True when ``obj`` is a mapping; unknown fields are problems (engines decode strictly)."""
        if not isinstance(obj, dict):
            self.add(where, f"must be a mapping, not {_type_name(obj)}")
            return False
        for key in obj:
            if key not in allowed:
                close = [a for a in allowed if a.lower() == str(key).lower()]
                self.add(where, f"unknown field {str(key)!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        return True

    def string(self, obj: Dict[str, Any], key: str, where: str, *, required: bool = False,
               absolute: bool = False, what: str = "") -> Optional[str]:
        value = obj.get(key)
        if value is None:
            if required:
                self.add(where, f"invalid (empty) {what or key}" if key in obj else f"{key} is missing")
            return None
        if not isinstance(value, str):
            self.add(f"{where}.{key}", f"must be a string, not {_type_name(value)}")
            return None
        if required and not value:
            self.add(where, f"invalid (empty) {what or key}")
        elif absolute and value and not value.startswith("/"):
            self.add(f"{where}.{key}", f"{value!r} is not an absolute path")
        return value

    def integer(self, obj: Dict[str, Any], key: str, where: str, *, unsigned: bool = False) -> None:
        value = obj.get(key)
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, int):
            self.add(f"{where}.{key}", f"must be an integer, not {_type_name(value)}")
        elif unsigned and not 0 <= value < 2 ** 32:
            self.add(f"{where}.{key}", f"{value} is out of range")

    def string_list(self, obj: Dict[str, Any], key: str, where: str) -> List[str]:
        value = obj.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.add(f"{where}.{key}", f"must be a list, not {_type_name(value)}")
            return []
        out: List[str] = []
        for i, item in enumerate(value):
            if not isinstance(item, str):
                self.add(f"{where}.{key}[{i}]", f"must be a string, not {_type_name(item)}")
            else:
                out.append(item)
        return out

    def annotations(self, obj: Dict[str, Any], where: str) -> None:
        value = obj.get("annotations")
        if value is None:
            return
        if not isinstance(value, dict):
            self.add(f"{where}.annotations", f"must be a mapping, not {_type_name(value)}")
            return
        for k, v in value.items():
            if not isinstance(v, str):
                self.add(f"{where}.annotations.{k}", f"must be a string, not {_type_name(v)}")

    def env(self, obj: Dict[str, Any], where: str) -> None:
        for i, entry in enumerate(self.string_list(obj, "env", where)):
            if entry.find("=") <= 0:
                self.add(f"{where}.env[{i}]", f"invalid environment variable {entry!r} (needs NAME=VALUE)")

    def edits(self, e: Any, where: str, *, device: bool) -> None:
        if e is None:
            if device:
                self.add(where, "invalid device, empty device edits (containerEdits is missing)")
            return
        if not self.fields(e, _EDIT_FIELDS, where):
            return
        if device and not any(e.get(k) for k in _EDIT_FIELDS):
            self.add(where, "invalid device, empty device edits")
        self.env(e, where)
        for key, check in (("deviceNodes", self.node), ("mounts", self.mount), ("hooks", self.hook),
                           ("netDevices", self.netdev)):
            value = e.get(key)
            if value is None:
                continue
            if not isinstance(value, list):
                self.add(f"{where}.{key}", f"must be a list, not {_type_name(value)}")
                continue
            for i, item in enumerate(value):
                check(item, f"{where}.{key}[{i}]")
        gids = e.get("additionalGids")
        if gids is not None:
            if not isinstance(gids, list):
                self.add(f"{where}.additionalGids", f"must be a list, not {_type_name(gids)}")
            else:
                for i, _g in enumerate(gids):
                    self.integer({"gid": gids[i]}, "gid", f"{where}.additionalGids[{i}]", unsigned=True)
        rdt = e.get("intelRdt")
        if rdt is not None and self.fields(rdt, _RDT_FIELDS, f"{where}.intelRdt"):
            for key in ("closID", "l3CacheSchema", "memBwSchema"):
                self.string(rdt, key, f"{where}.intelRdt")
            self.string_list(rdt, "schemata", f"{where}.intelRdt")

    def node(self, n: Any, where: str) -> None:
        if not self.fields(n, _NODE_FIELDS, where):
            return
        self.string(n, "path", where, required=True, absolute=True, what="device path")
        host = self.string(n, "hostPath", where, absolute=True)
        if host == "":
            self.add(where, "invalid (empty) hostPath")
        kind = self.string(n, "type", where)
        if kind and kind not in NODE_TYPES:
            self.add(f"{where}.type", f"invalid type {kind!r} (use b, c, u or p)")
        perms = self.string(n, "permissions", where)
        if perms and set(perms) - set("rwm"):
            self.add(f"{where}.permissions", f"invalid permissions {perms!r} (a subset of rwm)")
        for key in ("major", "minor"):
            self.integer(n, key, where)
        for key in ("fileMode", "uid", "gid"):
            self.integer(n, key, where, unsigned=True)

    def mount(self, m: Any, where: str) -> None:
        if not self.fields(m, _MOUNT_FIELDS, where):
            return
        host = self.string(m, "hostPath", where)
        if not host:
            self.add(where, "invalid mount, empty host path")
        cpath = self.string(m, "containerPath", where, absolute=True)
        if not cpath:
            self.add(where, "invalid mount, empty container path")
        self.string_list(m, "options", where)
        self.string(m, "type", where)

    def hook(self, h: Any, where: str) -> None:
        if not self.fields(h, _HOOK_FIELDS, where):
            return
        name = self.string(h, "hookName", where, required=True, what="hook name")
        if name and name not in HOOK_NAMES:
            self.add(f"{where}.hookName", f"invalid hook name {name!r} (one of {', '.join(HOOK_NAMES)})")
        self.string(h, "path", where, required=True, absolute=True, what="hook path")
        self.string_list(h, "args", where)
        self.env(h, where)
        self.integer(h, "timeout", where)

    def netdev(self, d: Any, where: str) -> None:
        if not self.fields(d, _NETDEV_FIELDS, where):
            return
        self.string(d, "hostInterfaceName", where, required=True, what="host interface name")
        self.string(d, "name", where, required=True, what="network device name")


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list",
            dict: "a mapping"}.get(type(value), type(value).__name__)


def _check_kind(c: _Checker, kind: str) -> None:
    vendor, slash, class_ = kind.partition("/")
    if not slash:
        vendor, class_ = "", kind
    if not vendor:
        c.add("kind", f"invalid (empty) vendor name in {kind!r} (use vendor/class, e.g. nvidia.com/gpu)")
    elif not _VENDOR_RE.match(vendor) or len(vendor) > 253:
        c.add("kind", f"invalid vendor {vendor!r} (start with a letter, end with a letter or digit, "
                      "only letters, digits, '_', '.', '-')")
    if not class_:
        c.add("kind", f"invalid (empty) class name in {kind!r}")
    elif not _VENDOR_RE.match(class_) or len(class_) > 63:
        c.add("kind", f"invalid class {class_!r} (start with a letter, end with a letter or digit, "
                      "only letters, digits, '_', '.', '-')")


def validate_document(doc: Any) -> List[str]:
    """Every rule problem of a parsed spec, one line each (empty when valid)."""
    c = _Checker()
    if not c.fields(doc, _SPEC_FIELDS, "spec"):
        return c.problems
    version = c.string(doc, "cdiVersion", "spec", required=True, what="cdiVersion")
    if version is not None and version:
        if version not in KNOWN_VERSIONS:
            c.add("cdiVersion", f"invalid version {version!r} (known: {', '.join(KNOWN_VERSIONS)})")
        else:
            needed, reason = required_version(doc)
            if _vkey(version) < _vkey(needed):
                c.add("cdiVersion", f"version {version} is below {needed}, which {reason} needs")
    kind = c.string(doc, "kind", "spec", required=True, what="kind")
    if kind:
        _check_kind(c, kind)
    c.annotations(doc, "spec")
    devices = doc.get("devices")
    if devices is None:
        c.add("spec", "devices is missing")
    elif not isinstance(devices, list):
        c.add("devices", f"must be a list, not {_type_name(devices)}")
    elif not devices:
        c.add("devices", "no devices (a spec needs at least one)")
    else:
        seen: Dict[str, int] = {}
        for i, dev in enumerate(devices):
            where = f"devices[{i}]"
            if not c.fields(dev, _DEVICE_FIELDS, where):
                continue
            name = c.string(dev, "name", where, required=True, what="device name")
            if name:
                if not _NAME_RE.match(name):
                    c.add(f"{where}.name", f"invalid device name {name!r} (letters, digits, '_', '.', ':', '-'; "
                                           "start and end with a letter or digit)")
                if name in seen:
                    c.add(f"{where}.name", f"duplicate device name {name!r} (also devices[{seen[name]}])")
                else:
                    seen[name] = i
            c.annotations(dev, where)
            c.edits(dev.get("containerEdits"), f"{where}.containerEdits", device=True)
    c.edits(doc.get("containerEdits"), "containerEdits", device=False)
    return c.problems


def _all_edits(doc: Dict[str, Any]) -> List[Dict[str, Any]]:
    out = []
    if isinstance(doc.get("containerEdits"), dict):
        out.append(doc["containerEdits"])
    for dev in _list(doc.get("devices")):
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
        for m in _list(e.get("mounts")):
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
        for n in _list(e.get("deviceNodes")):
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
