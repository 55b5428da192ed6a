"""The driver userspace of a simulated host: libraries, binaries, configs, IPC, firmware, ld.so.cache.

Written under a fake host root for ``--simulate``. Libraries are small but
complete ELF shared objects (:mod:`nvlow.simulate.elfgen`: section headers,
``.dynsym``/``.dynstr``, no code; glibc's ``dlopen`` loads them, ``readelf``
and Go's ``debug/elf`` read them) with the SONAMEs and ``DT_NEEDED`` the real
driver has; binaries are static x86-64 executables that print one line
(``nvidia-smi: simulated host dgx-a100, driver 550.54.15``). The layout is a
Debian/Ubuntu package install
(``/usr/lib/x86_64-linux-gnu/libcuda.so.<version>`` + SONAME symlink). A stale
``libcuda.so.535.104.05`` under ``/usr/local/lib`` exercises the
stale-version rule, and Mesa/GLVND's ``libGL.so.1`` the GL loader rule.
Graphics libraries, 32-bit GL and the ICD JSONs are written only for presets
with a display (server presets look like a headless install), with what the
toolkit mounts on top: the GBM backend link ``gbm/nvidia-drm_gbm.so``, the EGL
platform libraries with their own versions (``libnvidia-egl-gbm.so.1.1.2``), the
X.Org modules and configuration. ``preset.nvvm70`` adds the legacy NVVM
``libnvidia-nvvm70.so.4`` (no driver version in its name) next to libcuda.

Output is deterministic: same preset, same bytes.

Example:
    >>> import tempfile
    >>> from nvlow.simulate.presets import get_preset
    >>> d = tempfile.mkdtemp()
    >>> write_driver_tree(d, get_preset("dgx-a100"))
    >>> os.readlink(d + "/usr/lib/x86_64-linux-gnu/libcuda.so.1")
    'libcuda.so.550.54.15'
"""
from __future__ import annotations

import json
import os

from .elfgen import make_elf_exec, make_elf_so
from .ldcache_writer import FLAGS_I386, FLAGS_X86_64, build_ldcache
from .presets import Preset

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import List, Optional, Sequence, Tuple

    _Lib = Tuple[str, Optional[str], Tuple[str, ...]]

LIB64 = "/usr/lib/x86_64-linux-gnu"
LIB32 = "/usr/lib/i386-linux-gnu"
STALE_VERSION = "535.104.05"
STALE_DIR = "/usr/local/lib"
GENERATOR = "ldconfig (nvlow simulated host) stable release version 2.36"

# (name stem, SONAME or None for "the versioned name itself", extra DT_NEEDED)
_COMPUTE: Tuple[_Lib, ...] = (
    ("libnvidia-ml.so", "libnvidia-ml.so.1", ()),
    ("libnvidia-cfg.so", "libnvidia-cfg.so.1", ()),
    ("libcuda.so", "libcuda.so.1", ()),
    ("libcudadebugger.so", "libcudadebugger.so.1", ()),
    ("libnvidia-opencl.so", "libnvidia-opencl.so.1", ()),
    ("libnvidia-gpucomp.so", None, ()),
    ("libnvidia-ptxjitcompiler.so", "libnvidia-ptxjitcompiler.so.1", ()),
    ("libnvidia-allocator.so", "libnvidia-allocator.so.1", ()),
    ("libnvidia-nvvm.so", "libnvidia-nvvm.so.4", ()),
    ("libnvidia-pkcs11-openssl3.so", None, ()),
    ("libnvidia-encode.so", "libnvidia-encode.so.1", ()),
    ("libnvcuvid.so", "libnvcuvid.so.1", ()),
    ("libnvidia-opticalflow.so", "libnvidia-opticalflow.so.1", ()),
    # not in any capability list: found by the *.so.<version> sweep only
    ("libnvidia-sandboxutils.so", "libnvidia-sandboxutils.so.1", ()),
)
_GRAPHICS: Tuple[_Lib, ...] = (
    ("libnvidia-glcore.so", None, ()),
    ("libnvidia-eglcore.so", None, ()),
    ("libnvidia-glsi.so", None, ()),
    ("libnvidia-tls.so", None, ()),
    ("libnvidia-glvkspirv.so", None, ()),
    ("libnvidia-rtcore.so", None, ()),
    ("libnvidia-fbc.so", "libnvidia-fbc.so.1", ()),
    ("libnvoptix.so", "libnvoptix.so.1", ()),
    ("libnvidia-ngx.so", "libnvidia-ngx.so.1", ()),
    ("libGLX_nvidia.so", "libGLX_nvidia.so.0", ("libnvidia-glcore.so.{v}", "libnvidia-tls.so.{v}")),
    ("libEGL_nvidia.so", "libEGL_nvidia.so.0", ("libnvidia-eglcore.so.{v}",)),
    ("libGLESv2_nvidia.so", "libGLESv2_nvidia.so.2", ("libnvidia-eglcore.so.{v}",)),
    ("libGLESv1_CM_nvidia.so", "libGLESv1_CM_nvidia.so.1", ("libnvidia-eglcore.so.{v}",)),
)
_COMPUTE32 = ("libcuda.so", "libnvidia-ml.so", "libnvidia-ptxjitcompiler.so", "libnvidia-opencl.so")
_GRAPHICS32 = ("libnvidia-glcore.so", "libnvidia-tls.so", "libGLX_nvidia.so", "libEGL_nvidia.so",
               "libnvidia-eglcore.so")

#: EGL external platform libraries: (stem, own version, SONAME, platform JSON)
_EGL_PLATFORMS = (
    ("libnvidia-egl-gbm.so", "1.1.2", "libnvidia-egl-gbm.so.1", "15_nvidia_gbm.json"),
    ("libnvidia-egl-wayland.so", "1.1.17", "libnvidia-egl-wayland.so.1", "10_nvidia_wayland.json"),
)
XORG_DRIVERS = "/usr/lib/xorg/modules/drivers"
XORG_EXTENSIONS = "/usr/lib/xorg/modules/extensions"

_BINARIES = ("nvidia-smi", "nvidia-debugdump", "nvidia-cuda-mps-control", "nvidia-cuda-mps-server")


class _Tree:
    def __init__(self, dest: str, preset_name: str = "") -> None:
        self.dest = dest
        self.preset_name = preset_name
        self.cache: List[Tuple[str, str, int]] = []

    def path(self, host_path: str) -> str:
        return self.dest + host_path

    def write(self, host_path: str, data: bytes, mode: int = 0o644) -> None:
        real = self.path(host_path)
        os.makedirs(os.path.dirname(real), exist_ok=True)
        with open(real, "wb") as fh:
            fh.write(data)
        os.chmod(real, mode)

    def link(self, host_path: str, target: str) -> None:
        real = self.path(host_path)
        os.makedirs(os.path.dirname(real), exist_ok=True)
        if os.path.lexists(real):
            os.unlink(real)
        os.symlink(target, real)

    def library(self, directory: str, stem: str, version: str, soname: Optional[str],
                needed: Sequence[str], machine: str, flags: int, *, in_cache: bool = True,
                abi_note: Optional[Tuple[int, int, int, int]] = None) -> None:
        real_name = f"{stem}.{version}"
        so = soname or real_name
        data = make_elf_so(so, [n.format(v=version) for n in needed] + ["libc.so.6"],
                           machine=machine, abi_note=abi_note, loadable=True)
        self.write(f"{directory}/{real_name}", data, 0o755)
        if so != real_name:
            self.link(f"{directory}/{so}", real_name)
        if in_cache:
            self.cache.append((so, f"{directory}/{so}", flags))


def _libraries(t: _Tree, preset: Preset, v: str) -> None:
    graphics = preset.display
    for stem, soname, needed in _COMPUTE + (_GRAPHICS if graphics else ()):
        abi = (0, 2, 3, 99) if stem == "libnvidia-tls.so" else None
        t.library(LIB64, stem, v, soname, needed, "x86-64", FLAGS_X86_64, abi_note=abi)
    if len(preset.gpus) >= 8:  # NVSwitch systems: NSCQ (used by DCGM) from the fabric manager packages
        t.library(LIB64, "libnvidia-nscq.so", v, "libnvidia-nscq.so.2", (), "x86-64", FLAGS_X86_64)
    # The development link some installers create; programs dlopen it (nvidia-docker #103).
    t.link(f"{LIB64}/libcuda.so", "libcuda.so.1")
    if preset.nvvm70:  # R575+: the legacy NVVM for PTX JIT of pre-CUDA-12 programs, unversioned file name
        t.library(LIB64, "libnvidia-nvvm70.so", "4", None, (), "x86-64", FLAGS_X86_64)
    if graphics:
        _graphics_extras(t, v)
    # VDPAU drivers live outside the ld.so.conf directories: only the sweep finds them.
    t.library(f"{LIB64}/vdpau", "libvdpau_nvidia.so", v, "libvdpau_nvidia.so.1", (), "x86-64",
              FLAGS_X86_64, in_cache=False)
    libs32 = _COMPUTE32 + (_GRAPHICS32 if graphics else ())
    for stem, soname, needed in _COMPUTE + _GRAPHICS:
        if stem in libs32:
            abi = (0, 2, 3, 99) if stem == "libnvidia-tls.so" else None
            t.library(LIB32, stem, v, soname, needed, "i386", FLAGS_I386, abi_note=abi)
    # A stale copy left behind by an older driver (a .run install into /usr/local/lib).
    t.library(STALE_DIR, "libcuda.so", STALE_VERSION, "libcuda.so.1", (), "x86-64", FLAGS_X86_64)
    if graphics:
        # Mesa/GLVND's libGL: matches the "libGL.so" prefix but is not NVIDIA's.
        t.library(LIB64, "libGL.so", "1.7.0", "libGL.so.1", ("libGLdispatch.so.0", "libGLX.so.0"),
                  "x86-64", FLAGS_X86_64)
    for d, flags in ((LIB64, FLAGS_X86_64), (LIB32, FLAGS_I386)):
        t.write(f"{d}/libc.so.6", make_elf_so("libc.so.6", machine="x86-64" if d == LIB64 else "i386",
                                              loadable=True), 0o755)
        t.cache.append(("libc.so.6", f"{d}/libc.so.6", flags))


def _graphics_extras(t: _Tree, v: str) -> None:
    """What the toolkit's graphics discoverer mounts beyond the libnvidia-container lists."""
    # The GBM backend Mesa's libgbm loads: a link to the allocator (the .run and distro packages).
    t.link(f"{LIB64}/gbm/nvidia-drm_gbm.so", "../libnvidia-allocator.so.1")
    for stem, own, soname, platform_json in _EGL_PLATFORMS:
        t.library(LIB64, stem, own, soname, (), "x86-64", FLAGS_X86_64)
        t.write(f"/usr/share/egl/egl_external_platform.d/{platform_json}", (json.dumps(
            {"file_format_version": "1.0.0", "ICD": {"library_path": soname}}, indent=4, sort_keys=True)
            + "\n").encode())
    t.write(f"{XORG_DRIVERS}/nvidia_drv.so", make_elf_so("nvidia_drv.so", ["libc.so.6"], loadable=True), 0o644)
    t.write(f"{XORG_EXTENSIONS}/libglxserver_nvidia.so.{v}",
            make_elf_so(f"libglxserver_nvidia.so.{v}", ["libc.so.6"], loadable=True), 0o644)
    t.link(f"{XORG_EXTENSIONS}/libglxserver_nvidia.so", f"libglxserver_nvidia.so.{v}")
    t.write("/usr/share/X11/xorg.conf.d/nvidia-drm-outputclass.conf",
            b'Section "OutputClass"\n    Identifier "nvidia"\n    MatchDriver "nvidia-drm"\n'
            b'    Driver "nvidia"\n    Option "AllowEmptyInitialConfiguration"\n'
            b'    ModulePath "/usr/lib/x86_64-linux-gnu/nvidia/xorg"\nEndSection\n')
    t.write("/usr/bin/nvidia-xconfig", _binary("nvidia-xconfig", t.preset_name, v), 0o755)


def binary_line(name: str, preset_name: str, version: str) -> str:
    """What the simulated binary ``name`` prints (whatever its arguments).

    Example:
        >>> binary_line("nvidia-smi", "dgx-a100", "550.54.15")
        'nvidia-smi: simulated host dgx-a100, driver 550.54.15\\n'
    """
    return f"{name}: simulated host {preset_name}, driver {version}\n"


def _binary(name: str, preset_name: str, version: str) -> bytes:
    return make_elf_exec(binary_line(name, preset_name, version))


def _binaries(t: _Tree, preset: Preset, v: str) -> None:
    for name in _BINARIES:
        t.write(f"/usr/bin/{name}", _binary(name, preset.name, v), 0o755)
    # Debian's layout: /usr/bin/nvidia-persistenced -> /usr/lib/nvidia/current/... (absolute link)
    t.write("/usr/lib/nvidia/current/nvidia-persistenced", _binary("nvidia-persistenced", preset.name, v), 0o755)
    t.link("/usr/bin/nvidia-persistenced", "/usr/lib/nvidia/current/nvidia-persistenced")
    if len(preset.gpus) >= 8:  # NVSwitch systems run the fabric manager
        t.write("/usr/bin/nv-fabricmanager", _binary("nv-fabricmanager", preset.name, v), 0o755)
        t.write("/run/nvidia-fabricmanager/socket", b"nvlow-simulated-socket\n")
    if preset.gpus and any(g.persistence_mode for g in preset.gpus):
        t.write("/run/nvidia-persistenced/socket", b"nvlow-simulated-socket\n")


def _configs(t: _Tree, preset: Preset, v: str) -> None:
    def js(obj: object) -> bytes:
        return (json.dumps(obj, indent=4, sort_keys=True) + "\n").encode()

    t.write("/etc/OpenCL/vendors/nvidia.icd", b"libnvidia-opencl.so.1\n")
    if not preset.display:
        return
    t.write("/usr/share/glvnd/egl_vendor.d/10_nvidia.json",
            js({"file_format_version": "1.0.0", "ICD": {"library_path": "libEGL_nvidia.so.0"}}))
    t.write("/usr/share/vulkan/icd.d/nvidia_icd.json",
            js({"file_format_version": "1.0.0",
                "ICD": {"library_path": "libGLX_nvidia.so.0", "api_version": "1.3.277"}}))
    t.write("/usr/share/vulkan/implicit_layer.d/nvidia_layers.json",
            js({"file_format_version": "1.0.0",
                "layer": {"name": "VK_LAYER_NV_optimus", "type": "INSTANCE",
                          "library_path": "libGLX_nvidia.so.0", "api_version": "1.3.277",
                          "implementation_version": "1", "description": "NVIDIA Optimus layer"}}))
    t.write("/usr/share/nvidia/nvoptix.bin", b"nvlow simulated nvoptix\n")


def _firmware(t: _Tree, v: str) -> None:
    for name in ("gsp_ga10x.bin", "gsp_tu10x.bin"):
        t.write(f"/lib/firmware/nvidia/{v}/{name}", f"nvlow simulated {name} {v}\n".encode())


def write_driver_tree(dest: str, preset: Preset) -> None:
    """Write the driver userspace of ``preset`` under ``dest`` (a fake host root).

    Writes nothing when the preset has no driver libraries (``no-driver``).
    """
    v = preset.driver_version
    if not preset.libraries_present or not v:
        return
    t = _Tree(dest, preset.name)
    _libraries(t, preset, v)
    _binaries(t, preset, v)
    _configs(t, preset, v)
    _firmware(t, v)
    t.write("/etc/ld.so.cache", build_ldcache(t.cache, fmt="new", generator=GENERATOR))
