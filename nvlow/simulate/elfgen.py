"""Tiny, valid ELF shared objects written in pure Python (no compiler needed).

The files carry what nvlow, ``ldconfig`` and ``readelf -d`` look at: the ELF
header (class, machine), one ``PT_LOAD`` covering the file, a ``PT_DYNAMIC``
with ``DT_STRTAB``/``DT_STRSZ``/``DT_SONAME``/``DT_NEEDED``, and optionally a
``PT_NOTE`` holding the GNU ABI tag (``.note.ABI-tag``). There is no code and
no section header table; nothing here is meant to be loaded by ``ld.so``.

Example:
    >>> from nvlow.elf import parse_elf
    >>> info = parse_elf(make_elf_so("libcuda.so.1", ["libc.so.6"]), "libcuda")
    >>> (info.elf_class, info.machine, info.soname, info.needed)
    (64, 'x86-64', 'libcuda.so.1', ('libc.so.6',))
"""
from __future__ import annotations

import struct
from typing import Dict, List, Optional, Sequence, Tuple

#: machine name -> (e_machine, ELF class); names are the ld.so.cache arch names
MACHINES: Dict[str, Tuple[int, int]] = {
    "x86-64": (62, 64),
    "i386": (3, 32),
    "x32": (62, 32),
    "aarch64": (183, 64),
    "ppc64le": (21, 64),
    "armhf": (40, 32),
}

PT_LOAD, PT_DYNAMIC, PT_NOTE = 1, 2, 4
DT_NULL, DT_NEEDED, DT_STRTAB, DT_STRSZ, DT_SONAME = 0, 1, 5, 10, 14
ET_DYN = 3


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
) -> bytes:
    """A minimal little-endian ELF shared object.

    ``machine`` is an ld.so.cache arch name (``x86-64``, ``i386``, ``x32``,
    ``aarch64``, ``ppc64le``, ``armhf``); ``elf_class`` defaults to the
    machine's (give 32 with ``x86-64`` to get x32). ``abi_note`` is
    ``(os, major, minor, patch)`` as in ``.note.ABI-tag`` (``(0, 2, 3, 99)``
    is the "new TLS" libnvidia-tls). ``vaddr_base`` moves the load address so
    that readers must translate ``DT_STRTAB`` through ``PT_LOAD``;
    ``padding`` appends zero bytes (to make files of a realistic size).
    """
    if machine not in MACHINES:
        raise ValueError(f"unknown machine {machine!r}")
    e_machine, default_class = MACHINES[machine]
    cls = elf_class or default_class
    if cls not in (32, 64):
        raise ValueError(f"bad ELF class {cls}")
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


def make_script(text: str) -> bytes:
    """A small ``/bin/sh`` script standing in for a driver binary (``nvidia-smi``)."""
    return ("#!/bin/sh\n" + text.rstrip("\n") + "\n").encode()
