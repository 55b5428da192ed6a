"""A small ELF reader: class, machine, SONAME, DT_NEEDED and the GNU ABI note.

Only the program headers are used, as the dynamic loader and ``ldconfig`` do:
``PT_DYNAMIC`` gives the dynamic entries, whose ``DT_STRTAB`` address is mapped
to a file offset through the ``PT_LOAD`` segments; ``PT_NOTE`` segments give
the ``NT_GNU_ABI_TAG`` note (libnvidia-tls is selected by it).

:func:`parse_elf` is pure (bytes in); :func:`read_elf` reads only the parts of
a file it needs (driver libraries are tens of MB), and only from a regular file
(:func:`nvlow.host.root.open_regular`: a FIFO never blocks it). Both raise
:class:`~nvlow.errors.HostError` naming the file for non-ELF or truncated
input; :func:`try_read_elf` returns None instead.

:func:`loadable_problem` is the check the library loader makes before ``dlopen``:
the dynamic loader maps a library's ``PT_LOAD`` segments and reads its dynamic
section straight from memory, so a truncated or corrupt file kills the process
with SIGBUS or SIGSEGV instead of failing. A file passes only when it is an ELF
shared object of this interpreter's class, byte order and machine whose program
headers, segments, section header table and dynamic section lie inside the file
and whose dynamic entries point inside its segments.

Example:
    >>> from nvlow.simulate.elfgen import make_elf_so
    >>> info = parse_elf(make_elf_so("libnvidia-tls.so.550.54.15", abi_note=(0, 2, 3, 99)), "tls")
    >>> info.abi_note
    (0, 2, 3, 99)
"""
from __future__ import annotations

import os
import struct
import sys

from ..frozen import Record
from ..errors import HostError
from .root import HostRoot, open_regular, read_regular

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Dict, List, Optional, Tuple, Union

    #: (vaddr, offset, filesz, memsz, flags) of a PT_LOAD segment
    _Load = Tuple[int, int, int, int, int]

    Reader = Callable[[int, int], bytes]

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


class ElfInfo(Record):
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


def _fd_reader(fd: int) -> Reader:
    def read(off: int, n: int) -> bytes:
        return os.pread(fd, n, off) if n > 0 else b""
    return read


def read_elf(root: HostRoot, path: str) -> ElfInfo:
    """Read the ELF file at host path ``path`` under ``root`` (only the parts needed)."""
    real = root.host(path)
    fd = open_regular(real)
    try:
        return _parse(_fd_reader(fd), os.fstat(fd).st_size, real)
    except OSError as exc:
        raise HostError(f"cannot read {real}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def try_read_elf(root: HostRoot, path: str) -> Optional[ElfInfo]:
    """:func:`read_elf`, or None when the file is missing, unreadable or not ELF."""
    try:
        return read_elf(root, path)
    except HostError:
        return None


# -- the loader's check ------------------------------------------------------------------
ET_DYN = 3
PF_X = 1
#: the most memory the PT_LOAD segments of a library may span (libcuda maps well under 1 GiB)
_MAX_SPAN = 64 << 30
PT_TLS, PT_GNU_RELRO, PT_GNU_PROPERTY = 7, 0x6474E552, 0x6474E553
DT_PLTREL, DT_RELA_TAG = 20, 7
_SEGMENT_NAMES = {PT_DYNAMIC: "PT_DYNAMIC", PT_TLS: "PT_TLS", PT_NOTE: "PT_NOTE", PT_GNU_RELRO: "PT_GNU_RELRO",
                  PT_GNU_PROPERTY: "PT_GNU_PROPERTY"}
#: dynamic tags whose value is an address the dynamic loader reads (or jumps to)
_ADDRESS_TAGS: Dict[int, str] = {
    3: "DT_PLTGOT", 4: "DT_HASH", 5: "DT_STRTAB", 6: "DT_SYMTAB", 7: "DT_RELA", 12: "DT_INIT", 13: "DT_FINI",
    17: "DT_REL", 23: "DT_JMPREL", 25: "DT_INIT_ARRAY", 26: "DT_FINI_ARRAY", 0x6FFFFEF5: "DT_GNU_HASH",
    0x6FFFFFF0: "DT_VERSYM", 0x6FFFFFFC: "DT_VERDEF", 0x6FFFFFFE: "DT_VERNEED",
}
#: size tag -> the address tag it measures (each needs the other: ld.so reads a table at address 0
#: when only its size is given)
_SIZE_TAGS: Dict[int, int] = {8: 7, 18: 17, 2: 23, 27: 25, 28: 26, 10: 5}
#: address tags whose tables hold words (relocations, symbols, pointer arrays, the GOT, hash words)
_WORD_ALIGNED = (3, 6, 7, 17, 23, 25, 26, 0x6FFFFEF5)
#: entry-size tags: DT_RELAENT, DT_RELENT, DT_SYMENT, DT_PLTREL
_ENTRY_TAGS = (9, 19, 11, DT_PLTREL)
#: address tags of tables of 32-bit words, and of 16-bit version indices
_ALIGN4, _ALIGN2 = (4, 0x6FFFFFFC, 0x6FFFFFFE), (0x6FFFFFF0,)
#: dynamic tags whose value is an offset into the string table
_STRING_TAGS = (DT_NEEDED, DT_SONAME, 15, 29)  # DT_RPATH, DT_RUNPATH
_MACHINES = {"x86_64": EM_X86_64, "amd64": EM_X86_64, "aarch64": EM_AARCH64, "arm64": EM_AARCH64,
             "ppc64le": EM_PPC64, "ppc64": EM_PPC64, "i386": EM_386, "i686": EM_386}

#: (ELF class, EI_DATA, e_machine) of this interpreter, read once
_NATIVE: List[Tuple[int, int, int]] = []


def native_identity() -> Tuple[int, int, int]:
    """(ELF class 32/64, EI_DATA 1 little/2 big endian, e_machine) of the running interpreter:
    what a library must be for ``dlopen`` to load it into this process."""
    if not _NATIVE:
        elf_class = 64 if sys.maxsize > 2 ** 32 else 32
        data = 1 if sys.byteorder == "little" else 2
        machine = 0
        try:
            head = read_regular("/proc/self/exe", limit=20)
            if len(head) == 20 and head[:4] == ELF_MAGIC:
                machine = struct.unpack(("<" if head[5] == 1 else ">") + "H", head[18:20])[0]
        except HostError:
            pass
        if not machine:
            uname = os.uname().machine
            machine = _MACHINES.get(uname, 0)
            if machine == EM_X86_64 and elf_class == 32:
                machine = EM_386
        _NATIVE.append((elf_class, data, machine))
    return _NATIVE[0]


def loadable_problem(read: Reader, size: int, want: Optional[Tuple[int, int, int]] = None) -> Optional[str]:
    """Why ``dlopen`` must not be given this file (None when it may), from its bytes.

    ``want`` is ``(class, EI_DATA, e_machine)``, by default :func:`native_identity`. The checks run
    in the order ld.so meets the structures: identification, ELF header, program headers, the
    segments inside PT_LOAD, then the dynamic section.

    Example (the simulator's stub libraries carry no symbol table: glibc 2.36 dies on them):
        >>> from nvlow.simulate.elfgen import make_elf_so
        >>> data = make_elf_so("libnvidia-ml.so.1")
        >>> loadable_problem(lambda off, n: data[off:off + n], len(data), (64, 1, EM_X86_64))
        'no DT_SYMTAB or DT_STRTAB in the dynamic section (ld.so would crash on it)'
        >>> loadable_problem(lambda off, n: data[off:off + n], 100, (64, 1, EM_X86_64))
        'truncated: the program headers end at byte 176, the file has 100 bytes'
        >>> loadable_problem(lambda off, n: data[off:off + n], len(data), (64, 1, EM_AARCH64))
        'ELF machine x86-64, this process is aarch64'
    """
    want = want or native_identity()
    header = _elf_header(read, size, want)
    if isinstance(header, str):
        return header
    segments = _program_headers(read, size, header)
    if isinstance(segments, str):
        return segments
    problem = _section_table_problem(size, header) or segments.placement_problem(size)
    if problem:
        return problem
    if segments.dynamic is None:
        return "no PT_DYNAMIC segment (not a dynamic library)"
    return _dynamic_problem(read, segments, header.is64, header.bo)


class _Header:
    """The ELF header fields the loadability checks need."""

    __slots__ = ("is64", "bo", "phoff", "phentsize", "phnum", "shoff", "shentsize", "shnum")

    def __init__(self, is64: bool, bo: str, fields: Tuple[int, ...]) -> None:
        self.is64, self.bo = is64, bo
        (_type, _machine, _version, _entry, self.phoff, self.shoff, _flags, _ehsize, self.phentsize,
         self.phnum, self.shentsize, self.shnum, _shstrndx) = fields


def _ident_problem(ident: bytes, want: Tuple[int, int, int]) -> Optional[str]:
    if len(ident) < 16 or ident[:4] != ELF_MAGIC:
        return "not an ELF file (no ELF magic)"
    if ident[4] not in (1, 2):
        return f"unknown ELF class {ident[4]}"
    elf_class = 64 if ident[4] == 2 else 32
    if elf_class != want[0]:
        return f"a {elf_class}-bit ELF file, this process is {want[0]}-bit"
    if ident[5] != want[1]:
        return "ELF byte order differs from this machine's"
    if ident[6] != 1:
        return f"unknown ELF version {ident[6]}"
    return None


def _elf_header(read: Reader, size: int, want: Tuple[int, int, int]) -> Union[_Header, str]:
    """The ELF header checked against ``want``, or the problem."""
    if size < 16:
        return "not an ELF file (shorter than an ELF header)"
    ident = read(0, 16)
    problem = _ident_problem(ident, want)
    if problem:
        return problem
    is64 = ident[4] == 2
    bo = "<" if ident[5] == 1 else ">"
    ehsize = 64 if is64 else 52
    if size < ehsize:
        return f"truncated: the ELF header ends at byte {ehsize}, the file has {size} bytes"
    hdr = read(16, ehsize - 16)
    if len(hdr) != ehsize - 16:
        return "truncated ELF header"
    header = _Header(is64, bo, struct.unpack(bo + ("HHIQQQIHHHHHH" if is64 else "HHIIIIIHHHHHH"), hdr))
    e_type, e_machine = struct.unpack_from(bo + "HH", hdr)
    if e_type != ET_DYN:
        return f"not a shared object (ELF type {e_type})"
    if e_machine != want[2]:
        return (f"ELF machine {_machine_name(e_machine, 64 if is64 else 32, bo == '>')}, this process is "
                f"{_machine_name(want[2], want[0], want[1] == 2)}")
    return header


class _Segments:
    """The PT_LOAD segments (in order) and the other segments ld.so uses, with the address checks."""

    __slots__ = ("loads", "others", "dynamic", "is64")

    def __init__(self, is64: bool) -> None:
        self.is64 = is64
        self.loads: List[_Load] = []
        self.others: List[Tuple[int, int, int, int, int]] = []  # (type, vaddr, offset, filesz, memsz)
        self.dynamic: Optional[Tuple[int, int]] = None

    def in_file(self, vaddr: int, length: int) -> Optional[_Load]:
        """The PT_LOAD segment whose file-backed part holds [vaddr, vaddr + length)."""
        for seg in self.loads:
            if seg[0] <= vaddr and vaddr + length <= seg[0] + seg[2]:
                return seg
        return None

    def in_memory(self, vaddr: int, length: int, flags: int = 0) -> bool:
        """Whether a PT_LOAD segment with all of ``flags`` holds [vaddr, vaddr + length) in memory."""
        return any(seg[0] <= vaddr and vaddr + length <= seg[0] + seg[3] and seg[4] & flags == flags
                   for seg in self.loads)

    def add_load(self, i: int, size: int, vaddr: int, off: int, filesz: int, memsz: int, flags: int) -> Optional[str]:
        if off + filesz > size:
            return f"truncated: PT_LOAD segment {i} ends at byte {off + filesz}, the file has {size} bytes"
        if filesz > memsz:
            return f"corrupt PT_LOAD segment {i} (file size above memory size)"
        if flags & PF_X and filesz != memsz:
            return f"corrupt PT_LOAD segment {i} (executable but not all in the file)"
        if self.loads and vaddr < self.loads[-1][0] + self.loads[-1][3]:
            return f"corrupt PT_LOAD segment {i} (overlaps or precedes the one before it)"
        self.loads.append((vaddr, off, filesz, memsz, flags))
        return None

    def placement_problem(self, size: int) -> Optional[str]:
        """Every non-PT_LOAD segment inside the file and inside its PT_LOAD segment; finds PT_DYNAMIC."""
        for p_type, p_vaddr, p_off, p_filesz, p_memsz in self.others:
            name = _SEGMENT_NAMES[p_type]
            if p_off + p_filesz > size:
                return f"truncated: the {name} segment ends at byte {p_off + p_filesz}, the file has {size} bytes"
            seg = self.in_file(p_vaddr, p_filesz)
            if seg is None or (p_type != PT_TLS and not self.in_memory(p_vaddr, p_memsz)):
                return f"corrupt {name} segment (not inside a PT_LOAD segment)"
            if p_type == PT_DYNAMIC and p_vaddr % (8 if self.is64 else 4):
                return "corrupt PT_DYNAMIC segment (misaligned)"
            if p_filesz and p_vaddr - seg[0] + seg[1] != p_off:
                return f"corrupt {name} segment (its file offset does not match its PT_LOAD segment)"
            if p_type == PT_DYNAMIC and self.dynamic is None:
                self.dynamic = (p_off, p_filesz)
        return None


def _program_headers(read: Reader, size: int, h: _Header) -> Union[_Segments, str]:
    """The program header table read into :class:`_Segments`, or the problem."""
    phent = 56 if h.is64 else 32
    if h.phentsize != phent or not 0 < h.phnum <= _MAX_PHDRS:
        return f"corrupt program header table ({h.phnum} entries of {h.phentsize} bytes)"
    ph_end = h.phoff + phent * h.phnum
    if ph_end > size:
        return f"truncated: the program headers end at byte {ph_end}, the file has {size} bytes"
    table = read(h.phoff, phent * h.phnum)
    if len(table) != phent * h.phnum:
        return "truncated program headers"
    segments = _Segments(h.is64)
    for i in range(h.phnum):
        if h.is64:
            p_type, p_flags, p_off, p_vaddr, _pa, p_filesz, p_memsz, _al = struct.unpack_from(
                h.bo + "IIQQQQQQ", table, i * phent)
        else:
            p_type, p_off, p_vaddr, _pa, p_filesz, p_memsz, p_flags, _al = struct.unpack_from(
                h.bo + "IIIIIIII", table, i * phent)
        if p_type == PT_LOAD:
            problem = segments.add_load(i, size, p_vaddr, p_off, p_filesz, p_memsz, p_flags)
            if problem:
                return problem
        elif p_type in _SEGMENT_NAMES:
            segments.others.append((p_type, p_vaddr, p_off, p_filesz, p_memsz))
    loads = segments.loads
    if not loads:
        return "no PT_LOAD segment"
    if loads[-1][0] + loads[-1][3] - loads[0][0] > _MAX_SPAN:
        return "corrupt PT_LOAD segments (they span more than 64 GiB)"
    return segments


def _section_table_problem(size: int, h: _Header) -> Optional[str]:
    if not h.shoff:
        return None
    shent = 64 if h.is64 else 40
    if h.shnum and h.shentsize != shent:
        return f"corrupt section header table ({h.shnum} entries of {h.shentsize} bytes)"
    sh_end = h.shoff + shent * max(h.shnum, 1)
    if sh_end > size:
        return f"truncated: the section headers end at byte {sh_end}, the file has {size} bytes"
    return None


def _read_dynamic(read: Reader, dynamic: Tuple[int, int], is64: bool, bo: str
                  ) -> Union[Tuple[Dict[int, int], List[int]], str]:
    """The dynamic section's address/size/entry values (first of each tag) and name offsets."""
    off, filesz = dynamic
    entsize = 16 if is64 else 8
    count = min(filesz // entsize, _MAX_DYN)
    blob = read(off, count * entsize)
    if len(blob) != count * entsize:
        return "truncated dynamic section"
    fmt = bo + ("qQ" if is64 else "iI")
    values: Dict[int, int] = {}
    strings: List[int] = []
    for i in range(count):
        tag, val = struct.unpack_from(fmt, blob, i * entsize)
        if tag == DT_NULL:
            return values, strings
        if tag in _STRING_TAGS:
            strings.append(val)
        elif tag in _ADDRESS_TAGS or tag in _SIZE_TAGS or tag in _ENTRY_TAGS:
            values.setdefault(tag, val)
    return "corrupt dynamic section (no DT_NULL entry)"


def _address_problem(values: Dict[int, int], segments: _Segments) -> Optional[str]:
    word = 8 if segments.is64 else 4
    for tag, what in _ADDRESS_TAGS.items():
        if tag not in values:
            continue
        if not segments.in_memory(values[tag], 1, 0):
            return f"corrupt dynamic section ({what} 0x{values[tag]:x} is outside every PT_LOAD segment)"
        if tag in (12, 13) and not segments.in_memory(values[tag], 1, PF_X):  # code ld.so calls
            return f"corrupt dynamic section ({what} 0x{values[tag]:x} is not in an executable segment)"
        align = word if tag in _WORD_ALIGNED else 4 if tag in _ALIGN4 else 2 if tag in _ALIGN2 else 1
        if values[tag] % align:
            return f"corrupt dynamic section ({what} 0x{values[tag]:x} is misaligned)"
    for size_tag, addr_tag in _SIZE_TAGS.items():
        if (size_tag in values) != (addr_tag in values):
            return f"corrupt dynamic section ({_ADDRESS_TAGS[addr_tag]} without its size, or a size without it)"
        if size_tag in values and not segments.in_memory(values[addr_tag], values[size_tag], 0):
            return f"corrupt dynamic section ({_ADDRESS_TAGS[addr_tag]} runs past its PT_LOAD segment)"
    return None


def _table_problem(values: Dict[int, int], is64: bool) -> Optional[str]:
    word = 8 if is64 else 4
    rela = 24 if is64 else 12
    rel = 16 if is64 else 8
    plt = rela if values.get(DT_PLTREL, DT_RELA_TAG) == DT_RELA_TAG else rel
    for size_tag, entry in ((8, rela), (18, rel), (2, plt), (27, word), (28, word)):
        if values.get(size_tag, 0) % entry:
            return "corrupt dynamic section (a table size is not a whole number of entries)"
    if 6 not in values or 5 not in values:
        # glibc reads the symbol table of every object it relocates, whether it has relocations or not
        return "no DT_SYMTAB or DT_STRTAB in the dynamic section (ld.so would crash on it)"
    # ld.so asserts these entry sizes through a pointer that is NULL when the entry is missing
    for addr_tag, ent_tag, want_size, what in ((7, 9, rela, "DT_RELAENT"), (17, 19, rel, "DT_RELENT"),
                                               (6, 11, 24 if is64 else 16, "DT_SYMENT")):
        if (addr_tag in values or ent_tag in values) and values.get(ent_tag, want_size if addr_tag == 6 else -1) \
                != want_size:
            return f"corrupt dynamic section ({what} missing or not {want_size})"
    if (DT_PLTREL in values and values[DT_PLTREL] not in (7, 17)) or (23 in values and DT_PLTREL not in values):
        return "corrupt dynamic section (DT_PLTREL missing or neither DT_RELA nor DT_REL)"
    return None


def _names_problem(read: Reader, values: Dict[int, int], strings: List[int], segments: _Segments) -> Optional[str]:
    if not strings:
        return None
    strtab, strsz = values.get(5), values.get(10)
    if strtab is None or strsz is None:
        return "corrupt dynamic section (names without DT_STRTAB and DT_STRSZ)"
    seg = segments.in_file(strtab, strsz)
    if seg is None:
        return "corrupt dynamic section (the string table is not in the file)"
    table_off = strtab - seg[0] + seg[1]
    for index in strings:
        if index >= strsz:
            return "corrupt dynamic section (a name outside the string table)"
        chunk = read(table_off + index, min(_MAX_NAME, strsz - index))
        if b"\0" not in chunk:
            return "corrupt dynamic section (an unterminated name)"
    return None


def _dynamic_problem(read: Reader, segments: _Segments, is64: bool, bo: str) -> Optional[str]:
    assert segments.dynamic is not None
    found = _read_dynamic(read, segments.dynamic, is64, bo)
    if isinstance(found, str):
        return found
    values, strings = found
    return (_address_problem(values, segments) or _table_problem(values, is64)
            or _names_problem(read, values, strings, segments))


def loadable_problem_at(real_path: str, want: Optional[Tuple[int, int, int]] = None) -> Optional[str]:
    """:func:`loadable_problem` of the file at ``real_path``; a file that is not a regular file
    (a FIFO would block ``dlopen`` forever) or cannot be read is a problem too.

    Example:
        >>> loadable_problem_at("/dev/null")
        'a character device, not a regular file'
    """
    try:
        fd = open_regular(real_path)
    except HostError as exc:
        text = str(exc)
        for prefix in (real_path + " is ", f"cannot read {real_path}: "):
            if text.startswith(prefix):
                text = text[len(prefix):]
        return text[:-len("; not read")] if text.endswith("; not read") else text
    try:
        return loadable_problem(_fd_reader(fd), os.fstat(fd).st_size, want)
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}"
    finally:
        os.close(fd)
