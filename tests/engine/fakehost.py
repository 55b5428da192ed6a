"""A fake NVIDIA host root for real-engine tests.

``build_fake_host(dest)`` writes, under ``dest``:

- ``/dev`` character nodes made with ``os.mknod``: ``nvidia0``/``nvidia1`` (195:N), ``nvidiactl`` (195:255),
  ``nvidia-modeset`` (195:254), ``nvidia-uvm``/``nvidia-uvm-tools`` (U:0, U:1) where U is a major the
  *host* kernel does not use, so opening a node fails harmlessly (ENXIO) on the host and in containers;
- ``/proc/devices``, ``/proc/driver/nvidia/version`` and ``gpus/<bus>/information`` consistent with them
  (2 GPUs, driver 550.54.15);
- tiny but real ELF driver libraries (gcc, with SONAMEs) under ``/usr/lib/x86_64-linux-gnu`` plus SONAME
  links (the VDPAU driver in its ``vdpau/`` directory, outside the ld.so.cache), a stale ``libcuda.so.535.104.05`` in ``/opt/old-driver/lib64``, shell-script binaries in
  ``/usr/bin``, and ``/etc/ld.so.cache`` built by ``ldconfig -r``.

With ``build_fake_host(dest, mig=True)`` GPU 0 is in MIG mode (``MIG_INSTANCES``): the fake root also gets
``nvidia-caps`` in /proc/devices (C, another major the host kernel does not use), the capabilities tree
``/proc/driver/nvidia/capabilities/{mig/config,mig/monitor,gpu0/mig/gi<G>/access,gpu0/mig/gi<G>/ci<C>/access}``
(``DeviceFileMinor: N`` files), ``/proc/driver/nvidia-caps/mig-minors``, and ``/dev/nvidia-caps/nvidia-capN``
nodes (C:N) for config, monitor and every GI/CI access; procfs-only discovery turns them into MIG devices.

The libraries export no NVML/CUDA symbols, so nvlow cannot use NVML from this root and falls back to procfs.
Building needs root (mknod, ldconfig's chroot) and gcc.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
from dataclasses import dataclass, field
from typing import Dict, Iterable, Optional, Sequence, Tuple

DRIVER_VERSION = "550.54.15"
STALE_VERSION = "535.104.05"
NVIDIA_MAJOR = 195
LIB_DIR = "/usr/lib/x86_64-linux-gnu"
STALE_LIB_DIR = "/opt/old-driver/lib64"
BIN_DIR = "/usr/bin"

#: (file stem, SONAME) of the fake driver libraries; the file is ``<stem>.<DRIVER_VERSION>``.
#: libnvidia-gpucomp really has the full version as its SONAME.
LIBRARIES: Tuple[Tuple[str, str], ...] = (
    ("libcuda.so", "libcuda.so.1"),
    ("libnvidia-ml.so", "libnvidia-ml.so.1"),
    ("libnvidia-ptxjitcompiler.so", "libnvidia-ptxjitcompiler.so.1"),
    ("libnvidia-nvvm.so", "libnvidia-nvvm.so.4"),
    ("libcudadebugger.so", "libcudadebugger.so.1"),
    ("libnvidia-cfg.so", "libnvidia-cfg.so.1"),
    ("libnvidia-allocator.so", "libnvidia-allocator.so.1"),
    ("libnvidia-opencl.so", "libnvidia-opencl.so.1"),
    ("libnvidia-gpucomp.so", f"libnvidia-gpucomp.so.{DRIVER_VERSION}"),
)
#: the VDPAU driver, where the driver's installer puts it: libvdpau's module directory under the library
#: directory, which ld.so.conf does not list (so it is not in the ld.so.cache)
VDPAU_DIR = LIB_DIR + "/vdpau"
VDPAU_LIBRARY = ("libvdpau_nvidia.so", "libvdpau_nvidia.so.1")

#: binaries written as ``#!/bin/sh`` scripts; each prints ``smi_marker``-style ``nvlow-fake-<name> <version>``.
BINARIES: Tuple[str, ...] = (
    "nvidia-smi",
    "nvidia-debugdump",
    "nvidia-persistenced",
    "nvidia-cuda-mps-control",
    "nvidia-cuda-mps-server",
)

#: (PCI bus id, device minor, model, UUID) of the two fake GPUs, in bus order.
GPUS: Tuple[Tuple[str, int, str, str], ...] = (
    ("0000:01:00.0", 0, "NVIDIA A100-SXM4-40GB", "GPU-6f7a1c2e-0000-4000-8000-000000000001"),
    ("0000:02:00.0", 1, "NVIDIA A100-SXM4-40GB", "GPU-6f7a1c2e-0000-4000-8000-000000000002"),
)

#: (GPU minor, GI, CI) of the MIG devices of the ``mig`` variant, in nvlow's order (GPU 0 only)
MIG_INSTANCES: Tuple[Tuple[int, int, int], ...] = ((0, 1, 0), (0, 2, 0))
#: nv-caps minors of the MIG config and monitor capabilities (the driver's fixed table)
CAP_CONFIG_MINOR = 1
CAP_MONITOR_MINOR = 2


def cap_gi_minor(gpu_minor: int, gi: int) -> int:
    """nv-caps minor of GI access in the driver's table (``/proc/driver/nvidia-caps/mig-minors``)."""
    return 3 + 135 * gpu_minor + 9 * gi


def cap_ci_minor(gpu_minor: int, gi: int, ci: int) -> int:
    """nv-caps minor of CI access."""
    return cap_gi_minor(gpu_minor, gi) + 1 + ci


# Majors the kernel assigns dynamically are handed out from 511 downwards (and 234-254); any major
# not listed in the host's /proc/devices is free.
_DYNAMIC_MAJORS = range(511, 239, -1)


def char_majors(proc_devices: str) -> Dict[int, Tuple[str, ...]]:
    """Map major -> names from the ``Character devices:`` section of /proc/devices text."""
    majors: Dict[int, Tuple[str, ...]] = {}
    in_char = False
    for line in proc_devices.splitlines():
        if line.strip() == "Character devices:":
            in_char = True
            continue
        if not line.strip() or line.strip().endswith(":"):
            in_char = False
            continue
        if in_char:
            number, _, name = line.strip().partition(" ")
            if number.isdigit():
                majors[int(number)] = majors.get(int(number), ()) + (name.strip(),)
    return majors


def pick_free_major(proc_devices: str, avoid: Iterable[int] = (NVIDIA_MAJOR,)) -> int:
    """The highest dynamic-range character major not used in ``proc_devices`` nor in ``avoid``."""
    used = set(char_majors(proc_devices)) | set(avoid)
    for major in _DYNAMIC_MAJORS:
        if major not in used:
            return major
    raise RuntimeError("no free character major in 240..511")


def host_has_nvidia_driver(proc_devices: Optional[str] = None) -> bool:
    """True when the real host kernel owns major 195, so fake 195:N nodes would reach real GPUs."""
    if proc_devices is None:
        with open("/proc/devices", encoding="ascii", errors="replace") as fh:
            proc_devices = fh.read()
    return NVIDIA_MAJOR in char_majors(proc_devices)


@dataclass(frozen=True)
class FakeNode:
    """A device node of the fake host: path inside the root, major and minor."""

    path: str
    major: int
    minor: int

    @property
    def hex(self) -> str:
        """``%t:%T`` as stat prints it (lower-case hex, no padding)."""
        return f"{self.major:x}:{self.minor:x}"


@dataclass(frozen=True)
class FakeHost:
    """What ``build_fake_host`` wrote; paths without ``root`` are as the host (and nvlow) sees them."""

    root: str
    uvm_major: int
    driver_version: str = DRIVER_VERSION
    cuda_version: str = "12.4"
    gpu_minors: Tuple[int, ...] = tuple(g[1] for g in GPUS)
    bus_ids: Tuple[str, ...] = tuple(g[0] for g in GPUS)
    uuids: Tuple[str, ...] = tuple(g[3] for g in GPUS)
    lib_dir: str = LIB_DIR
    stale_lib_dir: str = STALE_LIB_DIR
    #: SONAME -> real file path (host view), e.g. ``libcuda.so.1`` -> ``/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.15``
    libraries: Dict[str, str] = field(default_factory=dict)
    #: binary name -> host path
    binaries: Dict[str, str] = field(default_factory=dict)
    stale_library: str = f"{STALE_LIB_DIR}/libcuda.so.{STALE_VERSION}"
    #: the ``nvidia-caps`` major of the ``mig`` variant (None: no MIG)
    caps_major: Optional[int] = None
    #: (GPU minor, GI, CI) of the MIG devices (empty: no MIG)
    mig_instances: Tuple[Tuple[int, int, int], ...] = ()

    def host(self, path: str) -> str:
        """Real path of host path ``path`` under the fake root."""
        return os.path.join(self.root, path.lstrip("/"))

    def marker(self, binary: str) -> str:
        """The line the fake ``binary`` prints."""
        return f"nvlow-fake-{binary} {self.driver_version}"

    @property
    def nodes(self) -> Dict[str, FakeNode]:
        """Node name (``nvidia0``, ``nvidiactl``, ``nvidia-uvm`` ...) -> node."""
        out = {f"nvidia{m}": FakeNode(f"/dev/nvidia{m}", NVIDIA_MAJOR, m) for m in self.gpu_minors}
        out["nvidiactl"] = FakeNode("/dev/nvidiactl", NVIDIA_MAJOR, 255)
        out["nvidia-modeset"] = FakeNode("/dev/nvidia-modeset", NVIDIA_MAJOR, 254)
        out["nvidia-uvm"] = FakeNode("/dev/nvidia-uvm", self.uvm_major, 0)
        out["nvidia-uvm-tools"] = FakeNode("/dev/nvidia-uvm-tools", self.uvm_major, 1)
        out.update(self.cap_nodes)
        return out

    @property
    def cap_nodes(self) -> Dict[str, FakeNode]:
        """``nvidia-capN`` -> node, for config, monitor and every GI/CI access (empty without MIG)."""
        if self.caps_major is None:
            return {}
        minors = {CAP_CONFIG_MINOR, CAP_MONITOR_MINOR}
        for gpu, gi, ci in self.mig_instances:
            minors |= {cap_gi_minor(gpu, gi), cap_ci_minor(gpu, gi, ci)}
        return {f"nvidia-cap{m}": FakeNode(f"/dev/nvidia-caps/nvidia-cap{m}", self.caps_major, m)
                for m in sorted(minors)}

    def mig_cap_nodes(self, gpu: int, gi: int, ci: int) -> Tuple[FakeNode, FakeNode]:
        """The GI access node, then the CI access node, of one MIG device (what its container needs)."""
        nodes = self.cap_nodes
        return nodes[f"nvidia-cap{cap_gi_minor(gpu, gi)}"], nodes[f"nvidia-cap{cap_ci_minor(gpu, gi, ci)}"]

    def md5(self, path: str) -> str:
        """md5 hex digest of host file ``path`` (symlinks followed), to compare with busybox md5sum."""
        with open(self.host(path), "rb") as fh:
            return hashlib.md5(fh.read()).hexdigest()


# ---------------------------------------------------------------- writers

def _write(path: str, text: str, mode: int = 0o644) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="ascii") as fh:
        fh.write(text)
    os.chmod(path, mode)


def proc_devices_text(uvm_major: int, caps_major: Optional[int] = None) -> str:
    """/proc/devices of the fake host (``%3d %s`` lines, char section then block section)."""
    chars = [(1, "mem"), (4, "tty"), (5, "/dev/tty"), (10, "misc"), (136, "pts"),
             (NVIDIA_MAJOR, "nvidia"), (NVIDIA_MAJOR, "nvidiactl"), (226, "drm"), (uvm_major, "nvidia-uvm")]
    if caps_major is not None:
        chars.append((caps_major, "nvidia-caps"))
    lines = ["Character devices:"] + [f"{m:3d} {n}" for m, n in sorted(chars, key=lambda c: c[0])]
    lines += ["", "Block devices:", "  7 loop", "259 blkext"]
    return "\n".join(lines) + "\n"


def version_text(version: str = DRIVER_VERSION) -> str:
    """/proc/driver/nvidia/version (proprietary 3-part layout)."""
    return (f"NVRM version: NVIDIA UNIX x86_64 Kernel Module  {version}  Tue Feb 13 01:41:33 UTC 2024\n"
            "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14) \n")


def information_text(bus: str, minor: int, model: str, uuid: str) -> str:
    """/proc/driver/nvidia/gpus/<bus>/information (nv-procfs.c layout)."""
    return (f"Model: \t\t {model}\nIRQ:   \t\t {120 + minor}\nGPU UUID: \t {uuid}\n"
            "Video BIOS: \t 92.00.45.00.03\nBus Type: \t PCIe\nDMA Size: \t 47 bits\n"
            f"DMA Mask: \t 0x7fffffffffff\nBus Location: \t {bus}\nDevice Minor: \t {minor}\n"
            "GPU Excluded:\t No\n")


def _access_text(minor: int, mode: int) -> str:
    """A capabilities file as nv-caps.c prints it (the mode in decimal: 256 = 0400, 292 = 0444)."""
    return f"DeviceFileMinor: {minor}\nDeviceFileMode: {mode}\nDeviceFileModify: 1\n"


def mig_minors_text(gpus: int = len(GPUS)) -> str:
    """``/proc/driver/nvidia-caps/mig-minors`` for ``gpus`` GPU minors (GI 0-14, CI 0-7)."""
    lines = [f"config {CAP_CONFIG_MINOR}", f"monitor {CAP_MONITOR_MINOR}"]
    for n in range(gpus):
        for g in range(15):
            lines.append(f"gpu{n}/gi{g}/access {cap_gi_minor(n, g)}")
            lines += [f"gpu{n}/gi{g}/ci{c}/access {cap_ci_minor(n, g, c)}" for c in range(8)]
    return "\n".join(lines) + "\n"


def _write_mig_proc(root: str, instances: Tuple[Tuple[int, int, int], ...]) -> None:
    caps = os.path.join(root, "proc/driver/nvidia/capabilities")
    _write(os.path.join(caps, "mig/config"), _access_text(CAP_CONFIG_MINOR, 256), 0o400)
    _write(os.path.join(caps, "mig/monitor"), _access_text(CAP_MONITOR_MINOR, 292), 0o444)
    for gpu, gi, ci in instances:
        _write(os.path.join(caps, f"gpu{gpu}/mig/gi{gi}/access"), _access_text(cap_gi_minor(gpu, gi), 292), 0o444)
        _write(os.path.join(caps, f"gpu{gpu}/mig/gi{gi}/ci{ci}/access"),
               _access_text(cap_ci_minor(gpu, gi, ci), 292), 0o444)
    _write(os.path.join(root, "proc/driver/nvidia-caps/mig-minors"), mig_minors_text())


def _write_proc(root: str, uvm_major: int, caps_major: Optional[int] = None,
                mig_instances: Tuple[Tuple[int, int, int], ...] = ()) -> None:
    _write(os.path.join(root, "proc/devices"), proc_devices_text(uvm_major, caps_major))
    if mig_instances:
        _write_mig_proc(root, mig_instances)
    _write(os.path.join(root, "proc/driver/nvidia/version"), version_text())
    _write(os.path.join(root, "proc/driver/nvidia/params"),
           "ModifyDeviceFiles: 1\nDeviceFileUID: 0\nDeviceFileGID: 0\nDeviceFileMode: 438\n")
    for bus, minor, model, uuid in GPUS:
        _write(os.path.join(root, "proc/driver/nvidia/gpus", bus, "information"),
               information_text(bus, minor, model, uuid))


def _make_nodes(host: FakeHost) -> None:
    os.makedirs(host.host("/dev"), exist_ok=True)
    for node in host.nodes.values():
        real = host.host(node.path)
        os.makedirs(os.path.dirname(real), exist_ok=True)
        if os.path.lexists(real):
            os.unlink(real)
        # nvidia-modprobe makes cap nodes 0400 (config) or 0444 (monitor, access); the others are 0666
        mode = 0o666 if node.major != host.caps_major else 0o400 if node.minor == CAP_CONFIG_MINOR else 0o444
        os.mknod(real, stat.S_IFCHR | mode, os.makedev(node.major, node.minor))
        os.chmod(real, mode)  # mknod honours the umask


def _compile_library(workdir: str, out: str, soname: str, cc: str) -> None:
    # The symbol names the file, so every library (the stale libcuda too) has distinct bytes.
    symbol = "nvlow_fake_" + "".join(c if c.isalnum() else "_" for c in os.path.basename(out))
    src = os.path.join(workdir, symbol + ".c")
    with open(src, "w", encoding="ascii") as fh:
        fh.write(f"int {symbol}(void) {{ return 42; }}\n")
    subprocess.run([cc, "-shared", "-fPIC", "-nostdlib", f"-Wl,-soname,{soname}", "-o", out, src],
                   check=True, capture_output=True)


def _symlink(target: str, link: str) -> None:
    if os.path.lexists(link):
        os.unlink(link)
    os.symlink(target, link)


def _write_driver(host: FakeHost, cc: str) -> Tuple[Dict[str, str], Dict[str, str]]:
    root = host.root
    libdir, staledir = host.host(LIB_DIR), host.host(STALE_LIB_DIR)
    os.makedirs(libdir, exist_ok=True)
    os.makedirs(staledir, exist_ok=True)
    build = os.path.join(root, ".build")
    os.makedirs(build, exist_ok=True)
    libraries: Dict[str, str] = {}
    os.makedirs(host.host(VDPAU_DIR), exist_ok=True)
    for where, (stem, soname) in [(LIB_DIR, lib) for lib in LIBRARIES] + [(VDPAU_DIR, VDPAU_LIBRARY)]:
        name = f"{stem}.{DRIVER_VERSION}"
        _compile_library(build, os.path.join(host.host(where), name), soname, cc)
        if soname != name:
            _symlink(name, os.path.join(host.host(where), soname))
        libraries[soname] = f"{where}/{name}"
    # Real hosts have the dev link libcuda.so -> libcuda.so.1 (nvidia-docker #103).
    _symlink("libcuda.so.1", os.path.join(libdir, "libcuda.so"))
    # A leftover of an older driver: same SONAME, wrong version suffix; nvlow must not pick it.
    stale = f"libcuda.so.{STALE_VERSION}"
    _compile_library(build, os.path.join(staledir, stale), "libcuda.so.1", cc)
    _symlink(stale, os.path.join(staledir, "libcuda.so.1"))
    shutil.rmtree(build)

    binaries: Dict[str, str] = {}
    for name in BINARIES:
        path = f"{BIN_DIR}/{name}"
        _write(host.host(path), f"#!/bin/sh\necho '{host.marker(name)}'\n", 0o755)
        binaries[name] = path
    return libraries, binaries


def _build_ld_cache(root: str, ldconfig: str) -> None:
    _write(os.path.join(root, "etc/ld.so.conf"), f"{LIB_DIR}\n{STALE_LIB_DIR}\n")
    # -r chroots into the fake root, so the cache holds host-view paths (/usr/lib/...).
    subprocess.run([ldconfig, "-r", root], check=True, capture_output=True)


def build_fake_host(dest: str, *, uvm_major: Optional[int] = None,
                    host_proc_devices: Optional[str] = None, mig: bool = False,
                    caps_major: Optional[int] = None) -> FakeHost:
    """Write the fake host under ``dest`` (created if missing) and describe it.

    ``uvm_major`` defaults to a major free on this kernel (``host_proc_devices`` defaults to
    the real /proc/devices). With ``mig`` GPU 0 is in MIG mode with ``MIG_INSTANCES`` and the
    MIG capability files and nodes exist; ``caps_major`` (the ``nvidia-caps`` major) defaults to
    another free major. Raises ``PermissionError`` when not root, ``FileNotFoundError``
    when gcc or ldconfig is missing, ``subprocess.CalledProcessError`` when either fails.
    """
    if os.geteuid() != 0:
        raise PermissionError("the fake host needs root (mknod, ldconfig -r)")
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise FileNotFoundError("gcc")
    ldconfig = shutil.which("ldconfig") or ("/sbin/ldconfig" if os.path.exists("/sbin/ldconfig") else None)
    if ldconfig is None:
        raise FileNotFoundError("ldconfig")
    if host_proc_devices is None and (uvm_major is None or (mig and caps_major is None)):
        with open("/proc/devices", encoding="ascii", errors="replace") as fh:
            host_proc_devices = fh.read()
    if uvm_major is None:
        uvm_major = pick_free_major(host_proc_devices or "")
    if mig and caps_major is None:
        caps_major = pick_free_major(host_proc_devices or "", avoid=(NVIDIA_MAJOR, uvm_major))
    if not mig:
        caps_major = None
    instances = MIG_INSTANCES if mig else ()
    root = os.path.abspath(dest)
    os.makedirs(root, exist_ok=True)
    skeleton = FakeHost(root=root, uvm_major=uvm_major, caps_major=caps_major, mig_instances=instances)
    _write_proc(root, uvm_major, caps_major, instances)
    _make_nodes(skeleton)
    libraries, binaries = _write_driver(skeleton, cc)
    _build_ld_cache(root, ldconfig)
    return FakeHost(root=root, uvm_major=uvm_major, libraries=libraries, binaries=binaries,
                    caps_major=caps_major, mig_instances=instances)


def ld_cache_entries(host: FakeHost, ldconfig: str = "ldconfig") -> Sequence[str]:
    """``ldconfig -p`` lines of the fake host's cache (for tests of the fixture itself)."""
    out = subprocess.run([ldconfig, "-p", "-C", host.host("/etc/ld.so.cache")],
                         check=True, capture_output=True, text=True).stdout
    return [line.strip() for line in out.splitlines()[1:] if line.strip()]
