"""Reader for ``/etc/ld.so.cache`` (old, compat and new formats) and an ``ldconfig -p`` renderer.

The layout is glibc's (``elf/cache.c``, ``sysdeps/generic/dl-cache.h``), see
docs/host-formats.md. nvlow never runs ``ldconfig -p`` nor
``ctypes.util.find_library`` (which spawns ldconfig and gcc): parsing the
cache with ``struct`` is ~0.5 ms for 550 entries.

Robustness: every loop is bounded by the data size. A header whose counts do
not fit in the file is a :class:`HostError`; an entry whose key or value
offset falls outside the file is skipped (as nvidia-docker 1.0 did;
libnvidia-container aborts instead).

Byte order: the cache is written in host byte order; nvlow supports
little-endian hosts (x86-64, aarch64, ppc64le), so big-endian caches are
rejected.

Example:
    >>> from nvlow.simulate.ldcache_writer import build_ldcache
    >>> data = build_ldcache([("libcuda.so.1", "/usr/lib/x86_64-linux-gnu/libcuda.so.1", 0x0303)])
    >>> cache = parse_ldcache(data)
    >>> [(e.key, e.arch) for e in cache.lookup("libcuda.so.1", "x86-64")]
    [('libcuda.so.1', 'x86-64')]
"""
from __future__ import annotations

import os
import struct

from ..frozen import Record
from ..errors import HostError
from .root import HostRoot

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, List, Optional, Tuple


CACHE_PATH = "/etc/ld.so.cache"
OLD_MAGIC = b"ld.so-1.7.0"
NEW_MAGIC = b"glibc-ld.so.cache1.1"
EXTENSION_MAGIC = 0xEAA42174
EXT_TAG_GENERATOR = 0
EXT_TAG_HWCAPS = 1

FLAG_TYPE_MASK = 0x00FF
FLAG_REQUIRED_MASK = 0xFF00
FLAG_ELF, FLAG_ELF_LIBC5, FLAG_ELF_LIBC6 = 1, 2, 3
DL_CACHE_HWCAP_EXTENSION = 1 << 62

_OLD_HEADER = struct.Struct("<11sxI")        # 16 bytes
_OLD_ENTRY = struct.Struct("<iII")           # 12 bytes
_NEW_HEADER = struct.Struct("<20sIIB3xI12x")  # 48 bytes
_NEW_ENTRY = struct.Struct("<iIIIQ")         # 24 bytes
_EXT_HEADER = struct.Struct("<II")
_EXT_SECTION = struct.Struct("<IIII")

_TYPE_TEXT = {0: "libc4", 1: "ELF", 2: "libc5", 3: "libc6"}
#: ``ldconfig -p`` text of the required-arch bits (glibc ``print_entry``)
_ARCH_TEXT = {
    0x0100: ",64bit", 0x0200: ",IA-64", 0x0300: ",x86-64", 0x0400: ",64bit", 0x0500: ",64bit",
    0x0600: ",N32", 0x0700: ",64bit", 0x0800: ",x32", 0x0900: ",hard-float", 0x0A00: ",AArch64",
    0x0B00: ",soft-float", 0x0C00: ",nan2008", 0x0D00: ",N32,nan2008", 0x0E00: ",64bit,nan2008",
    0x0F00: ",soft-float", 0x1000: ",double-float",
}
#: nvlow arch names of the required-arch bits; 0x0500 is ppc64le because only
#: little-endian caches are read
_ARCH_NAME = {0x0000: "i386", 0x0300: "x86-64", 0x0800: "x32", 0x0A00: "aarch64",
              0x0500: "ppc64le", 0x0900: "armhf", 0x0B00: "armel"}
_OS_NAMES = ("Linux", "Hurd", "Solaris", "FreeBSD", "kNetBSD", "Syllable")


class LdCacheEntry(Record):
    """One cache entry: ``key`` is the SONAME, ``value`` the library path.

    Example:
        >>> LdCacheEntry("libc.so.6", "/lib/libc.so.6", 0x0003, 0, 0, None).arch
        'i386'
    """

    key: str
    value: str
    flags: int
    osversion: int
    hwcap: int
    hwcap_subdir: Optional[str]

    @property
    def arch(self) -> str:
        """``x86-64``, ``i386`` (no arch bits), ``x32``, ``aarch64``, ``ppc64le``,
        ``armhf``, else ldconfig's text without the comma (``64bit``) or the number."""
        bits = self.flags & FLAG_REQUIRED_MASK
        name = _ARCH_NAME.get(bits)
        if name is not None:
            return name
        text = _ARCH_TEXT.get(bits)
        return text[1:] if text else str(bits)

    @property
    def is_elf(self) -> bool:
        """True for ELF entries (``ELF``, ``libc5``, ``libc6``; not a.out libc4)."""
        return (self.flags & FLAG_TYPE_MASK) in (FLAG_ELF, FLAG_ELF_LIBC5, FLAG_ELF_LIBC6)

    @property
    def is_libc6(self) -> bool:
        return (self.flags & FLAG_TYPE_MASK) == FLAG_ELF_LIBC6

    @property
    def is_hwcaps(self) -> bool:
        """True for entries of a ``glibc-hwcaps/<subdir>/`` directory."""
        return _is_hwcaps_extension(self.hwcap)


def _is_hwcaps_extension(hwcap: int) -> bool:
    return ((hwcap >> 32) & ~0x3FF) == (DL_CACHE_HWCAP_EXTENSION >> 32)


class LdCache(Record):
    """A parsed cache. ``nlibs_reported`` is the count ``ldconfig -p`` prints
    (new section for new/compat files), which can exceed ``len(entries)`` when
    corrupt entries were skipped."""

    format: str
    entries: Tuple[LdCacheEntry, ...]
    generator: Optional[str]
    nlibs_reported: int

    def lookup(self, soname: str, arch: str, *, include_hwcaps: bool = False) -> Tuple[LdCacheEntry, ...]:
        """ELF entries whose key is exactly ``soname`` for ``arch``, in cache order."""
        return tuple(e for e in self.entries
                     if e.key == soname and e.is_elf and e.arch == arch
                     and (include_hwcaps or not e.is_hwcaps))

    def prefixed(self, prefix: str, arch: str, *, include_hwcaps: bool = False) -> Tuple[LdCacheEntry, ...]:
        """ELF entries whose key starts with ``prefix`` (``libcuda.so``) for ``arch``, in cache order."""
        return PrefixIndex(self, arch, include_hwcaps=include_hwcaps).find(prefix)


class PrefixIndex:
    """:meth:`LdCache.prefixed` for many prefixes: the ELF entries of one ``arch`` sorted by key once,
    so that each prefix is a bisection, not a pass over every entry (a real cache holds 500-1,000;
    driver-file selection asks ~60 prefixes)."""

    __slots__ = ("_index", "_keys")

    def __init__(self, cache: LdCache, arch: str, *, include_hwcaps: bool = False) -> None:
        self._index = sorted((e.key, i, e) for i, e in enumerate(cache.entries)
                             if e.is_elf and e.arch == arch and (include_hwcaps or not e.is_hwcaps))
        self._keys = [key for key, _, _ in self._index]

    def find(self, prefix: str) -> Tuple[LdCacheEntry, ...]:
        """The entries whose key starts with ``prefix``, in cache order."""
        from bisect import bisect_left

        hits: List[Tuple[int, LdCacheEntry]] = []
        for key, order, entry in self._index[bisect_left(self._keys, prefix):]:
            if not key.startswith(prefix):
                break
            hits.append((order, entry))
        return tuple(entry for _, entry in sorted(hits, key=lambda hit: hit[0]))


def _fast_entry(key: str, value: str, flags: int, osversion: int, hwcap: int,
                subdir: Optional[str]) -> LdCacheEntry:
    """``LdCacheEntry(...)`` without the generic record ``__init__`` (half the parse time
    of a 1,000-entry cache goes there). Equal, hashable and immutable as usual."""
    e = object.__new__(LdCacheEntry)
    d = e.__dict__
    d["key"] = key
    d["value"] = value
    d["flags"] = flags
    d["osversion"] = osversion
    d["hwcap"] = hwcap
    d["hwcap_subdir"] = subdir
    return e


def _cstr(data: bytes, off: int) -> Optional[str]:
    """NUL-terminated string at ``off``, or None when it is not inside ``data``."""
    if off < 0 or off >= len(data):
        return None
    end = data.find(b"\0", off)
    if end < 0:
        return None
    return data[off:end].decode("utf-8", "surrogateescape")


def _parse_old(data: bytes, name: str) -> LdCache:
    _magic, nlibs = _OLD_HEADER.unpack_from(data, 0)
    strings = _OLD_HEADER.size + _OLD_ENTRY.size * nlibs
    if strings > len(data):
        raise HostError(f"corrupt ld.so.cache {name}: header says {nlibs} entries, file has {len(data)} bytes")
    entries: List[LdCacheEntry] = []
    for flags, key, value in _OLD_ENTRY.iter_unpack(data[_OLD_HEADER.size:strings]):
        k = _cstr(data, strings + key)
        v = _cstr(data, strings + value)
        if k is not None and v is not None:
            entries.append(_fast_entry(k, v, flags, 0, 0, None))
    return LdCache("old", tuple(entries), None, nlibs)


def _extensions(data: bytes, base: int, ext_off: int, name: str) -> Tuple[Optional[str], List[int]]:
    """(generator, hwcaps string offsets) from the extension directory at file offset ``ext_off``."""
    if ext_off == 0 or ext_off + _EXT_HEADER.size > len(data):
        return None, []
    magic, count = _EXT_HEADER.unpack_from(data, ext_off)
    if magic != EXTENSION_MAGIC:
        return None, []
    first = ext_off + _EXT_HEADER.size
    if first + count * _EXT_SECTION.size > len(data):
        raise HostError(f"corrupt ld.so.cache {name}: malformed extension data")
    generator: Optional[str] = None
    hwcaps: List[int] = []
    for i in range(count):
        tag, _flags, off, size = _EXT_SECTION.unpack_from(data, first + i * _EXT_SECTION.size)
        if off + size > len(data):
            raise HostError(f"corrupt ld.so.cache {name}: malformed extension data")
        if tag == EXT_TAG_GENERATOR:
            generator = data[off:off + size].decode("utf-8", "surrogateescape")
        elif tag == EXT_TAG_HWCAPS:
            if size % 4:
                raise HostError(f"corrupt ld.so.cache {name}: malformed extension data")
            hwcaps = list(struct.unpack_from(f"<{size // 4}I", data, off))
    return generator, hwcaps


def _parse_new(data: bytes, base: int, fmt: str, name: str) -> LdCache:
    if base + _NEW_HEADER.size > len(data):
        raise HostError(f"truncated ld.so.cache {name}")
    _magic, nlibs, len_strings, flags, ext_off = _NEW_HEADER.unpack_from(data, base)
    if flags & 3 in (1, 3):
        raise HostError(f"unsupported ld.so.cache {name}: "
                        + ("big-endian" if flags & 3 == 3 else "invalid byte order flag"))
    first = base + _NEW_HEADER.size
    end_entries = first + _NEW_ENTRY.size * nlibs
    if end_entries > len(data) or end_entries + len_strings > len(data):
        raise HostError(f"corrupt ld.so.cache {name}: header says {nlibs} entries and "
                        f"{len_strings} bytes of strings, file has {len(data)} bytes")
    generator, hwcaps = _extensions(data, base, ext_off, name)
    hwcap_names: Dict[int, Optional[str]] = {}
    entries: List[LdCacheEntry] = []
    size = len(data)
    find = data.find
    for flags_, key, value, osversion, hwcap in _NEW_ENTRY.iter_unpack(data[first:end_entries]):
        # inlined _cstr: this loop is the hot path of every nvlow run
        ko, vo = base + key, base + value
        if ko >= size or vo >= size:
            continue
        ke, ve = find(b"\0", ko), find(b"\0", vo)
        if ke < 0 or ve < 0:
            continue
        k = data[ko:ke].decode("utf-8", "surrogateescape")
        v = data[vo:ve].decode("utf-8", "surrogateescape")
        subdir: Optional[str] = None
        if hwcap and _is_hwcaps_extension(hwcap):
            index = hwcap & 0xFFFFFFFF
            if index not in hwcap_names:
                hwcap_names[index] = _cstr(data, base + hwcaps[index]) if index < len(hwcaps) else None
            subdir = hwcap_names[index]
            if subdir is None:
                continue  # names a hwcaps subdirectory the file does not have
        entries.append(_fast_entry(k, v, flags_, osversion, hwcap, subdir))
    return LdCache(fmt, tuple(entries), generator, nlibs)


def parse_ldcache(data: bytes, name: str = CACHE_PATH) -> LdCache:
    """Parse the bytes of an ld.so.cache file; :class:`HostError` naming ``name`` if they are not one."""
    if data.startswith(NEW_MAGIC):
        return _parse_new(data, 0, "new", name)
    if data.startswith(OLD_MAGIC):
        if len(data) < _OLD_HEADER.size:
            raise HostError(f"truncated ld.so.cache {name}")
        nlibs_old = _OLD_HEADER.unpack_from(data, 0)[1]
        off = (_OLD_HEADER.size + _OLD_ENTRY.size * nlibs_old + 7) & ~7
        # glibc (dl-cache.c, cache.c) needs the whole new header to fit: >=, not >
        if len(data) >= off + _NEW_HEADER.size and data[off:off + len(NEW_MAGIC)] == NEW_MAGIC:
            return _parse_new(data, off, "compat", name)
        return _parse_old(data, name)
    raise HostError(f"not an ld.so.cache file: {name}")


def _entry_line(e: LdCacheEntry, show_os_abi: bool) -> str:
    parts = ["\t", e.key, " (", _TYPE_TEXT.get(e.flags & FLAG_TYPE_MASK, "unknown")]
    bits = e.flags & FLAG_REQUIRED_MASK
    if bits:
        parts.append(_ARCH_TEXT.get(bits, f",{bits}"))
    if e.hwcap_subdir is not None:
        parts.append(f', hwcap: "{e.hwcap_subdir}"')
    elif e.hwcap:
        parts.append(f", hwcap: 0x{e.hwcap:016x}")
    if show_os_abi and e.osversion:
        os_id = e.osversion >> 24
        os_name = _OS_NAMES[os_id] if os_id < len(_OS_NAMES) else "Unknown OS"
        parts.append(f", OS ABI: {os_name} {(e.osversion >> 16) & 0xFF}."
                     f"{(e.osversion >> 8) & 0xFF}.{e.osversion & 0xFF}")
    parts += [") => ", e.value, "\n"]
    return "".join(parts)


def render_ldconfig_p(cache: LdCache, path: str, *, show_os_abi: bool = False) -> str:
    """The exact text ``ldconfig -p -C <path>`` prints for this cache.

    Matches glibc 2.35+ (Debian 12's 2.36 checked byte for byte): those no
    longer print the ``, OS ABI: Linux a.b.c`` part that older glibc printed
    for entries with a non-zero osversion; ``show_os_abi=True`` gives the old
    text. glibc-hwcaps names are resolved from the new header; for compat
    files glibc 2.36 itself resolves them from the file start and prints
    garbage there (``hwcap: ""``).
    """
    out = [f"{cache.nlibs_reported} libs found in cache `{path}'\n"]
    out += [_entry_line(e, show_os_abi) for e in cache.entries]
    if cache.generator is not None:
        out.append(f"Cache generated by: {cache.generator}\n")
    return "".join(out)


#: the largest ld.so.cache nvlow reads (real ones are well under 1 MiB; glibc maps any size)
LDCACHE_LIMIT = 64 << 20


def read_ldcache(root: HostRoot) -> Optional[LdCache]:
    """The host's ``/etc/ld.so.cache`` under ``root``, or None when there is none.

    A cache that is not a regular file (a FIFO would block), larger than :data:`LDCACHE_LIMIT`
    or corrupt is a :class:`HostError` naming it."""
    if not root.exists(CACHE_PATH):
        return None
    return parse_ldcache(root.read_bytes(CACHE_PATH, max_size=LDCACHE_LIMIT), root.host(CACHE_PATH))


_MACHINE_TO_ARCH = {"x86_64": "x86-64", "amd64": "x86-64", "aarch64": "aarch64", "arm64": "aarch64",
                    "ppc64le": "ppc64le", "i386": "i386", "i686": "i386"}


def native_arch(machine: Optional[str] = None) -> str:
    """The cache arch name of this machine (``uname -m`` mapped: ``x86_64`` -> ``x86-64``)."""
    m = machine if machine is not None else os.uname().machine
    return _MACHINE_TO_ARCH.get(m, m)


def compat32_arch(arch: str) -> Optional[str]:
    """The 32-bit arch whose libraries ``compat32`` adds: ``i386`` for ``x86-64``
    (never ``x32``), None elsewhere (ppc64le has no 32-bit userland; nvlow does
    not mount armhf libraries on aarch64)."""
    return "i386" if arch == "x86-64" else None
