"""Hardening against a hostile or broken host tree (``--root``) and hostile input.

Each test here fails on the code before the hardening (docs/security.md):

1. device nodes are never reached through a symbolic link, never carry a well-known non-NVIDIA major of
   the running kernel under another root, and never resolve outside the root; driver files neither;
2. a truncated, garbage or symbol-less libnvidia-ml is refused before ``dlopen`` (which died of SIGBUS or
   SIGSEGV), like a missing one;
3. a FIFO anywhere nvlow reads (ld.so.cache, /proc files, the NVML library, an env file) or an endless
   file is an unreadable file, never a hang or a MemoryError;
4. numbers are ASCII digits of bounded length everywhere (``int()`` takes ``٣`` and refuses 4,300+ digits).

Everything that could hang or crash runs in a subprocess with a timeout.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import stat
import subprocess
import sys
from typing import Callable, Dict, List, Optional, Tuple

import pytest

from fakes.nodes import make_real_nodes
import nvlow.host.scan as scan_module
from nvlow.host.cudaversions import cuda_for_driver
from nvlow.host.driverfiles import select_driver_files
from nvlow.errors import HostError, NvlowError, SelectionError, UsageError
from nvlow.engine.gpusflag import parse_gpus_flag
from nvlow.model import DeviceNode, Gpu, MigDevice
from nvlow.host.procfs import (parse_cap_access, parse_devices, parse_gpu_information, parse_mig_cap_name,
                               parse_mig_minors)
from nvlow.text import number_or_none, parse_number
from nvlow.plan.request import SelectionChoice
from nvlow.plan.require import GpuFacts, HostFacts, check_image, check_label, parse_requirements
from nvlow.host.root import SIMULATED_NODE_PREFIX, HostRoot, file_node_reader, read_regular
from nvlow.host.scan import ProcScan, scan_host
from nvlow.plan.select import resolve_choice, select_gpus
from nvlow.simulate.elfgen import make_elf_so
from nvlow.simulate.hosttree import build_tree
from nvlow.simulate.presets import get_preset
from nvlow.simulate.proctree import write_proc_dev_tree

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VERSION = "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar  5 2024\n"
HUGE = "9" * 5000
IS_ROOT = os.geteuid() == 0


# ------------------------------------------------------------------ helpers

def put(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if os.path.lexists(path):
        os.unlink(path)
    with open(path, "w") as fh:
        fh.write(text)


def node_file(path: str, major: int, minor: int) -> None:
    put(path, f"{SIMULATED_NODE_PREFIX.decode()}{major}:{minor}\n")


def replace_with_link(path: str, target: str) -> None:
    if os.path.lexists(path):
        os.unlink(path)
    os.symlink(target, path)


def minimal_tree(d: str, devices: str, minor: int) -> None:
    """/proc/devices, the version banner and one GPU with Device Minor ``minor``."""
    put(f"{d}/proc/devices", devices)
    put(f"{d}/proc/driver/nvidia/version", VERSION)
    put(f"{d}/proc/driver/nvidia/gpus/0000:01:00.0/information",
        f"Model: \t X\nBus Location: \t 0000:01:00.0\nDevice Minor: \t {minor}\n")
    os.makedirs(f"{d}/dev", exist_ok=True)


def all_nodes(scan: ProcScan) -> List[DeviceNode]:
    out = list(scan.gpu_nodes) + list(scan.control_nodes) + list(scan.imex_channels)
    out += [n for n in (scan.config_cap, scan.monitor_cap) if n is not None]
    out += [c.node for c in scan.mig_caps if c.node is not None]
    out += [n for g in scan.gpus for n in g.drm_nodes]
    return out


def host_tree(d: str, preset: str = "workstation") -> str:
    """A whole simulated host (procfs, /dev, driver files, ld.so.cache) with real nodes when root."""
    os.makedirs(d)
    build_tree(d, get_preset(preset))
    if IS_ROOT:
        make_real_nodes(d)
    return d


def cli_env() -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NVLOW_", "NVIDIA_", "NV_"))}
    env["DOCKER_HOST"] = "unix:///nonexistent/docker.sock"
    env["PYTHONPATH"] = REPO
    return env


def run_nvlow(*args: str, timeout: float = 60,
              env: Optional[Dict[str, str]] = None) -> "subprocess.CompletedProcess[str]":
    """``python -m nvlow ARGS`` (a hang is a TimeoutExpired, i.e. a test failure, not a stuck suite)."""
    return subprocess.run([sys.executable, "-m", "nvlow", *args], env=env or cli_env(), capture_output=True,
                          text=True, timeout=timeout, cwd=REPO)


def assert_clean_exit(res: "subprocess.CompletedProcess[str]", codes: Tuple[int, ...] = (0, 1, 2)) -> None:
    """Exited (no signal), with an nvlow exit code and no internal error."""
    assert res.returncode >= 0, f"killed by signal {-res.returncode}: {res.stderr[-2000:]}"
    assert res.returncode in codes, res.stderr[-2000:]
    assert "internal error" not in res.stderr and "Traceback" not in res.stderr, res.stderr[-2000:]


def nvml_real_path(d: str) -> str:
    return os.path.realpath(f"{d}/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1")


# ================================================================== 1. device nodes

def test_gpu_node_symlink_to_a_host_device_is_not_followed(tmp_path: object) -> None:
    """The issue's escape: '1 nvidia' in the tree and dev/nvidiaN -> a host device of major 1 (here
    /dev/null, 1:3; /dev/kmsg is 1:11). stat() followed the link and found exactly 1:N."""
    d = str(tmp_path)
    minimal_tree(d, "Character devices:\n  1 nvidia\n\nBlock devices:\n", 3)
    os.symlink("/dev/null", f"{d}/dev/nvidia3")
    scan = scan_host(HostRoot(d), load_uvm=False)  # the default (real) node reader
    assert scan.gpu_nodes == () and scan.gpus[0].node is None
    assert f"{d}/dev/nvidia3 is a symbolic link, not a character device; not used" in scan.warnings


MIG = "dgx-h100-mig"


@pytest.mark.parametrize("path,preset", [
    ("/dev/nvidiactl", "workstation"), ("/dev/nvidia-uvm", "workstation"), ("/dev/nvidia-modeset", "workstation"),
    ("/dev/nvidia0", "workstation"), ("/dev/nvidia-caps/nvidia-cap1", MIG), ("/dev/nvidia-caps/nvidia-cap66", MIG),
])
def test_no_device_node_is_reached_through_a_symlink(tmp_path: object, path: str, preset: str) -> None:
    """Every kind of node, even when the link stays inside the tree and its target has the right numbers."""
    d = str(tmp_path)
    write_proc_dev_tree(d, get_preset(preset))
    root = HostRoot(d, node_reader=file_node_reader)
    before = {n.container_path for n in all_nodes(scan_host(root))}
    assert path in before
    with open(root.host(path), "rb") as fh:
        content = fh.read()
    os.makedirs(f"{d}/srv", exist_ok=True)
    with open(f"{d}/srv/node", "wb") as fh:
        fh.write(content)
    replace_with_link(root.host(path), os.path.relpath(f"{d}/srv/node", os.path.dirname(root.host(path))))
    scan = scan_host(root, load_uvm=False)
    after = {n.container_path for n in all_nodes(scan)}
    assert path not in after
    assert after == before - {path} - ({"/dev/nvidia-uvm-tools"} if path == "/dev/nvidia-uvm" else set())
    assert f"{root.host(path)} is a symbolic link, not a character device; not used" in scan.warnings


def _kernel(tmp_path: object, text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    path = os.path.join(str(tmp_path), "kernel-devices")
    with open(path, "w") as fh:
        fh.write(text)
    monkeypatch.setattr(scan_module, "KERNEL_DEVICES", path, raising=False)


KERNEL = ("Character devices:\n  1 mem\n  4 tty\n  5 /dev/tty\n 10 misc\n195 nvidia\n195 nvidiactl\n226 drm\n"
          "510 hidraw\n")


def test_node_with_a_well_known_major_of_the_running_kernel_is_refused(tmp_path: object,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A real 1:N node (a hard link of /dev/null, /dev/mem, ...) in a tree whose /proc/devices says
    '1 nvidia': the tree's file is not the running kernel's, whose major 1 is 'mem'."""
    _kernel(tmp_path, KERNEL, monkeypatch)
    d = os.path.join(str(tmp_path), "root")
    write_proc_dev_tree(d, get_preset("workstation"))
    with open(f"{d}/proc/devices") as fh:
        devices = fh.read()
    put(f"{d}/proc/devices", devices.replace("195 nvidia\n195 nvidiactl\n", "").replace(
        "Character devices:\n", "Character devices:\n  1 nvidia\n  1 nvidiactl\n").replace("226 drm", " 10 drm"))
    for name, minor in (("nvidia0", 0), ("nvidiactl", 255), ("nvidia-modeset", 254)):
        node_file(f"{d}/dev/{name}", 1, minor)
    for name, minor in (("card0", 0), ("renderD128", 128)):
        node_file(f"{d}/dev/dri/{name}", 10, minor)
    scan = scan_host(HostRoot(d, node_reader=file_node_reader), load_uvm=False)
    paths = {n.container_path for n in all_nodes(scan)}
    assert paths == {"/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"}
    assert (f"{d}/dev/nvidiactl is 1:255, but the running kernel's {scan_module.KERNEL_DEVICES} gives major 1 to "
            "mem, not to nvidia or nvidiactl or nvidia-frontend; not used") in scan.warnings
    assert any(w.startswith(f"{d}/dev/dri/card0 is 10:0, but") and "to misc, not to drm" in w for w in scan.warnings)


def test_nvidia_drm_and_dynamic_majors_of_the_running_kernel_are_fine(tmp_path: object,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Majors the kernel gives to NVIDIA (195) or DRM (226) pass; dynamic majors (234-254, 384-511) are
    not judged (a tree from another machine numbers them otherwise): 510 is hidraw here, nvidia-uvm there."""
    _kernel(tmp_path, KERNEL, monkeypatch)
    d = os.path.join(str(tmp_path), "root")
    write_proc_dev_tree(d, get_preset("dgx-a100"))  # nvidia-uvm 510
    scan = scan_host(HostRoot(d, node_reader=file_node_reader), load_uvm=False)
    assert scan.warnings == ()
    assert {n.container_path for n in scan.control_nodes} >= {"/dev/nvidiactl", "/dev/nvidia-uvm"}
    assert len(scan.gpu_nodes) == 8 and all(len(g.drm_nodes) == 2 for g in scan.gpus)


def test_nodes_under_a_dev_directory_outside_the_root_are_refused(tmp_path: object) -> None:
    """lstat does not follow the last component only: a ``dev`` that links out of the tree would
    hand the engine paths that resolve outside the root."""
    outside = os.path.join(str(tmp_path), "outside")
    d = os.path.join(str(tmp_path), "root")
    write_proc_dev_tree(outside, get_preset("workstation"))
    os.makedirs(d)
    shutil.copytree(f"{outside}/proc", f"{d}/proc")
    os.symlink("../outside/dev", f"{d}/dev")
    scan = scan_host(HostRoot(d, node_reader=file_node_reader), load_uvm=False)
    assert all_nodes(scan) == []
    assert f"{d}/dev/nvidiactl resolves to {outside}/dev/nvidiactl, outside {d}; not used" in scan.warnings


@pytest.mark.skipif(not IS_ROOT, reason="needs mknod for a real control node")
def test_cli_never_hands_out_a_host_device_through_a_tree_link(tmp_path: object) -> None:
    """The issue's reproduction end to end: 'nvlow args --root' printed --device=<root>/dev/nvidia3,
    which the engine resolves to the host's /dev/null (or /dev/kmsg, /dev/mem ...)."""
    d = str(tmp_path)
    minimal_tree(d, "Character devices:\n  1 nvidia\n\nBlock devices:\n", 3)
    os.mknod(f"{d}/dev/nvidiactl", 0o666 | stat.S_IFCHR, os.makedev(1, 255))
    os.symlink("/dev/null", f"{d}/dev/nvidia3")
    res = run_nvlow("args", "--root", d, "--no-nvml", "--gpus", "0")
    assert_clean_exit(res, (1, 2))
    assert "dev/nvidia3" not in res.stdout
    assert f"{d}/dev/nvidia3 is a symbolic link, not a character device; not used" in res.stderr
    assert "gives major 1 to mem" in res.stderr


def test_driver_files_resolving_outside_the_root_are_never_emitted(tmp_path: object,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The last check before a driver file leaves nvlow: its host path must stay inside the root once the
    kernel resolves it. Shown with a resolver that misses a link (``HostRoot.realpath`` itself takes
    absolute links relative to the root and stops '..' at it, so this is defence in depth)."""
    outside = os.path.join(str(tmp_path), "outside")
    d = os.path.join(str(tmp_path), "root")
    os.makedirs(d)
    build_tree(d, get_preset("workstation"))
    shutil.move(f"{d}/usr/lib/x86_64-linux-gnu", outside)
    os.symlink("../../../outside", f"{d}/usr/lib/x86_64-linux-gnu")
    monkeypatch.setattr(HostRoot, "realpath", lambda self, path: os.path.normpath(path))
    root = HostRoot(d)
    files = select_driver_files(root, "560.35.03", ["compute", "utility", "graphics"])
    emitted = [f.host_path for group in (files.libraries64, files.libraries32, files.binaries, files.configs,
                                         files.ipcs, files.firmware) for f in group]
    assert emitted, "the tree's binaries and firmware are still there"
    real_root = os.path.realpath(d)
    assert all(os.path.realpath(p).startswith(real_root + "/") for p in emitted), emitted
    assert any(reason.endswith(f", outside {d}; not used") and path.startswith(f"{d}/usr/lib/x86_64-linux-gnu/")
               for path, reason in files.skipped)


def test_contains() -> None:
    root = HostRoot("/srv/fake")
    assert not root.contains("/srv/fake/../etc/passwd") and not root.contains("/srv/fakeother/x")
    assert HostRoot("/").contains("/anything")


# ================================================================== 2. driver libraries

LOADER_LOOP = r"""
import sys
from nvlow.errors import LibraryError
from nvlow.native._nvml_ffi import ffi
from nvlow.native.loader import load_library
from nvlow.host.root import HostRoot
for path in sys.argv[1:]:
    try:
        load_library(ffi, "libnvidia-ml.so.1", HostRoot("/"), {"NVLOW_NVML_LIBRARY": path})
        print("LOADED", path)
    except LibraryError as exc:
        print("REFUSED", str(exc))
"""


def _loader_loop(paths: List[str]) -> List[str]:
    res = subprocess.run([sys.executable, "-c", LOADER_LOOP, *paths], capture_output=True, text=True, timeout=120,
                         cwd=REPO, env=cli_env())
    assert res.returncode == 0, f"exit {res.returncode} (a negative one is a signal): {res.stdout[-500:]}"
    return res.stdout.splitlines()


def _truncations(size: int) -> List[int]:
    return sorted({0, 15, 16, 63, 64, 100, 600, 1000, 4096} | {size * k // 20 for k in range(1, 20)}
                  | {size - 1})


def test_truncated_copies_of_the_fake_nvml_are_refused_not_dlopened(tmp_path: object, fake_libs: object) -> None:
    """dlopen of a copy cut inside a PT_LOAD segment died of SIGBUS; now each copy is one refused candidate
    naming the file and why (for a file cut after its last segment, the section header table)."""
    src = fake_libs.nvml  # type: ignore[attr-defined]
    with open(src, "rb") as fh:
        data = fh.read()
    paths = []
    for n in _truncations(len(data)):
        path = os.path.join(str(tmp_path), f"cut{n}", "libnvidia-ml.so.1")
        os.makedirs(os.path.dirname(path))
        with open(path, "wb") as fh:
            fh.write(data[:n])
        paths.append(path)
    lines = _loader_loop(paths)
    assert len(lines) == len(paths)
    for path, line in zip(paths, lines):
        assert line.startswith(f"REFUSED cannot load libnvidia-ml.so.1 (tried: {path}: "), line
        assert any(word in line for word in ("truncated", "not an ELF file", "shorter than")), line


def test_garbage_named_libnvidia_ml_is_refused(tmp_path: object, fake_libs: object) -> None:
    rng = random.Random(20240605)
    with open(fake_libs.nvml, "rb") as fh:  # type: ignore[attr-defined]
        real = fh.read()
    blobs = [bytes(rng.randrange(256) for _ in range(n)) for n in (1, 100, 4096, 70000)]
    blobs += [b"\x7fELF" + bytes(rng.randrange(256) for _ in range(n)) for n in (12, 60, 5000)]
    blobs += [real[:64] + bytes(rng.randrange(256) for _ in range(len(real) - 64)),  # header kept, rest garbage
              real[:16] + bytes(rng.randrange(256) for _ in range(len(real) - 16))]
    paths = []
    for i, blob in enumerate(blobs):
        path = os.path.join(str(tmp_path), f"g{i}", "libnvidia-ml.so.1")
        os.makedirs(os.path.dirname(path))
        with open(path, "wb") as fh:
            fh.write(blob)
        paths.append(path)
    lines = _loader_loop(paths)
    assert len(lines) == len(paths)
    for path, line in zip(paths, lines):
        # refused by nvlow's own check, before dlopen could see the file
        reason = line.partition(f"(tried: {path}: ")[2]
        assert reason.startswith(("not an ELF file", "truncated", "corrupt", "unknown ELF", "not a shared object",
                                  "ELF machine", "ELF byte order", "a 32-bit", "no ")), line


def test_the_fake_nvml_itself_still_loads(fake_libs: object) -> None:
    assert _loader_loop([fake_libs.nvml]) == [f"LOADED {fake_libs.nvml}"]  # type: ignore[attr-defined]


@pytest.mark.parametrize("command", [("info", "--json"), ("args",), ("doctor",)])
def test_cli_under_a_root_with_a_truncated_nvml_falls_back_to_procfs(tmp_path: object, fake_libs: object,
                                                                     command: Tuple[str, ...]) -> None:
    d = host_tree(os.path.join(str(tmp_path), "root"))
    with open(fake_libs.nvml, "rb") as fh:  # type: ignore[attr-defined]
        data = fh.read()
    with open(nvml_real_path(d), "wb") as fh:
        fh.write(data[:len(data) // 2])
    # args opens NVML only when its request needs it (docs/nvml-lazy.md): force it to reach the loader
    env = {**cli_env(), "NVLOW_EAGER_NVML": "1"} if command[0] == "args" else None
    res = run_nvlow(*command, "--root", d, env=env)
    assert_clean_exit(res, (0, 1) if command[0] != "doctor" else (1,))
    assert f"{nvml_real_path(d)}: truncated: PT_LOAD segment" in res.stderr + res.stdout
    if command[0] == "info":
        assert json.loads(res.stdout)["source"] == "procfs"


def test_cli_does_not_dlopen_a_library_without_a_symbol_table(tmp_path: object) -> None:
    """A well-formed ELF shared object without DT_SYMTAB (the simulator's minimal stubs): glibc 2.36 dies
    relocating it (SIGSEGV in elf_dynamic_do_Rela), so 'nvlow info --root' with one in place of
    libnvidia-ml used to crash; simulated trees wrote such stubs until they became loadable."""
    d = host_tree(os.path.join(str(tmp_path), "root"))
    with open(nvml_real_path(d), "wb") as fh:
        fh.write(make_elf_so("libnvidia-ml.so.1", ["libc.so.6"]))
    res = run_nvlow("info", "--json", "--root", d)
    assert_clean_exit(res, (0,))
    assert json.loads(res.stdout)["source"] == "procfs"
    assert f"{nvml_real_path(d)}: no DT_SYMTAB or DT_STRTAB" in res.stderr


@pytest.mark.skipif(not IS_ROOT, reason="needs mknod for real device nodes")
@pytest.mark.parametrize("command", [("args", "--gpus", "0"), ("cdi", "generate")])
@pytest.mark.parametrize("damaged", [True, False], ids=["truncated-libcuda", "intact"])
def test_a_truncated_driver_library_is_left_out_with_one_warning(tmp_path: object, command: Tuple[str, ...],
                                                                 damaged: bool) -> None:
    """A driver library emptied by a full disk or a broken install is not bound (it is not an ELF file
    any more) and one warning names it with the fix; an intact tree has no such warning."""
    d = host_tree(os.path.join(str(tmp_path), "root"))
    libcuda = os.path.realpath(f"{d}/usr/lib/x86_64-linux-gnu/libcuda.so.1")
    if damaged:
        open(libcuda, "wb").close()
    res = run_nvlow(*command, "--root", d, "--no-nvml")
    assert_clean_exit(res, (0,))
    lines = [line for line in res.stderr.splitlines() if "damaged or gone" in line]
    assert (libcuda in res.stdout) is not damaged  # the host file is bound only when intact
    if damaged:
        assert len(lines) == 1, res.stderr
        assert f"{libcuda[len(d):]} (not a readable ELF file)" in lines[0] and "reinstall the driver" in lines[0]
    else:
        assert lines == []


# ================================================================== 3. FIFOs, devices and endless files

FIFO_PLACES = ["/etc/ld.so.cache", "/proc/driver/nvidia/version", "/proc/devices",
               "/proc/driver/nvidia/gpus/0000:01:00.0/information", "nvml"]


@pytest.mark.parametrize("place", FIFO_PLACES)
def test_a_fifo_in_the_tree_never_blocks(tmp_path: object, place: str) -> None:
    d = host_tree(os.path.join(str(tmp_path), "root"))
    real = nvml_real_path(d) if place == "nvml" else d + place
    os.unlink(real)
    os.mkfifo(real)
    for command in (("args",), ("info", "--json"), ("list", "--json")):
        res = run_nvlow(*command, "--root", d, timeout=30)
        assert_clean_exit(res, (0, 1))
        if place == "/etc/ld.so.cache" and command[0] != "list":
            continue  # NVML loads from the usual directories; the cache's fate is in list's "skipped"
        if place == "nvml" and command[0] == "args":
            continue  # args opens NVML only when its request needs it (docs/nvml-lazy.md)
        assert f"{real} is a FIFO, not a regular file" in res.stderr + res.stdout or \
            f"{real}: a FIFO, not a regular file" in res.stderr, res.stderr


def test_read_regular_refuses_devices_and_oversized_files(tmp_path: object) -> None:
    with pytest.raises(HostError, match=r"^/dev/zero is a character device, not a regular file; not read$"):
        read_regular("/dev/zero")
    big = os.path.join(str(tmp_path), "big")
    with open(big, "wb") as fh:
        fh.write(b"x" * ((1 << 20) + 1))
    with pytest.raises(HostError, match=r"is larger than 1048576 bytes; not read$"):
        HostRoot(str(tmp_path)).read_text("/big")
    assert len(read_regular(big, 2 << 20)) == (1 << 20) + 1
    assert read_regular(big, limit=10) == b"x" * 10


def _limited_memory() -> None:  # pragma: no cover - runs in the child
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


def test_an_endless_ld_so_cache_is_not_read_into_memory(tmp_path: object) -> None:
    """A tree whose ld.so.cache is /dev/zero was read until memory ran out (in a child with 2 GiB)."""
    d = str(tmp_path)
    os.makedirs(f"{d}/etc")
    os.symlink("/dev/zero", f"{d}/etc/ld.so.cache")
    code = ("import sys\nfrom nvlow.errors import HostError\nfrom nvlow.host.ldcache import read_ldcache\n"
            "from nvlow.host.root import HostRoot\ntry:\n    read_ldcache(HostRoot(sys.argv[1]))\n"
            "except HostError as exc:\n    print(exc)\n")
    res = subprocess.run([sys.executable, "-c", code, d], capture_output=True, text=True, timeout=60, cwd=REPO,
                         env=cli_env(), preexec_fn=_limited_memory)
    assert res.returncode == 0, res.stderr[-1000:]
    assert res.stdout == f"{d}/etc/ld.so.cache is a character device, not a regular file; not read\n"


def _exec_with_env_file(path: str) -> "subprocess.CompletedProcess[str]":
    return run_nvlow("exec", "--simulate", "dgx-a100", "--dry-run", "--", "docker", "run", "--env-file", path,
                 "--rm", "img", "true", timeout=30)


@pytest.mark.parametrize("kind", ["/dev/zero", "fifo", "huge"])
def test_env_files_that_are_not_regular_or_too_big_are_one_line_errors(tmp_path: object, kind: str) -> None:
    path = kind
    if kind == "fifo":
        path = os.path.join(str(tmp_path), "env.fifo")
        os.mkfifo(path)
    elif kind == "huge":
        path = os.path.join(str(tmp_path), "env.list")
        with open(path, "w") as fh:
            fh.write("A=1\n" * ((1 << 18) + 1))
    res = _exec_with_env_file(path)
    assert_clean_exit(res, (2,))
    errors = [line for line in res.stderr.splitlines() if line.startswith("nvlow: error:")]
    assert len(errors) == 1 and f"env file {path} " in errors[0], res.stderr


def test_dev_null_is_still_an_empty_env_file() -> None:
    res = _exec_with_env_file("/dev/null")
    assert_clean_exit(res, (0,))


# ================================================================== 4. numbers

def test_number_helper() -> None:
    assert number_or_none("0007") == 7 and number_or_none("0" * 5000 + "1") == 1
    for bad in ("", "٣", "²", "1_0", " 1", "+1", "-1", "1.0", HUGE, "１"):
        assert number_or_none(bad) is None, bad
    assert number_or_none("fF", base=16) == 255 and number_or_none("g", base=16) is None
    with pytest.raises(UsageError, match=r"^invalid GPU count '9999999999999999999999999999999999999999\.\.\.'"):
        parse_number(HUGE, "GPU count", error=UsageError)


def test_procfs_parsers_take_no_huge_or_non_ascii_numbers() -> None:
    assert parse_devices(f"Character devices:\n{HUGE} nvidia\n195 nvidia\n") == {"nvidia": 195}
    assert parse_devices("Character devices:\n١٩٥ nvidia\n") == {}
    assert parse_mig_cap_name(f"gpu{HUGE}/gi1/access") is None and parse_mig_cap_name("gpu٠/gi1/access") is None
    assert parse_mig_minors(f"gpu0/gi1/access {HUGE}\nconfig 1\n") == {"config": 1}
    assert parse_cap_access("DeviceFileMinor: ٣\n") is None and parse_cap_access(f"DeviceFileMinor: {HUGE}") is None
    info = parse_gpu_information(f"Device Minor: \t ٣\nIRQ: \t {HUGE}\n")
    assert (info.minor, info.irq) == (None, None)
    assert parse_gpu_information("Device Minor: \t 1_0\n").minor is None


def test_procfs_tree_with_huge_numbers_is_no_internal_error(tmp_path: object) -> None:
    d = str(tmp_path)
    minimal_tree(d, f"Character devices:\n{HUGE} nvidia\n195 nvidia\n", 0)
    put(f"{d}/proc/driver/nvidia/gpus/0000:01:00.0/information", f"Model: X\nDevice Minor: {HUGE}\n")
    put(f"{d}/proc/driver/nvidia-caps/mig-minors", f"gpu{HUGE}/gi1/access 3\n")
    res = run_nvlow("info", "--json", "--no-nvml", "--root", d)
    assert_clean_exit(res, (0,))
    assert json.loads(res.stdout)["gpus"][0]["minor"] is None


GPUS = (Gpu(0, 0, "GPU-0aaa", "0000:00:00.0", "A100", mig_enabled=True,
           mig_devices=tuple(MigDevice(f"MIG-{i}", 0, i, 7 + i, 0) for i in range(2))),) + tuple(
    Gpu(i, i, f"GPU-{i}aaa", f"0000:0{i}:00.0", "A100") for i in range(1, 4))


@pytest.mark.parametrize("spec", ["²", "٣", "٠:١", "0:١", HUGE, f"0:{HUGE}", f"MIG-GPU-0aaa/{HUGE}/0", "３",
                                  "MIG-GPU-0aaa/٧/٠"])
def test_selection_takes_ascii_numbers_only(spec: str) -> None:
    """'٣' selected GPU 3 and '٠:١' MIG device 0:1 (str.isdigit, \\d and int() accept Arabic-Indic digits);
    '²' and 5,000 digits were internal errors (ValueError)."""
    with pytest.raises(SelectionError):
        select_gpus(GPUS, spec)
    assert [m.uuid for m in select_gpus(GPUS, "0:1").mig_devices] == ["MIG-1"]
    assert [m.uuid for m in select_gpus(GPUS, "MIG-GPU-0aaa/7/0").mig_devices] == ["MIG-0"]


def test_nv_gpu_and_counts_take_ascii_numbers_only() -> None:
    with pytest.raises(SelectionError):
        select_gpus(GPUS, "٣", nv_gpu=True)
    for spec in ("٣", HUGE, "", "x"):
        with pytest.raises(SelectionError):
            resolve_choice(GPUS, SelectionChoice("docker --gpus", spec, "count"))
    assert [g.index for g in resolve_choice(GPUS, SelectionChoice("docker --gpus", "-1", "count")).gpus] == [0, 1, 2, 3]
    assert [g.index for g in resolve_choice(GPUS, SelectionChoice("docker --gpus", "2", "count")).gpus] == [0, 1]
    assert [g.index for g in select_gpus(GPUS, "0003,1").gpus] == [1, 3]


def test_docker_gpus_counts_use_dockers_wording() -> None:
    for value, reason in ((HUGE, "value out of range"), ("²", "invalid syntax"), ("٣", "invalid syntax"),
                          ("9223372036854775808", "value out of range"),
                          ("-9223372036854775809", "value out of range")):
        with pytest.raises(UsageError) as err:
            parse_gpus_flag(value)
        assert str(err.value).endswith(f'invalid count ({value}): value must be either "all" or an integer: {reason}')
    assert parse_gpus_flag("+" + "0" * 40 + "3").count == 3  # Go's strconv.Atoi takes both
    assert parse_gpus_flag("-9223372036854775808").count == -(2 ** 63)


FACTS = HostFacts("12.4", "550.54.15", (GpuFacts("8.0", "tesla", 0),))


def test_requirements_take_bounded_ascii_numbers() -> None:
    for text in (f"cuda>={HUGE}", f"driver>=1.{HUGE}", "cuda>=١٢.٠", "arch>=８.0"):
        with pytest.raises(UsageError):
            parse_requirements(text)
    assert check_image({"NVIDIA_REQUIRE_CUDA": f"cuda>={HUGE}"}, {}, FACTS)[0].startswith("NVIDIA_REQUIRE_CUDA: ")
    assert check_image({"NVIDIA_REQUIRE_ARCH": "arch>=٨.0"}, {}, FACTS)[0].startswith("NVIDIA_REQUIRE_ARCH: ")
    assert check_image({"CUDA_VERSION": HUGE}, {}, FACTS)[0].startswith("CUDA_VERSION: ")
    assert check_label(f"{HUGE}.0", FACTS) == (f"invalid label com.nvidia.cuda.version='{HUGE[:60]}...': "
                                               "expected a CUDA version like 9.0")
    assert check_label("١٢.٠", FACTS) is not None and check_label("12.0", FACTS) is None
    assert check_image({}, {"com.nvidia.cuda.version": f"9.{HUGE}"}, FACTS)[0].startswith("invalid label")
    # host values from a broken driver are "unknown", never an exception
    odd = HostFacts(HUGE, "٥٥٠.54", (GpuFacts(f"8.{HUGE}", "tesla"),))
    assert check_image({"NVIDIA_REQUIRE_CUDA": "cuda>=12.0 driver>=500 arch>=8.0"}, {}, odd)


def test_cuda_for_driver_takes_ascii_numbers_only() -> None:
    assert cuda_for_driver("550.54.15") == "12.4"
    assert cuda_for_driver("٥٥٠.54.15") is None and cuda_for_driver(HUGE) is None
    assert cuda_for_driver("550_1.54") is None and cuda_for_driver("550. 54") is None


@pytest.mark.parametrize("gpus,code", [("²", 2), ("٣", 2), (HUGE, 2), ("3", 0)])
def test_cli_gpus_flag_numbers(gpus: str, code: int) -> None:
    res = run_nvlow("args", "--simulate", "dgx-a100", "--gpus", gpus)
    assert_clean_exit(res, (code,))
    if code == 0:
        assert "/dev/nvidia3:/dev/nvidia3" in res.stdout


def test_cli_docker_gpus_count_with_5000_digits() -> None:
    res = run_nvlow("exec", "--simulate", "dgx-a100", "--dry-run", "--", "docker", "run", "--gpus", HUGE, "img")
    assert_clean_exit(res, (2,))
    assert 'value must be either "all" or an integer: value out of range' in res.stderr


def test_every_numeric_failure_is_an_nvlow_error() -> None:
    """What the CLI turns into one line and an exit code (anything else is an 'internal error')."""
    attempts: List[Callable[[], object]] = [
        lambda: select_gpus(GPUS, "٣"), lambda: parse_gpus_flag(HUGE), lambda: parse_requirements(f"cuda>={HUGE}"),
        lambda: parse_number("²", "x"),
    ]
    for attempt in attempts:
        with pytest.raises(NvlowError):
            attempt()


def test_resolve_below_agrees_with_realpath(tmp_path) -> None:
    """HostRoot.contains resolves only below the (already real) root: the same answer as
    os.path.realpath on every shape of link, and a link loop is inside no root."""
    from nvlow.host.root import HostRoot, _resolve_below

    base = tmp_path / "root"
    (base / "dev" / "sub").mkdir(parents=True)
    (base / "dev" / "nvidia0").write_text("")
    os.symlink("/etc/hostname", base / "dev" / "abs")            # absolute: the host's
    os.symlink("../../..", base / "dev" / "up")                   # climbs out of the root
    os.symlink("sub/../nvidia0", base / "dev" / "rel")            # stays inside
    os.symlink("loop2", base / "dev" / "loop1")
    os.symlink("loop1", base / "dev" / "loop2")
    os.symlink("rel", base / "dev" / "chain")
    real = os.path.realpath(base)
    for rest in ("dev/nvidia0", "dev/abs", "dev/up/etc", "dev/rel", "dev/chain", "dev/missing/../rel",
                 "dev/./sub/../nvidia0", "dev/../../outside", "dev/missing/x", "", "dev/up"):
        assert _resolve_below(real, rest) == os.path.realpath(os.path.join(real, rest)), rest
    assert _resolve_below(real, "dev/loop1") == ""
    root = HostRoot(str(base))
    assert root.contains(root.host("/dev/rel")) and root.contains(root.host("/dev/nvidia0"))
    assert not root.contains(root.host("/dev/abs")) and not root.contains(root.host("/dev/up"))
    assert not root.contains(root.host("/dev/loop1"))
