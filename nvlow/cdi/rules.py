"""CDI spec rules: the checks an engine's CDI library makes when it loads a spec (docs/cdi-spec-rules.md, "What a
spec holds", "Versions" and "Names").

:func:`validate_document` applies the rules the CDI library applies when an
engine loads a spec (strict fields, version minima, kind and device-name
syntax, unique names, env/mount/node/hook shape) plus the ones engines accept
silently but that break containers (relative container paths). Each problem
is one line: ``location: what is wrong``. :func:`required_version` is the
version-minimum table (docs/cdi-spec-rules.md "Versions"); the per-field shape checks live in
:mod:`nvlow.cdi.field_rules`. These are pure functions of the parsed spec;
the checks against this host are :mod:`nvlow.cdi.validate`'s.

Example:
    >>> validate_document({"cdiVersion": "0.3.0", "kind": "nvidia.com/gpu",
    ...                    "devices": [{"name": "0", "containerEdits": {"env": ["A=1"]}}]})
    ['cdiVersion: version 0.3.0 is below 0.5.0, which device name "0" (starts with a digit) needs']
"""
from __future__ import annotations

from ..text import ASCII_ALNUM, ASCII_LETTERS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Tuple

    from .field_rules import FieldChecker


KNOWN_VERSIONS = ("0.1.0", "0.2.0", "0.3.0", "0.4.0", "0.5.0", "0.6.0", "0.7.0", "0.8.0", "1.0.0", "1.1.0")
BASE_VERSION = "0.3.0"

_SPEC_FIELDS = ("cdiVersion", "kind", "annotations", "devices", "containerEdits")
_DEVICE_FIELDS = ("name", "annotations", "containerEdits")

_VENDOR_CHARS = ASCII_ALNUM | frozenset("_.-")
_NAME_CHARS = ASCII_ALNUM | frozenset("_.:-")


def is_vendor_name(text: str) -> bool:
    """A CDI vendor or class: ``[A-Za-z]([A-Za-z0-9_.-]*[A-Za-z0-9])?`` (the CDI library's
    pkg/parser; checked as character sets, so no regular expression on the generate path, and no
    trailing newline slips through as it would past Python's ``$``).

    Example:
        >>> is_vendor_name("nvidia.com"), is_vendor_name("1nvidia"), is_vendor_name("nvidia\\n")
        (True, False, False)
    """
    return bool(text) and text[0] in ASCII_LETTERS and text[-1] in ASCII_ALNUM and _VENDOR_CHARS.issuperset(text)


def is_device_name(text: str) -> bool:
    """A CDI device name: ``[A-Za-z0-9]([A-Za-z0-9_.:-]*[A-Za-z0-9])?`` (as :func:`is_vendor_name`).

    Example:
        >>> is_device_name("0"), is_device_name("GPU-1:2"), is_device_name("gpu-")
        (True, True, False)
    """
    return bool(text) and text[0] in ASCII_ALNUM and text[-1] in ASCII_ALNUM and _NAME_CHARS.issuperset(text)


def _vkey(version: str) -> Tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def spec_version(version: str) -> str:
    """``cdiVersion`` without one optional leading ``v``, as the CDI library reads it
    (``specs-go/version.go`` newVersion: ``strings.TrimPrefix(v, "v")``; since library v0.5.4).

    Example:
        >>> spec_version("v0.5.0"), spec_version("0.5.0"), spec_version("vv0.5.0")
        ('0.5.0', '0.5.0', 'v0.5.0')
    """
    return version[1:] if version.startswith("v") else version


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

    # As the CDI library decides (specs-go/version.go, requiresV040 ... requiresV110): a field
    # counts when it is set, i.e. not null, not an empty string or list, not false.
    def edits(e: Any, where: str) -> None:
        if not isinstance(e, dict):
            return
        for m in as_list(e.get("mounts")):
            if isinstance(m, dict) and m.get("type"):
                need("0.4.0", f"a mount 'type' ({where})")
        for n in as_list(e.get("deviceNodes")):
            if isinstance(n, dict) and n.get("hostPath"):
                need("0.5.0", f"a device node 'hostPath' ({where})")
        rdt = e.get("intelRdt")
        if rdt is not None:
            need("0.7.0", f"'intelRdt' ({where})")
            if isinstance(rdt, dict) and (rdt.get("schemata") is not None or rdt.get("enableMonitoring") is True):
                need("1.1.0", f"'intelRdt' schemata/enableMonitoring ({where})")
        if e.get("additionalGids"):
            need("0.7.0", f"'additionalGids' ({where})")
        if e.get("netDevices"):
            need("1.1.0", f"'netDevices' ({where})")

    if not isinstance(doc, dict):
        return best
    if doc.get("annotations"):
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
        if dev.get("annotations"):
            need("0.6.0", f"'annotations' (devices[{i}])")
        edits(dev.get("containerEdits"), f"devices[{i}]")
    return best


#: the first CDI library release that reads a leading "v" in cdiVersion (container-device-interface commit
#: 42cb494, "Refactor version checks", 2022-11; podman 4.3 as Debian 12 ships it has an older one)
V_PREFIX_SINCE = "v0.5.4"


def compatibility_notes(doc: Any) -> List[str]:
    """What a valid spec relies on that older engines reject (notes, not problems).

    Example:
        >>> compatibility_notes({"cdiVersion": "v0.5.0"})  # doctest: +NORMALIZE_WHITESPACE
        ["cdiVersion 'v0.5.0': the leading 'v' is read by the CDI library since v0.5.4; engines with an
         older one (podman 4.3) reject the spec; write '0.5.0'"]
        >>> compatibility_notes({"cdiVersion": "0.5.0"})
        []
    """
    version = doc.get("cdiVersion") if isinstance(doc, dict) else None
    if isinstance(version, str) and version.startswith("v") and spec_version(version) in KNOWN_VERSIONS:
        return [f"cdiVersion {version!r}: the leading 'v' is read by the CDI library since {V_PREFIX_SINCE}; "
                f"engines with an older one (podman 4.3) reject the spec; write {spec_version(version)!r}"]
    return []


def as_list(value: Any) -> List[Any]:
    """``value`` when it is a list, else an empty list (a malformed spec part has no items, no crash)."""
    return value if isinstance(value, list) else []


def _check_kind(c: FieldChecker, kind: str) -> None:
    vendor, slash, class_ = kind.partition("/")
    if not slash:
        vendor, class_ = "", kind
    if not vendor:
        c.add("kind", f"invalid (empty) vendor name in {kind!r} (use vendor/class, e.g. nvidia.com/gpu)")
    elif not is_vendor_name(vendor) or len(vendor) > 253:
        c.add("kind", f"invalid vendor {vendor!r} (start with a letter, end with a letter or digit, "
                      "only letters, digits, '_', '.', '-')")
    if not class_:
        c.add("kind", f"invalid (empty) class name in {kind!r}")
    elif not is_vendor_name(class_) or len(class_) > 63:
        c.add("kind", f"invalid class {class_!r} (start with a letter, end with a letter or digit, "
                      "only letters, digits, '_', '.', '-')")


def validate_document(doc: Any) -> List[str]:
    """Every rule problem of a parsed spec, one line each (empty when valid)."""
    from .field_rules import FieldChecker, type_name  # the shape checks: not needed to write a spec

    c = FieldChecker()
    if not c.fields(doc, _SPEC_FIELDS, "spec"):
        return c.problems
    version = c.string(doc, "cdiVersion", "spec", required=True, what="cdiVersion")
    if version:
        bare = spec_version(version)
        if bare not in KNOWN_VERSIONS:
            c.add("cdiVersion", f"invalid version {version!r} (known: {', '.join(KNOWN_VERSIONS)}; "
                                "a leading 'v' is allowed)")
        else:
            needed, reason = required_version(doc)
            if _vkey(bare) < _vkey(needed):
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
                if not is_device_name(name):
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
