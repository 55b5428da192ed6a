"""Write ``ld.so.cache`` files in glibc's formats (old, compat, new), for simulated hosts and tests.

Entries are sorted as ``ldconfig`` sorts them (glibc ``elf/cache.c``
``compare``): by key in descending, version-aware order
(``_dl_cache_libcmp``), then higher flags first, then glibc-hwcaps entries
before plain ones (by subdirectory name), then higher osversion. Entries that
compare equal keep their input order. The string table is laid out simply
(each distinct string once, no suffix sharing), so files are valid but not
byte-identical to ldconfig's.

Example:
    >>> from nvlow.host.ldcache import parse_ldcache
    >>> data = build_ldcache([("libz.so.1", "/lib/libz.so.1", 0x0303), ("libc.so.6", "/lib/libc.so.6", 0x0303)],
    ...                      generator="nvlow")
    >>> c = parse_ldcache(data)
    >>> ([e.key for e in c.entries], c.generator)
    (['libz.so.1', 'libc.so.6'], 'nvlow')
"""
from __future__ import annotations

import functools
import struct

from ..host.ldcache import (DL_CACHE_HWCAP_EXTENSION, EXT_TAG_GENERATOR, EXT_TAG_HWCAPS, EXTENSION_MAGIC,
                       NEW_MAGIC, OLD_MAGIC)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, List, Optional, Sequence, Tuple, Union

    #: (key, value, flags) or (key, value, flags, osversion) or (key, value, flags, osversion, hwcaps_subdir)
    EntrySpec = Union[Tuple[str, str, int], Tuple[str, str, int, int], Tuple[str, str, int, int, Optional[str]]]


FLAGS_X86_64 = 0x0303
FLAGS_I386 = 0x0003
FLAGS_X32 = 0x0803
FLAGS_AARCH64 = 0x0A03
FLAGS_PPC64LE = 0x0503


def libcmp(p1: str, p2: str) -> int:
    """glibc ``_dl_cache_libcmp``: digit runs compare numerically (sign of the result matters)."""
    i = j = 0
    n1, n2 = len(p1), len(p2)
    while i < n1:
        c1 = p1[i]
        c2 = p2[j] if j < n2 else "\0"
        if c1.isdigit() and c1.isascii():
            if c2.isdigit() and c2.isascii():
                i2 = i
                while i2 < n1 and p1[i2].isascii() and p1[i2].isdigit():
                    i2 += 1
                j2 = j
                while j2 < n2 and p2[j2].isascii() and p2[j2].isdigit():
                    j2 += 1
                v1, v2 = int(p1[i:i2]), int(p2[j:j2])
                if v1 != v2:
                    return v1 - v2
                i, j = i2, j2
            else:
                return 1
        elif c2.isdigit() and c2.isascii():
            return -1
        elif c1 != c2:
            return ord(c1) - ord(c2)
        else:
            i += 1
            j += 1
    c2 = p2[j] if j < n2 else "\0"
    return -ord(c2)


def _norm(spec: EntrySpec) -> Tuple[str, str, int, int, Optional[str]]:
    key, value, flags = spec[0], spec[1], spec[2]
    osversion = spec[3] if len(spec) > 3 else 0
    subdir = spec[4] if len(spec) > 4 else None
    return key, value, flags, osversion, subdir


def _compare(a: Tuple[str, str, int, int, Optional[str]], b: Tuple[str, str, int, int, Optional[str]]) -> int:
    res = libcmp(b[0], a[0])
    if res:
        return res
    if a[2] != b[2]:
        return 1 if a[2] < b[2] else -1
    if (a[4] is None) != (b[4] is None):
        return -1 if a[4] is not None else 1
    if a[4] is not None and b[4] is not None and a[4] != b[4]:
        return -1 if a[4] < b[4] else 1
    if a[3] != b[3]:
        return 1 if a[3] < b[3] else -1
    return 0


def build_ldcache(entries: Sequence[EntrySpec], *, fmt: str = "new",
                  generator: Optional[str] = None, sort: bool = True) -> bytes:
    """The bytes of an ld.so.cache holding ``entries`` in format ``fmt``
    (``new``, ``old`` or ``compat``). A generator string or hwcaps entries
    add the extension directory (new and compat only)."""
    if fmt not in ("new", "old", "compat"):
        raise ValueError(f"unknown ld.so.cache format {fmt!r}")
    items = [_norm(e) for e in entries]
    if sort:
        items.sort(key=functools.cmp_to_key(_compare))
    subdirs = sorted({e[4] for e in items if e[4] is not None})

    strtab = bytearray()
    offsets: Dict[str, int] = {}

    def intern(s: str) -> int:
        if s not in offsets:
            offsets[s] = len(strtab)
            strtab.extend(s.encode("utf-8", "surrogateescape") + b"\0")
        return offsets[s]

    for key, value, _f, _o, _s in items:
        intern(key)
        intern(value)
    for s in subdirs:
        intern(s)

    if fmt == "old":
        head = bytearray(OLD_MAGIC + b"\0" + struct.pack("<I", len(items)))
        for key, value, flags, _o, _s in items:
            head += struct.pack("<iII", flags, offsets[key], offsets[value])
        return bytes(head + strtab)

    old = b""
    base = 0
    if fmt == "compat":
        # The old section holds the non-hwcaps entries; ldconfig rounds their
        # count up to even by repeating the last one, so that the new header
        # that follows is 8-aligned. Old string offsets are relative to the
        # old string table, which starts exactly at the new header.
        plain = [e for e in items if e[4] is None]
        if len(plain) % 2:
            plain.append(plain[-1])
        ob = bytearray(OLD_MAGIC + b"\0" + struct.pack("<I", len(plain)))
        for key, value, flags, _o, _s in plain:
            ob += struct.pack("<iII", flags, offsets[key], offsets[value])
        old = bytes(ob)
        base = len(old)

    hdr_size, ent_size = 48, 24
    strings_start = hdr_size + ent_size * len(items)  # relative to the new header
    body = bytearray()
    for key, value, flags, osversion, subdir in items:
        hwcap = 0
        if subdir is not None:
            hwcap = DL_CACHE_HWCAP_EXTENSION | subdirs.index(subdir)
        body += struct.pack("<iIIIQ", flags, strings_start + offsets[key],
                            strings_start + offsets[value], osversion, hwcap)
    new_len = strings_start + len(strtab)
    ext = b""
    ext_off = 0
    if generator is not None or subdirs:
        ext_off = base + ((new_len + 3) & ~3)
        sections: List[Tuple[int, bytes]] = []
        if generator is not None:
            sections.append((EXT_TAG_GENERATOR, generator.encode()))
        if subdirs:
            sections.append((EXT_TAG_HWCAPS, b"".join(
                struct.pack("<I", strings_start + offsets[s]) for s in subdirs)))
        data_off = ext_off + 8 + 16 * len(sections)
        dirs = bytearray(struct.pack("<II", EXTENSION_MAGIC, len(sections)))
        payload = bytearray()
        for tag, blob in sections:
            while (data_off + len(payload)) % 4:
                payload += b"\0"
            dirs += struct.pack("<IIII", tag, 0, data_off + len(payload), len(blob))
            payload += blob
        ext = bytes(dirs + payload)
    header = struct.pack("<20sIIB3xI12x", NEW_MAGIC, len(items), len(strtab), 2, ext_off)
    new = header + bytes(body) + bytes(strtab)
    if ext:
        new += b"\0" * (ext_off - base - len(new))
    return old + new + ext
