"""Driver-file selection on fake host roots (elfgen libraries + caches from the writer)."""
from __future__ import annotations

import os
import shutil
import subprocess
from typing import Dict, List, Optional, Sequence, Tuple

import pytest

from nvlow.host.driverfiles import (ALL_CAPABILITIES, DEFAULT_CAPABILITIES, parse_capabilities,
                               select_driver_files)
from nvlow.errors import UsageError
from nvlow.host.ldcache import parse_ldcache, render_ldconfig_p
from nvlow.model import DriverFile, DriverFiles
from nvlow.host.root import HostRoot
from nvlow.simulate.drivertree import write_driver_tree
from nvlow.simulate.elfgen import make_elf_so, make_script
from nvlow.simulate.ldcache_writer import build_ldcache
from nvlow.simulate.presets import get_preset

V = "550.54.15"
L64 = "/usr/lib/x86_64-linux-gnu"
L32 = "/usr/lib/i386-linux-gnu"
FLAGS = {"x86-64": 0x0303, "i386": 0x0003, "x32": 0x0803}


class Fake:
    """A fake host root built file by file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.cache: List[Tuple[str, str, int]] = []
        self.root = HostRoot(path)

    def write(self, host_path: str, data: bytes, mode: int = 0o644) -> None:
        real = self.path + host_path
        os.makedirs(os.path.dirname(real), exist_ok=True)
        with open(real, "wb") as fh:
            fh.write(data)
        os.chmod(real, mode)

    def symlink(self, host_path: str, target: str) -> None:
        real = self.path + host_path
        os.makedirs(os.path.dirname(real), exist_ok=True)
        os.symlink(target, real)

    def lib(self, directory: str, real_name: str, soname: Optional[str] = None, needed: Sequence[str] = (),
            machine: str = "x86-64", abi: Optional[Tuple[int, int, int, int]] = None,
            cache: bool = True) -> None:
        so = soname or real_name
        self.write(f"{directory}/{real_name}", make_elf_so(so, list(needed), machine=machine, abi_note=abi), 0o755)
        if so != real_name:
            self.symlink(f"{directory}/{so}", real_name)
        if cache:
            self.cache.append((so, f"{directory}/{so}", FLAGS[machine]))

    def finish(self) -> None:
        self.write("/etc/ld.so.cache", build_ldcache(self.cache, sort=False))

    def select(self, caps: str = "compute,utility", **kw: object) -> DriverFiles:
        return select_driver_files(self.root, V, parse_capabilities(caps), arch="x86-64", **kw)  # type: ignore[arg-type]


@pytest.fixture
def fake(tmp_path) -> Fake:  # type: ignore[no-untyped-def]
    return Fake(str(tmp_path))


def basic(f: Fake) -> None:
    f.lib(L64, f"libcuda.so.{V}", "libcuda.so.1")
    f.lib(L64, f"libnvidia-ml.so.{V}", "libnvidia-ml.so.1")
    f.lib(L64, f"libnvidia-ptxjitcompiler.so.{V}", "libnvidia-ptxjitcompiler.so.1")
    f.lib(L64, f"libnvidia-gpucomp.so.{V}")


def paths(files: Sequence[DriverFile]) -> List[str]:
    return [x.path or "" for x in files]


def test_basic_compute_utility(fake: Fake) -> None:
    basic(fake)
    fake.finish()
    df = fake.select()
    assert [(x.kind, x.capability, x.names, x.soname) for x in df.libraries64] == [
        ("lib64", "compute", (f"libcuda.so.{V}", "libcuda.so.1", "libcuda.so"), "libcuda.so.1"),
        ("lib64", "compute", (f"libnvidia-gpucomp.so.{V}",), f"libnvidia-gpucomp.so.{V}"),
        ("lib64", "compute", (f"libnvidia-ptxjitcompiler.so.{V}", "libnvidia-ptxjitcompiler.so.1"),
         "libnvidia-ptxjitcompiler.so.1"),
        ("lib64", "utility", (f"libnvidia-ml.so.{V}", "libnvidia-ml.so.1"), "libnvidia-ml.so.1"),
    ]
    cuda = df.libraries64[0]
    assert cuda.path == f"{L64}/libcuda.so.{V}"
    assert cuda.host_path == fake.path + f"{L64}/libcuda.so.{V}"
    assert df.libraries32 == () and df.skipped == ()
    assert "libcudadebugger.so" in df.missing and "nvidia-smi" in df.missing
    assert "libcuda.so" not in df.missing
    # utility only: no compute libraries
    only = fake.select("utility")
    assert paths(only.libraries64) == [f"{L64}/libnvidia-ml.so.{V}"]


def test_stale_copy_skipped_and_reported(fake: Fake) -> None:
    fake.lib("/usr/local/lib", "libcuda.so.535.104.05", "libcuda.so.1")  # first in cache order
    basic(fake)
    fake.lib("/opt/stub", "libnvidia-ml.so", "libnvidia-ml.so.1")  # a CUDA stub-like name
    fake.finish()
    df = fake.select()
    assert paths(df.libraries64)[0] == f"{L64}/libcuda.so.{V}"
    assert df.skipped == (
        ("/usr/local/lib/libcuda.so.535.104.05", f"stale copy from driver 535.104.05 (running {V})"),
        ("/opt/stub/libnvidia-ml.so", f"not a driver {V} file"),
    )


def test_duplicates_first_wins(fake: Fake) -> None:
    fake.lib("/opt/nvidia/lib64", f"libcuda.so.{V}", "libcuda.so.1")
    basic(fake)
    fake.finish()
    df = fake.select("compute")
    assert paths(df.libraries64)[0] == f"/opt/nvidia/lib64/libcuda.so.{V}"
    assert df.skipped == ((f"{L64}/libcuda.so.{V}",
                           f"duplicate of /opt/nvidia/lib64/libcuda.so.{V} (the first in ld.so.cache order wins)"),)


def test_same_file_through_two_keys_is_not_a_duplicate(fake: Fake) -> None:
    basic(fake)
    fake.symlink(f"{L64}/libcuda.so", "libcuda.so.1")
    fake.cache.append(("libcuda.so", f"{L64}/libcuda.so", 0x0303))
    fake.finish()
    df = fake.select("compute")
    assert paths(df.libraries64).count(f"{L64}/libcuda.so.{V}") == 1 and df.skipped == ()


@pytest.mark.parametrize("needed,taken", [
    ((f"libnvidia-glcore.so.{V}", "libc.so.6"), True),
    ((f"libnvidia-eglcore.so.{V}",), True),
    (("libGLdispatch.so.0", "libGLX.so.0"), False),
    ((), False),
])
def test_gl_loader_needs_glcore(fake: Fake, needed: Tuple[str, ...], taken: bool) -> None:
    basic(fake)
    fake.lib(L64, f"libGL.so.{V}", "libGL.so.1", needed)
    fake.finish()
    df = fake.select("graphics")
    assert (f"{L64}/libGL.so.{V}" in paths(df.libraries64)) is taken
    if not taken:
        assert df.skipped == ((f"{L64}/libGL.so.{V}",
                               "not NVIDIA's GL loader (no DT_NEEDED libnvidia-glcore/eglcore)"),)
        assert "libGL.so" in df.missing


@pytest.mark.parametrize("abi,taken,reason", [
    ((0, 2, 3, 99), True, None),
    ((0, 2, 2, 5), False, "not the new-TLS build (ABI note 2.2.5, wanted 2.3.99)"),
    (None, False, "not the new-TLS build (ABI note none, wanted 2.3.99)"),
])
def test_tls_abi_note(fake: Fake, abi: Optional[Tuple[int, int, int, int]], taken: bool,
                      reason: Optional[str]) -> None:
    fake.lib(L64, f"libnvidia-tls.so.{V}", abi=abi)
    fake.finish()
    df = fake.select("graphics")
    assert (f"{L64}/libnvidia-tls.so.{V}" in paths(df.libraries64)) is taken
    if reason:
        assert df.skipped == ((f"{L64}/libnvidia-tls.so.{V}", reason),)


def test_compat32_i386_not_x32(fake: Fake) -> None:
    basic(fake)
    fake.lib("/usr/libx32", f"libcuda.so.{V}", "libcuda.so.1", machine="x32")
    fake.lib(L32, f"libcuda.so.{V}", "libcuda.so.1", machine="i386")
    fake.lib(L32, f"libnvidia-ptxjitcompiler.so.{V}", "libnvidia-ptxjitcompiler.so.1", machine="i386")
    fake.finish()
    df = fake.select("compute,compat32")
    assert [(x.kind, x.path, x.names) for x in df.libraries32] == [
        ("lib32", f"{L32}/libcuda.so.{V}", (f"libcuda.so.{V}", "libcuda.so.1", "libcuda.so")),
        ("lib32", f"{L32}/libnvidia-ptxjitcompiler.so.{V}",
         (f"libnvidia-ptxjitcompiler.so.{V}", "libnvidia-ptxjitcompiler.so.1")),
    ]
    # only names the 64-bit side has are reported missing for 32-bit
    assert "libnvidia-gpucomp.so (compat32)" in df.missing
    assert "libcudadebugger.so (compat32)" not in df.missing
    assert fake.select("compute").libraries32 == ()
    assert select_driver_files(fake.root, V, {"compute", "compat32"}, arch="aarch64").libraries32 == ()


def test_wrong_machine_in_cache_entry(fake: Fake) -> None:
    # a cache entry flagged x86-64 whose file is really i386 (stale cache): rejected
    fake.write(f"{L64}/libcuda.so.{V}", make_elf_so("libcuda.so.1", machine="i386"), 0o755)
    fake.symlink(f"{L64}/libcuda.so.1", f"libcuda.so.{V}")
    fake.cache.append(("libcuda.so.1", f"{L64}/libcuda.so.1", 0x0303))
    fake.finish()
    df = fake.select("compute")
    assert df.libraries64 == ()
    assert df.skipped == ((f"{L64}/libcuda.so.{V}", "ELF machine i386, wanted x86-64"),)


def test_cache_entry_without_file(fake: Fake) -> None:
    fake.cache.append(("libcuda.so.1", f"/gone/libcuda.so.{V}", 0x0303))
    fake.write(f"/bad/libnvidia-ml.so.{V}", b"not elf")
    fake.cache.append(("libnvidia-ml.so.1", f"/bad/libnvidia-ml.so.{V}", 0x0303))
    fake.finish()
    df = fake.select()
    assert df.libraries64 == ()
    assert df.skipped == ((f"/gone/libcuda.so.{V}", "listed in ld.so.cache but not a file"),
                          (f"/bad/libnvidia-ml.so.{V}", "not a readable ELF file"))


def test_sweep(fake: Fake) -> None:
    basic(fake)
    fake.lib(L64, f"libnvidia-sandboxutils.so.{V}", "libnvidia-sandboxutils.so.1", cache=False)
    fake.lib(L64, f"libnvidia-mystery.so.{V}", cache=False)
    fake.lib(L64, f"libnvidia-gtk3.so.{V}", cache=False)
    fake.lib(L64, f"libnvidia-glcore.so.{V}", cache=False)
    fake.lib(L64, f"libnvidia-encode.so.{V}", "libnvidia-encode.so.1", cache=False)
    fake.lib(L64 + "/vdpau", f"libvdpau_nvidia.so.{V}", "libvdpau_nvidia.so.1", cache=False)
    fake.lib(L64, "libnvidia-egl-wayland.so.1.1.13", cache=False)  # own version: not swept
    fake.finish()
    df = fake.select("compute,utility")
    swept = [(x.capability, x.names[0]) for x in df.libraries64[4:]]
    assert swept == [("compute", f"libnvidia-mystery.so.{V}"), ("utility", f"libnvidia-sandboxutils.so.{V}")]
    df = fake.select("video,graphics")
    assert [(x.capability, x.path) for x in df.libraries64] == [
        ("compute", f"{L64}/libcuda.so.{V}"),
        ("compute", f"{L64}/libnvidia-gpucomp.so.{V}"),
        ("compute", f"{L64}/libnvidia-ptxjitcompiler.so.{V}"),
        ("video", f"{L64}/libnvidia-encode.so.{V}"),
        ("graphics", f"{L64}/libnvidia-glcore.so.{V}"),
        ("compute", f"{L64}/libnvidia-mystery.so.{V}"),
        ("video", f"{L64}/vdpau/libvdpau_nvidia.so.{V}"),
    ]
    assert "libvdpau_nvidia.so" not in df.missing and "libnvidia-glcore.so" not in df.missing
    assert not any("gtk3" in (x.path or "") for x in df.libraries64)


def test_video_implies_compute_display_implies_graphics(fake: Fake) -> None:
    basic(fake)
    fake.lib(L64, f"libnvidia-glcore.so.{V}")
    fake.finish()
    video = fake.select("video")
    assert f"{L64}/libcuda.so.{V}" in paths(video.libraries64)
    assert video.libraries64[0].capability == "compute"
    assert f"{L64}/libnvidia-ml.so.{V}" not in paths(video.libraries64)
    display = fake.select("display")
    assert [x.capability for x in display.libraries64 if "glcore" in (x.path or "")] == ["graphics"]


def test_binaries_along_path(fake: Fake) -> None:
    fake.finish()
    fake.write("/opt/nvidia/bin/nvidia-smi", make_script("echo smi"), 0o755)
    fake.symlink("/usr/bin/nvidia-smi", "/opt/nvidia/bin/nvidia-smi")  # absolute, inside the root
    fake.write("/usr/bin/nvidia-debugdump", make_script("echo dd"), 0o644)  # not executable
    fake.write("/usr/sbin/nvidia-persistenced", make_script("echo p"), 0o755)
    fake.write("/usr/local/bin/nvidia-persistenced", make_script("echo p2"), 0o755)
    fake.write("/usr/bin/nvidia-cuda-mps-control", make_script("echo m"), 0o755)
    df = fake.select("utility,compute", search_path="/usr/local/bin:/usr/sbin:/usr/bin:relative")
    assert [(x.capability, x.path, x.names, x.host_path) for x in df.binaries] == [
        ("compute", "/usr/bin/nvidia-cuda-mps-control", ("nvidia-cuda-mps-control",),
         fake.path + "/usr/bin/nvidia-cuda-mps-control"),
        ("utility", "/opt/nvidia/bin/nvidia-smi", ("nvidia-smi",), fake.path + "/opt/nvidia/bin/nvidia-smi"),
        ("utility", "/usr/local/bin/nvidia-persistenced", ("nvidia-persistenced",),
         fake.path + "/usr/local/bin/nvidia-persistenced"),
    ]
    assert [m for m in df.missing if not m.startswith("lib")] == [
        "nvidia-cuda-mps-server", "nvidia-debugdump", "nv-fabricmanager", "nvidia-imex", "nvidia-imex-ctl"]


def test_binary_renamed_by_link(fake: Fake) -> None:
    fake.finish()
    fake.write("/usr/lib/nvidia/nvidia-smi.real", make_script("echo"), 0o755)
    fake.symlink("/usr/bin/nvidia-smi", "../lib/nvidia/nvidia-smi.real")
    df = fake.select("utility")
    assert [x.names for x in df.binaries] == [("nvidia-smi.real", "nvidia-smi")]


def test_configs_ipc_firmware_present(fake: Fake) -> None:
    basic(fake)
    fake.finish()
    fake.write("/usr/share/glvnd/egl_vendor.d/10_nvidia.json", b"{}")
    fake.write("/etc/vulkan/icd.d/real_icd.json", b"{}")
    fake.symlink("/usr/share/vulkan/icd.d/nvidia_icd.json", "/etc/vulkan/icd.d/real_icd.json")
    fake.write("/etc/OpenCL/vendors/nvidia.icd", b"libnvidia-opencl.so.1\n")
    fake.write("/run/nvidia-persistenced/socket", b"")
    fake.symlink("/var/run", "/run")
    fake.write("/run/nvidia-fabricmanager/socket", b"")
    os.makedirs(fake.path + "/tmp/nvidia-mps")
    fake.write(f"/lib/firmware/nvidia/{V}/gsp_ga10x.bin", b"fw")
    fake.write(f"/lib/firmware/nvidia/{V}/gsp_tu10x.bin", b"fw")
    fake.write(f"/lib/firmware/nvidia/{V}/other.bin", b"fw")
    fake.write("/lib/firmware/nvidia/535.104.05/gsp_ga10x.bin", b"old")

    df = fake.select("compute,utility")
    assert [(x.capability, x.path) for x in df.configs] == [("compute", "/etc/OpenCL/vendors/nvidia.icd")]
    assert [(x.capability, x.path, x.host_path) for x in df.ipcs] == [
        ("utility", "/run/nvidia-persistenced/socket", fake.path + "/run/nvidia-persistenced/socket"),
        ("utility", "/run/nvidia-fabricmanager/socket", fake.path + "/run/nvidia-fabricmanager/socket"),
        ("compute", "/tmp/nvidia-mps", fake.path + "/tmp/nvidia-mps"),
    ]
    assert [(x.kind, x.names) for x in df.firmware] == [("firmware", ("gsp_ga10x.bin",)),
                                                         ("firmware", ("gsp_tu10x.bin",))]
    g = fake.select("graphics")
    assert [(x.path, x.host_path) for x in g.configs] == [
        ("/usr/share/glvnd/egl_vendor.d/10_nvidia.json", fake.path + "/usr/share/glvnd/egl_vendor.d/10_nvidia.json"),
        ("/usr/share/vulkan/icd.d/nvidia_icd.json", fake.path + "/etc/vulkan/icd.d/real_icd.json"),
    ]
    assert g.ipcs == ()
    assert fake.select("compute", gsp_firmware=False).firmware == ()
    assert paths(fake.select("compute", mps_pipe_dir="/elsewhere").ipcs) == []


def test_configs_ipc_firmware_absent(fake: Fake) -> None:
    basic(fake)
    fake.finish()
    df = fake.select("all")
    assert (df.configs, df.ipcs, df.firmware) == ((), (), ())


def test_no_cache_fallback(fake: Fake) -> None:
    basic(fake)
    fake.lib(L32, f"libcuda.so.{V}", "libcuda.so.1", machine="i386")
    fake.write(f"{L64}/libnvidia-cfg.so.{V}", make_elf_so("libnvidia-cfg.so.1", machine="i386"), 0o755)
    fake.lib("/usr/local/lib", "libcuda.so.535.104.05", "libcuda.so.1")  # not a fallback dir
    # no /etc/ld.so.cache written
    df = fake.select("compute,utility,compat32")
    assert paths(df.libraries64) == [f"{L64}/libcuda.so.{V}", f"{L64}/libnvidia-gpucomp.so.{V}",
                                     f"{L64}/libnvidia-ptxjitcompiler.so.{V}", f"{L64}/libnvidia-ml.so.{V}"]
    assert paths(df.libraries32) == [f"{L32}/libcuda.so.{V}"]
    assert df.libraries64[0].names == (f"libcuda.so.{V}", "libcuda.so.1", "libcuda.so")
    assert df.skipped == ((f"{L64}/libnvidia-cfg.so.{V}", "ELF machine i386, wanted x86-64"),)
    # same answer when a cache exists but use_cache=False
    fake.finish()
    assert paths(fake.select("compute,utility", use_cache=False).libraries64) == paths(df.libraries64)


def test_corrupt_cache_falls_back(fake: Fake) -> None:
    basic(fake)
    fake.write("/etc/ld.so.cache", b"glibc-ld.so.cache1.1" + b"\xff" * 40)
    df = fake.select("compute")
    assert paths(df.libraries64)[0] == f"{L64}/libcuda.so.{V}"
    assert df.skipped[0][0] == "/etc/ld.so.cache"
    assert df.skipped[0][1].endswith("searched the usual library directories instead")


def test_explicit_cache_argument(fake: Fake) -> None:
    basic(fake)
    cache = parse_ldcache(build_ldcache([("libcuda.so.1", f"{L64}/libcuda.so.1", 0x0303)]))
    df = select_driver_files(fake.root, V, ["compute"], cache=cache, arch="x86-64")
    assert paths(df.libraries64) == [f"{L64}/libcuda.so.{V}", f"{L64}/libnvidia-gpucomp.so.{V}",
                                     f"{L64}/libnvidia-ptxjitcompiler.so.{V}"]  # the last two by the sweep


def test_order_is_stable(fake: Fake) -> None:
    basic(fake)
    fake.finish()
    a = fake.select("all")
    b = select_driver_files(fake.root, V, ["utility", "compute", "ngx", "graphics", "video", "display",
                                          "compat32"], arch="x86-64")
    assert a == b


# -- capabilities ----------------------------------------------------------------------------
@pytest.mark.parametrize("text,expected", [
    ("compute,utility", {"compute", "utility"}),
    (" compute , video ,", {"compute", "video"}),
    ("", set()),
    ("all", set(ALL_CAPABILITIES)),
    ("utility,all", set(ALL_CAPABILITIES)),
    ("compat32", {"compat32"}),
    ("display,ngx,graphics", {"display", "ngx", "graphics"}),
])
def test_parse_capabilities(text: str, expected: set) -> None:
    assert parse_capabilities(text) == frozenset(expected)


@pytest.mark.parametrize("text,bad", [("compute,gpu", "'gpu'"), ("utility,  Vulkan ", "'Vulkan'"),
                                      ("compute;utility", "'compute;utility'")])
def test_parse_capabilities_errors(text: str, bad: str) -> None:
    with pytest.raises(UsageError) as exc:
        parse_capabilities(text)
    assert str(exc.value) == f"unknown driver capability: {bad}"
    assert exc.value.hint is not None and "compute" in exc.value.hint


def test_capability_constants() -> None:
    assert ALL_CAPABILITIES == {"compute", "utility", "video", "graphics", "display", "ngx", "compat32"}
    assert DEFAULT_CAPABILITIES == {"compute", "utility"}


def test_unknown_capability_in_select(fake: Fake) -> None:
    with pytest.raises(UsageError, match="'bogus'"):
        select_driver_files(fake.root, V, ["compute", "bogus"])


# -- simulated driver trees ----------------------------------------------------------------------
def _snapshot(d: str) -> Dict[str, object]:
    out: Dict[str, object] = {}
    for base, dirs, files in os.walk(d):
        for name in sorted(files + dirs):
            p = os.path.join(base, name)
            rel = os.path.relpath(p, d)
            if os.path.islink(p):
                out[rel] = ("link", os.readlink(p))
            elif os.path.isfile(p):
                with open(p, "rb") as fh:
                    out[rel] = ("file", fh.read(), os.stat(p).st_mode & 0o777)
    return out


def test_drivertree_deterministic_and_empty_for_no_driver(tmp_path) -> None:  # type: ignore[no-untyped-def]
    for name in ("dgx-a100", "workstation"):
        a, b = tmp_path / f"{name}-a", tmp_path / f"{name}-b"
        a.mkdir()
        b.mkdir()
        write_driver_tree(str(a), get_preset(name))
        write_driver_tree(str(b), get_preset(name))
        assert _snapshot(str(a)) == _snapshot(str(b))
    empty = tmp_path / "none"
    empty.mkdir()
    write_driver_tree(str(empty), get_preset("no-driver"))
    assert os.listdir(empty) == []


def test_drivertree_selection_dgx(tmp_path) -> None:  # type: ignore[no-untyped-def]
    preset = get_preset("dgx-a100")
    write_driver_tree(str(tmp_path), preset)
    df = select_driver_files(HostRoot(str(tmp_path)), "550.54.15", DEFAULT_CAPABILITIES, arch="x86-64")
    names = [x.names[0] for x in df.libraries64]
    assert names[:2] == ["libcuda.so.550.54.15", "libcudadebugger.so.550.54.15"]
    assert "libnvidia-ml.so.550.54.15" in names and "libnvidia-sandboxutils.so.550.54.15" in names
    assert "libnvidia-nscq.so.550.54.15" in names
    assert not any("glcore" in n for n in names)
    assert df.skipped == (("/usr/local/lib/libcuda.so.535.104.05",
                           "stale copy from driver 535.104.05 (running 550.54.15)"),)
    assert [x.names[-1] for x in df.binaries] == ["nvidia-cuda-mps-control", "nvidia-cuda-mps-server", "nvidia-smi",
                                                   "nvidia-debugdump", "nvidia-persistenced", "nv-fabricmanager"]
    assert [x.path for x in df.binaries if x.names[-1] == "nvidia-persistenced"] == [
        "/usr/lib/nvidia/current/nvidia-persistenced"]
    assert [x.path for x in df.ipcs] == ["/run/nvidia-persistenced/socket", "/run/nvidia-fabricmanager/socket"]
    assert len(df.firmware) == 2 and df.libraries32 == ()


def test_drivertree_selection_workstation_graphics(tmp_path) -> None:  # type: ignore[no-untyped-def]
    write_driver_tree(str(tmp_path), get_preset("workstation"))
    df = select_driver_files(HostRoot(str(tmp_path)), "560.35.03", ALL_CAPABILITIES, arch="x86-64")
    by_name = {x.names[0]: x for x in df.libraries64}
    assert by_name["libGLX_nvidia.so.560.35.03"].names == (
        "libGLX_nvidia.so.560.35.03", "libGLX_nvidia.so.0", "libGLX_indirect.so.0")
    assert by_name["libnvidia-tls.so.560.35.03"].capability == "graphics"
    assert by_name["libvdpau_nvidia.so.560.35.03"].path == f"{L64}/vdpau/libvdpau_nvidia.so.560.35.03"
    assert ("/usr/lib/x86_64-linux-gnu/libGL.so.1.7.0", "not a driver 560.35.03 file") in df.skipped
    assert {x.names[0] for x in df.libraries32} >= {"libcuda.so.560.35.03", "libGLX_nvidia.so.560.35.03"}
    assert [x.path for x in df.configs] == [
        "/etc/OpenCL/vendors/nvidia.icd", "/usr/share/glvnd/egl_vendor.d/10_nvidia.json",
        "/usr/share/egl/egl_external_platform.d/15_nvidia_gbm.json",
        "/usr/share/egl/egl_external_platform.d/10_nvidia_wayland.json",
        "/usr/share/vulkan/icd.d/nvidia_icd.json", "/usr/share/vulkan/implicit_layer.d/nvidia_layers.json",
        "/usr/share/nvidia/nvoptix.bin", "/usr/share/X11/xorg.conf.d/nvidia-drm-outputclass.conf",
        f"{L64}/gbm/nvidia-drm_gbm.so", "/usr/lib/xorg/modules/drivers/nvidia_drv.so",
        "/usr/lib/xorg/modules/extensions/libglxserver_nvidia.so.560.35.03",
        "/usr/lib/xorg/modules/extensions/libglxserver_nvidia.so"]
    gbm = df.configs[8]
    assert (gbm.host_path, gbm.names, gbm.capability) == (
        f"{tmp_path}{L64}/libnvidia-allocator.so.560.35.03", ("nvidia-drm_gbm.so",), "graphics")
    assert {x.names[0] for x in df.libraries64} >= {
        "libnvidia-nvvm70.so.4", "libnvidia-egl-gbm.so.1.1.2", "libnvidia-egl-wayland.so.1.1.17"}
    assert [x.path for x in df.binaries if x.capability == "graphics"] == ["/usr/bin/nvidia-xconfig"]
    assert "libGL.so" not in df.missing  # a GLVND install: no NVIDIA libGL expected
    assert len(df.missing) == len(set(df.missing))  # libnvidia-allocator is in two lists, reported once


@pytest.mark.skipif(shutil.which("ldconfig") is None, reason="ldconfig not installed")
def test_drivertree_cache_read_by_ldconfig(tmp_path) -> None:  # type: ignore[no-untyped-def]
    write_driver_tree(str(tmp_path), get_preset("workstation"))
    path = str(tmp_path / "etc/ld.so.cache")
    real = subprocess.run(["ldconfig", "-p", "-C", path], capture_output=True, text=True, check=True).stdout
    with open(path, "rb") as fh:
        assert render_ldconfig_p(parse_ldcache(fh.read()), path) == real
    assert "libcuda.so.1 (libc6) => /usr/lib/i386-linux-gnu/libcuda.so.1" in real


# ------------------------------------------------------------------ what the toolkit adds

NVVM70 = "libnvidia-nvvm70.so"
STALE = "535.104.05"


def _nvvm70_unversioned(f: Fake) -> None:
    f.lib(L64, f"{NVVM70}.4")  # R575+: the real file carries no driver version


def _nvvm70_versioned(f: Fake) -> None:
    f.lib(L64, f"{NVVM70}.{V}", f"{NVVM70}.4")  # a driver that names it like the others


def _nvvm70_stale(f: Fake) -> None:
    f.lib(L64, f"{NVVM70}.{STALE}", f"{NVVM70}.4")


def _nvvm70_elsewhere(f: Fake) -> None:
    f.lib("/opt/other/lib", f"{NVVM70}.4")  # in ld.so.cache, but not next to the driver's libcuda


def _nvvm70_wrong_machine(f: Fake) -> None:
    f.lib(L64, f"{NVVM70}.4", machine="i386", cache=False)


def _nvvm70_not_a_library(f: Fake) -> None:
    f.write(f"{L64}/{NVVM70}.4.txt", b"notes\n")


@pytest.mark.parametrize("setup,caps,selected,skipped", [
    (_nvvm70_unversioned, "compute", [f"{L64}/{NVVM70}.4"], []),
    (_nvvm70_unversioned, "video", [f"{L64}/{NVVM70}.4"], []),  # video implies the compute libraries
    (_nvvm70_unversioned, "utility", [], []),
    (_nvvm70_unversioned, "graphics", [], []),
    (_nvvm70_versioned, "compute", [f"{L64}/{NVVM70}.{V}"], []),
    (_nvvm70_stale, "compute", [], [(f"{L64}/{NVVM70}.{STALE}", f"stale copy from driver {STALE} (running {V})")]),
    (_nvvm70_elsewhere, "compute", [], []),
    (_nvvm70_wrong_machine, "compute", [], [(f"{L64}/{NVVM70}.4", "ELF machine i386, wanted x86-64")]),
    (_nvvm70_not_a_library, "compute", [], [(f"{L64}/{NVVM70}.4.txt", f"not a {NVVM70} library file")]),
    (lambda f: None, "compute", [], []),
], ids=["unversioned", "video", "utility-only", "graphics-only", "versioned", "stale", "other-dir",
        "wrong-machine", "not-a-library", "absent"])
def test_legacy_nvvm_next_to_libcuda(fake: Fake, setup, caps: str, selected: List[str],  # type: ignore[no-untyped-def]
                                     skipped: List[Tuple[str, str]]) -> None:
    basic(fake)
    setup(fake)
    fake.finish()
    df = fake.select(caps)
    nvvm = [x for x in df.libraries64 if x.names[0].startswith(NVVM70 + ".")]
    assert paths(nvvm) == selected
    if nvvm:
        assert nvvm[0].capability == "compute" and nvvm[0].names[-1] == f"{NVVM70}.4"
        assert nvvm[0].host_path == fake.path + selected[0]
    assert [s for s in df.skipped if NVVM70 in s[0]] == skipped
    assert not any(NVVM70 in m for m in df.missing)  # older drivers have none: never "missing"


def test_legacy_nvvm_not_from_a_stale_libcuda_directory(fake: Fake) -> None:
    basic(fake)
    fake.lib("/usr/local/lib", f"libcuda.so.{STALE}", "libcuda.so.1")
    fake.lib("/usr/local/lib", f"{NVVM70}.4")
    fake.finish()
    df = fake.select("compute")
    assert not any(x.names[0].startswith(NVVM70) for x in df.libraries64)


EGL_GBM = "libnvidia-egl-gbm.so"


def test_egl_platform_libraries_carry_their_own_version(fake: Fake) -> None:
    basic(fake)
    fake.lib(L64, f"{EGL_GBM}.1.1.2", f"{EGL_GBM}.1")
    fake.lib("/opt/old", f"{EGL_GBM}.1.0.9", f"{EGL_GBM}.1")  # later in cache order: a duplicate
    fake.lib(L64, "libnvidia-egl-wayland2.so.1.0.0", "libnvidia-egl-wayland2.so.1")
    fake.lib(L64, "libnvidia-egl-xcb.so.1.0.1", "libnvidia-egl-xcb.so.1", machine="i386", cache=False)
    fake.finish()
    df = fake.select("graphics")
    egl = [(x.path, x.names, x.capability) for x in df.libraries64 if x.names[0].startswith("libnvidia-egl-")]
    assert egl == [
        (f"{L64}/{EGL_GBM}.1.1.2", (f"{EGL_GBM}.1.1.2", f"{EGL_GBM}.1"), "graphics"),
        (f"{L64}/libnvidia-egl-wayland2.so.1.0.0",
         ("libnvidia-egl-wayland2.so.1.0.0", "libnvidia-egl-wayland2.so.1"), "graphics"),
    ]
    assert (f"/opt/old/{EGL_GBM}.1.0.9",
            f"duplicate of {L64}/{EGL_GBM}.1.1.2 (the first in ld.so.cache order wins)") in df.skipped
    assert not any(m.startswith("libnvidia-egl-") for m in df.missing)
    assert not any(x.names[0].startswith("libnvidia-egl-") for x in fake.select("compute,utility").libraries64)


def test_egl_platform_library_named_with_another_driver_version_is_stale(fake: Fake) -> None:
    basic(fake)
    fake.lib(L64, f"{EGL_GBM}.{STALE}", f"{EGL_GBM}.1")
    fake.finish()
    df = fake.select("graphics")
    assert (f"{L64}/{EGL_GBM}.{STALE}", f"stale copy from driver {STALE} (running {V})") in df.skipped


GBM_LINK = f"{L64}/gbm/nvidia-drm_gbm.so"
ALLOCATOR = f"libnvidia-allocator.so.{V}"


def _gbm_link(f: Fake) -> None:
    f.symlink(GBM_LINK, "../libnvidia-allocator.so.1")


def _gbm_absolute_link(f: Fake) -> None:
    f.symlink(GBM_LINK, f"{L64}/{ALLOCATOR}")  # absolute: resolved inside the root


def _gbm_stale(f: Fake) -> None:
    f.lib("/opt/old", f"libnvidia-allocator.so.{STALE}", "libnvidia-allocator.so.1", cache=False)
    f.symlink(GBM_LINK, f"/opt/old/libnvidia-allocator.so.{STALE}")


def _gbm_regular_file(f: Fake) -> None:
    f.write(GBM_LINK, make_elf_so("nvidia-drm_gbm.so"))


def _gbm_dangling(f: Fake) -> None:
    f.symlink(GBM_LINK, "../libnvidia-allocator.so.9")


@pytest.mark.parametrize("setup,caps,selected,skipped", [
    (_gbm_link, "graphics", True, []),
    (_gbm_link, "display", True, []),  # display implies the graphics files
    (_gbm_absolute_link, "graphics", True, []),
    (_gbm_link, "compute,utility", False, []),
    (_gbm_stale, "graphics", False, [(f"/opt/old/libnvidia-allocator.so.{STALE}",
                                      f"stale copy from driver {STALE} (running {V})")]),
    (_gbm_regular_file, "graphics", False, [(GBM_LINK, "not a link to the driver's libnvidia-allocator")]),
    (_gbm_dangling, "graphics", False, [(GBM_LINK, "dangling link")]),
    (lambda f: None, "graphics", False, []),
], ids=["link", "display", "absolute-link", "compute-only", "stale", "regular-file", "dangling", "absent"])
def test_gbm_backend_link(fake: Fake, setup, caps: str, selected: bool,  # type: ignore[no-untyped-def]
                          skipped: List[Tuple[str, str]]) -> None:
    basic(fake)
    fake.lib(L64, ALLOCATOR, "libnvidia-allocator.so.1")
    setup(fake)
    fake.finish()
    df = fake.select(caps)
    gbm = [x for x in df.configs if x.path == GBM_LINK]
    if selected:
        assert [(x.kind, x.capability, x.names, x.host_path) for x in gbm] == [
            ("config", "graphics", ("nvidia-drm_gbm.so",), f"{fake.path}{L64}/{ALLOCATOR}")]
    else:
        assert gbm == []
    assert [s for s in df.skipped if "allocator" in s[0] or "gbm" in s[0]] == skipped
    if "graphics" in caps or "display" in caps:  # the allocator is in the graphics list too
        assert f"{L64}/{ALLOCATOR}" in paths(df.libraries64)


def test_gbm_backend_found_next_to_the_allocator_without_libcuda(fake: Fake) -> None:
    fake.lib(L64, ALLOCATOR, "libnvidia-allocator.so.1")
    _gbm_link(fake)
    fake.finish()
    df = fake.select("graphics")
    assert [x.path for x in df.configs] == [GBM_LINK]


XORG = "/usr/lib/xorg/modules"


def test_xorg_modules_at_their_host_paths(fake: Fake) -> None:
    basic(fake)
    fake.write(f"{XORG}/drivers/nvidia_drv.so", make_elf_so("nvidia_drv.so"))
    fake.write(f"{XORG}/extensions/libglxserver_nvidia.so.{V}", make_elf_so(f"libglxserver_nvidia.so.{V}"))
    fake.write(f"{XORG}/extensions/libglxserver_nvidia.so.{STALE}", make_elf_so("old"))
    fake.finish()
    df = fake.select("graphics")
    real_glx = f"{fake.path}{XORG}/extensions/libglxserver_nvidia.so.{V}"
    assert [(x.path, x.names, x.host_path) for x in df.configs] == [
        (f"{XORG}/drivers/nvidia_drv.so", ("nvidia_drv.so",), f"{fake.path}{XORG}/drivers/nvidia_drv.so"),
        (f"{XORG}/extensions/libglxserver_nvidia.so.{V}", (f"libglxserver_nvidia.so.{V}",), real_glx),
        # the link name X.Org loads, made by the toolkit's create-symlinks hook
        (f"{XORG}/extensions/libglxserver_nvidia.so", ("libglxserver_nvidia.so",), real_glx),
    ]
    assert all(x.kind == "config" and x.capability == "graphics" for x in df.configs)
    assert fake.select("compute,utility").configs == ()


def test_xorg_module_in_the_driver_library_directory_wins(fake: Fake) -> None:
    basic(fake)
    fake.write(f"{L64}/nvidia/xorg/nvidia_drv.so", make_elf_so("nvidia_drv.so"))
    fake.write(f"{XORG}/drivers/nvidia_drv.so", make_elf_so("nvidia_drv.so"))
    fake.finish()
    assert [x.path for x in fake.select("graphics,utility").configs] == [f"{L64}/nvidia/xorg/nvidia_drv.so"]


def test_xorg_module_that_is_not_elf_is_skipped(fake: Fake) -> None:
    basic(fake)
    fake.write(f"{XORG}/drivers/nvidia_drv.so", b"not elf\n")
    fake.write(f"{XORG}/extensions/libglxserver_nvidia.so.{V}", make_elf_so("x", machine="aarch64"))
    fake.finish()
    df = fake.select("graphics")
    assert df.configs == ()
    assert df.skipped == ((f"{XORG}/drivers/nvidia_drv.so", "not a readable ELF file"),
                          (f"{XORG}/extensions/libglxserver_nvidia.so.{V}", "ELF machine aarch64, wanted x86-64"))


def test_toolkit_binaries_and_configs(fake: Fake) -> None:
    basic(fake)
    for name in ("nvidia-imex", "nvidia-imex-ctl", "nvidia-xconfig"):
        fake.write(f"/usr/bin/{name}", make_script("echo"), 0o755)
    fake.write("/etc/X11/xorg.conf.d/10-nvidia.conf", b'Section "OutputClass"\nEndSection\n')
    fake.finish()
    util = fake.select("utility")
    assert [x.names[0] for x in util.binaries] == ["nvidia-imex", "nvidia-imex-ctl"]
    graphics = fake.select("graphics")
    assert [(x.capability, x.names[0]) for x in graphics.binaries] == [("graphics", "nvidia-xconfig")]
    assert [x.path for x in graphics.configs] == ["/etc/X11/xorg.conf.d/10-nvidia.conf"]


def test_vulkan_producer_is_optional_and_gets_its_link(fake: Fake) -> None:
    basic(fake)
    fake.finish()
    assert "libnvidia-vulkan-producer.so" not in fake.select("graphics").missing
    fake.lib(L64, f"libnvidia-vulkan-producer.so.{V}")
    fake.finish()
    prod = [x for x in fake.select("graphics").libraries64 if x.names[0].startswith("libnvidia-vulkan-producer")]
    assert [x.names for x in prod] == [(f"libnvidia-vulkan-producer.so.{V}", "libnvidia-vulkan-producer.so")]


@pytest.mark.parametrize("custom,release,where,found", [
    # a driver installed under /usr/local/nvidia (as on GPU clouds): the kernel's firmware_class.path
    ("/usr/local/nvidia/firmware\n", None, "/usr/local/nvidia/firmware", True),
    (None, "6.8.0-49-generic", "/lib/firmware/updates/6.8.0-49-generic", True),
    (None, None, "/lib/firmware/updates", True),
    (None, "6.8.0-49-generic", "/lib/firmware/6.8.0-49-generic", True),
    # hostile or unusable values are ignored, never followed
    ("relative/firmware\n", None, "/relative/firmware", False),
    ("/usr/local/../../etc\n", None, "/etc", False),
    (None, "../../etc", "/lib/firmware/etc", False),
])
def test_firmware_in_every_kernel_search_dir(fake: Fake, custom, release, where, found) -> None:
    """GSP firmware is looked up where the kernel loads it from, as nvidia-ctk does (firmware_class.path,
    then /lib/firmware/updates/<release>, /lib/firmware/updates, /lib/firmware/<release>, /lib/firmware)."""
    basic(fake)
    fake.finish()
    if custom is not None:
        fake.write("/sys/module/firmware_class/parameters/path", custom.encode())
    if release is not None:
        fake.write("/proc/sys/kernel/osrelease", release.encode() + b"\n")
    fake.write(f"{where}/nvidia/{V}/gsp_ga10x.bin", b"fw")
    df = fake.select("compute,utility")
    paths_found = [x.path for x in df.firmware]
    assert paths_found == ([f"{where}/nvidia/{V}/gsp_ga10x.bin"] if found else [])


def test_collector_resolution_agrees_with_the_root(tmp_path) -> None:
    """The per-selection directory memo resolves every shape of link exactly as HostRoot.realpath."""
    from nvlow.errors import HostError
    from nvlow.host.driverfiles import _Collector
    from nvlow.host.root import HostRoot

    r = tmp_path
    (r / "usr/lib/x86_64-linux-gnu").mkdir(parents=True)
    (r / "opt/nv/lib").mkdir(parents=True)
    (r / "usr/lib/x86_64-linux-gnu/libcuda.so.550.54.15").write_text("")
    os.symlink("libcuda.so.550.54.15", r / "usr/lib/x86_64-linux-gnu/libcuda.so.1")   # same dir
    os.symlink("libcuda.so.1", r / "usr/lib/x86_64-linux-gnu/libcuda.so")             # chain
    os.symlink("/opt/nv/lib/libx.so", r / "usr/lib/x86_64-linux-gnu/libx.so.1")       # absolute: inside the root
    os.symlink("../../../opt/nv/lib", r / "usr/lib/nvlink")                          # a directory link
    (r / "opt/nv/lib/libx.so").write_text("")
    os.symlink("loop2", r / "usr/lib/x86_64-linux-gnu/loop1")
    os.symlink("loop1", r / "usr/lib/x86_64-linux-gnu/loop2")
    os.symlink("x86_64-linux-gnu", r / "usr/lib/lib64")                               # dir link, same parent
    root = HostRoot(str(r))
    col = _Collector(root, "550.54.15")
    for path in ("/usr/lib/x86_64-linux-gnu/libcuda.so", "/usr/lib/x86_64-linux-gnu/libcuda.so.1",
                 "/usr/lib/x86_64-linux-gnu/libx.so.1", "/usr/lib/nvlink/libx.so", "/usr/lib/lib64/libcuda.so",
                 "/usr/lib/x86_64-linux-gnu/missing.so", "/usr/lib/lib64/../nvlink/libx.so", "/libc.so"):
        assert col.realpath(path) == root.realpath(path), path
    with pytest.raises(HostError):
        root.realpath("/usr/lib/x86_64-linux-gnu/loop1")
    assert col.realpath("/usr/lib/x86_64-linux-gnu/loop1") is None and col.skipped
