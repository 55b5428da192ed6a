"""A small ELF reader: class, machine, SONAME, DT_NEEDED and the GNU ABI note.

Only the program headers are used, as the dynamic loader and ``ldconfig`` do:
``PT_DYNAMIC`` gives the dynamic entries, whose ``DT_STRTAB`` address is mapped
to a file offset through the ``PT_LOAD`` segments; ``PT_NOTE`` segments give
the ``NT_GNU_ABI_TAG`` note (libnvidia-tls is selected by it).

:func:`parse_elf` is pure (bytes in); :func:`read_elf` reads only the parts of
a file it needs (driver libraries are tens of MB). Both raise
:class:`~nvlow.errors.HostError` naming the file for non-ELF or truncated
input; :func:`try_read_elf` returns None instead.

Example:
    >>> from nvlow.simulate.elfgen import make_elf_so
    >>> info = parse_elf(make_elf_so("libnvidia-tls.so.550.54.15", abi_note=(0, 2, 3, 99)), "tls")
    >>> info.abi_note
    (0, 2, 3, 99)
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

from .errors import HostError
from .root import HostRoot

ELF_MAGIC = b"\x7fELF"
PT_LOAD, PT_DYNAMIC, PT_NOTE = 1, 2, 4
DT_NULL, DT_NEEDED, DT_STRTAB, DT_STRSZ, DT_SONAME = 0, 1, 5, 10, 14
NT_GNU_ABI_TAG = 1

#: caps that keep a corrupt file from making us loop or allocate for long
_MAX_PHDRS = 4096
_MAX_DYN = 65536
_MAX_NOTES = 4096
_MAX_NAME = 4096

EM_386, EM_PPC64, EM_X86_64, EM_AARCH64, EM_ARM = 3, 21, 62, 183, 40

Reader = Callable[[int, int], bytes]


@dataclass(frozen=True)
class ElfInfo:
    """What nvlow needs from an ELF file.

    ``machine`` uses the ld.so.cache arch names: ``x86-64``, ``i386``, ``x32``,
    ``aarch64``, ``ppc64le``, ``ppc64``, ``armhf``/``arm``, else ``em-<number>``.
    ``abi_note`` is ``(os, major, minor, patch)`` from ``NT_GNU_ABI_TAG``.
    """

    elf_class: int
    machine: str
    soname: Optional[str]
    needed: Tuple[str, ...]
    abi_note: Optional[Tuple[int, int, int, int]]
    e_machine: int = 0
    e_type: int = 0


def _machine_name(e_machine: int, elf_class: int, big_endian: bool) -> str:
    if e_machine == EM_X86_64:
        return "x86-64" if elf_class == 64 else "x32"
    if e_machine == EM_386:
        return "i386"
    if e_machine == EM_AARCH64:
        return "aarch64"
    if e_machine == EM_PPC64:
        return "ppc64" if big_endian else "ppc64le"
    if e_machine == EM_ARM:
        return "arm"
    return f"em-{e_machine}"


def _parse(read: Reader, size: int, name: str) -> ElfInfo:
    def need(off: int, n: int, what: str) -> bytes:
        if off < 0 or n < 0 or off + n > size:
            raise HostError(f"truncated ELF file {name}: {what} outside the file")
        data = read(off, n)
        if len(data) != n:
            raise HostError(f"truncated ELF file {name}: {what} outside the file")
        return data

    if size < 16:
        raise HostError(f"not an ELF file: {name}")
    ident = need(0, 16, "identification")
    if ident[:4] != ELF_MAGIC:
        raise HostError(f"not an ELF file: {name}")
    if ident[4] not in (1, 2) or ident[5] not in (1, 2):
        raise HostError(f"unsupported ELF class or byte order in {name}")
    is64 = ident[4] == 2
    bo = "<" if ident[5] == 1 else ">"
    if is64:
        fields = struct.unpack(bo + "HHIQQQIHHHHHH", need(16, 48, "ELF header"))
    else:
        fields = struct.unpack(bo + "HHIIIIIHHHHHH", need(16, 36, "ELF header"))
    e_type, e_machine = fields[0], fields[1]
    e_phoff, e_phentsize, e_phnum = fields[4], fields[8], fields[9]
    elf_class = 64 if is64 else 32
    machine = _machine_name(e_machine, elf_class, bo == ">")

    min_phent = 56 if is64 else 32
    if e_phnum and (e_phentsize < min_phent or e_phnum > _MAX_PHDRS):
        raise HostError(f"corrupt ELF program headers in {name}")
    table = need(e_phoff, e_phentsize * e_phnum, "program headers") if e_phnum else b""
    loads: List[Tuple[int, int, int]] = []  # (vaddr, offset, filesz)
    dynamic: Optional[Tuple[int, int]] = None
    notes: List[Tuple[int, int, int]] = []  # (offset, filesz, align)
    for i in range(e_phnum):
        raw = table[i * e_phentsize: i * e_phentsize + min_phent]
        if is64:
            p_type, _fl, p_off, p_vaddr, _pa, p_filesz, _ms, p_align = struct.unpack(bo + "IIQQQQQQ", raw)
        else:
            p_type, p_off, p_vaddr, _pa, p_filesz, _ms, _fl, p_align = struct.unpack(bo + "IIIIIIII", raw)
        if p_type == PT_LOAD:
            loads.append((p_vaddr, p_off, p_filesz))
        elif p_type == PT_DYNAMIC and dynamic is None:
            dynamic = (p_off, p_filesz)
        elif p_type == PT_NOTE:
            notes.append((p_off, p_filesz, p_align))

    soname: Optional[str] = None
    needed: List[str] = []
    if dynamic is not None:
        soname, needed = _dynamic(need, loads, dynamic, is64, bo, size, name)
    abi = _abi_note(need, notes, bo, name)
    return ElfInfo(elf_class, machine, soname, tuple(needed), abi, e_machine, e_type)


def _dynamic(need: Callable[[int, int, str], bytes], loads: List[Tuple[int, int, int]],
             dynamic: Tuple[int, int], is64: bool, bo: str, size: int,
             name: str) -> Tuple[Optional[str], List[str]]:
    off, filesz = dynamic
    entsize = 16 if is64 else 8
    count = min(filesz // entsize, _MAX_DYN)
    blob = need(off, count * entsize, "dynamic section")
    fmt = bo + ("qQ" if is64 else "iI")
    strtab_addr: Optional[int] = None
    strsz: Optional[int] = None
    refs: List[Tuple[int, int]] = []
    for i in range(count):
        tag, val = struct.unpack_from(fmt, blob, i * entsize)
        if tag == DT_NULL:
            break
        if tag == DT_STRTAB:
            strtab_addr = val
        elif tag == DT_STRSZ:
            strsz = val
        elif tag in (DT_NEEDED, DT_SONAME):
            refs.append((tag, val))
    if not refs:
        return None, []
    if strtab_addr is None:
        raise HostError(f"corrupt ELF dynamic section in {name}: no DT_STRTAB")
    str_off: Optional[int] = None
    seg_end = size
    for vaddr, p_off, p_filesz in loads:
        if vaddr <= strtab_addr < vaddr + p_filesz:
            str_off = strtab_addr - vaddr + p_off
            seg_end = min(size, p_off + p_filesz)
            break
    if str_off is None:
        raise HostError(f"corrupt ELF dynamic section in {name}: string table not in a PT_LOAD segment")
    limit = seg_end - str_off
    if strsz is not None:
        limit = min(limit, strsz)
    strings = need(str_off, max(0, limit), "dynamic string table")

    def string(idx: int) -> str:
        if idx >= len(strings):
            raise HostError(f"corrupt ELF dynamic section in {name}: string offset outside the table")
        end = strings.find(b"\0", idx, idx + _MAX_NAME)
        if end < 0:
            raise HostError(f"corrupt ELF dynamic section in {name}: unterminated string")
        return strings[idx:end].decode("utf-8", "replace")

    soname: Optional[str] = None
    needed: List[str] = []
    for tag, val in refs:
        if tag == DT_SONAME:
            soname = string(val)
        else:
            needed.append(string(val))
    return soname, needed


def _abi_note(need: Callable[[int, int, str], bytes], notes: List[Tuple[int, int, int]],
              bo: str, name: str) -> Optional[Tuple[int, int, int, int]]:
    seen = 0
    for off, filesz, p_align in notes:
        blob = need(off, filesz, "note segment")
        align = 8 if p_align == 8 else 4
        pos = 0
        while pos + 12 <= len(blob) and seen < _MAX_NOTES:
            seen += 1
            namesz, descsz, ntype = struct.unpack_from(bo + "III", blob, pos)
            name_start = pos + 12
            desc_start = name_start + ((namesz + align - 1) // align) * align
            nxt = desc_start + ((descsz + align - 1) // align) * align
            if desc_start + descsz > len(blob):
                break  # a truncated note ends the segment; not fatal, as for ld.so
            if (ntype == NT_GNU_ABI_TAG and namesz == 4 and descsz >= 16
                    and blob[name_start:name_start + 4] == b"GNU\0"):
                words = struct.unpack_from(bo + "4I", blob, desc_start)
                return (words[0], words[1], words[2], words[3])
            pos = nxt
    return None


def parse_elf(data: bytes, name: str) -> ElfInfo:
    """Parse an ELF file held in memory; :class:`HostError` naming ``name`` if it is not one."""
    def read(off: int, n: int) -> bytes:
        return data[off:off + n]

    return _parse(read, len(data), name)


def read_elf(root: HostRoot, path: str) -> ElfInfo:
    """Read the ELF file at host path ``path`` under ``root`` (only the parts needed)."""
    real = root.host(path)
    try:
        with open(real, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()

            def read(off: int, n: int) -> bytes:
                fh.seek(off)
                return fh.read(n)

            return _parse(read, size, real)
    except OSError as exc:
        raise HostError(f"cannot read {real}: {exc.strerror or exc}") from None


def try_read_elf(root: HostRoot, path: str) -> Optional[ElfInfo]:
    """:func:`read_elf`, or None when the file is missing, unreadable or not ELF."""
    try:
        return read_elf(root, path)
    except HostError:
        return None
