"""WSL2 hosts against real docker and podman: what a container sees (docs/wsl2.md).

The fake WSL2 root is the ``--simulate wsl2`` tree (``nvlow.simulate.hosttree.build_tree``) made real:

- ``/dev/dxg`` is a character node made with ``os.mknod`` (misc major 10), with a minor the *host*
  kernel's ``/proc/misc`` does not list (the tree's 125 when free), and the tree's ``/proc/misc``
  ``dxg`` line says the same minor; opening it in a container fails with ENODEV (no dxgkrnl);
- the driver store's ``libcuda.so.1.1`` and ``libnvidia-ml.so.1`` and ``/usr/lib/wsl/lib/libdxcore.so``
  are gcc-built shared objects with their SONAMEs (``tests/engine/fakehost.py``'s compiler), so a
  program linked against them runs in the container;
- the store's ``nvidia-smi`` and ``/usr/lib/wsl/lib/nvidia-smi`` are shell scripts printing different
  lines, so the container shows which one ``/usr/bin/nvidia-smi`` is.

Each container runs the busybox image with a probe script (helpers.probe_script) and a test program
linked against ``libcuda.so.1``, ``libnvidia-ml.so.1`` and ``libdxcore.so`` (by SONAME, no RUNPATH).
``nvlow exec`` runs with ``--no-nvml`` (the fakes are no NVML) and ``--no-require`` (without NVML the
host CUDA version is unknown, so the image's ``NVIDIA_REQUIRE_CUDA`` could not be checked).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
from dataclasses import dataclass
from typing import Dict, Iterator, List, Tuple

import pytest

from nvlow.cdi.layout import library_dirs
from nvlow.host.ldcache import native_arch

from . import requires_engines, requires_root
from .fakehost import _compile_library
from .helpers import IMAGE, IMAGE_PATH, Engine, NvlowRunner, Section, generated_cdi_spec, probe_script, sections

pytestmark = [pytest.mark.engine, requires_engines, requires_root]

MISC_MAJOR = 10
WSL_LIB = "/usr/lib/wsl/lib"
WSL_DRIVERS = "/usr/lib/wsl/drivers"
SMI_LINK = "/usr/bin/nvidia-smi"
#: where the test binds its probe program (linked against the fake driver libraries) into containers
WSL_PROBE = "/opt/wsl-probe"
MULTIARCH_LIB, LIB64 = library_dirs(native_arch())

#: the NVIDIA store files a container gets (docs/wsl2.md, "Files mounted"): the toolkit's required
#: files, then the store's other ``*.so*``, ``*.bin`` and ``*.dll`` files. Written out here, not
#: computed with nvlow's own functions.
STORE_FILES = (
    "libcuda.so.1.1", "libcuda_loader.so", "libnvidia-ptxjitcompiler.so.1", "libnvidia-ml.so.1",
    "libnvidia-ml_loader.so", "libnvdxgdmal.so.1", "nvcubins.bin", "nvidia-smi",
    "libcudadebugger.so.1", "libnvwgf2umx.so", "nvcuda64.dll", "nvptxJitCompiler64.dll",
)
#: store entries the toolkit leaves alone (a driver, an .inf, a directory named like a library)
STORE_IGNORED = ("nvlddmkm.sys", "nv_dispi.inf", "lib.so.d")
STORE_SMI_MARKER = "nvlow-fake-wsl-store-nvidia-smi 560.94"
LIB_SMI_MARKER = "nvlow-fake-wsl-lib-nvidia-smi (not the store's)"


# ---------------------------------------------------------------- the fake WSL2 host

@dataclass(frozen=True)
class FakeWslHost:
    """What :func:`build_fake_wsl_host` wrote; paths without ``root`` are as the host (and nvlow) sees them."""

    root: str
    dxg_minor: int
    #: the NVIDIA driver store directory (host view)
    store: str
    #: the Intel driver store directory (no libcuda.so.1.1: never mounted)
    other_store: str

    def host(self, path: str) -> str:
        return os.path.join(self.root, path.lstrip("/"))

    def md5(self, path: str) -> str:
        with open(self.host(path), "rb") as fh:
            return hashlib.md5(fh.read()).hexdigest()

    @property
    def dxg_hex(self) -> str:
        """``%t:%T`` of /dev/dxg as stat prints it."""
        return f"{MISC_MAJOR:x}:{self.dxg_minor:x}"

    @property
    def store_paths(self) -> List[str]:
        return [f"{self.store}/{name}" for name in STORE_FILES]


def _host_misc_minors() -> Dict[int, str]:
    try:
        with open("/proc/misc", encoding="ascii", errors="replace") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return {}
    out: Dict[int, str] = {}
    for line in lines:
        number, _, name = line.strip().partition(" ")
        if number.isdigit():
            out[int(number)] = name.strip()
    return out


def _free_dxg_minor(preferred: int) -> int:
    """``preferred`` unless the host kernel has a misc device there (a real WSL2 host's dxg, say)."""
    used = _host_misc_minors()
    if preferred not in used:
        return preferred
    for minor in range(250, 127, -1):
        if minor not in used:
            return minor
    raise RuntimeError("no free misc minor in 128..250")


def build_fake_wsl_host(dest: str, cc: str) -> FakeWslHost:
    from nvlow.simulate import wsltree
    from nvlow.simulate.hosttree import build_tree
    from nvlow.simulate.presets import get_preset

    root = os.path.abspath(dest)
    build_tree(root, get_preset("wsl2"))
    minor = _free_dxg_minor(wsltree.DXG_MINOR)
    # /proc/misc: the tree's dxg line, with the minor the node really has
    misc = os.path.join(root, "proc/misc")
    lines = [line for line in open(misc, encoding="ascii").read().splitlines() if not line.endswith(" dxg")]
    os.chmod(misc, 0o644)
    with open(misc, "w", encoding="ascii") as fh:
        fh.write("\n".join(lines + [f"{minor:3d} dxg"]) + "\n")
    # /dev/dxg: a real character node instead of the tree's marked regular file
    dxg = os.path.join(root, "dev/dxg")
    os.unlink(dxg)
    os.mknod(dxg, stat.S_IFCHR | 0o666, os.makedev(MISC_MAJOR, minor))
    os.chmod(dxg, 0o666)  # mknod honours the umask
    host = FakeWslHost(root=root, dxg_minor=minor, store=wsltree.NVIDIA_STORE, other_store=wsltree.INTEL_STORE)
    # gcc-built libraries: a program linked against them loads them and calls into them
    build = os.path.join(root, ".build")
    os.makedirs(build)
    for path, soname in ((f"{host.store}/libcuda.so.1.1", "libcuda.so.1"),
                         (f"{host.store}/libnvidia-ml.so.1", "libnvidia-ml.so.1"),
                         (f"{WSL_LIB}/libdxcore.so", "libdxcore.so")):
        os.unlink(host.host(path))
        _compile_library(build, host.host(path), soname, cc)
        os.chmod(host.host(path), 0o555)
    shutil.rmtree(build)
    for path, marker in ((f"{host.store}/nvidia-smi", STORE_SMI_MARKER), (f"{WSL_LIB}/nvidia-smi", LIB_SMI_MARKER)):
        with open(host.host(path), "w", encoding="ascii") as fh:
            fh.write(f"#!/bin/sh\necho '{marker}'\n")
        os.chmod(host.host(path), 0o555)
    return host


def _symbol(path: str) -> str:
    """The one function a fakehost-compiled library exports (named after its file)."""
    return "nvlow_fake_" + "".join(c if c.isalnum() else "_" for c in os.path.basename(path))


@pytest.fixture(scope="module")
def cc() -> str:
    if os.geteuid() != 0:
        pytest.skip("the fake WSL2 host needs root (mknod)")
    found = shutil.which("gcc") or shutil.which("cc")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("gcc is missing; the fake WSL2 host's driver libraries are built with it")
        pytest.skip("gcc is missing; the fake WSL2 host's driver libraries are built with it")
    return found


@pytest.fixture(scope="module")
def wsl_host(tmp_path_factory: pytest.TempPathFactory, cc: str) -> FakeWslHost:
    return build_fake_wsl_host(str(tmp_path_factory.mktemp("wslhost")), cc)


@pytest.fixture(scope="module")
def wsl_probe(wsl_host: FakeWslHost, cc: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A program linked (DT_NEEDED by SONAME, no RUNPATH) against the fake libcuda, NVML and libdxcore."""
    libs = [wsl_host.host(p) for p in (f"{wsl_host.store}/libcuda.so.1.1", f"{wsl_host.store}/libnvidia-ml.so.1",
                                        f"{WSL_LIB}/libdxcore.so")]
    symbols = [_symbol(lib) for lib in libs]
    work = tmp_path_factory.mktemp("wsl-probe")
    src, out = str(work / "probe.c"), str(work / "wsl-probe")
    with open(src, "w", encoding="ascii") as fh:
        fh.write("#include <stdio.h>\n" + "".join(f"int {s}(void);\n" for s in symbols)
                 + 'int main(void) { printf("wsl-probe %d %d %d\\n", '
                 + ", ".join(f"{s}()" for s in symbols) + "); return 0; }\n")
    subprocess.run([cc, "-o", out, src, *libs], check=True, capture_output=True, timeout=120)
    dynamic = subprocess.run(["readelf", "-d", out], check=True, capture_output=True, text=True).stdout
    for soname in ("libcuda.so.1", "libnvidia-ml.so.1", "libdxcore.so"):
        assert f"Shared library: [{soname}]" in dynamic, dynamic
    assert "RUNPATH" not in dynamic and "RPATH" not in dynamic
    os.chmod(out, 0o755)
    return out


# ---------------------------------------------------------------- the probe

def probe_commands(host: FakeWslHost) -> Dict[str, str]:
    extra = [f"{host.store}/libcuda.so.1", f"{WSL_LIB}/libdxcore.so", SMI_LINK]
    commands = {
        "dxg": "stat -c '%n|%F|%t:%T' /dev/dxg",
        "dxg_open": "cat /dev/dxg",
        "nvidia_nodes": "ls -1 /dev /dev/nvidia-caps 2>/dev/null | grep nvidia",
        "store_ls": f"ls -1A {host.store}",
        "wsl_lib_ls": f"ls -1A {WSL_LIB}",
        "drivers_ls": f"ls -1A {WSL_DRIVERS}",
        "md5": "md5sum " + " ".join(host.store_paths + extra),
        "smi": SMI_LINK,
        "smi_on_path": "nvidia-smi",
        "resolved": f"LD_TRACE_LOADED_OBJECTS=1 {WSL_PROBE} | grep -E 'libcuda|libnvidia-ml|libdxcore'",
        "run": WSL_PROBE,
        "env": "env | grep -E '^(PATH|LD_LIBRARY_PATH|NVIDIA_VISIBLE_DEVICES)=' | sort",
    }
    # every mounted file is read-only (the directories around single-file binds are the container's own)
    for path in host.store_paths + extra:
        commands[f"ro:{path}"] = f"touch {path}"
    return commands


def check_common_facts(s: Dict[str, Section], host: FakeWslHost) -> None:
    """What every way of giving a container the WSL2 GPU must show."""
    assert s["dxg"] == Section(0, f"/dev/dxg|character special file|{host.dxg_hex}"), s["dxg"]
    # the device cgroup lets it through (EPERM otherwise) and no dxgkrnl answers the minor
    assert s["dxg_open"].rc != 0 and "No such device" in s["dxg_open"].out, s["dxg_open"]
    assert s["nvidia_nodes"] == Section(1, ""), s["nvidia_nodes"]
    # exactly the toolkit's file set, plus the libcuda.so.1 SONAME bind; ignored files stay out
    assert sorted(s["store_ls"].out.splitlines()) == sorted([*STORE_FILES, "libcuda.so.1"]), s["store_ls"]
    assert not set(STORE_IGNORED) & set(s["store_ls"].out.splitlines())
    assert s["wsl_lib_ls"].out.splitlines() == ["libdxcore.so"], s["wsl_lib_ls"]
    assert s["drivers_ls"].out.splitlines() == [os.path.basename(host.store)], s["drivers_ls"]
    # every file is the host's, at its host path; libcuda.so.1 is libcuda.so.1.1, /usr/bin/nvidia-smi the store's
    assert s["md5"].rc == 0, s["md5"].out
    want = [(host.md5(p), p) for p in host.store_paths]
    want += [(host.md5(f"{host.store}/libcuda.so.1.1"), f"{host.store}/libcuda.so.1"),
             (host.md5(f"{WSL_LIB}/libdxcore.so"), f"{WSL_LIB}/libdxcore.so"),
             (host.md5(f"{host.store}/nvidia-smi"), SMI_LINK)]
    assert [tuple(line.split()) for line in s["md5"].out.splitlines()] == want
    read_only = {k: v for k, v in s.items() if k.startswith("ro:")}
    assert len(read_only) == len(STORE_FILES) + 3
    for name, section in read_only.items():
        assert section.rc != 0 and "Read-only file system" in section.out, (name, section)
    assert s["smi"] == Section(0, STORE_SMI_MARKER), s["smi"]
    assert s["smi_on_path"] == Section(0, STORE_SMI_MARKER), s["smi_on_path"]
    # the program linked against the driver loads all three and calls into each
    assert s["run"] == Section(0, "wsl-probe 42 42 42"), s["run"]


def resolved(section: Section) -> Dict[str, str]:
    """``SONAME -> path`` from the loader's LD_TRACE_LOADED_OBJECTS lines."""
    out = {}
    for line in section.out.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1] == "=>":
            out[parts[0]] = parts[2]
    return out


# ---------------------------------------------------------------- nvlow exec

_exec_cache: Dict[Tuple[str, str], Tuple[Dict[str, Section], str]] = {}


@pytest.fixture
def exec_probe(engine: Engine, wsl_host: FakeWslHost, wsl_probe: str,
               nvlow: NvlowRunner) -> Dict[str, Section]:
    """The probe's sections from one ``nvlow exec --root <fake WSL2 host>`` run per engine."""
    key = (engine.name, wsl_host.root)
    if key not in _exec_cache:
        argv = engine.run_argv("-v", f"{wsl_probe}:{WSL_PROBE}:ro", IMAGE,
                               "sh", "-c", probe_script(probe_commands(wsl_host)))
        proc = nvlow("exec", "--root", wsl_host.root, "--no-nvml", "--no-require", "--", *argv)
        assert proc.returncode == 0, f"rc {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
        _exec_cache[key] = (sections(proc.stdout), proc.stderr)
    return _exec_cache[key][0]


def test_exec_container_facts(exec_probe: Dict[str, Section], wsl_host: FakeWslHost) -> None:
    check_common_facts(exec_probe, wsl_host)


def test_exec_ld_library_path_and_resolution(exec_probe: Dict[str, Section], wsl_host: FakeWslHost) -> None:
    # the toolkit's ldcache folders, in its order: the store, then /usr/lib/wsl/lib; PATH stays the image's
    assert exec_probe["env"].out.splitlines() == [
        f"LD_LIBRARY_PATH={wsl_host.store}:{WSL_LIB}", f"PATH={IMAGE_PATH}"], exec_probe["env"]
    # libcuda.so.1 is found through the SONAME bind in the store directory
    assert resolved(exec_probe["resolved"]) == {
        "libcuda.so.1": f"{wsl_host.store}/libcuda.so.1",
        "libnvidia-ml.so.1": f"{wsl_host.store}/libnvidia-ml.so.1",
        "libdxcore.so": f"{WSL_LIB}/libdxcore.so",
    }, exec_probe["resolved"]


def test_exec_control_without_nvlow(engine: Engine, wsl_probe: str) -> None:
    """The control: the same image without nvlow has no /dev/dxg and cannot load the driver."""
    proc = engine.run("-v", f"{wsl_probe}:{WSL_PROBE}:ro", IMAGE, "sh", "-c",
                      probe_script({"dxg": "stat /dev/dxg", "run": WSL_PROBE}), check=False)
    assert proc.returncode == 0, proc.stderr
    s = sections(proc.stdout)
    assert s["dxg"].rc != 0
    assert s["run"].rc != 0 and "cannot open shared object file" in s["run"].out, s["run"]


# ---------------------------------------------------------------- CDI


@pytest.fixture(scope="module")
def wsl_cdi_spec(wsl_host: FakeWslHost, podman_engine: Engine) -> Iterator[Tuple[str, str]]:
    """(kind, spec path): nvlow's spec for the fake WSL2 host in /var/run/cdi (removed afterwards)."""
    with generated_cdi_spec(wsl_host.root, f"nvlow-test-wsl-{os.getpid()}.yaml", podman_engine.env) as spec:
        yield spec


@pytest.fixture(scope="module")
def cdi_probe(wsl_cdi_spec: Tuple[str, str], podman_engine: Engine, wsl_host: FakeWslHost,
              wsl_probe: str) -> Dict[str, Section]:
    kind, _path = wsl_cdi_spec
    commands = probe_commands(wsl_host)
    commands["default_dirs"] = "md5sum " + " ".join(
        f"{d}/{n}" for d in (MULTIARCH_LIB, LIB64) for n in ("libcuda.so.1", "libnvidia-ml.so.1", "libdxcore.so"))
    proc = podman_engine.cli("run", "--rm", "--pull", "never", "--network", "none", "--device", f"{kind}=all",
                             "-v", f"{wsl_probe}:{WSL_PROBE}:ro", IMAGE, "sh", "-c", probe_script(commands),
                             check=False)
    assert proc.returncode == 0, f"rc {proc.returncode}: {proc.stderr}"
    return sections(proc.stdout)


def test_cdi_spec_has_only_all(wsl_cdi_spec: Tuple[str, str], wsl_host: FakeWslHost, nvlow: NvlowRunner) -> None:
    _kind, path = wsl_cdi_spec
    proc = nvlow("cdi", "validate", "--root", wsl_host.root, path)
    assert (proc.returncode, proc.stdout) == (0, f"{path}: ok (1 device)\n"), proc.stderr


def test_cdi_container_facts(cdi_probe: Dict[str, Section], wsl_host: FakeWslHost) -> None:
    check_common_facts(cdi_probe, wsl_host)


def test_cdi_libraries_in_default_dirs(cdi_probe: Dict[str, Section], wsl_host: FakeWslHost) -> None:
    # no LD_LIBRARY_PATH, the image's PATH: the loader finds the SONAME binds in its default directories
    assert cdi_probe["env"].out.splitlines() == ["NVIDIA_VISIBLE_DEVICES=void", f"PATH={IMAGE_PATH}"]
    assert resolved(cdi_probe["resolved"]) == {
        "libcuda.so.1": f"{MULTIARCH_LIB}/libcuda.so.1",
        "libnvidia-ml.so.1": f"{MULTIARCH_LIB}/libnvidia-ml.so.1",
        "libdxcore.so": f"{MULTIARCH_LIB}/libdxcore.so",
    }, cdi_probe["resolved"]
    md5 = {n: wsl_host.md5(p) for n, p in (("libcuda.so.1", f"{wsl_host.store}/libcuda.so.1.1"),
                                           ("libnvidia-ml.so.1", f"{wsl_host.store}/libnvidia-ml.so.1"),
                                           ("libdxcore.so", f"{WSL_LIB}/libdxcore.so"))}
    assert cdi_probe["default_dirs"].rc == 0, cdi_probe["default_dirs"].out
    assert [tuple(line.split()) for line in cdi_probe["default_dirs"].out.splitlines()] == [
        (md5[n], f"{d}/{n}") for d in (MULTIARCH_LIB, LIB64) for n in ("libcuda.so.1", "libnvidia-ml.so.1",
                                                                      "libdxcore.so")]
