"""The simulated driver trees' ELF files: complete shared objects glibc loads and binutils reads, and
binaries that are real executables.

Every native library of every preset is dlopened (``ctypes.CDLL``, ``RTLD_LAZY``) in a subprocess of its
own, after the in-tree libraries its ``DT_NEEDED`` names (loaded by path, so glibc matches them by
SONAME); the process must exit normally. ``readelf -W -h -S -l -d --dyn-syms`` must read every file
without a warning.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import struct
import subprocess
import sys
from typing import Dict, List, Tuple

import pytest

from nvlow.host.elf import ElfInfo, loadable_problem, loadable_problem_at, parse_elf
from nvlow.simulate.drivertree import binary_line
from nvlow.simulate.elfgen import MACHINES, MARKER_SYMBOL, elf_hash, make_elf_exec, make_elf_so
from nvlow.simulate.hosttree import build_tree
from nvlow.simulate.presets import PRESET_NAMES, get_preset

HAVE_READELF = shutil.which("readelf") is not None
X86_64 = platform.machine() in ("x86_64", "AMD64")
TREE_PRESETS = [n for n in PRESET_NAMES if get_preset(n).libraries_present and not get_preset(n).wsl]  # wsl2: test_wsl

#: loads argv[1:] in order, prints the marker string of the last one; a failed load is a clean error
LOADER = r"""
import ctypes, json, os, sys
try:
    for path in sys.argv[1:]:
        lib = ctypes.CDLL(path, mode=os.RTLD_LAZY)
    marker = ctypes.c_char.in_dll(lib, "nvlow_simulated_library")
    text = ctypes.string_at(ctypes.addressof(marker)).decode()
    print(json.dumps({"loaded": True, "marker": text}))
except OSError as exc:
    print(json.dumps({"loaded": False, "error": str(exc)}))
"""


def _elf_files(root: str) -> Dict[str, ElfInfo]:
    """Real path -> ElfInfo of every regular ELF file in the tree."""
    out: Dict[str, ElfInfo] = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            if os.path.islink(path) or not os.path.isfile(path):
                continue
            with open(path, "rb") as fh:
                data = fh.read()
            if data[:4] == b"\x7fELF":
                out[path] = parse_elf(data, path)
    return out


@pytest.fixture(scope="module")
def trees(tmp_path_factory) -> Dict[str, Tuple[str, Dict[str, ElfInfo]]]:
    out = {}
    for name in TREE_PRESETS:
        dest = str(tmp_path_factory.mktemp(name))
        build_tree(dest, get_preset(name))
        out[name] = (dest, _elf_files(dest))
    return out


def _libraries(files: Dict[str, ElfInfo]) -> Dict[str, ElfInfo]:
    return {p: i for p, i in files.items() if i.e_type == 3}


def _load_order(path: str, files: Dict[str, ElfInfo]) -> List[str]:
    """The in-tree libraries providing ``path``'s DT_NEEDED (depth first, same ELF class), then ``path``."""
    info = files[path]
    by_soname = {i.soname or os.path.basename(p): p for p, i in _libraries(files).items()
                 if (i.elf_class, i.machine) == (info.elf_class, info.machine) and not p.endswith("/libc.so.6")}
    order: List[str] = []

    def visit(p: str) -> None:
        for need in files[p].needed:
            dep = by_soname.get(need)
            if dep is not None and dep not in order and dep != p:
                visit(dep)
        if p not in order:
            order.append(p)

    visit(path)
    return order


@pytest.mark.skipif(not X86_64, reason="the simulated trees hold x86-64 and i386 files")
@pytest.mark.parametrize("name", TREE_PRESETS)
def test_every_native_library_dlopens(trees, name: str) -> None:
    root, files = trees[name]
    libs = {p: i for p, i in _libraries(files).items() if (i.elf_class, i.machine) == (64, "x86-64")}
    assert len(libs) >= 15
    for path, info in sorted(libs.items()):
        order = _load_order(path, files)
        proc = subprocess.run([sys.executable, "-c", LOADER, *order], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, f"{path}: exit {proc.returncode} {proc.stderr[-500:]}"
        result = json.loads(proc.stdout)
        if result["loaded"]:
            assert result["marker"] == f"nvlow simulated {info.soname or 'library'}"
        else:  # only Mesa's libGL needs what the simulator does not ship
            assert os.path.basename(path).startswith("libGL.so.1"), result["error"]
            assert "libGLdispatch.so.0" in result["error"] or "libGLX.so.0" in result["error"]
        assert loadable_problem_at(path) is None, path  # nvlow's own loader check agrees


@pytest.mark.skipif(not HAVE_READELF, reason="readelf not installed")
@pytest.mark.parametrize("name", TREE_PRESETS)
def test_readelf_reads_every_file(trees, name: str) -> None:
    _root, files = trees[name]
    for path, info in sorted(files.items()):
        proc = subprocess.run(["readelf", "-W", "-h", "-S", "-l", "-d", "--dyn-syms", path],
                              capture_output=True, text=True, timeout=60)
        assert (proc.returncode, proc.stderr) == (0, ""), path
        assert "There are no section headers" not in proc.stdout, path
        if info.e_type == 3:
            assert ".dynsym" in proc.stdout and ".dynstr" in proc.stdout and " .dynamic " in proc.stdout, path
            assert MARKER_SYMBOL in proc.stdout, path
            if info.soname:
                assert f"Library soname: [{info.soname}]" in proc.stdout, path
            for need in info.needed:
                assert f"Shared library: [{need}]" in proc.stdout, path
        else:
            assert "EXEC (Executable file)" in proc.stdout and "GNU_STACK" in proc.stdout, path


def _in_root(root: str, path: str) -> str:
    """``path`` with its symlinks followed inside the tree (absolute targets are relative to the root)."""
    while os.path.islink(path):
        target = os.readlink(path)
        path = root + target if target.startswith("/") else os.path.join(os.path.dirname(path), target)
    return path


@pytest.mark.parametrize("name", TREE_PRESETS)
def test_binaries_are_executables_that_print_their_line(trees, name: str) -> None:
    root, files = trees[name]
    preset = get_preset(name)
    binaries = [os.path.join(root, "usr/bin", b) for b in ("nvidia-smi", "nvidia-debugdump", "nvidia-cuda-mps-control",
                                                         "nvidia-cuda-mps-server", "nvidia-persistenced")]
    for path in binaries:
        real = _in_root(root, path)
        assert files[real].e_type == 2 and files[real].machine == "x86-64"
        assert os.access(real, os.X_OK)
        if X86_64:
            proc = subprocess.run([real, "-L", "--query-gpu=name"], capture_output=True, timeout=30)
            want = binary_line(os.path.basename(path), preset.name, preset.driver_version or "")
            assert (proc.returncode, proc.stdout.decode(), proc.stderr) == (0, want, b"")


@pytest.mark.skipif(not HAVE_READELF, reason="readelf not installed")
@pytest.mark.parametrize("machine", sorted(MACHINES))
def test_loadable_layout_for_every_machine(tmp_path, machine: str) -> None:
    path = tmp_path / "libx.so.1"
    data = make_elf_so("libx.so.1", ["libc.so.6", "libdl.so.2"], machine=machine, abi_note=(0, 2, 3, 99),
                       loadable=True)
    path.write_bytes(data)
    proc = subprocess.run(["readelf", "-W", "-a", str(path)], capture_output=True, text=True, check=True)
    assert proc.stderr == ""
    assert "Library soname: [libx.so.1]" in proc.stdout and "Shared library: [libdl.so.2]" in proc.stdout
    assert "OS: Linux, ABI: 2.3.99" in proc.stdout and MARKER_SYMBOL in proc.stdout
    e_machine, cls = MACHINES[machine]
    info = parse_elf(data, "x")
    assert (info.soname, info.needed, info.abi_note, info.e_machine, info.elf_class) == (
        "libx.so.1", ("libc.so.6", "libdl.so.2"), (0, 2, 3, 99), e_machine, cls)
    # the loader's check, as a process of that machine would make it
    want = (cls, 1, e_machine)
    assert loadable_problem(lambda off, n: data[off:off + n], len(data), want) is None
    # the minimal default stays what it was: no symbol table, refused
    stub = make_elf_so("libx.so.1", machine=machine)
    assert "no DT_SYMTAB" in (loadable_problem(lambda off, n: stub[off:off + n], len(stub), want) or "")


def test_loadable_with_a_moved_base_and_padding() -> None:
    data = make_elf_so("libx.so.1", ["libc.so.6"], vaddr_base=0x400000, padding=100, loadable=True)
    assert parse_elf(data, "x").soname == "libx.so.1" and data.endswith(bytes(100))
    with pytest.raises(ValueError):
        make_elf_so("libx.so.1", vaddr_base=0x10, loadable=True)


def test_hash_table_finds_the_marker() -> None:
    """The SysV .hash: one bucket whose chain reaches the marker symbol (what glibc's dlsym walks)."""
    data = make_elf_so("libx.so.1", loadable=True)
    shoff, = struct.unpack_from("<Q", data, 40)
    shnum, shstrndx = struct.unpack_from("<HH", data, 60)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + 64 * i) for i in range(shnum)]
    names_off = sections[shstrndx][4]

    def name(sec: tuple) -> str:
        end = data.index(b"\0", names_off + sec[0])
        return data[names_off + sec[0]:end].decode()

    by_name = {name(s): s for s in sections[1:]}
    nbucket, nchain = struct.unpack_from("<II", data, by_name[".hash"][4])
    assert (nbucket, nchain) == (1, 2)
    first, = struct.unpack_from("<I", data, by_name[".hash"][4] + 8 + 4 * (elf_hash(MARKER_SYMBOL.encode()) % nbucket))
    st_name, = struct.unpack_from("<I", data, by_name[".dynsym"][4] + 24 * first)
    strtab = by_name[".dynstr"][4]
    assert data[strtab + st_name:data.index(b"\0", strtab + st_name)].decode() == MARKER_SYMBOL


def test_exec_other_machines_refused() -> None:
    with pytest.raises(ValueError):
        make_elf_exec("x", machine="aarch64")
