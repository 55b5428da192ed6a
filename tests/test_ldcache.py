"""ld.so.cache reader: byte-for-byte ``ldconfig -p`` agreement, lookups, writer round trips, corrupt input."""
from __future__ import annotations

import os
import random
import re
import shutil
import struct
import subprocess
from typing import List, Tuple

import pytest

from nvlow.errors import HostError
from nvlow.host.ldcache import (LdCache, LdCacheEntry, compat32_arch, native_arch, parse_ldcache, read_ldcache,
                           render_ldconfig_p)
from nvlow.host.root import HostRoot
from nvlow.simulate.elfgen import make_elf_so
from nvlow.simulate.ldcache_writer import build_ldcache, libcmp

LDCONFIG = shutil.which("ldconfig") or ("/sbin/ldconfig" if os.path.exists("/sbin/ldconfig") else None)
GCC = shutil.which("gcc")
IS_ROOT = os.geteuid() == 0
needs_ldconfig = pytest.mark.skipif(LDCONFIG is None, reason="ldconfig not installed")
HWCAP_NAME = re.compile(r'hwcap: "[^"]*"')


def _ldconfig_p(*args: str) -> str:
    assert LDCONFIG is not None
    out = subprocess.run([LDCONFIG, "-p", *args], capture_output=True, check=True)
    return out.stdout.decode("utf-8", "surrogateescape")


def _mask_compat_hwcaps(text: str) -> str:
    # glibc 2.36 resolves hwcaps names of compat files from the file start (garbage); mask them.
    return HWCAP_NAME.sub('hwcap: "?"', text)


# -- a directory of libraries for ldconfig ------------------------------------------------
def _write_libs(libdir: str) -> None:
    os.makedirs(libdir + "/glibc-hwcaps/x86-64-v2", exist_ok=True)
    os.makedirs(libdir + "/glibc-hwcaps/x86-64-v3", exist_ok=True)

    def so(path: str, soname: str, needed: Tuple[str, ...] = ("libc.so.6",), machine: str = "x86-64") -> None:
        with open(path, "wb") as fh:
            fh.write(make_elf_so(soname, needed, machine=machine))

    if GCC and os.uname().machine == "x86_64":
        src = libdir + "/t.c"
        with open(src, "w") as fh:
            fh.write("int f(void) { return 1; }\n")
        for out, soname in (("libgcc-made.so.3.1", "libgcc-made.so.3"), ("libfoo.so.1.2.3", "libfoo.so.1")):
            subprocess.run([GCC, "-shared", "-fPIC", f"-Wl,-soname,{soname}", "-o", f"{libdir}/{out}", src,
                            "-Wl,--no-as-needed", "-lc"], check=True)
        os.unlink(src)
    else:
        so(libdir + "/libgcc-made.so.3.1", "libgcc-made.so.3")
        so(libdir + "/libfoo.so.1.2.3", "libfoo.so.1")
    so(libdir + "/glibc-hwcaps/x86-64-v2/libfoo.so.1.2.3", "libfoo.so.1")
    so(libdir + "/glibc-hwcaps/x86-64-v3/libfoo.so.1.2.3", "libfoo.so.1")
    so(libdir + "/glibc-hwcaps/x86-64-v3/libonlyv3.so.1", "libonlyv3.so.1")
    so(libdir + "/libcuda.so.550.54.15", "libcuda.so.1")
    so(libdir + "/libnvidia-glcore.so.550.54.15", "libnvidia-glcore.so.550.54.15")
    so(libdir + "/libfoo.so.10", "libfoo.so.10")
    so(libdir + "/libfoo.so.9", "libfoo.so.9")
    so(libdir + "/libi386.so.1", "libi386.so.1", machine="i386")
    so(libdir + "/libplain32.so.1", "libplain32.so.1", needed=(), machine="i386")
    so(libdir + "/libx32only.so.1", "libx32only.so.1", machine="x32")
    # ldconfig keeps one library per SONAME and directory: the 32-bit one lives next door
    os.makedirs(libdir + "32", exist_ok=True)
    so(libdir + "32/libcuda.so.550.54.15", "libcuda.so.1", machine="i386")


@pytest.fixture(scope="module")
def ldconfig_caches(tmp_path_factory: pytest.TempPathFactory) -> List[Tuple[str, str]]:
    """(format, cache path) made by ``ldconfig -X -f conf -C out -c FMT`` (includes system dirs)."""
    if LDCONFIG is None:
        pytest.skip("ldconfig not installed")
    d = tmp_path_factory.mktemp("ldc")
    libdir = str(d / "lib")
    _write_libs(libdir)
    conf = d / "ld.so.conf"
    conf.write_text(f"{libdir}\n{libdir}32\n")
    out = []
    for fmt in ("new", "old", "compat"):
        path = str(d / f"cache.{fmt}")
        subprocess.run([LDCONFIG, "-X", "-f", str(conf), "-C", path, "-c", fmt], check=True,
                       capture_output=True)
        out.append((fmt, path))
    return out


@needs_ldconfig
def test_render_matches_ldconfig_p(ldconfig_caches: List[Tuple[str, str]]) -> None:
    for fmt, path in ldconfig_caches:
        with open(path, "rb") as fh:
            cache = parse_ldcache(fh.read(), path)
        assert cache.format == fmt
        mine = render_ldconfig_p(cache, path)
        real = _ldconfig_p("-C", path)
        if fmt == "compat":
            mine, real = _mask_compat_hwcaps(mine), _mask_compat_hwcaps(real)
        assert mine == real, fmt
        assert len(cache.entries) == cache.nlibs_reported


@needs_ldconfig
def test_ldconfig_made_entries(ldconfig_caches: List[Tuple[str, str]]) -> None:
    caches = {}
    for fmt, path in ldconfig_caches:
        with open(path, "rb") as fh:
            caches[fmt] = parse_ldcache(fh.read(), path)
    for fmt in ("new", "compat"):
        c = caches[fmt]
        foo = c.lookup("libfoo.so.1", "x86-64")
        assert [e.value.rsplit("/", 1)[1] for e in foo] == ["libfoo.so.1"]
        hw = c.lookup("libfoo.so.1", "x86-64", include_hwcaps=True)
        # hwcaps entries first, most specific order by name, then the plain one
        assert [e.hwcap_subdir for e in hw] == ["x86-64-v2", "x86-64-v3", None]
        assert c.lookup("libonlyv3.so.1", "x86-64") == ()
        assert [e.hwcap_subdir for e in c.prefixed("libonlyv3", "x86-64", include_hwcaps=True)] == ["x86-64-v3"]
        assert c.generator is not None and c.generator.startswith("ldconfig")
        assert [e.arch for e in c.lookup("libi386.so.1", "i386")] == ["i386"]
        assert c.lookup("libx32only.so.1", "i386") == ()
        assert [e.flags for e in c.lookup("libx32only.so.1", "x32")] == [0x0803]
        assert [(e.flags, e.is_libc6) for e in c.lookup("libplain32.so.1", "i386")] == [(0x0001, False)]
        cuda = c.prefixed("libcuda.so", "x86-64")
        assert [e.key for e in cuda] == ["libcuda.so.1"]
        assert [e.key for e in c.prefixed("libcuda.so", "i386")] == ["libcuda.so.1"]
    old = caches["old"]
    assert old.generator is None
    # the old format has no hwcaps: the glibc-hwcaps copies look like plain entries there
    assert len(old.lookup("libfoo.so.1", "x86-64")) == 3


@needs_ldconfig
def test_writer_sort_matches_ldconfig(ldconfig_caches: List[Tuple[str, str]]) -> None:
    with open(dict(ldconfig_caches)["new"], "rb") as fh:
        real = parse_ldcache(fh.read())
    specs = [(e.key, e.value, e.flags, e.osversion, e.hwcap_subdir) for e in real.entries]
    random.Random(7).shuffle(specs)
    mine = parse_ldcache(build_ldcache(specs, generator=real.generator))
    assert [(e.key, e.flags, e.hwcap_subdir) for e in mine.entries] == \
        [(e.key, e.flags, e.hwcap_subdir) for e in real.entries]


@needs_ldconfig
def test_system_cache_matches_ldconfig_p() -> None:
    if not os.path.exists("/etc/ld.so.cache"):
        pytest.skip("no /etc/ld.so.cache")
    cache = read_ldcache(HostRoot("/"))
    assert cache is not None
    mine = render_ldconfig_p(cache, "/etc/ld.so.cache")
    real = _ldconfig_p()
    if cache.format == "compat":
        mine, real = _mask_compat_hwcaps(mine), _mask_compat_hwcaps(real)
    assert mine == real


@needs_ldconfig
@pytest.mark.skipif(not IS_ROOT, reason="ldconfig -r chroots (root only)")
@pytest.mark.parametrize("fmt", ["new", "old", "compat"])
def test_ldconfig_r_root(tmp_path, fmt: str) -> None:  # type: ignore[no-untyped-def]
    _write_libs(str(tmp_path / "opt/lib"))
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/ld.so.conf").write_text("/opt/lib\n/opt/lib32\n")
    subprocess.run([LDCONFIG, "-r", str(tmp_path), "-X", "-c", fmt], check=True, capture_output=True)
    cache = read_ldcache(HostRoot(str(tmp_path)))
    assert cache is not None and cache.format == fmt
    mine = render_ldconfig_p(cache, "/etc/ld.so.cache")
    real = _ldconfig_p("-r", str(tmp_path))
    if fmt == "compat":
        mine, real = _mask_compat_hwcaps(mine), _mask_compat_hwcaps(real)
    assert mine == real
    assert [e.value for e in cache.lookup("libcuda.so.1", "x86-64")] == ["/opt/lib/libcuda.so.1"]
    if fmt != "old":
        assert {e.hwcap_subdir for e in cache.entries} == {None, "x86-64-v2", "x86-64-v3"}
    # every prefix of a real small cache: a valid result or HostError, nothing else
    data = (tmp_path / "etc/ld.so.cache").read_bytes()
    for n in range(len(data) + 1):
        try:
            parse_ldcache(data[:n])
        except HostError:
            pass


# -- writer round trips --------------------------------------------------------------------
SPECS = [
    ("libfoo.so.1", "/x/libfoo.so.1", 0x0303),
    ("libfoo.so.1", "/x/glibc-hwcaps/x86-64-v2/libfoo.so.1", 0x0303, 0, "x86-64-v2"),
    ("libfoo.so.10", "/x/libfoo.so.10", 0x0303),
    ("libfoo.so.9", "/x/libfoo.so.9", 0x0003),
    ("libold.so.1", "/x/libold.so.1", 0x0303, 0x00020603),
    ("libbar.so.2", "/x/libbar.so.2", 0x0803),
    ("libarm.so.1", "/x/libarm.so.1", 0x0A03),
    ("libodd.so.1", "/x/libodd.so.1", 0x4203),
    ("libhw.so.1", "/x/libhw.so.1", 0x0303),
]

EXPECTED_NEW = """\
9 libs found in cache `/c'
\tlibold.so.1 (libc6,x86-64, OS ABI: Linux 2.6.3) => /x/libold.so.1
\tlibodd.so.1 (libc6,16896) => /x/libodd.so.1
\tlibhw.so.1 (libc6,x86-64) => /x/libhw.so.1
\tlibfoo.so.10 (libc6,x86-64) => /x/libfoo.so.10
\tlibfoo.so.9 (libc6) => /x/libfoo.so.9
\tlibfoo.so.1 (libc6,x86-64, hwcap: "x86-64-v2") => /x/glibc-hwcaps/x86-64-v2/libfoo.so.1
\tlibfoo.so.1 (libc6,x86-64) => /x/libfoo.so.1
\tlibbar.so.2 (libc6,x32) => /x/libbar.so.2
\tlibarm.so.1 (libc6,AArch64) => /x/libarm.so.1
Cache generated by: nvlow test
"""


def test_writer_render_exact_with_os_abi() -> None:
    cache = parse_ldcache(build_ldcache(SPECS, generator="nvlow test"))
    assert render_ldconfig_p(cache, "/c", show_os_abi=True) == EXPECTED_NEW
    assert render_ldconfig_p(cache, "/c") == EXPECTED_NEW.replace(", OS ABI: Linux 2.6.3", "")
    assert [e.arch for e in cache.entries] == ["x86-64", "16896", "x86-64", "x86-64", "i386", "x86-64",
                                               "x86-64", "x32", "aarch64"]


@needs_ldconfig
@pytest.mark.parametrize("fmt", ["new", "old", "compat"])
@pytest.mark.parametrize("generator", [None, "ldconfig (nvlow) 2.36"])
def test_writer_output_read_by_ldconfig(tmp_path, fmt: str, generator: object) -> None:  # type: ignore[no-untyped-def]
    data = build_ldcache(SPECS, fmt=fmt, generator=generator)  # type: ignore[arg-type]
    path = tmp_path / "c"
    path.write_bytes(data)
    cache = parse_ldcache(data, str(path))
    assert cache.format == fmt
    mine, real = render_ldconfig_p(cache, str(path)), _ldconfig_p("-C", str(path))
    if fmt == "compat":
        mine, real = _mask_compat_hwcaps(mine), _mask_compat_hwcaps(real)
    assert mine == real


def test_writer_formats_round_trip() -> None:
    for fmt in ("new", "compat"):
        c = parse_ldcache(build_ldcache(SPECS, fmt=fmt, generator="g"))
        assert (c.format, c.generator, c.nlibs_reported, len(c.entries)) == (fmt, "g", 9, 9)
        assert [e.hwcap_subdir for e in c.lookup("libfoo.so.1", "x86-64", include_hwcaps=True)] == \
            ["x86-64-v2", None]
    old = parse_ldcache(build_ldcache(SPECS, fmt="old", generator="g"))
    assert (old.format, old.generator, old.nlibs_reported) == ("old", None, 9)
    # compat with an odd count of plain entries pads the old section by repeating the last
    odd = build_ldcache(SPECS[:3], fmt="compat")
    assert struct.unpack_from("<I", odd, 12)[0] == 2
    assert parse_ldcache(odd).nlibs_reported == 3


def test_empty_cache() -> None:
    for fmt in ("new", "old", "compat"):
        c = parse_ldcache(build_ldcache([], fmt=fmt))
        assert (c.format, c.entries, c.nlibs_reported) == (fmt, (), 0)
        assert render_ldconfig_p(c, "/e") == "0 libs found in cache `/e'\n"


@pytest.mark.parametrize("a,b,sign", [
    ("libfoo.so.10", "libfoo.so.9", 1),
    ("libfoo.so.1", "libfoo.so.1", 0),
    ("libfoo.so", "libfoo.so.1", -1),
    ("libfoo2.so", "libfoo.so", 1),  # a digit sorts after a non-digit
    ("liba.so", "libB.so", 1),
    ("libx.so.007", "libx.so.7", 0),
])
def test_libcmp(a: str, b: str, sign: int) -> None:
    r = libcmp(a, b)
    assert (r > 0) - (r < 0) == sign


# -- lookups ---------------------------------------------------------------------------------
def _entry(key: str, value: str, flags: int = 0x0303, subdir: object = None) -> LdCacheEntry:
    hw = (1 << 62) if subdir else 0
    return LdCacheEntry(key, value, flags, 0, hw, subdir)  # type: ignore[arg-type]


def test_lookup_and_prefixed_semantics() -> None:
    cache = LdCache("new", (
        _entry("libcuda.so.1", "/v2/libcuda.so.1", subdir="x86-64-v2"),
        _entry("libcuda.so.1", "/a/libcuda.so.1"),
        _entry("libcuda.so.1", "/b/libcuda.so.1"),
        _entry("libcuda.so.1", "/i386/libcuda.so.1", 0x0003),
        _entry("libcuda.so.1", "/x32/libcuda.so.1", 0x0803),
        _entry("libcuda.so", "/a/libcuda.so"),
        _entry("libcudadebugger.so.1", "/a/libcudadebugger.so.1"),
        _entry("libcuda.so.1", "/aout/libcuda.so.1", 0x0300),  # libc4 (a.out): not ELF
    ), None, 8)
    assert [e.value for e in cache.lookup("libcuda.so.1", "x86-64")] == ["/a/libcuda.so.1", "/b/libcuda.so.1"]
    assert [e.value for e in cache.lookup("libcuda.so.1", "x86-64", include_hwcaps=True)][0] == "/v2/libcuda.so.1"
    assert [e.value for e in cache.lookup("libcuda.so.1", "i386")] == ["/i386/libcuda.so.1"]
    assert [e.value for e in cache.lookup("libcuda.so.1", "x32")] == ["/x32/libcuda.so.1"]
    assert [e.key for e in cache.prefixed("libcuda.so", "x86-64")] == ["libcuda.so.1", "libcuda.so.1", "libcuda.so"]
    assert cache.lookup("libcuda.so.2", "x86-64") == ()


def test_arch_names() -> None:
    assert [_entry("k", "v", f).arch for f in (0x0303, 0x0003, 0x0803, 0x0A03, 0x0503, 0x0903, 0x0103, 0x0603)] == \
        ["x86-64", "i386", "x32", "aarch64", "ppc64le", "armhf", "64bit", "N32"]
    assert native_arch("x86_64") == "x86-64" and native_arch("aarch64") == "aarch64"
    assert native_arch("ppc64le") == "ppc64le" and native_arch("riscv64") == "riscv64"
    assert native_arch() == native_arch(os.uname().machine)
    assert (compat32_arch("x86-64"), compat32_arch("aarch64"), compat32_arch("ppc64le")) == ("i386", None, None)


def test_read_ldcache(tmp_path) -> None:  # type: ignore[no-untyped-def]
    root = HostRoot(str(tmp_path))
    assert read_ldcache(root) is None
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/ld.so.cache").write_bytes(build_ldcache(SPECS[:2]))
    c = read_ldcache(root)
    assert c is not None and len(c.entries) == 2
    (tmp_path / "etc/ld.so.cache").write_bytes(b"garbage")
    with pytest.raises(HostError) as exc:
        read_ldcache(root)
    assert str(exc.value) == f"not an ld.so.cache file: {tmp_path}/etc/ld.so.cache"


# -- corrupt input --------------------------------------------------------------------------
def _new(specs: list = SPECS, **kw: object) -> bytearray:
    return bytearray(build_ldcache(specs, generator="gen", **kw))  # type: ignore[arg-type]


def _set(data: bytearray, off: int, fmt: str, value: int) -> bytes:
    struct.pack_into(fmt, data, off, value)
    return bytes(data)


def _ext_off(data: bytes) -> int:
    return struct.unpack_from("<I", data, 32)[0]


CORRUPT = [
    ("empty", b"", "not an ld.so.cache file"),
    ("text", b"hello world\n" * 10, "not an ld.so.cache file"),
    ("magic only", b"glibc-ld.so.cache1.1", "truncated"),
    ("old magic only", b"ld.so-1.7.0", "truncated"),
    ("too many entries", _set(_new(), 20, "<I", 10_000), "header says 10000 entries"),
    ("strings too long", _set(_new(), 24, "<I", 1 << 30), "bytes of strings"),
    ("big endian", _set(_new(), 28, "<B", 3), "big-endian"),
    ("invalid endian", _set(_new(), 28, "<B", 1), "invalid byte order"),
    ("old too many", _set(bytearray(build_ldcache(SPECS, fmt="old")), 12, "<I", 99999), "header says 99999"),
]


@pytest.mark.parametrize("label,data,message", CORRUPT, ids=[c[0] for c in CORRUPT])
def test_corrupt_is_host_error(label: str, data: bytes, message: str) -> None:
    with pytest.raises(HostError) as exc:
        parse_ldcache(data, "/etc/ld.so.cache")
    assert "/etc/ld.so.cache" in str(exc.value)
    assert message in str(exc.value)


def test_extension_errors() -> None:
    base = _new()
    ext = _ext_off(bytes(base))
    with pytest.raises(HostError, match="malformed extension"):
        parse_ldcache(_set(bytearray(base), ext + 4, "<I", 1 << 20))  # count
    with pytest.raises(HostError, match="malformed extension"):
        parse_ldcache(_set(bytearray(base), ext + 8 + 8, "<I", 1 << 30))  # section offset
    # wrong extension magic: no extensions, entries still read (hwcaps entry then unresolvable: skipped)
    c = parse_ldcache(_set(bytearray(base), ext, "<I", 0x12345678))
    assert c.generator is None and len(c.entries) == len(SPECS) - 1
    # extension offset beyond the file: ignored
    c = parse_ldcache(_set(bytearray(base), 32, "<I", 1 << 30))
    assert c.generator is None


def test_bad_string_offsets_skip_entries() -> None:
    data = _new()
    # entry 0 key offset far outside the file; entry 1 value offset outside
    struct.pack_into("<I", data, 48 + 4, 1 << 30)
    struct.pack_into("<I", data, 48 + 24 + 8, len(data) + 5)
    c = parse_ldcache(bytes(data))
    assert c.nlibs_reported == len(SPECS)
    assert len(c.entries) == len(SPECS) - 2
    full = parse_ldcache(bytes(_new()))
    assert c.entries == full.entries[2:]


def test_compat_without_new_section_is_old() -> None:
    old = build_ldcache(SPECS[:4], fmt="old")
    assert parse_ldcache(old).format == "old"
    compat = build_ldcache(SPECS[:4], fmt="compat")
    off = 16 + 12 * 4
    broken = compat[:off] + b"X" + compat[off + 1:]
    assert parse_ldcache(broken).format == "old"


def test_every_prefix_of_small_caches() -> None:
    for fmt in ("new", "old", "compat"):
        data = build_ldcache(SPECS, fmt=fmt, generator="gen")
        results = 0
        for n in range(len(data) + 1):
            try:
                parse_ldcache(data[:n])
                results += 1
            except HostError:
                pass
        assert results >= 1  # at least the full file parses


def test_random_byte_flips_never_crash() -> None:
    rng = random.Random(20240601)
    seeds = [bytes(build_ldcache(SPECS, fmt=f, generator="gen")) for f in ("new", "old", "compat")]
    for i in range(3000):
        buf = bytearray(seeds[i % 3])
        for _ in range(rng.randint(1, 6)):
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        try:
            c = parse_ldcache(bytes(buf))
            render_ldconfig_p(c, "/f")
        except HostError:
            pass


def test_driver_file_candidates_match_prefixed_in_cache_order() -> None:
    """The bisection index (LdCache.prefixed, driver-file selection) gives exactly the entries a pass over
    the whole cache gives, in cache order."""
    from nvlow.host.driverfiles import _cache_candidates
    from nvlow.host.ldcache import FLAG_ELF_LIBC6, LdCache, LdCacheEntry

    x86 = FLAG_ELF_LIBC6 | 0x0300
    names = ["libcuda.so.1", "libcuda.so", "libc.so.6", "libcudadebugger.so.1", "libcuda.so.1", "libnvidia-ml.so.1",
             "libcuda.so.1"]
    entries = tuple(LdCacheEntry(n, f"/lib{i}/{n}", x86 if i != 4 else FLAG_ELF_LIBC6, 0, 0, None)
                    for i, n in enumerate(names))
    cache = LdCache("new", entries, None, len(entries))
    find = _cache_candidates(cache, "x86-64")
    for prefix in ("libcuda.so", "libcuda.so.1", "libnvidia-ml.so", "libz", "", "libc"):
        brute = [(e.key, e.value) for e in cache.entries
                 if e.key.startswith(prefix) and e.is_elf and e.arch == "x86-64" and not e.is_hwcaps]
        assert find(prefix) == brute, prefix
        assert [(e.key, e.value) for e in cache.prefixed(prefix, "x86-64")] == brute, prefix
    # cache order, the i386 entry (4) left out, libcudadebugger not under the prefix "libcuda.so"
    assert find("libcuda.so") == [("libcuda.so.1", "/lib0/libcuda.so.1"), ("libcuda.so", "/lib1/libcuda.so"),
                                  ("libcuda.so.1", "/lib6/libcuda.so.1")]
    assert find("libcuda") == find("libcuda.so")[:2] + [("libcudadebugger.so.1", "/lib3/libcudadebugger.so.1"),
                                                          ("libcuda.so.1", "/lib6/libcuda.so.1")]
