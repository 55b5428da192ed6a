"""Pure parsers for the NVIDIA kernel module's /proc files (no file access here).

Formats come from the open kernel module's ``nv-procfs.c``/``nv-caps.c`` and
are described in docs/host-formats.md. Every parser takes text and never
raises on bad input: unknown lines are skipped and unusable values are None.

Numbers: every number nvlow reads from text -- here, in GPU selections, ``--gpus``
counts, image requirements and CUDA versions -- goes through :func:`number_or_none`
or :func:`parse_number`: ASCII digits only (``int()`` also takes ``٣``, ``1_0`` and
spaces), at most a few significant digits (``int()`` refuses more than 4,300 with a
ValueError), and an :class:`~nvlow.errors.NvlowError` naming the field when the
caller needs a number.

Example:
    >>> parse_devices("Character devices:\\n195 nvidia\\n511 nvidia-caps\\n\\nBlock devices:\\n511 x\\n")
    {'nvidia': 195, 'nvidia-caps': 511}
    >>> parse_driver_version("NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar  5 2024").version
    '550.54.15'
    >>> normalize_bus_id("00000000:07:00.0")
    '0000:07:00.0'
"""
from __future__ import annotations


from ..frozen import Record
from ..errors import HostError, NvlowError
from ..text import HEX_DIGITS, is_ascii_digits, isolated_version, lazy_re, number_or_none, numbered, word_after

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, List, Optional, Tuple, Type


#: /proc/devices names nvlow cares about (matched exactly, never by prefix)
NVIDIA_DEVICE_NAMES: Tuple[str, ...] = (
    "nvidia", "nvidia-frontend", "nvidiactl", "nvidia-uvm", "nvidia-caps",
    "nvidia-caps-imex-channels", "nvidia-nvlink", "nvidia-nvswitch",
)


def char_devices(text: str) -> List[Tuple[int, str]]:
    """(major, name) of every line of ``/proc/devices``' ``Character devices:`` section, in file order.

    Block majors reuse the same numbers, so the section ends at ``Block devices`` (or at the blank line
    after its entries). A name is the whole second field, matched exactly (``nvidia-caps`` and
    ``nvidia-caps-imex-channels`` never mix); anything after it is ignored; junk lines are skipped.

    Example:
        >>> char_devices("Character devices:\\n231 infiniband_verbs\\n509 infiniband_verbs  # x\\n\\n"
        ...              "Block devices:\\n  8 sd\\n")
        [(231, 'infiniband_verbs'), (509, 'infiniband_verbs')]
    """
    out: List[Tuple[int, str]] = []
    seen_entry = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            if seen_entry:
                break  # the blank line ends the character section
            continue
        if line.lower().startswith("block devices"):
            break
        if line.lower().startswith("character devices"):
            continue
        # The name is the second field only: a pasted line may carry a trailing note
        # ("508 nvidia-uvm   # dynamic"), and kernel device names hold no spaces.
        fields = line.split(None, 2)
        if len(fields) < 2 or not is_ascii_digits(fields[0]):
            continue
        seen_entry = True
        major = number_or_none(fields[0], max_digits=10)
        if major is not None:
            out.append((major, fields[1]))
    return out


def parse_devices(text: str) -> Dict[str, int]:
    """Character-device name -> major from ``/proc/devices`` (:func:`char_devices`); when a name
    repeats, the first line wins.

    Example:
        >>> parse_devices("Character devices:\\n508 nvidia-caps-imex-channels\\n509 nvidia-caps\\n")["nvidia-caps"]
        509
    """
    majors: Dict[str, int] = {}
    for major, name in char_devices(text):
        majors.setdefault(name, major)
    return majors


def majors_by_name(text: str) -> Dict[str, Tuple[int, ...]]:
    """Every char major ``/proc/devices`` lists under each name (``infiniband_verbs`` has two on a
    host with more than 32 verbs devices: the fixed 231 and a dynamic one).

    Example:
        >>> majors_by_name("Character devices:\\n231 infiniband_verbs\\n509 infiniband_verbs\\n\\n"
        ...                "Block devices:\\n  8 sd\\n")
        {'infiniband_verbs': (231, 509)}
    """
    out: Dict[str, Tuple[int, ...]] = {}
    for major, name in char_devices(text):
        if major not in out.get(name, ()):
            out[name] = out.get(name, ()) + (major,)
    return out


def device_names_by_major(text: str) -> Dict[int, Tuple[str, ...]]:
    """Character-device major -> every name ``/proc/devices`` lists for it (in file order).

    Example:
        >>> device_names_by_major("Character devices:\\n  1 mem\\n  4 tty\\n  4 ttyS\\n")[4]
        ('tty', 'ttyS')
    """
    out: Dict[int, Tuple[str, ...]] = {}
    for name, major in parse_devices(text).items():
        out[major] = out.get(major, ()) + (name,)
    return out


class DriverVersion(Record):
    """The kernel module's version banner (``NVRM version:`` line)."""

    version: str
    open_module: bool
    arch: Optional[str]
    banner: str


def parse_driver_version(text: str) -> Optional[DriverVersion]:
    """Parse ``/proc/driver/nvidia/version`` (or just its NVRM banner).

    The version is the first ``N.N[.N]`` token after ``Kernel Module``, never a
    fixed field: the open module inserted ``for <arch>`` (nixGL #186 broke on
    that). None when no banner with a version is found.

    Example:
        >>> v = parse_driver_version("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  560.35.03  Release Build")
        >>> (v.version, v.open_module, v.arch)
        ('560.35.03', True, 'x86_64')
    """
    banner: Optional[str] = None
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "NVRM version":
            banner = value.strip()
            break
    if banner is None:
        # Accept a bare banner too (e.g. a copy pasted by a user).
        for line in text.splitlines():
            if "Kernel Module" in line:
                banner = line.strip()
                break
    if not banner:
        return None
    pos = banner.find("Kernel Module")
    if pos < 0:
        return None
    version = isolated_version(banner, pos + len("Kernel Module"))
    if version is None:
        return None
    open_module = "Open Kernel Module" in banner
    arch = (word_after(banner, ("Open Kernel Module", "for")) if open_module
            else word_after(banner, ("NVIDIA UNIX",), "Kernel Module"))
    return DriverVersion(version=version, open_module=open_module, arch=None if arch == "Open" else arch,
                         banner=banner)


def parse_bus_id(text: str) -> Optional[Tuple[int, int, int, int]]:
    """(domain, bus, device, function) of a PCI bus id in any known spelling.

    Accepts NVML (``00000000:07:00.0``), procfs/sysfs (``0000:07:00.0``, VMD
    ``10000:01:00.0``) and short (``0:7:0.0``) spellings, any case.

    Example:
        >>> parse_bus_id("0000:B7:00.0"), parse_bus_id("07:00.0")
        ((0, 183, 0, 0), None)
    """
    fields = text.strip().split(":")
    if len(fields) != 3:
        return None
    dom, bus, rest = fields
    dev, dot, fn = rest.partition(".")
    if not (dot and _hex(dom, 8) and _hex(bus, 2) and _hex(dev, 2) and len(fn) == 1 and "0" <= fn <= "7"):
        return None
    return int(dom, 16), int(bus, 16), int(dev, 16), int(fn)


def _hex(text: str, most: int) -> bool:
    """1 to ``most`` ASCII hexadecimal digits."""
    return 0 < len(text) <= most and HEX_DIGITS.issuperset(text)


def format_bus_id(parts: Tuple[int, int, int, int]) -> str:
    """The procfs/sysfs spelling ``%04x:%02x:%02x.%x`` of a parsed bus id."""
    dom, bus, dev, fn = parts
    return f"{dom:04x}:{bus:02x}:{dev:02x}.{fn:x}"


def normalize_bus_id(text: str) -> Optional[str]:
    """A bus id rewritten in the procfs/sysfs spelling, or None when it is not one.

    Example:
        >>> normalize_bus_id("0:7:0.0"), normalize_bus_id("10000:01:00.0"), normalize_bus_id("GPU-1")
        ('0000:07:00.0', '10000:01:00.0', None)
    """
    parts = parse_bus_id(text)
    return format_bus_id(parts) if parts is not None else None


class ProcGpuInfo(Record):
    """``/proc/driver/nvidia/gpus/<bus>/information`` parsed.

    ``bus_location`` is normalised (None when absent or malformed); ``uuid``
    is None when absent or not known to the driver (``GPU-????????-...``);
    ``excluded`` comes from ``GPU Excluded`` (or ``Blacklisted`` in older
    drivers) and is None when neither line exists. ``fields`` keeps every
    ``key: value`` line in order.
    """

    model: Optional[str]
    irq: Optional[int]
    uuid: Optional[str]
    video_bios: Optional[str]
    bus_type: Optional[str]
    bus_location: Optional[str]
    minor: Optional[int]
    excluded: Optional[bool]
    firmware: Optional[str]
    fields: Tuple[Tuple[str, str], ...]


def _int_or_none(value: Optional[str]) -> Optional[int]:
    return number_or_none(value.strip(), max_digits=10) if value is not None else None


def _yes_no(value: Optional[str]) -> Optional[bool]:
    if value is None:
        return None
    v = value.strip().lower()
    if v == "yes":
        return True
    if v == "no":
        return False
    return None


def _key_values(text: str) -> List[Tuple[str, str]]:
    out: List[Tuple[str, str]] = []
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        key = key.strip()
        if sep and key:
            out.append((key, value.strip()))
    return out


def parse_gpu_information(text: str) -> ProcGpuInfo:
    """Parse one GPU's ``information`` file (tab or space separated; optional lines may be absent).

    Example:
        >>> info = parse_gpu_information("Model: \\t\\t Tesla T4\\nBus Location: \\t 0000:3b:00.0\\nDevice Minor: \\t 2\\n")
        >>> (info.model, info.bus_location, info.minor, info.uuid, info.excluded)
        ('Tesla T4', '0000:3b:00.0', 2, None, None)
    """
    fields = tuple(_key_values(text))
    first: Dict[str, str] = {}
    for key, value in fields:
        first.setdefault(key, value)

    uuid = first.get("GPU UUID") or None
    if uuid is not None and ("?" in uuid or not uuid.startswith("GPU-")):
        uuid = None  # broken pass-through prints GPU-????????-... (kata-containers/runtime #2546)
    bus = first.get("Bus Location")
    excluded = _yes_no(first.get("GPU Excluded"))
    if excluded is None:
        excluded = _yes_no(first.get("Blacklisted"))  # drivers before the 2020 rename
    return ProcGpuInfo(
        model=first.get("Model") or None,
        irq=_int_or_none(first.get("IRQ")),
        uuid=uuid,
        video_bios=first.get("Video BIOS") or None,
        bus_type=first.get("Bus Type") or None,
        bus_location=normalize_bus_id(bus) if bus else None,
        minor=_int_or_none(first.get("Device Minor")),
        excluded=excluded,
        firmware=first.get("GPU Firmware") or None,
        fields=fields,
    )


def parse_cap_access(text: str) -> Optional[int]:
    """``DeviceFileMinor`` of a capabilities ``access``/``config``/``monitor`` file.

    Example:
        >>> parse_cap_access("DeviceFileMinor: 21\\nDeviceFileMode: 292\\nDeviceFileModify: 1\\n")
        21
    """
    for key, value in _key_values(text):
        if key == "DeviceFileMinor":
            minor = _int_or_none(value)
            return minor if minor is not None and minor <= MAX_MINOR else None
    return None


def parse_mig_minors(text: str) -> Dict[str, int]:
    """``/proc/driver/nvidia-caps/mig-minors`` as name -> cap minor (first line wins).

    Example:
        >>> parse_mig_minors("config 1\\nmonitor 2\\ngpu0/gi0/access 3\\nbad\\n")
        {'config': 1, 'monitor': 2, 'gpu0/gi0/access': 3}
    """
    out: Dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 2:
            continue
        minor = _int_or_none(parts[1])
        if minor is not None and minor <= MAX_MINOR:
            out.setdefault(parts[0], minor)
    return out


_MIG_CAP_NAME = lazy_re(r"^gpu([0-9]{1,10})/(?:mig/)?gi([0-9]{1,10})(?:/ci([0-9]{1,10}))?/access\Z")


def parse_mig_cap_name(name: str) -> Optional[Tuple[int, int, Optional[int]]]:
    """(gpu minor, GI, CI or None) of a MIG capability name.

    Accepts the ``mig-minors`` spelling (``gpu0/gi1/ci0/access``) and the
    capabilities-tree path (``gpu0/mig/gi1/access``).

    Example:
        >>> parse_mig_cap_name("gpu3/gi2/ci1/access"), parse_mig_cap_name("gpu0/mig/gi7/access")
        ((3, 2, 1), (0, 7, None))
    """
    m = _MIG_CAP_NAME.match(name.strip("/"))
    if m is None:
        return None
    ci = m.group(3)
    return int(m.group(1)), int(m.group(2)), int(ci) if ci is not None else None


#: the largest minor a Linux ``dev_t`` holds (20 bits, ``MINORMASK`` in include/linux/kdev_t.h)
MAX_MINOR = (1 << 20) - 1

# DRM minors are named "card%d" (primary) and "renderD%d" (render) after the minor number itself
# (drivers/gpu/drm/drm_sysfs.c); "controlD%d" (legacy control nodes) is not a node a container needs.


def parse_drm_node_name(name: str) -> Optional[Tuple[str, int]]:
    """(``card`` or ``renderD``, minor) of an entry of ``/sys/bus/pci/devices/<bus>/drm/``.

    The node is ``/dev/dri/<name>`` with major 226 and the number in the name as
    its minor (``renderD128`` is 226:128). Other entries (``controlD64``), names
    with leading zeros and minors above 20 bits are None.

    Example:
        >>> parse_drm_node_name("card1"), parse_drm_node_name("renderD128"), parse_drm_node_name("controlD64")
        (('card', 1), ('renderD', 128), None)
    """
    for kind in ("card", "renderD"):
        minor = numbered(name, kind)
        if minor is not None:
            return (kind, minor) if minor <= MAX_MINOR else None
    return None


def parse_imex_channel_name(name: str) -> Optional[int]:
    """Channel number (= minor) of a ``/dev/nvidia-caps-imex-channels/channel<N>`` entry, or None.

    The toolkit accepts channel ids up to 2**20-1, the largest minor (``pkg/nvcdi/lib-imex.go``).

    Example:
        >>> [parse_imex_channel_name(n) for n in ("channel0", "channel2047", "channel01")]
        [0, 2047, None]
    """
    n = numbered(name, "channel")
    return n if n is not None and n <= MAX_MINOR else None


def parse_params(text: str) -> Dict[str, str]:
    """``/proc/driver/nvidia/params`` as key -> value text (first line wins).

    Example:
        >>> parse_params("ModifyDeviceFiles: 1\\nDeviceFileMode: 438\\n")["DeviceFileMode"]
        '438'
    """
    out: Dict[str, str] = {}
    for key, value in _key_values(text):
        out.setdefault(key, value)
    return out
