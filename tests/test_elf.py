"""ELF reader: files made by gcc and by elfgen; SONAME, NEEDED, ABI note; garbage is a HostError."""
from __future__ import annotations

import os
import shutil
import struct
import subprocess

import pytest

from nvlow.host.elf import ElfInfo, parse_elf, read_elf, try_read_elf
from nvlow.errors import HostError
from nvlow.host.root import HostRoot
from nvlow.simulate.elfgen import make_elf_so, make_script

HAVE_GCC = shutil.which("gcc") is not None
HAVE_READELF = shutil.which("readelf") is not None


@pytest.mark.parametrize("machine,cls,expected", [
    ("x86-64", None, (64, "x86-64", 62)),
    ("i386", None, (32, "i386", 3)),
    ("x32", None, (32, "x32", 62)),
    ("x86-64", 32, (32, "x32", 62)),
    ("aarch64", None, (64, "aarch64", 183)),
    ("ppc64le", None, (64, "ppc64le", 21)),
    ("armhf", None, (32, "arm", 40)),
])
def test_elfgen_machines(machine: str, cls: object, expected: tuple) -> None:
    data = make_elf_so("libx.so.1", ["libc.so.6"], machine=machine, elf_class=cls)  # type: ignore[arg-type]
    info = parse_elf(data, "libx")
    assert (info.elf_class, info.machine, info.e_machine) == expected
    assert info.soname == "libx.so.1"
    assert info.needed == ("libc.so.6",)
    assert info.abi_note is None
    assert info.e_type == 3


def test_elfgen_fields_and_translation() -> None:
    data = make_elf_so("libGL.so.1", ["libnvidia-glcore.so.550.54.15", "libc.so.6", "libdl.so.2"],
                       abi_note=(0, 2, 3, 99), vaddr_base=0x400000, padding=100)
    assert parse_elf(data, "x") == ElfInfo(64, "x86-64", "libGL.so.1",
                                           ("libnvidia-glcore.so.550.54.15", "libc.so.6", "libdl.so.2"),
                                           (0, 2, 3, 99), 62, 3)


def test_no_soname_no_needed() -> None:
    info = parse_elf(make_elf_so(None), "x")
    assert (info.soname, info.needed) == (None, ())


def test_shared_string_between_soname_and_needed() -> None:
    info = parse_elf(make_elf_so("liba.so", ["liba.so"]), "x")
    assert (info.soname, info.needed) == ("liba.so", ("liba.so",))


@pytest.mark.skipif(not HAVE_READELF, reason="readelf not installed")
def test_readelf_accepts_elfgen(tmp_path) -> None:  # type: ignore[no-untyped-def]
    p = tmp_path / "libx.so.1"
    p.write_bytes(make_elf_so("libx.so.1", ["libnvidia-glcore.so.1"], abi_note=(0, 2, 3, 99),
                              vaddr_base=0x10000))
    d = subprocess.run(["readelf", "-d", str(p)], capture_output=True, text=True, check=True)
    assert "Library soname: [libx.so.1]" in d.stdout
    assert "Shared library: [libnvidia-glcore.so.1]" in d.stdout
    assert d.stderr == ""
    n = subprocess.run(["readelf", "-n", str(p)], capture_output=True, text=True, check=True)
    assert "OS: Linux, ABI: 2.3.99" in n.stdout
    for machine in ("i386", "x32", "aarch64"):
        p.write_bytes(make_elf_so("liby.so.2", ["libc.so.6"], machine=machine))
        d = subprocess.run(["readelf", "-d", str(p)], capture_output=True, text=True, check=True)
        assert "Library soname: [liby.so.2]" in d.stdout and d.stderr == ""


@pytest.mark.skipif(not HAVE_GCC, reason="gcc not installed")
def test_gcc_built_library(tmp_path) -> None:  # type: ignore[no-untyped-def]
    src = tmp_path / "t.c"
    src.write_text("int f(void) { return 1; }\n")
    out = tmp_path / "libfoo.so.1.2.3"
    subprocess.run(["gcc", "-shared", "-fPIC", "-Wl,-soname,libfoo.so.1", "-o", str(out), str(src),
                    "-Wl,--no-as-needed", "-lm"], check=True)
    info = read_elf(HostRoot(str(tmp_path)), "/libfoo.so.1.2.3")
    assert (info.elf_class, info.soname) == (64, "libfoo.so.1")
    assert info.machine == {"x86_64": "x86-64"}.get(os.uname().machine, os.uname().machine)
    assert "libm.so.6" in info.needed
    assert parse_elf(out.read_bytes(), "x") == info


def test_system_libc() -> None:
    for path in ("/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib64/libc.so.6"):
        if os.path.exists(path):
            info = read_elf(HostRoot("/"), path)
            assert info.soname == "libc.so.6"
            assert info.abi_note is not None and info.abi_note[0] == 0
            return
    pytest.skip("no libc.so.6 at a known path")


def _garbage_cases() -> list:
    good = make_elf_so("libx.so.1", ["libc.so.6"], abi_note=(0, 2, 3, 99))
    return [
        b"",
        b"\x7fEL",
        b"not an elf file at all, just text\n",
        make_script("echo hi"),
        b"\x7fELF" + bytes([3, 1, 1]) + bytes(57),  # bad class
        good[:40],  # truncated header
        good[:70],  # truncated program headers
        good[:len(good) - 20],  # truncated dynamic section
    ]


@pytest.mark.parametrize("data", _garbage_cases())
def test_garbage_is_host_error(data: bytes) -> None:
    with pytest.raises(HostError) as exc:
        parse_elf(data, "/srv/lib/libbad.so")
    assert "/srv/lib/libbad.so" in str(exc.value)


def test_every_prefix_and_byte_flips_never_crash() -> None:
    import random

    good = make_elf_so("libx.so.1", ["libc.so.6", "libnvidia-glcore.so.1"], abi_note=(0, 2, 3, 99))
    for n in range(len(good) + 1):
        try:
            parse_elf(good[:n], "x")
        except HostError:
            pass
    rng = random.Random(1234)
    for _ in range(3000):
        buf = bytearray(good)
        for _k in range(rng.randint(1, 4)):
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        try:
            parse_elf(bytes(buf), "x")
        except HostError:
            pass


def test_huge_counts_rejected_quickly() -> None:
    data = bytearray(make_elf_so("libx.so.1"))
    struct.pack_into("<H", data, 56, 0xFFFF)  # e_phnum
    with pytest.raises(HostError):
        parse_elf(bytes(data), "x")


def test_read_elf_missing_and_try(tmp_path) -> None:  # type: ignore[no-untyped-def]
    root = HostRoot(str(tmp_path))
    with pytest.raises(HostError) as exc:
        read_elf(root, "/nope.so")
    assert str(tmp_path / "nope.so") in str(exc.value)
    assert try_read_elf(root, "/nope.so") is None
    (tmp_path / "bad.so").write_bytes(b"junk")
    assert try_read_elf(root, "/bad.so") is None
    (tmp_path / "ok.so").write_bytes(make_elf_so("ok.so.1"))
    info = try_read_elf(root, "/ok.so")
    assert info is not None and info.soname == "ok.so.1"
