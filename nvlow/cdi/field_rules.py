"""Field-shape rules of a CDI spec: strict fields, value types, paths, edits (docs/cdi-spec-rules.md, "What a
spec holds").

:class:`FieldChecker` collects one ``location: what is wrong`` line per
problem in the shape of a spec's parts: unknown fields (engines decode specs
strictly, so a misspelt field fails the container), values of the wrong
type, relative paths, ``NAME=VALUE`` environment entries, device-node types
and permissions, hook names and the ``containerEdits`` of a device or of the
whole spec. :func:`nvlow.cdi.rules.validate_document` drives it.

Example:
    >>> c = FieldChecker()
    >>> c.edits({"env": ["A"], "mounts": [{"hostPath": "/a", "containerPath": "a"}]}, "containerEdits",
    ...         device=False)
    >>> c.problems  # doctest: +NORMALIZE_WHITESPACE
    ["containerEdits.env[0]: invalid environment variable 'A' (needs NAME=VALUE)",
     "containerEdits.mounts[0].containerPath: 'a' is not an absolute path"]
"""
from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional, Tuple


HOOK_NAMES = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")
NODE_TYPES = ("b", "c", "u", "p")

_EDIT_FIELDS = ("env", "deviceNodes", "mounts", "hooks", "intelRdt", "additionalGids", "netDevices")
_NODE_FIELDS = ("path", "hostPath", "type", "major", "minor", "fileMode", "permissions", "uid", "gid")
_MOUNT_FIELDS = ("hostPath", "containerPath", "options", "type")
_HOOK_FIELDS = ("hookName", "path", "args", "env", "timeout")
_RDT_FIELDS = ("closID", "l3CacheSchema", "memBwSchema", "schemata", "enableMonitoring")
_NETDEV_FIELDS = ("hostInterfaceName", "name")


class FieldChecker:
    """Collects the shape problems of a spec's parts in :attr:`problems`, in the order found."""

    def __init__(self) -> None:
        self.problems: List[str] = []

    def add(self, where: str, message: str) -> None:
        self.problems.append(f"{where}: {message}")

    def fields(self, obj: Any, allowed: Tuple[str, ...], where: str) -> bool:
        """True when ``obj`` is a mapping; unknown fields are problems (engines decode strictly)."""
        if not isinstance(obj, dict):
            self.add(where, f"must be a mapping, not {type_name(obj)}")
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
            self.add(f"{where}.{key}", f"must be a string, not {type_name(value)}")
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
            self.add(f"{where}.{key}", f"must be an integer, not {type_name(value)}")
        elif unsigned and not 0 <= value < 2 ** 32:
            self.add(f"{where}.{key}", f"{value} is out of range")

    def string_list(self, obj: Dict[str, Any], key: str, where: str) -> List[str]:
        value = obj.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.add(f"{where}.{key}", f"must be a list, not {type_name(value)}")
            return []
        out: List[str] = []
        for i, item in enumerate(value):
            if not isinstance(item, str):
                self.add(f"{where}.{key}[{i}]", f"must be a string, not {type_name(item)}")
            else:
                out.append(item)
        return out

    def annotations(self, obj: Dict[str, Any], where: str) -> None:
        value = obj.get("annotations")
        if value is None:
            return
        if not isinstance(value, dict):
            self.add(f"{where}.annotations", f"must be a mapping, not {type_name(value)}")
            return
        for k, v in value.items():
            if not isinstance(v, str):
                self.add(f"{where}.annotations.{k}", f"must be a string, not {type_name(v)}")

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
                self.add(f"{where}.{key}", f"must be a list, not {type_name(value)}")
                continue
            for i, item in enumerate(value):
                check(item, f"{where}.{key}[{i}]")
        gids = e.get("additionalGids")
        if gids is not None:
            if not isinstance(gids, list):
                self.add(f"{where}.additionalGids", f"must be a list, not {type_name(gids)}")
            else:
                for i, _g in enumerate(gids):
                    self.integer({"gid": gids[i]}, "gid", f"{where}.additionalGids[{i}]", unsigned=True)
        rdt = e.get("intelRdt")
        if rdt is not None and self.fields(rdt, _RDT_FIELDS, f"{where}.intelRdt"):
            clos = self.string(rdt, "closID", f"{where}.intelRdt")
            if clos is not None and not valid_clos_id(clos):
                self.add(f"{where}.intelRdt.closID", f"invalid closID {clos!r} (a file name: no '/' or newline, "
                                                     "not '.' or '..', under 4096 bytes; or '/' for the root CLOS)")
            for key in ("l3CacheSchema", "memBwSchema"):
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


def valid_clos_id(clos: str) -> bool:
    """The CDI library's ``closID`` rule (``pkg/cdi/container-edits.go``, IntelRdt.Validate): a valid
    Linux file name (the CLOS is a resctrl directory), or ``/`` for the root CLOS; empty is allowed.

    Example:
        >>> [valid_clos_id(c) for c in ("foo.bar", "/", "", "foo/bar", ".", "..", "foo\\nbar")]
        [True, True, True, False, False, False, False]
    """
    if clos == "/":
        return True
    return (len(clos.encode("utf-8", "surrogatepass")) < 4096 and clos not in (".", "..")
            and "/" not in clos and "\n" not in clos)


def type_name(value: Any) -> str:
    """How a problem line names the YAML type of ``value`` (``a string``, ``a mapping``, ``null``)."""
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list",
            dict: "a mapping"}.get(type(value), type(value).__name__)
