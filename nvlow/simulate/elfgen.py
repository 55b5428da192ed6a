"""Tiny, valid ELF files written in pure Python (no compiler needed).

:func:`make_elf_so` writes shared objects. By default they carry only what
nvlow, ``ldconfig`` and ``readelf -d`` look at: the ELF header (class,
machine), one ``PT_LOAD`` covering the file, a ``PT_DYNAMIC`` with
``DT_STRTAB``/``DT_STRSZ``/``DT_SONAME``/``DT_NEEDED``, and optionally a
``PT_NOTE`` holding the GNU ABI tag (``.note.ABI-tag``): no symbol table, so
glibc's ``dlopen`` crashes on them (nvlow's loader refuses them). With
``loadable=True`` they are complete shared objects, as the simulated driver
trees use: a section header table (``readelf -S``, Go's ``debug/elf``),
``.dynsym``/``.dynstr`` with a SysV ``.hash``, ``DT_SYMTAB``/``DT_SYMENT``,
a ``PT_GNU_STACK`` (no executable stack) and one exported data symbol,
:data:`MARKER_SYMBOL`, holding ``"nvlow simulated <SONAME>"``. glibc loads
them (there is no code, so nothing runs).

:func:`make_elf_exec` writes a static x86-64 executable that prints a line
and exits 0: the simulated driver binaries (``nvidia-smi``).

Example:
    >>> from nvlow.host.elf import parse_elf
    >>> info = parse_elf(make_elf_so("libcuda.so.1", ["libc.so.6"]), "libcuda")
    >>> (info.elf_class, info.machine, info.soname, info.needed)
    (64, 'x86-64', 'libcuda.so.1', ('libc.so.6',))
    >>> parse_elf(make_elf_so("libcuda.so.1", ["libc.so.6"], loadable=True), "libcuda") == info
    True
    >>> make_elf_exec("hello")[:4], len(make_elf_exec("hello")) < 512
    (b'\\x7fELF', True)
"""
from __future__ import annotations

import struct

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, List, Optional, Sequence, Tuple, Union


#: machine name -> (e_machine, ELF class); names are the ld.so.cache arch names
MACHINES: Dict[str, Tuple[int, int]] = {
    "x86-64": (62, 64),
    "i386": (3, 32),
    "x32": (62, 32),
    "aarch64": (183, 64),
    "ppc64le": (21, 64),
    "armhf": (40, 32),
}

PT_LOAD, PT_DYNAMIC, PT_NOTE, PT_GNU_STACK = 1, 2, 4, 0x6474E551
DT_NULL, DT_NEEDED, DT_STRTAB, DT_STRSZ, DT_SONAME = 0, 1, 5, 10, 14
DT_HASH, DT_SYMTAB, DT_SYMENT = 4, 6, 11
ET_EXEC, ET_DYN = 2, 3
PF_X, PF_W, PF_R = 1, 2, 4
SHT_PROGBITS, SHT_STRTAB, SHT_HASH, SHT_DYNAMIC, SHT_NOTE, SHT_DYNSYM = 1, 3, 5, 6, 7, 11
SHF_WRITE, SHF_ALLOC, SHF_EXECINSTR = 1, 2, 4

#: the data symbol every loadable simulated library exports ("nvlow simulated <SONAME>\\0")
MARKER_SYMBOL = "nvlow_simulated_library"
#: segment alignment: the largest page size of the machine (64 KiB pages on arm64 and ppc64le)
_PAGE = {"aarch64": 0x10000, "ppc64le": 0x10000}


def _align(n: int, a: int) -> int:
    return (n + a - 1) // a * a


def make_elf_so(
    soname: Optional[str],
    needed: Sequence[str] = (),
    *,
    elf_class: Optional[int] = None,
    machine: str = "x86-64",
    abi_note: Optional[Tuple[int, int, int, int]] = None,
    vaddr_base: int = 0,
    padding: int = 0,
    loadable: bool = False,
) -> bytes:
    """A little-endian ELF shared object: minimal, or with ``loadable`` complete enough for ``dlopen``.

    ``machine`` is an ld.so.cache arch name (``x86-64``, ``i386``, ``x32``,
    ``aarch64``, ``ppc64le``, ``armhf``); ``elf_class`` defaults to the
    machine's (give 32 with ``x86-64`` to get x32). ``abi_note`` is
    ``(os, major, minor, patch)`` as in ``.note.ABI-tag`` (``(0, 2, 3, 99)``
    is the "new TLS" libnvidia-tls). ``vaddr_base`` moves the load address so
    that readers must translate ``DT_STRTAB`` through ``PT_LOAD`` (a multiple
    of the page size for a loadable file); ``padding`` appends zero bytes (to
    make files of a realistic size).
    """
    if machine not in MACHINES:
        raise ValueError(f"unknown machine {machine!r}")
    e_machine, default_class = MACHINES[machine]
    cls = elf_class or default_class
    if cls not in (32, 64):
        raise ValueError(f"bad ELF class {cls}")
    if loadable:
        return _loadable_so(soname, needed, cls == 64, e_machine, _PAGE.get(machine, 0x1000), abi_note,
                            vaddr_base) + bytes(padding)
    is64 = cls == 64
    ehsize, phentsize, dynent = (64, 56, 16) if is64 else (52, 32, 8)
    addr_fmt = "Q" if is64 else "I"

    # string table: leading NUL, then each distinct name once
    strtab = bytearray(b"\0")
    offsets: Dict[str, int] = {}
    for s in ([soname] if soname else []) + list(needed):
        if s not in offsets:
            offsets[s] = len(strtab)
            strtab += s.encode() + b"\0"

    dyn: List[Tuple[int, int]] = [(DT_NEEDED, offsets[n]) for n in needed]
    if soname:
        dyn.append((DT_SONAME, offsets[soname]))
    dyn += [(DT_STRTAB, 0), (DT_STRSZ, len(strtab)), (DT_NULL, 0)]  # STRTAB patched below

    note = b""
    if abi_note is not None:
        note = struct.pack("<III4s4I", 4, 16, 1, b"GNU\0", *abi_note)

    nph = 3 if note else 2
    ph_off = ehsize
    note_off = _align(ph_off + nph * phentsize, 8)
    str_off = note_off + len(note)
    dyn_off = _align(str_off + len(strtab), 8)
    dyn_size = len(dyn) * dynent
    end = dyn_off + dyn_size
    dyn = [(t, vaddr_base + str_off if t == DT_STRTAB else v) for t, v in dyn]

    out = bytearray(end)
    ident = b"\x7fELF" + bytes([2 if is64 else 1, 1, 1, 0]) + bytes(8)
    if is64:
        hdr = struct.pack("<16sHHIQQQIHHHHHH", ident, ET_DYN, e_machine, 1, 0, ph_off, 0, 0,
                          ehsize, phentsize, nph, 64, 0, 0)
    else:
        hdr = struct.pack("<16sHHIIIIIHHHHHH", ident, ET_DYN, e_machine, 1, 0, ph_off, 0, 0,
                          ehsize, phentsize, nph, 40, 0, 0)
    out[0:len(hdr)] = hdr

    def phdr(p_type: int, flags: int, off: int, size: int, align: int) -> bytes:
        va = vaddr_base + off
        if is64:
            return struct.pack("<IIQQQQQQ", p_type, flags, off, va, va, size, size, align)
        return struct.pack("<IIIIIIII", p_type, off, va, va, size, size, flags, align)

    phs = [phdr(PT_LOAD, 6, 0, end, 0x1000), phdr(PT_DYNAMIC, 6, dyn_off, dyn_size, 8)]
    if note:
        phs.append(phdr(PT_NOTE, 4, note_off, len(note), 4))
    for i, ph in enumerate(phs):
        out[ph_off + i * phentsize: ph_off + (i + 1) * phentsize] = ph
    out[note_off:note_off + len(note)] = note
    out[str_off:str_off + len(strtab)] = strtab
    for i, (tag, val) in enumerate(dyn):
        out[dyn_off + i * dynent: dyn_off + (i + 1) * dynent] = struct.pack(
            "<" + addr_fmt * 2, tag, val)
    return bytes(out) + bytes(padding)


def elf_hash(name: bytes) -> int:
    """The SysV ELF hash of a symbol name (``.hash`` buckets).

    Example:
        >>> hex(elf_hash(b"printf"))
        '0x77905a6'
    """
    h = 0
    for c in name:
        h = ((h << 4) + c) & 0xFFFFFFFF
        g = h & 0xF0000000
        if g:
            h ^= g >> 24
        h &= ~g & 0xFFFFFFFF
    return h


def _ehdr(is64: bool, e_type: int, e_machine: int, entry: int, phoff: int, shoff: int, phnum: int,
          shnum: int, shstrndx: int) -> bytes:
    ident = b"\x7fELF" + bytes([2 if is64 else 1, 1, 1, 0]) + bytes(8)
    if is64:
        return struct.pack("<16sHHIQQQIHHHHHH", ident, e_type, e_machine, 1, entry, phoff, shoff, 0,
                           64, 56, phnum, 64, shnum, shstrndx)
    return struct.pack("<16sHHIIIIIHHHHHH", ident, e_type, e_machine, 1, entry, phoff, shoff, 0,
                       52, 32, phnum, 40, shnum, shstrndx)


def _phdr(is64: bool, p_type: int, flags: int, off: int, vaddr: int, size: int, align: int) -> bytes:
    if is64:
        return struct.pack("<IIQQQQQQ", p_type, flags, off, vaddr, vaddr, size, size, align)
    return struct.pack("<IIIIIIII", p_type, off, vaddr, vaddr, size, size, flags, align)


def _shdr(is64: bool, name: int, sh_type: int, flags: int, addr: int, off: int, size: int, link: int = 0,
          info: int = 0, align: int = 1, entsize: int = 0) -> bytes:
    fmt = "<IIQQQQIIQQ" if is64 else "<IIIIIIIIII"
    return struct.pack(fmt, name, sh_type, flags, addr, off, size, link, info, align, entsize)


class _Layout:
    """Appends aligned chunks to a file image and remembers where each went."""

    def __init__(self, start: int) -> None:
        self.data = bytearray(start)

    def add(self, blob: bytes, align: int) -> int:
        self.data += bytes(_align(len(self.data), align) - len(self.data))
        off = len(self.data)
        self.data += blob
        return off


def _loadable_so(soname: Optional[str], needed: Sequence[str], is64: bool, e_machine: int, page: int,
                 abi_note: Optional[Tuple[int, int, int, int]], vaddr_base: int) -> bytes:
    if vaddr_base % page:
        raise ValueError(f"vaddr_base 0x{vaddr_base:x} is not a multiple of the page size 0x{page:x}")
    word = 8 if is64 else 4
    dynent, syment = (16, 24) if is64 else (8, 16)
    marker = f"nvlow simulated {soname or 'library'}".encode() + b"\0"

    dynstr = bytearray(b"\0")
    offsets: Dict[str, int] = {}
    for s in ([soname] if soname else []) + list(needed) + [MARKER_SYMBOL]:
        if s not in offsets:
            offsets[s] = len(dynstr)
            dynstr += s.encode() + b"\0"
    names = [".note.ABI-tag"] if abi_note else []
    names += [".hash", ".dynsym", ".dynstr", ".rodata", ".dynamic", ".shstrtab"]
    shstrtab = bytearray(b"\0")
    shname: Dict[str, int] = {}
    for n in names:
        shname[n] = len(shstrtab)
        shstrtab += n.encode() + b"\0"
    index = {n: i + 1 for i, n in enumerate(names)}

    nph = 4 if abi_note else 3
    out = _Layout((64 if is64 else 52) + nph * (56 if is64 else 32))
    note_off = out.add(struct.pack("<III4s4I", 4, 16, 1, b"GNU\0", *abi_note), 4) if abi_note else 0
    nsyms = 2  # the null symbol, the marker
    buckets, chain = [0], [0] * nsyms
    for i in range(1, nsyms):  # one bucket: every symbol on one chain
        chain[i], buckets[0] = buckets[0], i
    hash_off = out.add(struct.pack(f"<{2 + len(buckets) + nsyms}I", len(buckets), nsyms, *buckets, *chain), word)
    sym_off = out.add(bytes(syment * nsyms), word)  # filled below, once .rodata has an address
    str_off = out.add(bytes(dynstr), 1)
    ro_off = out.add(marker, word)
    if is64:
        marker_sym = struct.pack("<IBBHQQ", offsets[MARKER_SYMBOL], 0x11, 0, index[".rodata"],
                                 vaddr_base + ro_off, len(marker))
    else:
        marker_sym = struct.pack("<IIIBBH", offsets[MARKER_SYMBOL], vaddr_base + ro_off, len(marker), 0x11, 0,
                                 index[".rodata"])
    out.data[sym_off + syment:sym_off + 2 * syment] = marker_sym
    dyn: List[Tuple[int, int]] = [(DT_NEEDED, offsets[n]) for n in needed]
    if soname:
        dyn.append((DT_SONAME, offsets[soname]))
    dyn += [(DT_HASH, vaddr_base + hash_off), (DT_STRTAB, vaddr_base + str_off), (DT_SYMTAB, vaddr_base + sym_off),
            (DT_STRSZ, len(dynstr)), (DT_SYMENT, syment), (DT_NULL, 0)]
    fmt = "<qQ" if is64 else "<iI"
    dyn_off = out.add(b"".join(struct.pack(fmt, t, v) for t, v in dyn), word)
    load_end = len(out.data)
    shstr_off = out.add(bytes(shstrtab), 1)
    sections = [bytes(64 if is64 else 40)]
    if abi_note:
        sections.append(_shdr(is64, shname[".note.ABI-tag"], SHT_NOTE, SHF_ALLOC, vaddr_base + note_off, note_off,
                              32, align=4))
    sections += [
        _shdr(is64, shname[".hash"], SHT_HASH, SHF_ALLOC, vaddr_base + hash_off, hash_off,
              4 * (2 + len(buckets) + nsyms), link=index[".dynsym"], align=word, entsize=4),
        _shdr(is64, shname[".dynsym"], SHT_DYNSYM, SHF_ALLOC, vaddr_base + sym_off, sym_off, syment * nsyms,
              link=index[".dynstr"], info=1, align=word, entsize=syment),
        _shdr(is64, shname[".dynstr"], SHT_STRTAB, SHF_ALLOC, vaddr_base + str_off, str_off, len(dynstr)),
        _shdr(is64, shname[".rodata"], SHT_PROGBITS, SHF_ALLOC, vaddr_base + ro_off, ro_off, len(marker),
              align=word),
        _shdr(is64, shname[".dynamic"], SHT_DYNAMIC, SHF_WRITE | SHF_ALLOC, vaddr_base + dyn_off, dyn_off,
              len(dyn) * dynent, link=index[".dynstr"], align=word, entsize=dynent),
        _shdr(is64, shname[".shstrtab"], SHT_STRTAB, 0, 0, shstr_off, len(shstrtab)),
    ]
    sh_off = out.add(b"".join(sections), word)

    phs = [_phdr(is64, PT_LOAD, PF_R | PF_W, 0, vaddr_base, load_end, page),
           _phdr(is64, PT_DYNAMIC, PF_R | PF_W, dyn_off, vaddr_base + dyn_off, len(dyn) * dynent, word),
           _phdr(is64, PT_GNU_STACK, PF_R | PF_W, 0, 0, 0, 16)]
    if abi_note:
        phs.append(_phdr(is64, PT_NOTE, PF_R, note_off, vaddr_base + note_off, 32, 4))
    head = _ehdr(is64, ET_DYN, e_machine, 0, 64 if is64 else 52, sh_off, nph, len(sections), index[".shstrtab"])
    out.data[0:len(head)] = head
    out.data[len(head):len(head) + len(b"".join(phs))] = b"".join(phs)
    return bytes(out.data)


#: x86-64: write(1, msg, len); exit(0). The message follows the code; ``lea rsi, [rip + 16]``.
_X86_64_PRINT = (b"\xb8\x01\x00\x00\x00"  # mov eax, 1 (write)
                 b"\xbf\x01\x00\x00\x00"  # mov edi, 1 (stdout)
                 b"\x48\x8d\x35\x10\x00\x00\x00"  # lea rsi, [rip + 16]: the byte after the last syscall
                 b"\xba%s"  # mov edx, len
                 b"\x0f\x05"  # syscall
                 b"\xb8\x3c\x00\x00\x00"  # mov eax, 60 (exit)
                 b"\x31\xff"  # xor edi, edi
                 b"\x0f\x05")  # syscall


def make_elf_exec(message: Union[str, bytes], *, machine: str = "x86-64") -> bytes:
    """A static x86-64 ELF executable that writes ``message`` to stdout and exits 0, whatever its
    arguments (a simulated ``nvidia-smi``). Other machines raise ValueError.

    It has a section header table (``.text``, ``.shstrtab``) and a ``PT_GNU_STACK``, so
    ``readelf -h -S -l`` and Go's ``debug/elf`` read it like any static binary.
    """
    if machine != "x86-64":
        raise ValueError(f"simulated executables exist for x86-64 only, not {machine!r}")
    text = message.encode() if isinstance(message, str) else message
    code = _X86_64_PRINT.replace(b"%s", struct.pack("<I", len(text)))
    base = 0x400000
    body = code + text
    shstrtab = b"\0.text\0.shstrtab\0"
    out = _Layout(64 + 2 * 56)
    text_off = out.add(body, 16)
    shstr_off = out.add(shstrtab, 1)
    sections = [bytes(64),
                _shdr(True, 1, SHT_PROGBITS, SHF_ALLOC | SHF_EXECINSTR, base + text_off, text_off, len(body),
                      align=16),
                _shdr(True, 7, SHT_STRTAB, 0, 0, shstr_off, len(shstrtab))]
    sh_off = out.add(b"".join(sections), 8)
    head = _ehdr(True, ET_EXEC, MACHINES[machine][0], base + text_off, 64, sh_off, 2, len(sections), 2)
    phs = (_phdr(True, PT_LOAD, PF_R | PF_X, 0, base, text_off + len(body), 0x1000)
           + _phdr(True, PT_GNU_STACK, PF_R | PF_W, 0, 0, 0, 16))
    out.data[0:64] = head
    out.data[64:64 + len(phs)] = phs
    return bytes(out.data)


def make_script(text: str) -> bytes:
    """A small ``/bin/sh`` script standing in for a driver binary (``nvidia-smi``)."""
    return ("#!/bin/sh\n" + text.rstrip("\n") + "\n").encode()
