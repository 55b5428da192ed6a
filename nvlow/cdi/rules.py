"""CDI spec rules (cdi.md §§1–3): the checks an engine's CDI library makes when it loads a spec.

:func:`validate_document` applies the rules the CDI library applies when an
engine loads a spec (strict fields, version minima, kind and device-name
syntax, unique names, env/mount/node/hook shape) plus the ones engines accept
silently but that break containers (relative container paths). Each problem
is one line: ``location: what is wrong``. :func:`required_version` is the
version-minimum table (cdi.md §2); the per-field shape checks live in
:mod:`nvlow.cdi.field_rules`. These are pure functions of the parsed spec;
the checks against this host are :mod:`nvlow.cdi.validate`'s.

Example:
    >>> validate_document({"cdiVersion": "0.3.0", "kind": "nvidia.com/gpu",
    ...                    "devices": [{"name": "0", "containerEdits": {"env": ["A=1"]}}]})
    ['cdiVersion: version 0.3.0 is below 0.5.0, which device name "0" (starts with a digit) needs']
"""
from __future__ import annotations

import re
from typing import Any, Dict, List, Tuple

from .field_rules import FieldChecker, type_name

KNOWN_VERSIONS = ("0.1.0", "0.2.0", "0.3.0", "0.4.0", "0.5.0", "0.6.0", "0.7.0", "0.8.0", "1.0.0", "1.1.0")
BASE_VERSION = "0.3.0"

_SPEC_FIELDS = ("cdiVersion", "kind", "annotations", "devices", "containerEdits")
_DEVICE_FIELDS = ("name", "annotations", "containerEdits")

_VENDOR_RE = re.compile(r"^[A-Za-z]([A-Za-z0-9_.-]*[A-Za-z0-9])?$")
_NAME_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_.:-]*[A-Za-z0-9])?$")


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
        for m in as_list(e.get("mounts")):
            if isinstance(m, dict) and "type" in m:
                need("0.4.0", f"a mount 'type' ({where})")
        for n in as_list(e.get("deviceNodes")):
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
    for i, dev in enumerate(as_list(doc.get("devices"))):
        if not isinstance(dev, dict):
            continue
        name = dev.get("name")
        if isinstance(name, str) and name[:1].isdigit():
            need("0.5.0", f"device name {name!r} (starts with a digit)".replace("'", '"'))
        if "annotations" in dev:
            need("0.6.0", f"'annotations' (devices[{i}])")
        edits(dev.get("containerEdits"), f"devices[{i}]")
    return best


def as_list(value: Any) -> List[Any]:
    """``value`` when it is a list, else an empty list (a malformed spec part has no items, no crash)."""
    return value if isinstance(value, list) else []


def _check_kind(c: FieldChecker, kind: str) -> None:
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
    c = FieldChecker()
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
        c.add("devices", f"must be a list, not {type_name(devices)}")
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
