"""Multi-node training devices: the toolkit's opt-in ("gated") device nodes.

Four features, each a set of character devices outside the GPU driver that a container gets only
when it asks (``NVIDIA_GDS=enabled`` ..., see docs/toolkit-semantics.md):

==========  ==========================================================  ===============================
feature     nodes (toolkit ``internal/discover/*.go``)                  major from ``/proc/devices``
==========  ==========================================================  ===============================
gds         ``/dev/nvidia-fsN`` (GPUDirect Storage, nvidia-fs module)   ``nvidia-fs``
mofed       ``/dev/infiniband/uverbsN``, ``/dev/infiniband/rdma_cm``    ``infiniband_verbs``; rdma_cm:
                                                                        ``misc`` and its ``/proc/misc`` minor
gdrcopy     ``/dev/gdrdrv``                                             ``gdrdrv``
nvswitch    ``/dev/nvidia-nvswitchctl``, ``/dev/nvidia-nvswitchN``      ``nvidia-nvswitch``
==========  ==========================================================  ===============================

Pure parsers first (names, ``/proc/devices``, ``/proc/misc``), then one thin reader that checks every
node through the scanner's hardened node check (:meth:`nvlow.host.scan._Scanner.node`: a char device
itself, never a symbolic link, a major the running kernel does not give to another driver under
``--root``, a path inside the root). The major must be one ``/proc/devices`` lists under the
feature's name; the minors of these modules are their own business (dynamic, per module), so only
``rdma_cm``'s is checked, against ``/proc/misc``. Nodes present while the module's name is missing
from ``/proc/devices`` are not used (one warning), as for IMEX channels.

Example:
    >>> parse_feature_node("nvidia-fs3"), parse_feature_node("infiniband/rdma_cm"), parse_feature_node("nvidia-fs")
    (('gds', 3), ('mofed', -1), None)
"""
from __future__ import annotations

from ..model import DeviceNode
from ..text import number_or_none, numbered
from .procfs import majors_by_name

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, List, Optional, Tuple

    from .scan import _Scanner

#: the features, in the toolkit's order (internal/modifier/cdi.go, gatedDevices)
FEATURES = ("gds", "mofed", "gdrcopy", "nvswitch")
#: the container variable of each feature; only the exact value ``enabled`` turns it on
FEATURE_ENV = {"gds": "NVIDIA_GDS", "mofed": "NVIDIA_MOFED", "gdrcopy": "NVIDIA_GDRCOPY",
               "nvswitch": "NVIDIA_NVSWITCH"}
ENABLED = "enabled"
#: the paths each feature looks for, as the toolkit spells them (messages and docs)
FEATURE_PATHS = {"gds": ("/dev/nvidia-fs*",), "mofed": ("/dev/infiniband/uverbs*", "/dev/infiniband/rdma_cm"),
                 "gdrcopy": ("/dev/gdrdrv",), "nvswitch": ("/dev/nvidia-nvswitchctl", "/dev/nvidia-nvswitch*")}
#: the exact /proc/devices names a node of each feature may take its major from
FEATURE_DEVICE_NAMES = {"gds": ("nvidia-fs",), "mofed": ("infiniband_verbs", "misc"), "gdrcopy": ("gdrdrv",),
                        "nvswitch": ("nvidia-nvswitch",)}
#: the misc char major (include/uapi/linux/major.h MISC_MAJOR) and rdma_cm's /proc/misc name
MISC_MAJOR = 10
RDMA_CM = "rdma_cm"
RUNNING_MISC = "/proc/misc"
#: (feature, path under /dev, numbered): a numbered name is the path + an instance number
#: (``nvidia-fs0``), the others are one node each (instance -1)
_NAMES = (
    ("gds", "nvidia-fs", True),
    ("mofed", "infiniband/uverbs", True),
    ("mofed", "infiniband/rdma_cm", False),
    ("gdrcopy", "gdrdrv", False),
    ("nvswitch", "nvidia-nvswitchctl", False),
    ("nvswitch", "nvidia-nvswitch", True),
)


#: the first letters every feature node name has (a cheap filter before the patterns)
_STEMS = ("nvidia-fs", "uverbs", "rdma_cm", "gdrdrv", "nvidia-nvswitch")


def parse_feature_node(rel: str) -> Optional[Tuple[str, int]]:
    """(feature, instance) of a path under ``/dev`` (``infiniband/uverbs0``), instance -1 for a single
    node (``rdma_cm``, ``gdrdrv``, ``nvidia-nvswitchctl``); None for anything else (``nvidia-fs``,
    ``uverbs01``, ``nvidia-nvswitch-x``).

    Example:
        >>> parse_feature_node("infiniband/uverbs12"), parse_feature_node("nvidia-nvswitchctl")
        (('mofed', 12), ('nvswitch', -1))
        >>> parse_feature_node("infiniband/uverbs01") is None, parse_feature_node("gdrdrv0") is None
        (True, True)
    """
    for feature, name, is_numbered in _NAMES:
        if not is_numbered:
            if rel == name:
                return feature, -1
            continue
        n = numbered(rel, name)
        if n is not None:
            return feature, n
    return None


def parse_misc(text: str) -> Dict[str, int]:
    """``/proc/misc`` (``MINOR NAME`` lines): name -> minor.

    Example:
        >>> parse_misc(" 58 rdma_cm\\n200 tun\\nbad line\\n")
        {'rdma_cm': 58, 'tun': 200}
    """
    out: Dict[str, int] = {}
    for line in text.splitlines():
        num, _, name = line.strip().partition(" ")
        minor = number_or_none(num)
        name = name.strip()
        if minor is not None and name and " " not in name:
            out.setdefault(name, minor)
    return out


def _running_misc() -> Optional[Dict[str, int]]:
    """The running kernel's /proc/misc (never under a root), or None when unreadable."""
    from ..errors import HostError
    from .root import read_regular

    try:
        return parse_misc(read_regular(RUNNING_MISC).decode("utf-8", "replace"))
    except HostError:
        return None


def _candidates(sc: _Scanner) -> List[Tuple[str, int, str]]:
    """(feature, instance, host path) of every name under /dev that looks like a feature node,
    in feature order, then by instance (a single node first)."""
    found: List[Tuple[int, int, str, str]] = []
    for directory, prefix in (("/dev", ""), ("/dev/infiniband", "infiniband/")):
        for name in sc.listdir(directory):
            if not name.startswith(_STEMS):  # most of /dev: no pattern to try (nor to compile)
                continue
            parsed = parse_feature_node(prefix + name)
            if parsed is not None:
                feature, n = parsed
                # the toolkit's order: nvidia-nvswitchctl before the switches, rdma_cm after uverbs*
                rank = n if n >= 0 else (-1 if feature == "nvswitch" else 1 << 30)
                found.append((FEATURES.index(feature), rank, feature, f"{directory}/{name}"))
    found.sort()
    return [(feature, n, path) for _, n, feature, path in found]


def scan_feature_nodes(sc: _Scanner, devices_text: Optional[str]) -> Tuple[DeviceNode, ...]:
    """The checked feature nodes under the scanner's root (kind = the feature name), in
    :data:`FEATURES` order; rejected ones are warnings on the scanner."""
    candidates = _candidates(sc)
    if not candidates:
        return ()
    majors = majors_by_name(devices_text or "")
    misc: Optional[Dict[str, int]] = None
    running: Optional[Dict[str, int]] = None
    out: List[DeviceNode] = []
    for feature, n, path in candidates:
        real = sc.root.host(path)
        is_rdma = path.endswith("/" + RDMA_CM)
        names = ("misc",) if is_rdma else tuple(x for x in FEATURE_DEVICE_NAMES[feature] if x != "misc")
        allowed = tuple(m for x in names for m in majors.get(x, ()))
        if is_rdma and not allowed:
            allowed = (MISC_MAJOR,)  # misc is built in and never missing from a real /proc/devices
        info = sc.root.node(path)
        if info is None or info.is_link or not info.is_char or sc.root.is_link(path):
            sc.node(path, None, 0, feature)  # the scanner's own warning (link, not a char device) or missing
            continue
        if not allowed:
            sc.warnings.append(f"/proc/devices has no {' or '.join(repr(x) for x in names)} device; {real} "
                               "is not used")
            continue
        if info.major not in allowed:
            sc.warnings.append(f"{real} is {info.major}:{info.minor}, but /proc/devices gives "
                               f"{' or '.join(names)} major {', '.join(map(str, allowed))}; not used")
            continue
        minor = info.minor
        if is_rdma:
            if misc is None:
                misc = parse_misc(sc.read("/proc/misc") or "")
            want = misc.get(RDMA_CM)
            if want is None:
                sc.warnings.append(f"{sc.root.host('/proc/misc')} lists no {RDMA_CM}; {real} is not used")
                continue
            minor = want
            if not sc.root.is_default:
                if running is None:
                    running = _running_misc() or {}
                other = next((k for k, v in running.items() if v == want and k != RDMA_CM), None)
                if other is not None:
                    sc.warnings.append(f"{real} is {info.major}:{want}, but the running kernel's {RUNNING_MISC} "
                                       f"gives misc minor {want} to {other}, not to {RDMA_CM}; not used")
                    continue
        node = sc.node(path, info.major, minor, feature)
        if node is not None:
            out.append(node)
    return tuple(out)


def feature_paths(feature: str) -> str:
    """The toolkit's spelling of what ``feature`` looks for, for messages.

    Example:
        >>> feature_paths("mofed")
        '/dev/infiniband/uverbs* and /dev/infiniband/rdma_cm'
    """
    return " and ".join(FEATURE_PATHS[feature])
